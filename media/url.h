/* image_url resolution: data:, http(s):// and file:// URLs to bytes, under a policy.
 *
 * data:  only "data:<type>/<subtype>[;param=value]...;base64,<payload>"; the payload
 *        must be strict base64 (A-Z a-z 0-9 + /, '=' padding only at the end, length
 *        a multiple of 4, no whitespace, unused bits zero); its decoded size is
 *        checked against the cap before decoding; the declared type must match the
 *        bytes (image/png must be a PNG, ...).
 * http(s): through libcurl.  For every hop (the first request and each of at most
 *        max_redirects redirects, followed by us, not by libcurl): the URL is parsed
 *        again, the scheme must be http or https, credentials in the URL are refused,
 *        the host must pass the domain allowlist (when one is set), and the host name
 *        is resolved once by us; addresses of special kinds (loopback, private,
 *        link-local, shared/CGNAT, cloud metadata, multicast, documentation,
 *        reserved, IPv4-mapped/6to4/NAT64 forms of those) are dropped unless
 *        allow_private is set or allow_addrs admits them.  libcurl is then pinned to
 *        the remaining addresses (CURLOPT_RESOLVE) and its socket callback refuses any
 *        other address, so a second DNS answer (rebinding) cannot move the
 *        connection.  Proxies from the environment are ignored.  The body is capped
 *        (Content-Length checked first, then every received byte), and connect time,
 *        total time and transfer speed are bounded.  The Content-Type must be an
 *        accepted image (or video) type matching the bytes; application/octet-stream
 *        is accepted when the bytes are a supported format.
 * file:  "file:///abs/path" (or file://localhost/...) only when media_dir is set, only
 *        for regular files below it: no "." or ".." segments, and the real path
 *        (symlinks resolved) must stay inside the real media_dir; the final open
 *        refuses a symlink swapped in afterwards.
 * Refusals are VLM_ERR_INVALID (policy) or VLM_ERR_UNSUPPORTED (scheme/type), size
 * caps VLM_ERR_LIMIT, network failures and timeouts VLM_ERR_IO, malformed data
 * VLM_ERR_FORMAT; the message names the URL part or address at fault. */
#ifndef VLM_MEDIA_URL_H
#define VLM_MEDIA_URL_H

#include <stddef.h>
#include <stdint.h>

#include "media/image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VLM_URL_DEFAULT_MAX_BYTES (32u << 20)
#define VLM_URL_MAX_REDIRECTS 3

enum {
    VLM_URL_ACCEPT_IMAGE = 1,
    VLM_URL_ACCEPT_VIDEO = 2,
};

typedef struct {
    size_t max_bytes;         /* body / decoded data / file size cap; 0 = VLM_URL_DEFAULT_MAX_BYTES */
    long connect_timeout_ms;  /* 0 = 5000 */
    long timeout_ms;          /* whole fetch, redirects included; 0 = 30000 */
    long min_speed_bps;       /* abort when slower than this ... */
    long min_speed_window_s;  /* ... for this many seconds; 0/0 = 1024 B/s over 10 s */
    int max_redirects;        /* 0..3 (more is treated as 3) */
    int allow_http;           /* plain http:// (https:// is always allowed) */
    int allow_private;        /* admit every special address (loopback, private, ...) */
    const char *const *allow_addrs; /* addresses or CIDR ranges admitted although special,
                                       e.g. "127.0.0.1", "10.1.0.0/16", "::1" */
    size_t n_allow_addrs;
    const char *const *allow_domains; /* if n_allow_domains > 0: only these hosts and their
                                         subdomains ("example.com" admits a.example.com;
                                         ".example.com" or "*.example.com" only subdomains) */
    size_t n_allow_domains;
    const char *media_dir;    /* root for file:// URLs; NULL refuses file:// */
    unsigned accept;          /* VLM_URL_ACCEPT_*; 0 = images only */
} vlm_url_policy;

/* Images only, 32 MiB, 5 s connect, 30 s total, 3 redirects, http and https,
 * special addresses refused, no domain allowlist, file:// refused. */
void vlm_url_policy_default(vlm_url_policy *p);

typedef enum {
    VLM_MEDIA_UNKNOWN = 0,
    VLM_MEDIA_IMAGE,
    VLM_MEDIA_VIDEO,
} vlm_media_kind;

typedef struct {
    uint8_t *data;            /* malloc'd */
    size_t size;
    vlm_media_kind kind;
    vlm_image_format format;  /* for images */
    char mime[80];            /* the declared type ("" for file://) */
} vlm_url_blob;

/* data:, http://, https:// or file:// to bytes. pol may be NULL (defaults). */
int vlm_url_fetch(const char *url, const vlm_url_policy *pol, vlm_url_blob *out);
void vlm_url_blob_free(vlm_url_blob *b);

/* Fetch + decode for image_url (images only, whatever pol->accept says). */
int vlm_url_load_image(const char *url, const vlm_url_policy *pol, const vlm_image_limits *lim,
                       vlm_image *out);

/* True for strings vlm_url_fetch handles (a scheme it knows), false for plain paths. */
int vlm_url_is_url(const char *s);

/* ---- pieces that need no network (also used by the fuzz target) ---- */

/* A data: URL alone. */
int vlm_url_decode_data(const char *url, const vlm_url_policy *pol, vlm_url_blob *out);
/* Strict base64 of exactly len chars into out (capacity cap); *n = decoded length. */
int vlm_base64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *n);
/* Parses an http(s) URL and applies the checks that need no DNS (scheme, credentials,
 * host syntax, domain allowlist, literal addresses). */
int vlm_url_check(const char *url, const vlm_url_policy *pol);
/* For an address literal ("10.0.0.1", "::1"): NULL if public, else its kind
 * ("loopback", "private", ...). Not an address: "not an IP address". */
const char *vlm_url_address_kind(const char *ip);
/* VLM_OK if the policy admits connecting to this address literal. */
int vlm_url_address_allowed(const char *ip, const vlm_url_policy *pol);
/* What the bytes are: an image format, a video container, or neither. */
vlm_media_kind vlm_media_sniff(const void *data, size_t size, vlm_image_format *fmt);

#ifdef __cplusplus
}
#endif
#endif
