/* Prefix blocks: a flat table of entries, searched linearly (a few hundred blocks at most for the
 * memory sizes it is given; a scan is cheaper than keeping an index right). */
#include "fusion/prefix_cache.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t hash, parent; /* chained hash of this block and of the one before it (0 for the first) */
    uint64_t *keys;        /* [B] */
    void *kv;              /* [B * token_bytes] */
    uint64_t used_at;      /* LRU tick; 0 = empty slot */
} entry;

struct vlm_prefix_cache {
    int64_t B, token_bytes, n_entries;
    entry *e;
    uint64_t tick;
};

uint64_t vlm_hash_mix(uint64_t h, uint64_t v)
{
    uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t vlm_hash_bytes(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = vlm_hash_mix(seed, n);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        h = vlm_hash_mix(h, v);
    }
    uint64_t tail = 0;
    memcpy(&tail, p + i, n - i);
    return vlm_hash_mix(h, tail);
}

int vlm_prefix_cache_new(int64_t block_tokens, int64_t token_bytes, int64_t capacity_bytes, vlm_prefix_cache **out)
{
    *out = NULL;
    if (block_tokens <= 0 || token_bytes <= 0 || capacity_bytes < 0)
        return vlm_errorf(VLM_ERR_INVALID, "prefix cache: bad sizes (block %lld tokens, %lld bytes per token)",
                          (long long)block_tokens, (long long)token_bytes);
    vlm_prefix_cache *pc = calloc(1, sizeof *pc);
    if (!pc) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    pc->B = block_tokens;
    pc->token_bytes = token_bytes;
    pc->n_entries = capacity_bytes / (block_tokens * token_bytes);
    if (pc->n_entries && !(pc->e = calloc((size_t)pc->n_entries, sizeof *pc->e))) {
        free(pc);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    *out = pc;
    return VLM_OK;
}

void vlm_prefix_cache_free(vlm_prefix_cache *pc)
{
    if (!pc) return;
    for (int64_t i = 0; i < pc->n_entries; i++) {
        free(pc->e[i].keys);
        free(pc->e[i].kv);
    }
    free(pc->e);
    free(pc);
}

static uint64_t block_hash(const vlm_prefix_cache *pc, uint64_t parent, const uint64_t *keys)
{
    uint64_t h = vlm_hash_mix(parent, 0x5bd1e995ULL);
    for (int64_t i = 0; i < pc->B; i++) h = vlm_hash_mix(h, keys[i]);
    return h ? h : 1; /* 0 marks "no parent" */
}

static entry *find(vlm_prefix_cache *pc, uint64_t hash, uint64_t parent, const uint64_t *keys)
{
    for (int64_t i = 0; i < pc->n_entries; i++) {
        entry *e = &pc->e[i];
        if (e->used_at && e->hash == hash && e->parent == parent && !memcmp(e->keys, keys, (size_t)pc->B * 8))
            return e;
    }
    return NULL;
}

int64_t vlm_prefix_cache_lookup(vlm_prefix_cache *pc, const uint64_t *keys, int64_t n, int64_t max_tokens,
                                vlm_kv_cache *cache)
{
    if (!pc || !pc->n_entries || vlm_kv_cache_len(cache) != 0) return 0;
    if (max_tokens > n) max_tokens = n;
    int64_t got = 0;
    uint64_t parent = 0;
    while (got + pc->B <= max_tokens) {
        const uint64_t h = block_hash(pc, parent, keys + got);
        entry *e = find(pc, h, parent, keys + got);
        if (!e) break;
        if (vlm_kv_cache_import(cache, got, pc->B, e->kv) != VLM_OK) {
            vlm_clear_error();
            vlm_kv_cache_truncate(cache, 0);
            return 0;
        }
        e->used_at = ++pc->tick;
        got += pc->B;
        parent = h;
    }
    return got;
}

/* An empty slot, else the least recently used one. */
static entry *victim(vlm_prefix_cache *pc)
{
    entry *best = &pc->e[0];
    for (int64_t i = 0; i < pc->n_entries; i++) {
        if (!pc->e[i].used_at) return &pc->e[i];
        if (pc->e[i].used_at < best->used_at) best = &pc->e[i];
    }
    return best;
}

void vlm_prefix_cache_insert(vlm_prefix_cache *pc, const uint64_t *keys, int64_t n, const vlm_kv_cache *cache)
{
    if (!pc || !pc->n_entries) return;
    if (n > vlm_kv_cache_len(cache)) n = vlm_kv_cache_len(cache);
    uint64_t parent = 0;
    for (int64_t at = 0; at + pc->B <= n; at += pc->B) {
        const uint64_t h = block_hash(pc, parent, keys + at);
        entry *e = find(pc, h, parent, keys + at);
        if (e) {
            e->used_at = ++pc->tick;
        } else {
            e = victim(pc);
            if (!e->keys) e->keys = malloc((size_t)pc->B * 8);
            if (!e->kv) e->kv = malloc((size_t)(pc->B * pc->token_bytes));
            if (!e->keys || !e->kv || vlm_kv_cache_export(cache, at, pc->B, e->kv) != VLM_OK) {
                vlm_clear_error();
                e->used_at = 0;
                return;
            }
            memcpy(e->keys, keys + at, (size_t)pc->B * 8);
            e->hash = h;
            e->parent = parent;
            e->used_at = ++pc->tick;
        }
        parent = h;
    }
}

int64_t vlm_prefix_cache_blocks_total(const vlm_prefix_cache *pc) { return pc ? pc->n_entries : 0; }

int64_t vlm_prefix_cache_blocks_used(const vlm_prefix_cache *pc)
{
    int64_t n = 0;
    for (int64_t i = 0; pc && i < pc->n_entries; i++) n += pc->e[i].used_at != 0;
    return n;
}
