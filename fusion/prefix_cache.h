/* Prefix reuse for the request engine: KV rows of whole blocks of prompt tokens, kept after the
 * requests that computed them have gone, so that a later request starting with the same tokens
 * (a system prompt, the same image, the earlier turns of a chat) copies them instead of
 * recomputing them.
 *
 * A token's key is its id, except image tokens, whose key mixes the image's content hash and the
 * token's place in the image (so two images never share keys). A block of B tokens is found by a
 * chained hash of (previous block's hash, the block's keys), and is only taken when its keys and
 * its parent's hash are equal to the asker's: a hit always holds the KV of exactly that prefix.
 * Blocks are evicted least recently used when the capacity is reached; a miss only costs compute.
 * Not thread-safe (the engine thread owns it). */
#ifndef VLM_FUSION_PREFIX_CACHE_H
#define VLM_FUSION_PREFIX_CACHE_H

#include <stdint.h>

#include "text/decoder.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_prefix_cache vlm_prefix_cache;

/* block_tokens: tokens per block; token_bytes: KV bytes per token (vlm_kv_cache_token_bytes);
 * capacity_bytes: KV memory to keep (0: a cache that never holds anything). */
int vlm_prefix_cache_new(int64_t block_tokens, int64_t token_bytes, int64_t capacity_bytes, vlm_prefix_cache **out);
void vlm_prefix_cache_free(vlm_prefix_cache *pc);

/* The number of leading tokens of keys[0..n) held (whole blocks, at most max_tokens), copied into
 * cache at position 0 (the cache must be empty). 0 on a miss or error (nothing copied). */
int64_t vlm_prefix_cache_lookup(vlm_prefix_cache *pc, const uint64_t *keys, int64_t n, int64_t max_tokens,
                                vlm_kv_cache *cache);
/* Keeps the whole blocks of keys[0..n) (their KV: cache rows 0..n) that are not held yet. */
void vlm_prefix_cache_insert(vlm_prefix_cache *pc, const uint64_t *keys, int64_t n, const vlm_kv_cache *cache);

int64_t vlm_prefix_cache_blocks_total(const vlm_prefix_cache *pc);
int64_t vlm_prefix_cache_blocks_used(const vlm_prefix_cache *pc);

/* 64-bit mixing (splitmix64 finalizer) and a hash of bytes, for keys. */
uint64_t vlm_hash_mix(uint64_t h, uint64_t v);
uint64_t vlm_hash_bytes(const void *data, size_t n, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
