/* SHA-256 (FIPS 180-4), for the audit log's key ids and image content hashes. */
#ifndef VLM_SERVER_SHA256_H
#define VLM_SERVER_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
} srv_sha256;

void srv_sha256_init(srv_sha256 *s);
void srv_sha256_update(srv_sha256 *s, const void *data, size_t len);
void srv_sha256_final(srv_sha256 *s, uint8_t out[32]);
/* The digest of data as 64 lowercase hex digits + NUL. */
void srv_sha256_hex(const void *data, size_t len, char out[65]);

#ifdef __cplusplus
}
#endif
#endif
