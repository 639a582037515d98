/* Internals shared by the tokenizer's files (loading, encoding, BPE,
 * decoding). Not a public header. */
#ifndef VLM_TEXT_TOK_INTERNAL_H
#define VLM_TEXT_TOK_INTERNAL_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "core/utf8.h"
#include "text/tokenizer.h"

/* Limits that keep a hostile tokenizer.json from asking for absurd memory. */
#define TOK_MAX_ID 16000000
#define TOK_MAX_TOKEN_BYTES 4096

/* ---- chunked arena: allocations never move, freed all at once ---- */
typedef struct tok_arena_block tok_arena_block;
typedef struct {
    tok_arena_block *head;
} tok_arena;
void *tok_arena_alloc(tok_arena *a, size_t n);
void tok_arena_free(tok_arena *a);

/* ---- string -> id hash map (keys are not copied) ---- */
typedef struct {
    const char *s;
    uint32_t len, hash;
    int32_t id;
} tok_smap_entry;
typedef struct {
    tok_smap_entry *e;
    uint32_t cap, n;
} tok_smap;
uint32_t tok_hash(const void *p, size_t n);
int tok_smap_put(tok_smap *m, const char *s, size_t len, int32_t id); /* replaces */
int32_t tok_smap_get(const tok_smap *m, const char *s, size_t len);   /* -1 if absent */
void tok_smap_free(tok_smap *m);

/* ---- merge table: (left id, right id) -> (rank, merged id) ---- */
typedef struct {
    uint64_t key; /* UINT64_MAX: empty */
    int32_t rank, new_id;
} tok_merge;
typedef struct {
    tok_merge *e;
    uint64_t mask;
    size_t n;
} tok_mmap;
int tok_mmap_init(tok_mmap *m, size_t expected);
void tok_mmap_put(tok_mmap *m, int32_t a, int32_t b, int32_t rank, int32_t new_id);
static inline const tok_merge *tok_mmap_get(const tok_mmap *m, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    for (uint64_t i = h >> 20;; i++) {
        const tok_merge *e = &m->e[i & m->mask];
        if (e->key == key) return e;
        if (e->key == UINT64_MAX) return NULL;
    }
}
void tok_mmap_free(tok_mmap *m);

/* ---- added tokens and the byte trie that finds them ---- */
typedef struct {
    const char *content;
    uint32_t len;
    int32_t id;
    uint8_t single_word, lstrip, rstrip, normalized, special;
} tok_added;

typedef struct {
    int32_t first_child, next_sibling, token; /* token: index into added, or -1 */
    uint8_t byte;
} tok_trie_node;
typedef struct {
    tok_trie_node *nodes;
    int32_t n, cap;
    int32_t root_child[256];
} tok_trie;

/* ---- pre-tokenizer steps ---- */
enum { TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_PREV, TOK_SPLIT_MERGED_NEXT,
       TOK_SPLIT_CONTIGUOUS };
enum { TOK_PT_SPLIT, TOK_PT_BYTELEVEL };
typedef struct {
    int kind;
    pcre2_code *re; /* Split: its regex; ByteLevel with use_regex: the GPT-2 regex */
    int jit;
    int behavior, invert;
    int add_prefix_space;
} tok_pretok;

enum { TOK_ID_MODEL = 1, TOK_ID_ADDED = 2, TOK_ID_SPECIAL = 4 };

struct vlm_tokenizer {
    tok_arena arena;
    /* id -> token text (added content wins over the model's entry) */
    int32_t n_ids, ids_cap;
    const char **id_str;
    uint32_t *id_len;
    uint8_t *id_flags;
    int32_t model_vocab_len; /* entries in model.vocab (HF's model vocab size) */

    tok_smap vocab; /* model vocabulary */
    tok_smap added_map;
    tok_mmap merges;

    tok_added *added;
    int32_t n_added, added_cap;
    tok_trie trie_raw, trie_norm; /* normalized=false / normalized=true tokens */
    pcre2_code *word_re;          /* one \w char, anchored; only with single_word tokens */

    tok_pretok *pt;
    int n_pt;
    int byte_level;      /* a ByteLevel pre-tokenizer: BPE symbols start as single bytes */
    int ignore_merges;
    int32_t unk_id;      /* -1: unknown chars are dropped (as tokenizers does) */
    int32_t byte_id[256]; /* byte-level: id of each byte's one-char token, -1 if absent */
    int decoder_bytelevel; /* 0: tokens joined with " " (no decoder) */

    vlm_special_ids special;
};

/* Byte <-> code point table of GPT-2's ByteLevel (bytes_to_unicode). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 if cp is not in the byte alphabet */

/* Trie of added tokens (tok_util.c); matched in tok_encode.c. */
int tok_trie_build(tok_trie *tr, const tok_added *added, int32_t n_added, int normalized);
void tok_trie_free(tok_trie *tr);

/* ---- per-call encoding state ---- */
typedef struct {
    const uint8_t *p;
    uint32_t n;
} tok_piece;

typedef struct tok_cache tok_cache;

typedef struct {
    const vlm_tokenizer *t;
    int32_t *ids;
    size_t n_ids, cap_ids;
    tok_piece *pa, *pb;
    size_t cap_pa, cap_pb;
    tok_arena scratch; /* prefix-space copies of pieces */
    pcre2_match_data *md;
    tok_cache *cache;
    /* BPE work arrays */
    int32_t *sym, *prev, *next;
    size_t cap_sym;
    void *heap;
    size_t cap_heap;
    char *strbuf; /* for vocabulary look-ups of mapped strings */
    size_t cap_strbuf;
} tok_ctx;

int tok_push_id(tok_ctx *c, int32_t id);
/* BPE of one pre-token (raw bytes); appends its ids to c->ids. */
int tok_bpe_piece(tok_ctx *c, const uint8_t *p, size_t n);
void tok_ctx_free_bpe(tok_ctx *c);

#endif
