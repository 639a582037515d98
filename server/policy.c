#define PCRE2_CODE_UNIT_WIDTH 8
#include "server/policy.h"

#include "core/error.h"
#include "server/sha256.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- keys ---- */

int srv_keys_add(srv_keys *k, const char *key)
{
    if (!key || !*key) return vlm_errorf(VLM_ERR_INVALID, "an API key must not be empty");
    char **keys = realloc(k->keys, (size_t)(k->n + 1) * sizeof *keys);
    if (!keys) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    k->keys = keys;
    char(*ids)[17] = realloc(k->ids, (size_t)(k->n + 1) * sizeof *ids);
    if (!ids) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    k->ids = ids;
    if (!(k->keys[k->n] = strdup(key))) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    char hex[65];
    srv_sha256_hex(key, strlen(key), hex);
    memcpy(k->ids[k->n], hex, 16);
    k->ids[k->n][16] = 0;
    k->n++;
    return VLM_OK;
}

/* Calls fn(ctx, line, lineno) for each line that is not blank or a '#' comment, trimmed. */
static int each_line(const char *path, int (*fn)(void *, char *, int), void *ctx, const char *what, int trim)
{
    FILE *f = fopen(path, "r");
    if (!f) return vlm_errorf(VLM_ERR_IO, "cannot open %s '%s'", what, path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, rc = VLM_OK;
    while (rc == VLM_OK && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        char *s = line;
        if (trim) {
            while (isspace((unsigned char)*s)) s++;
            while (n > 0 && isspace((unsigned char)line[n - 1])) line[--n] = 0;
        }
        if (!*s || *s == '#') continue;
        rc = fn(ctx, s, lineno);
    }
    free(line);
    fclose(f);
    return rc;
}

static int add_key_line(void *ctx, char *s, int lineno)
{
    (void)lineno;
    return srv_keys_add(ctx, s);
}

int srv_keys_load_file(srv_keys *k, const char *path)
{
    int before = k->n;
    int rc = each_line(path, add_key_line, k, "API key file", 1);
    if (rc == VLM_OK && k->n == before) rc = vlm_errorf(VLM_ERR_INVALID, "API key file '%s' holds no key", path);
    return rc;
}

int srv_keys_check(const srv_keys *k, const char *auth, const char **key_id)
{
    *key_id = "";
    if (k->n == 0) return 1;
    if (!auth) return 0;
    while (*auth == ' ') auth++;
    if (strncasecmp(auth, "Bearer ", 7)) return 0;
    const char *given = auth + 7;
    while (*given == ' ') given++;
    size_t gl = strlen(given);
    while (gl > 0 && given[gl - 1] == ' ') gl--;
    int found = -1;
    for (int i = 0; i < k->n; i++) {
        const char *key = k->keys[i];
        size_t kl = strlen(key);
        unsigned diff = (unsigned)(kl != gl);
        for (size_t j = 0; j < kl; j++) diff |= (unsigned char)key[j] ^ (unsigned char)(j < gl ? given[j] : 0);
        if (!diff && found < 0) found = i;
    }
    if (found < 0) return 0;
    *key_id = k->ids[found];
    return 1;
}

void srv_keys_free(srv_keys *k)
{
    for (int i = 0; i < k->n; i++) free(k->keys[i]);
    free(k->keys);
    free(k->ids);
    memset(k, 0, sizeof *k);
}

/* ---- block list ---- */

static int add_pattern(srv_blocklist *b, const char *pattern, int lineno)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        if (lineno > 0)
            return vlm_errorf(VLM_ERR_INVALID, "block list line %d: pattern '%s' at offset %zu: %s", lineno, pattern, (size_t)off, msg);
        return vlm_errorf(VLM_ERR_INVALID, "block list pattern '%s' at offset %zu: %s", pattern, (size_t)off, msg);
    }
    void **res = realloc(b->re, (size_t)(b->n + 1) * sizeof *res);
    char **pats = res ? realloc(b->patterns, (size_t)(b->n + 1) * sizeof *pats) : NULL;
    if (res) b->re = res;
    if (pats) b->patterns = pats;
    char *copy = pats ? strdup(pattern) : NULL;
    if (!copy) {
        pcre2_code_free(re);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    b->re[b->n] = re;
    b->patterns[b->n] = copy;
    b->n++;
    return VLM_OK;
}

int srv_blocklist_add(srv_blocklist *b, const char *pattern) { return add_pattern(b, pattern, 0); }

static int add_pattern_line(void *ctx, char *s, int lineno) { return add_pattern(ctx, s, lineno); }

int srv_blocklist_load(srv_blocklist *b, const char *path) { return each_line(path, add_pattern_line, b, "block list", 0); }

int srv_blocklist_match(const srv_blocklist *b, const char *text, size_t len)
{
    if (!b || b->n == 0 || !text) return -1;
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (mc) {
        pcre2_set_match_limit(mc, 1000000);
        pcre2_set_depth_limit(mc, 10000);
    }
    int hit = -1;
    for (int i = 0; i < b->n && hit < 0; i++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(b->re[i], NULL);
        if (!md) {
            hit = i; /* fail closed */
            break;
        }
        int rc = pcre2_match(b->re[i], (PCRE2_SPTR)text, len, 0, 0, md, mc);
        if (rc >= 0 || (rc != PCRE2_ERROR_NOMATCH)) hit = i;
        pcre2_match_data_free(md);
    }
    pcre2_match_context_free(mc);
    return hit;
}

void srv_blocklist_free(srv_blocklist *b)
{
    for (int i = 0; i < b->n; i++) {
        pcre2_code_free(b->re[i]);
        free(b->patterns[i]);
    }
    free(b->re);
    free(b->patterns);
    memset(b, 0, sizeof *b);
}

/* ---- audit log ---- */

int srv_audit_open(const char *path, int content, srv_audit **out)
{
    *out = NULL;
    srv_audit *a = calloc(1, sizeof *a);
    if (!a) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    a->f = fopen(path, "a");
    if (!a->f) {
        free(a);
        return vlm_errorf(VLM_ERR_IO, "cannot open audit log '%s' for appending", path);
    }
    pthread_mutex_init(&a->mu, NULL);
    a->content = content;
    *out = a;
    return VLM_OK;
}

void srv_audit_write(srv_audit *a, const srv_audit_record *r)
{
    if (!a) return;
    cJSON *o = cJSON_CreateObject();
    char ts[80];
    time_t t = (time_t)r->time;
    struct tm tm;
    gmtime_r(&t, &tm);
    int ms = (int)((r->time - (double)t) * 1000);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ms < 0 ? 0 : ms > 999 ? 999 : ms);
    cJSON_AddStringToObject(o, "time", ts);
    cJSON_AddStringToObject(o, "request_id", r->request_id ? r->request_id : "");
    if (r->key_id && r->key_id[0]) cJSON_AddStringToObject(o, "key_id", r->key_id);
    else cJSON_AddNullToObject(o, "key_id");
    cJSON_AddStringToObject(o, "client", r->client ? r->client : "");
    cJSON_AddStringToObject(o, "endpoint", r->endpoint ? r->endpoint : "");
    cJSON_AddNumberToObject(o, "status", r->status);
    if (r->model) cJSON_AddStringToObject(o, "model", r->model);
    cJSON_AddNumberToObject(o, "images", r->n_images);
    cJSON *h = cJSON_AddArrayToObject(o, "image_sha256");
    for (int i = 0; h && i < r->n_hashes; i++) cJSON_AddItemToArray(h, cJSON_CreateString(r->image_sha256[i]));
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)r->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", (double)r->completion_tokens);
    cJSON_AddNumberToObject(o, "cached_tokens", (double)r->cached_tokens);
    if (r->finish) cJSON_AddStringToObject(o, "finish_reason", r->finish);
    else cJSON_AddNullToObject(o, "finish_reason");
    cJSON_AddNumberToObject(o, "latency_ms", r->latency_ms);
    if (r->ttft_ms >= 0) cJSON_AddNumberToObject(o, "ttft_ms", r->ttft_ms);
    else cJSON_AddNullToObject(o, "ttft_ms");
    if (r->error) cJSON_AddStringToObject(o, "error", r->error);
    if (a->content) {
        cJSON *msgs = cJSON_AddArrayToObject(o, "messages");
        for (int i = 0; msgs && i < r->n_texts; i++) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", r->roles[i]);
            cJSON_AddStringToObject(m, "content", r->texts[i] ? r->texts[i] : "");
            cJSON_AddItemToArray(msgs, m);
        }
        if (r->answer) cJSON_AddStringToObject(o, "answer", r->answer);
        else cJSON_AddNullToObject(o, "answer");
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!line) return;
    pthread_mutex_lock(&a->mu);
    fputs(line, a->f);
    fputc('\n', a->f);
    fflush(a->f);
    pthread_mutex_unlock(&a->mu);
    free(line);
}

void srv_audit_close(srv_audit *a)
{
    if (!a) return;
    fclose(a->f);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
