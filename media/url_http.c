/* http:// and https:// through libcurl, one hop at a time (see media/url.h for the
 * rules).  We resolve, check and pin; libcurl only connects where we said. */
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "core/clock.h"
#include "core/error.h"
#include "media/url_internal.h"

#define MAX_PINS 16

typedef struct {
    char host[256]; /* without [] */
    char port[8];
    int https;
    int literal;    /* host is an address literal */
} http_target;

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static int g_curl_ok;

static void curl_init_once(void)
{
    g_curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

static int url_part(CURLU *h, CURLUPart part, unsigned flags, char *buf, size_t len)
{
    char *v = NULL;
    if (curl_url_get(h, part, &v, flags) != CURLUE_OK || !v) return 0;
    snprintf(buf, len, "%s", v);
    size_t n = strlen(v);
    curl_free(v);
    return n < len ? 1 : -1;
}

/* Parses and checks one hop's URL without touching the network. */
static int parse_target(const char *url, const vlm_url_eff *e, http_target *t)
{
    memset(t, 0, sizeof *t);
    CURLU *h = curl_url();
    if (!h) return vlm_errorf(VLM_ERR_NOMEM, "url: out of memory");
    int rc = VLM_OK;
    char scheme[16], tmp[8];
    CURLUcode uc = curl_url_set(h, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        rc = vlm_errorf(VLM_ERR_FORMAT, "malformed URL '%.80s' (%s)", url, curl_url_strerror(uc));
        goto done;
    }
    if (url_part(h, CURLUPART_SCHEME, 0, scheme, sizeof scheme) != 1) {
        rc = vlm_errorf(VLM_ERR_FORMAT, "URL without a scheme");
        goto done;
    }
    if (!strcasecmp(scheme, "https")) {
        t->https = 1;
    } else if (strcasecmp(scheme, "http") != 0) {
        rc = vlm_errorf(VLM_ERR_UNSUPPORTED, "URL scheme '%s' is not allowed here (http or https)", scheme);
        goto done;
    } else if (!e->p.allow_http) {
        rc = vlm_errorf(VLM_ERR_INVALID, "plain http:// is not allowed (use https://)");
        goto done;
    }
    if (url_part(h, CURLUPART_USER, 0, tmp, sizeof tmp) ||
        url_part(h, CURLUPART_PASSWORD, 0, tmp, sizeof tmp)) {
        rc = vlm_errorf(VLM_ERR_INVALID, "credentials in URLs are not allowed");
        goto done;
    }
    if (url_part(h, CURLUPART_ZONEID, 0, tmp, sizeof tmp)) {
        rc = vlm_errorf(VLM_ERR_INVALID, "IPv6 zone ids are not allowed in URLs");
        goto done;
    }
    char host[sizeof t->host];
    int hr = url_part(h, CURLUPART_HOST, 0, host, sizeof host);
    if (hr != 1 || !host[0]) {
        rc = vlm_errorf(VLM_ERR_FORMAT, hr < 0 ? "host name too long" : "URL without a host");
        goto done;
    }
    size_t hl = strlen(host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        memcpy(t->host, host + 1, hl - 2);
        t->host[hl - 2] = '\0';
    } else {
        snprintf(t->host, sizeof t->host, "%s", host);
    }
    if (url_part(h, CURLUPART_PORT, CURLU_DEFAULT_PORT, t->port, sizeof t->port) != 1) {
        rc = vlm_errorf(VLM_ERR_FORMAT, "URL without a valid port");
        goto done;
    }
    if ((rc = vlm_host_allowed(t->host, &e->p)) != VLM_OK) goto done;
    uint8_t a[16];
    int fam = inet_pton(AF_INET, t->host, a) == 1 ? AF_INET : inet_pton(AF_INET6, t->host, a) == 1 ? AF_INET6 : 0;
    if (fam) {
        t->literal = 1;
        if (!vlm_addr_admitted(fam, a, &e->p))
            rc = vlm_errorf(VLM_ERR_INVALID, "address %s is %s and not allowed", t->host, vlm_addr_kind(fam, a));
    }
done:
    curl_url_cleanup(h);
    return rc;
}

int vlm_url_check(const char *url, const vlm_url_policy *pol)
{
    if (!url) return vlm_errorf(VLM_ERR_INVALID, "url: no URL given");
    vlm_url_eff e;
    vlm_url_effective(pol, &e);
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "not an http(s) URL");
    pthread_once(&g_curl_once, curl_init_once);
    if (!g_curl_ok) return vlm_errorf(VLM_ERR_IO, "libcurl failed to initialise");
    http_target t;
    return parse_target(url, &e, &t);
}

/* ---- resolution and pinning ------------------------------------------------------ */

typedef struct {
    int n;
    int family[MAX_PINS];
    uint8_t addr[MAX_PINS][16];
} pin_set;

static int resolve_and_filter(const http_target *t, const vlm_url_eff *e, pin_set *pins)
{
    memset(pins, 0, sizeof *pins);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(t->host, t->port, &hints, &res);
    if (g != 0) return vlm_errorf(VLM_ERR_IO, "cannot resolve host '%s': %s", t->host, gai_strerror(g));
    char first_bad[64] = "";
    const char *first_kind = NULL;
    for (struct addrinfo *ai = res; ai && pins->n < MAX_PINS; ai = ai->ai_next) {
        uint8_t a[16];
        int fam = ai->ai_family;
        if (fam == AF_INET)
            memcpy(a, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
        else if (fam == AF_INET6)
            memcpy(a, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
        else
            continue;
        if (!vlm_addr_admitted(fam, a, &e->p)) {
            if (!first_kind) {
                first_kind = vlm_addr_kind(fam, a);
                vlm_addr_format(fam, a, first_bad, sizeof first_bad);
            }
            continue;
        }
        int dup = 0;
        for (int i = 0; i < pins->n; i++)
            if (pins->family[i] == fam && !memcmp(pins->addr[i], a, fam == AF_INET ? 4 : 16)) dup = 1;
        if (dup) continue;
        pins->family[pins->n] = fam;
        memcpy(pins->addr[pins->n], a, fam == AF_INET ? 4 : 16);
        pins->n++;
    }
    freeaddrinfo(res);
    if (pins->n == 0) {
        if (first_kind)
            return vlm_errorf(VLM_ERR_INVALID, "host '%s' resolves to %s (%s), which is not allowed",
                              t->host, first_bad, first_kind);
        return vlm_errorf(VLM_ERR_IO, "host '%s' has no usable address", t->host);
    }
    return VLM_OK;
}

/* libcurl asks us for every socket: only the pinned addresses get one. */
static curl_socket_t open_pinned(void *ud, curlsocktype purpose, struct curl_sockaddr *sa)
{
    const pin_set *pins = (const pin_set *)ud;
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    const uint8_t *a = NULL;
    if (sa->family == AF_INET && sa->addrlen >= sizeof(struct sockaddr_in))
        a = (const uint8_t *)&((const struct sockaddr_in *)&sa->addr)->sin_addr;
    else if (sa->family == AF_INET6 && sa->addrlen >= sizeof(struct sockaddr_in6))
        a = (const uint8_t *)&((const struct sockaddr_in6 *)&sa->addr)->sin6_addr;
    if (!a) return CURL_SOCKET_BAD;
    for (int i = 0; i < pins->n; i++)
        if (pins->family[i] == sa->family && !memcmp(pins->addr[i], a, sa->family == AF_INET ? 4 : 16))
            return socket(sa->family, sa->socktype, sa->protocol);
    return CURL_SOCKET_BAD;
}

/* ---- one request ---------------------------------------------------------------- */

typedef struct {
    uint8_t *buf;
    size_t n, cap, max;
    int over;
} body_buf;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    body_buf *b = (body_buf *)ud;
    size_t k = size * nmemb;
    if (k > b->max - b->n) {
        b->over = 1;
        return 0; /* aborts the transfer */
    }
    if (b->n + k > b->cap) {
        size_t nc = b->cap ? b->cap : 65536;
        while (nc < b->n + k) nc *= 2;
        if (nc > b->max) nc = b->max;
        uint8_t *nb = (uint8_t *)realloc(b->buf, nc ? nc : 1);
        if (!nb) return 0;
        b->buf = nb;
        b->cap = nc;
    }
    memcpy(b->buf + b->n, p, k);
    b->n += k;
    return k;
}

typedef struct {
    long code;
    char location[2048];
    char ctype[128];
} hop_result;

static int do_hop(const char *url, const http_target *t, const pin_set *pins, const vlm_url_eff *e,
                  long remaining_ms, body_buf *body, hop_result *hr)
{
    CURL *c = curl_easy_init();
    if (!c) return vlm_errorf(VLM_ERR_NOMEM, "url: cannot start libcurl");
    struct curl_slist *resolve = NULL, *headers = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    int rc = VLM_OK;
    if (!t->literal) {
        /* "host:port:addr,addr,...": libcurl's resolver is never asked. */
        char entry[1024];
        int len = snprintf(entry, sizeof entry, "%s:%s:", t->host, t->port);
        for (int i = 0; i < pins->n && len < (int)sizeof entry - 50; i++) {
            char a[INET6_ADDRSTRLEN];
            vlm_addr_format(pins->family[i], pins->addr[i], a, sizeof a);
            len += snprintf(entry + len, sizeof entry - len, pins->family[i] == AF_INET6 ? "%s[%s]" : "%s%s",
                            i ? "," : "", a);
        }
        resolve = curl_slist_append(NULL, entry);
        if (!resolve) {
            curl_easy_cleanup(c);
            return vlm_errorf(VLM_ERR_NOMEM, "url: out of memory");
        }
    }
    headers = curl_slist_append(NULL, "Accept: image/*, video/*;q=0.9, */*;q=0.1");
    curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (resolve) curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_pinned);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, (void *)pins);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, e->connect_ms < remaining_ms ? e->connect_ms : remaining_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, remaining_ms);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, e->speed_bps);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, e->speed_s);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)body->max);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "vlm/0.1");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        if (body->over || cc == CURLE_FILESIZE_EXCEEDED)
            rc = vlm_errorf(VLM_ERR_LIMIT, "response from '%s' is larger than the limit of %zu bytes", t->host,
                            body->max);
        else if (cc == CURLE_OPERATION_TIMEDOUT)
            rc = vlm_errorf(VLM_ERR_IO, "fetching from '%s' timed out (%s)", t->host,
                            errbuf[0] ? errbuf : curl_easy_strerror(cc));
        else
            rc = vlm_errorf(VLM_ERR_IO, "fetching from '%s' failed: %s", t->host,
                            errbuf[0] ? errbuf : curl_easy_strerror(cc));
    } else {
        char *s = NULL;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &hr->code);
        if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &s) == CURLE_OK && s)
            snprintf(hr->ctype, sizeof hr->ctype, "%s", s);
        s = NULL;
        if (curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &s) == CURLE_OK && s) {
            if (strlen(s) >= sizeof hr->location)
                rc = vlm_errorf(VLM_ERR_INVALID, "redirect target from '%s' is too long", t->host);
            else
                snprintf(hr->location, sizeof hr->location, "%s", s);
        }
    }
    curl_slist_free_all(resolve);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return rc;
}

int vlm_url_fetch_http(const char *url, const vlm_url_eff *e, vlm_url_blob *out)
{
    pthread_once(&g_curl_once, curl_init_once);
    if (!g_curl_ok) return vlm_errorf(VLM_ERR_IO, "libcurl failed to initialise");
    char cur[2048];
    if (strlen(url) >= sizeof cur) return vlm_errorf(VLM_ERR_INVALID, "URL is too long (%zu bytes)", strlen(url));
    snprintf(cur, sizeof cur, "%s", url);
    double deadline = vlm_now_ms() + (double)e->total_ms;
    for (int hop = 0;; hop++) {
        http_target t;
        int rc = parse_target(cur, e, &t);
        if (rc) return hop ? vlm_error_prefix(rc, "redirect %d", hop) : rc;
        pin_set pins;
        if (t.literal) {
            pins.n = 1;
            pins.family[0] = inet_pton(AF_INET, t.host, pins.addr[0]) == 1 ? AF_INET : AF_INET6;
            if (pins.family[0] == AF_INET6) inet_pton(AF_INET6, t.host, pins.addr[0]);
        } else if ((rc = resolve_and_filter(&t, e, &pins)) != VLM_OK) {
            return hop ? vlm_error_prefix(rc, "redirect %d", hop) : rc;
        }
        long remaining = (long)(deadline - vlm_now_ms());
        if (remaining <= 0) return vlm_errorf(VLM_ERR_IO, "fetching '%.80s' timed out", url);
        body_buf body = {NULL, 0, 0, e->max_bytes, 0};
        hop_result hr;
        memset(&hr, 0, sizeof hr);
        rc = do_hop(cur, &t, &pins, e, remaining, &body, &hr);
        if (rc) {
            free(body.buf);
            return rc;
        }
        if (hr.code == 301 || hr.code == 302 || hr.code == 303 || hr.code == 307 || hr.code == 308) {
            free(body.buf);
            if (!hr.location[0])
                return vlm_errorf(VLM_ERR_FORMAT, "HTTP %ld redirect from '%s' without a Location", hr.code, t.host);
            if (hop >= e->max_redirects)
                return vlm_errorf(VLM_ERR_INVALID, "too many redirects (more than %d)", e->max_redirects);
            snprintf(cur, sizeof cur, "%s", hr.location);
            continue;
        }
        if (hr.code != 200) {
            free(body.buf);
            return vlm_errorf(VLM_ERR_IO, "HTTP %ld from '%s'", hr.code, t.host);
        }
        out->data = body.buf;
        out->size = body.n;
        if (!out->data) {
            return vlm_errorf(VLM_ERR_FORMAT, "empty response from '%s'", t.host);
        }
        char what[300];
        snprintf(what, sizeof what, "response from '%s'", t.host);
        rc = vlm_url_check_type(hr.ctype[0] ? hr.ctype : "application/octet-stream", what, e, out);
        if (rc) vlm_url_blob_free(out);
        return rc;
    }
}
