/* Internal to media/: the pieces of url.c split by job. */
#ifndef VLM_MEDIA_URL_INTERNAL_H
#define VLM_MEDIA_URL_INTERNAL_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "media/url.h"

/* The policy with its zero fields replaced by defaults. */
typedef struct {
    vlm_url_policy p;
    size_t max_bytes;
    long connect_ms, total_ms, speed_bps, speed_s;
    int max_redirects;
    unsigned accept;
} vlm_url_eff;
void vlm_url_effective(const vlm_url_policy *pol, vlm_url_eff *e);

/* url_addr.c */
/* family AF_INET (4 bytes) or AF_INET6 (16 bytes): NULL if public, else the kind. */
const char *vlm_addr_kind(int family, const uint8_t *addr);
/* 1 if the policy admits this address (public, allow_private, or allow_addrs). */
int vlm_addr_admitted(int family, const uint8_t *addr, const vlm_url_policy *pol);
/* VLM_OK if host passes the domain allowlist (or there is none). */
int vlm_host_allowed(const char *host, const vlm_url_policy *pol);
/* Writes a printable form of the address. */
void vlm_addr_format(int family, const uint8_t *addr, char *buf, size_t len);

/* url_http.c */
int vlm_url_fetch_http(const char *url, const vlm_url_eff *e, vlm_url_blob *out);
/* url_file.c */
int vlm_url_fetch_file(const char *url, const vlm_url_eff *e, vlm_url_blob *out);

/* url.c: checks the declared type (may be "" or NULL) against the bytes; fills
 * out->kind/format; refuses what e->accept does not allow. what: "data URL", ... */
int vlm_url_check_type(const char *declared, const char *what, const vlm_url_eff *e,
                       vlm_url_blob *out);

#endif
