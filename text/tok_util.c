/* Small containers for the tokenizer: an arena, a string->id map, the merge
 * table, the ByteLevel alphabet, UTF-8 decoding and the added-token trie. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/tok_internal.h"

/* ---------------- arena ---------------- */

struct tok_arena_block {
    tok_arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

void *tok_arena_alloc(tok_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    tok_arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

void tok_arena_free(tok_arena *a)
{
    tok_arena_block *b = a->head;
    while (b) {
        tok_arena_block *nx = b->next;
        free(b);
        b = nx;
    }
    a->head = NULL;
}

/* ---------------- string map ---------------- */

uint32_t tok_hash(const void *p, size_t n)
{
    /* FNV-1a, folded: fine for token strings (short, many). */
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return (uint32_t)(h ^ (h >> 32));
}

static int smap_grow(tok_smap *m)
{
    uint32_t cap = m->cap ? m->cap * 2 : 1024;
    tok_smap_entry *e = calloc(cap, sizeof *e);
    if (!e) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->e[i].s) continue;
        uint32_t j = m->e[i].hash & (cap - 1);
        while (e[j].s) j = (j + 1) & (cap - 1);
        e[j] = m->e[i];
    }
    free(m->e);
    m->e = e;
    m->cap = cap;
    return VLM_OK;
}

int tok_smap_put(tok_smap *m, const char *s, size_t len, int32_t id)
{
    if ((m->n + 1) * 2 > m->cap) {
        int rc = smap_grow(m);
        if (rc) return rc;
    }
    uint32_t h = tok_hash(s, len), j = h & (m->cap - 1);
    while (m->e[j].s) {
        if (m->e[j].hash == h && m->e[j].len == len && memcmp(m->e[j].s, s, len) == 0) {
            m->e[j].id = id;
            return VLM_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->e[j].s = s;
    m->e[j].len = (uint32_t)len;
    m->e[j].hash = h;
    m->e[j].id = id;
    m->n++;
    return VLM_OK;
}

int32_t tok_smap_get(const tok_smap *m, const char *s, size_t len)
{
    if (!m->cap) return -1;
    uint32_t h = tok_hash(s, len), j = h & (m->cap - 1);
    while (m->e[j].s) {
        if (m->e[j].hash == h && m->e[j].len == len && memcmp(m->e[j].s, s, len) == 0)
            return m->e[j].id;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

void tok_smap_free(tok_smap *m)
{
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* ---------------- merge map ---------------- */

int tok_mmap_init(tok_mmap *m, size_t expected)
{
    size_t cap = 64;
    while (cap < expected * 2 + 2) cap *= 2;
    m->e = malloc(cap * sizeof *m->e);
    if (!m->e) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory for %zu merges", expected);
    for (size_t i = 0; i < cap; i++) m->e[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->n = 0;
    return VLM_OK;
}

/* The caller sized the table for every merge, so it never fills up. A later
 * duplicate pair replaces the earlier one, as a HashMap insert does. */
void tok_mmap_put(tok_mmap *m, int32_t a, int32_t b, int32_t rank, int32_t new_id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    for (uint64_t i = h >> 20;; i++) {
        tok_merge *e = &m->e[i & m->mask];
        if (e->key == UINT64_MAX) {
            e->key = key;
            m->n++;
        } else if (e->key != key) {
            continue;
        }
        e->rank = rank;
        e->new_id = new_id;
        return;
    }
}

void tok_mmap_free(tok_mmap *m)
{
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* ---------------- ByteLevel alphabet ---------------- */

/* Printable Latin-1 bytes map to themselves; the other 68 bytes map, in byte
 * order, to U+0100.. (GPT-2's bytes_to_unicode). */
static int byte_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
}

uint32_t tok_byte_to_cp(uint8_t b)
{
    if (byte_printable(b)) return b;
    unsigned n = 0;
    for (unsigned i = 0; i < b; i++) n += !byte_printable(i);
    return 256 + n;
}

int tok_cp_to_byte(uint32_t cp)
{
    static int16_t table[256 + 68];
    static int ready; /* benign race: every thread writes the same values */
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        int16_t tmp[256 + 68];
        for (unsigned i = 0; i < 256 + 68; i++) tmp[i] = -1;
        for (unsigned b = 0; b < 256; b++) tmp[tok_byte_to_cp((uint8_t)b)] = (int16_t)b;
        memcpy(table, tmp, sizeof table);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    return cp < 256 + 68 ? table[cp] : -1;
}

/* ---------------- added-token trie ---------------- */

static int32_t trie_new_node(tok_trie *tr, uint8_t byte)
{
    if (tr->n == tr->cap) {
        int32_t cap = tr->cap ? tr->cap * 2 : 256;
        tok_trie_node *nn = realloc(tr->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return -1;
        tr->nodes = nn;
        tr->cap = cap;
    }
    tok_trie_node *nd = &tr->nodes[tr->n];
    nd->first_child = nd->next_sibling = nd->token = -1;
    nd->byte = byte;
    return tr->n++;
}

int tok_trie_build(tok_trie *tr, const tok_added *added, int32_t n_added, int normalized)
{
    tok_trie_free(tr);
    for (int i = 0; i < 256; i++) tr->root_child[i] = -1;
    for (int32_t k = 0; k < n_added; k++) {
        const tok_added *a = &added[k];
        if (!a->normalized != !normalized || a->len == 0) continue;
        const uint8_t *s = (const uint8_t *)a->content;
        int32_t node = tr->root_child[s[0]];
        if (node < 0) {
            node = trie_new_node(tr, s[0]);
            if (node < 0) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
            tr->root_child[s[0]] = node;
        }
        for (uint32_t i = 1; i < a->len; i++) {
            int32_t ch = tr->nodes[node].first_child;
            while (ch >= 0 && tr->nodes[ch].byte != s[i]) ch = tr->nodes[ch].next_sibling;
            if (ch < 0) {
                ch = trie_new_node(tr, s[i]);
                if (ch < 0) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
                tr->nodes[ch].next_sibling = tr->nodes[node].first_child;
                tr->nodes[node].first_child = ch;
            }
            node = ch;
        }
        tr->nodes[node].token = k;
    }
    return VLM_OK;
}

void tok_trie_free(tok_trie *tr)
{
    free(tr->nodes);
    tr->nodes = NULL;
    tr->n = tr->cap = 0;
    for (int i = 0; i < 256; i++) tr->root_child[i] = -1;
}
