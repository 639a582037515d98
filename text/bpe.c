/* BPE merging of one pre-token, with a per-call cache of finished words.
 *
 * The merge loop is tokenizers' Word::merge_all: a min-heap of candidate
 * pairs ordered by (merge rank, position), entries made stale by earlier
 * merges skipped when popped. Because symbol boundaries only ever disappear,
 * this is exactly "merge the lowest-ranked adjacent pair, leftmost first". */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/tok_internal.h"

#define CACHE_MAX_WORD 256      /* like tokenizers: longer words are not cached */
#define CACHE_MAX_ENTRIES 65536

typedef struct {
    const uint8_t *key; /* points into the text being encoded (alive for the call) */
    uint32_t len, hash, off, cnt;
} cache_entry;

struct tok_cache {
    cache_entry *e;
    uint32_t cap, n;
    int32_t *pool;
    size_t pool_n, pool_cap;
};

typedef struct {
    int32_t rank, pos, new_id;
} heap_item;

static int item_less(const heap_item *a, const heap_item *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(heap_item *h, size_t *n, heap_item it)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!item_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static heap_item heap_pop(heap_item *h, size_t *n)
{
    heap_item top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m) break;
        size_t r = l + 1, s = (r < m && item_less(&h[r], &h[l])) ? r : l;
        if (!item_less(&h[s], &last)) break;
        h[i] = h[s];
        i = s;
    }
    if (m) h[i] = last;
    return top;
}

static int ensure_work(tok_ctx *c, size_t n)
{
    if (n <= c->cap_sym) return VLM_OK;
    size_t cap = c->cap_sym ? c->cap_sym : 64;
    while (cap < n) cap *= 2;
    free(c->sym);
    free(c->prev);
    free(c->next);
    free(c->heap);
    c->sym = malloc(cap * sizeof *c->sym);
    c->prev = malloc(cap * sizeof *c->prev);
    c->next = malloc(cap * sizeof *c->next);
    /* every merge pushes at most two new pairs */
    c->heap = malloc(3 * cap * sizeof(heap_item));
    c->cap_sym = cap;
    if (!c->sym || !c->prev || !c->next || !c->heap) {
        c->cap_sym = 0;
        return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    }
    return VLM_OK;
}

static int ensure_strbuf(tok_ctx *c, size_t n)
{
    if (n <= c->cap_strbuf) return VLM_OK;
    char *p = realloc(c->strbuf, n * 2);
    if (!p) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    c->strbuf = p;
    c->cap_strbuf = n * 2;
    return VLM_OK;
}

/* Byte-level text of p[0..n) (each byte as its alphabet char) into c->strbuf. */
static int byte_level_string(tok_ctx *c, const uint8_t *p, size_t n, size_t *out_len)
{
    int rc = ensure_strbuf(c, 2 * n + 1);
    if (rc) return rc;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = tok_byte_to_cp(p[i]);
        if (cp < 0x80) c->strbuf[k++] = (char)cp;
        else c->strbuf[k++] = (char)(0xc0 | (cp >> 6)), c->strbuf[k++] = (char)(0x80 | (cp & 0x3f));
    }
    *out_len = k;
    return VLM_OK;
}

/* Initial symbols: one per byte (byte-level) or per UTF-8 char. A char the
 * vocabulary lacks becomes unk, or is dropped when there is no unk_token
 * (what tokenizers' BPE does). */
static int initial_symbols(tok_ctx *c, const uint8_t *p, size_t n, size_t *n_sym)
{
    const vlm_tokenizer *t = c->t;
    size_t k = 0;
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_id[p[i]];
            if (id < 0) {
                if (t->unk_id < 0) continue;
                id = t->unk_id;
            }
            c->sym[k++] = id;
        }
    } else {
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            int len = vlm_utf8_decode(p + i, n - i, &cp);
            if (len <= 0) len = 1;
            int32_t id = tok_smap_get(&t->vocab, (const char *)p + i, (size_t)len);
            i += (size_t)len;
            if (id < 0) {
                if (t->unk_id < 0) continue;
                id = t->unk_id;
            }
            c->sym[k++] = id;
        }
    }
    *n_sym = k;
    return VLM_OK;
}

static int merge_word(tok_ctx *c, const uint8_t *p, size_t n)
{
    const vlm_tokenizer *t = c->t;
    int rc = ensure_work(c, n);
    if (rc) return rc;
    if (t->ignore_merges) {
        size_t sl = 0;
        int32_t id = -1;
        if (t->byte_level) {
            if ((rc = byte_level_string(c, p, n, &sl))) return rc;
            id = tok_smap_get(&t->vocab, c->strbuf, sl);
        } else {
            id = tok_smap_get(&t->vocab, (const char *)p, n);
        }
        if (id >= 0) return tok_push_id(c, id);
    }
    size_t ns;
    if ((rc = initial_symbols(c, p, n, &ns))) return rc;
    if (ns == 0) return VLM_OK;
    int32_t *sym = c->sym, *prev = c->prev, *next = c->next;
    heap_item *h = c->heap;
    size_t hn = 0;
    for (size_t i = 0; i < ns; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
        if (i + 1 < ns) {
            const tok_merge *m = tok_mmap_get(&t->merges, sym[i], sym[i + 1]);
            if (m) heap_push(h, &hn, (heap_item){m->rank, (int32_t)i, m->new_id});
        }
    }
    while (hn) {
        heap_item top = heap_pop(h, &hn);
        int32_t pos = top.pos;
        if (sym[pos] < 0) continue; /* absorbed by a merge on its left */
        int32_t nx = next[pos];
        if (nx < 0) continue;
        const tok_merge *m = tok_mmap_get(&t->merges, sym[pos], sym[nx]);
        if (!m || m->new_id != top.new_id) continue;
        sym[pos] = top.new_id;
        sym[nx] = -1;
        next[pos] = next[nx];
        if (next[nx] >= 0) prev[next[nx]] = pos;
        if (prev[pos] >= 0) {
            m = tok_mmap_get(&t->merges, sym[prev[pos]], sym[pos]);
            if (m) heap_push(h, &hn, (heap_item){m->rank, prev[pos], m->new_id});
        }
        if (next[pos] >= 0) {
            m = tok_mmap_get(&t->merges, sym[pos], sym[next[pos]]);
            if (m) heap_push(h, &hn, (heap_item){m->rank, pos, m->new_id});
        }
    }
    for (int32_t i = 0; i >= 0; i = next[i])
        if ((rc = tok_push_id(c, sym[i]))) return rc;
    return VLM_OK;
}

/* ---------------- cache ---------------- */

static cache_entry *cache_find(tok_cache *k, const uint8_t *p, size_t n, uint32_t h)
{
    uint32_t j = h & (k->cap - 1);
    while (k->e[j].key) {
        if (k->e[j].hash == h && k->e[j].len == n && memcmp(k->e[j].key, p, n) == 0) return &k->e[j];
        j = (j + 1) & (k->cap - 1);
    }
    return &k->e[j];
}

static int cache_init(tok_ctx *c)
{
    tok_cache *k = calloc(1, sizeof *k);
    if (!k) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    k->cap = 256;
    k->e = calloc(k->cap, sizeof *k->e);
    if (!k->e) {
        free(k);
        return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    }
    c->cache = k;
    return VLM_OK;
}

static int cache_grow(tok_cache *k)
{
    uint32_t cap = k->cap * 2;
    cache_entry *e = calloc(cap, sizeof *e);
    if (!e) return -1;
    for (uint32_t i = 0; i < k->cap; i++) {
        if (!k->e[i].key) continue;
        uint32_t j = k->e[i].hash & (cap - 1);
        while (e[j].key) j = (j + 1) & (cap - 1);
        e[j] = k->e[i];
    }
    free(k->e);
    k->e = e;
    k->cap = cap;
    return 0;
}

/* Remembers ids[from..] as the result for p[0..n); failures just skip caching. */
static void cache_put(tok_ctx *c, const uint8_t *p, size_t n, uint32_t h, size_t from)
{
    tok_cache *k = c->cache;
    size_t cnt = c->n_ids - from;
    if (k->n >= CACHE_MAX_ENTRIES) return;
    if ((k->n + 1) * 2 > k->cap && cache_grow(k)) return;
    if (k->pool_n + cnt > k->pool_cap) {
        size_t cap = k->pool_cap ? k->pool_cap * 2 : 4096;
        while (cap < k->pool_n + cnt) cap *= 2;
        int32_t *pool = realloc(k->pool, cap * sizeof *pool);
        if (!pool) return;
        k->pool = pool;
        k->pool_cap = cap;
    }
    if (cnt) /* a word can encode to nothing (bytes without a token are dropped) */
        memcpy(k->pool + k->pool_n, c->ids + from, cnt * sizeof(int32_t));
    cache_entry *e = cache_find(k, p, n, h);
    e->key = p;
    e->len = (uint32_t)n;
    e->hash = h;
    e->off = (uint32_t)k->pool_n;
    e->cnt = (uint32_t)cnt;
    k->pool_n += cnt;
    k->n++;
}

int tok_bpe_piece(tok_ctx *c, const uint8_t *p, size_t n)
{
    if (n == 0) return VLM_OK;
    if (n == 1 && c->t->byte_level && c->t->byte_id[p[0]] >= 0) return tok_push_id(c, c->t->byte_id[p[0]]);
    if (n > CACHE_MAX_WORD) return merge_word(c, p, n);
    int rc;
    if (!c->cache && (rc = cache_init(c))) return rc;
    tok_cache *k = c->cache;
    uint32_t h = tok_hash(p, n);
    cache_entry *e = cache_find(k, p, n, h);
    if (e->key) {
        for (uint32_t i = 0; i < e->cnt; i++)
            if ((rc = tok_push_id(c, k->pool[e->off + i]))) return rc;
        return VLM_OK;
    }
    size_t from = c->n_ids;
    if ((rc = merge_word(c, p, n))) return rc;
    cache_put(c, p, n, h, from);
    return VLM_OK;
}

void tok_ctx_free_bpe(tok_ctx *c)
{
    free(c->sym);
    free(c->prev);
    free(c->next);
    free(c->heap);
    free(c->strbuf);
    if (c->cache) {
        free(c->cache->e);
        free(c->cache->pool);
        free(c->cache);
    }
    c->sym = c->prev = c->next = NULL;
    c->heap = NULL;
    c->strbuf = NULL;
    c->cache = NULL;
    c->cap_sym = c->cap_strbuf = 0;
}
