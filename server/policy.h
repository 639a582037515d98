/* The server's access and governance pieces: API keys, the block list (PCRE2 content filter) and the
 * audit log (one JSON line per request). */
#ifndef VLM_SERVER_POLICY_H
#define VLM_SERVER_POLICY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- API keys: "Authorization: Bearer KEY" ---- */
typedef struct {
    char **keys;
    char (*ids)[17]; /* per key: the first 16 hex digits of its SHA-256, what logs show instead of the key */
    int n;
} srv_keys;

int srv_keys_add(srv_keys *k, const char *key);
/* One key per line; blank lines and lines starting with '#' skipped; surrounding whitespace trimmed. */
int srv_keys_load_file(srv_keys *k, const char *path);
/* 1 if the header value authorizes (always when no key is set; *key_id then ""), else 0. Every key is
 * compared in full, in time independent of where a guess differs. */
int srv_keys_check(const srv_keys *k, const char *authorization, const char **key_id);
void srv_keys_free(srv_keys *k);

/* ---- block list ---- */
typedef struct {
    void **re; /* pcre2_code_8 * */
    char **patterns;
    int n;
} srv_blocklist;

/* One PCRE2 pattern per line (UTF-8; write (?i) for case-insensitive); blank lines and lines starting
 * with '#' skipped. A pattern that does not compile is an error naming its line. */
int srv_blocklist_load(srv_blocklist *b, const char *path);
int srv_blocklist_add(srv_blocklist *b, const char *pattern);
/* The index of the first pattern found in text, or -1. A match that exceeds PCRE2's work limits counts
 * as found (the filter fails closed). */
int srv_blocklist_match(const srv_blocklist *b, const char *text, size_t len);
void srv_blocklist_free(srv_blocklist *b);

/* ---- audit log ---- */
typedef struct {
    FILE *f;
    pthread_mutex_t mu;
    int content; /* --audit-content: prompt and answer text too */
} srv_audit;

typedef struct {
    double time;             /* unix seconds */
    const char *request_id;
    const char *key_id;      /* "" without keys */
    const char *client;      /* address */
    const char *endpoint;
    int status;              /* HTTP status */
    const char *model;
    int n_images;
    const char *const *image_sha256;
    int n_hashes;
    int64_t prompt_tokens, completion_tokens, cached_tokens;
    const char *finish;      /* NULL when none */
    double latency_ms, ttft_ms; /* ttft < 0: none */
    const char *error;       /* NULL on success */
    /* only written with content on */
    const char *const *roles;
    const char *const *texts;
    int n_texts;
    const char *answer;
} srv_audit_record;

int srv_audit_open(const char *path, int content, srv_audit **out);
void srv_audit_write(srv_audit *a, const srv_audit_record *r);
void srv_audit_close(srv_audit *a);

#ifdef __cplusplus
}
#endif
#endif
