/* Encoding: added-token extraction, pre-tokenization, then BPE per piece.
 * Mirrors tokenizers' TokenizerImpl::encode with add_special_tokens=False. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/tok_internal.h"
#include "text/tok_regex.h"

/* Rust's char::is_whitespace / regex \s: the White_Space property. */
static int is_white_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

/* Rust regex's Unicode \w (tokenizers' test for single_word), on the one
 * character at p: t->word_re is an anchored class compiled at load. */
static int is_word_char(tok_ctx *c, const uint8_t *p, size_t n)
{
    uint32_t cp;
    int len = vlm_utf8_decode(p, n, &cp);
    if (len <= 0 || !c->t->word_re) return 0;
    return pcre2_match(c->t->word_re, p, (size_t)len, 0, 0, c->md, NULL) > 0;
}

/* Length of the UTF-8 char ending at p[n-1] (1 for an invalid byte). */
static size_t last_char_len(const uint8_t *p, size_t n)
{
    size_t k = 1;
    while (k < 4 && k < n && (p[n - k] & 0xc0) == 0x80) k++;
    uint32_t cp;
    if (vlm_utf8_decode(p + n - k, k, &cp) == (int)k) return k;
    return 1;
}

/* ---------------- output and piece buffers ---------------- */

int tok_push_id(tok_ctx *c, int32_t id)
{
    if (c->n_ids == c->cap_ids) {
        size_t cap = c->cap_ids ? c->cap_ids * 2 : 256;
        int32_t *p = realloc(c->ids, cap * sizeof *p);
        if (!p) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
        c->ids = p;
        c->cap_ids = cap;
    }
    c->ids[c->n_ids++] = id;
    return VLM_OK;
}

typedef struct {
    tok_piece *v;
    size_t n, cap;
} piece_list;

static int pl_push(piece_list *l, const uint8_t *p, size_t n)
{
    if (n == 0) return VLM_OK; /* tokenizers drops empty splits */
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        tok_piece *v = realloc(l->v, cap * sizeof *v);
        if (!v) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n].p = p;
    l->v[l->n].n = (uint32_t)n;
    l->n++;
    return VLM_OK;
}

/* ---------------- Split ---------------- */

typedef struct {
    size_t s, e;
    int match;
} seg;

typedef struct {
    seg *v;
    size_t n, cap;
} seg_list;

static int seg_push(seg_list *l, size_t s, size_t e, int match)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        seg *v = realloc(l->v, cap * sizeof *v);
        if (!v) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (seg){s, e, match};
    return VLM_OK;
}

/* Match / gap segments covering p[0..n), with the onig crate's find_iter
 * rule for empty matches (not accepted right where the last match ended). */
static int find_segments(tok_ctx *c, const tok_pretok *st, const uint8_t *p, size_t n, seg_list *out)
{
    out->n = 0;
    size_t prev = 0, start = 0;
    long long last_end = -1;
    int rc;
    while (start <= n) {
        size_t ms, me;
        int r = tok_regex_next(st->re, st->jit, p, n, start, c->md, &ms, &me);
        if (r < 0) return r;
        if (r == 0) break;
        if (ms == me && last_end == (long long)me) {
            uint32_t cp;
            int len = start < n ? vlm_utf8_decode(p + start, n - start, &cp) : 0;
            start += len > 0 ? (size_t)len : 1;
            continue;
        }
        start = me;
        last_end = (long long)me;
        if (prev != ms && (rc = seg_push(out, prev, ms, 0))) return rc;
        if ((rc = seg_push(out, ms, me, 1))) return rc;
        prev = me;
    }
    if (prev != n && (rc = seg_push(out, prev, n, 0))) return rc;
    if (st->invert)
        for (size_t i = 0; i < out->n; i++) out->v[i].match = !out->v[i].match;
    return VLM_OK;
}

/* A removed delimiter can hold invalid UTF-8 only when the split is inverted
 * (the delimiters are then the gaps between matches, and invalid bytes never
 * match). tokenizers never sees such bytes; here they are kept, each maximal
 * run of them a piece of its own, so that decode(encode(x)) == x still holds. */
static int keep_invalid_runs(const uint8_t *p, size_t s, size_t e, piece_list *out)
{
    uint32_t cp;
    while (s < e) {
        int len = vlm_utf8_decode(p + s, e - s, &cp);
        if (len > 0) {
            s += (size_t)len;
            continue;
        }
        size_t j = s + 1;
        while (j < e && vlm_utf8_decode(p + j, e - j, &cp) <= 0) j++;
        int rc = pl_push(out, p + s, j - s);
        if (rc) return rc;
        s = j;
    }
    return VLM_OK;
}

/* NormalizedString::split's behaviours, applied to the segments in place;
 * the surviving ranges go to out. */
static int apply_behavior(int behavior, seg_list *sg, const uint8_t *p, piece_list *out)
{
    seg *v = sg->v;
    size_t n = sg->n, m = 0; /* m: kept ranges written back into v */
    int prev_match = 0, rc;
    switch (behavior) {
    case TOK_SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if ((rc = v[i].match ? keep_invalid_runs(p, v[i].s, v[i].e, out)
                                 : pl_push(out, p + v[i].s, v[i].e - v[i].s)))
                return rc;
        return VLM_OK;
    case TOK_SPLIT_ISOLATED:
        m = n;
        break;
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            if (v[i].match == prev_match && m > 0) v[m - 1].e = v[i].e;
            else v[m++] = v[i];
            prev_match = v[i].match;
        }
        break;
    case TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            if (v[i].match && !prev_match && m > 0) v[m - 1].e = v[i].e;
            else v[m++] = v[i];
            prev_match = v[i].match;
        }
        break;
    case TOK_SPLIT_MERGED_NEXT: {
        /* right to left, writing the kept ranges from the end of v */
        size_t w = n;
        for (size_t i = n; i-- > 0;) {
            if (v[i].match && !prev_match && w < n) v[w].s = v[i].s;
            else v[--w] = v[i];
            prev_match = v[i].match;
        }
        for (size_t i = w; i < n; i++)
            if ((rc = pl_push(out, p + v[i].s, v[i].e - v[i].s))) return rc;
        return VLM_OK;
    }
    }
    for (size_t i = 0; i < m; i++)
        if ((rc = pl_push(out, p + v[i].s, v[i].e - v[i].s))) return rc;
    return VLM_OK;
}

/* ---------------- pre-tokenization + BPE of one normalized text run ---------------- */

typedef struct {
    piece_list a, b;
    seg_list segs;
} pretok_bufs;

static int encode_text(tok_ctx *c, pretok_bufs *pb, const uint8_t *p, size_t n)
{
    const vlm_tokenizer *t = c->t;
    if (n == 0) return VLM_OK;
    pb->a.n = 0;
    int rc = pl_push(&pb->a, p, n);
    if (rc) return rc;
    for (int k = 0; k < t->n_pt; k++) {
        const tok_pretok *st = &t->pt[k];
        pb->b.n = 0;
        for (size_t i = 0; i < pb->a.n; i++) {
            const uint8_t *q = pb->a.v[i].p;
            size_t qn = pb->a.v[i].n;
            if (st->kind == TOK_PT_BYTELEVEL && st->add_prefix_space && q[0] != ' ') {
                uint8_t *cp = tok_arena_alloc(&c->scratch, qn + 1);
                if (!cp) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
                cp[0] = ' ';
                memcpy(cp + 1, q, qn);
                q = cp;
                qn++;
            }
            if (!st->re) {
                rc = pl_push(&pb->b, q, qn);
            } else {
                rc = find_segments(c, st, q, qn, &pb->segs);
                if (!rc) rc = apply_behavior(st->behavior, &pb->segs, q, &pb->b);
            }
            if (rc) return rc;
        }
        piece_list tmp = pb->a;
        pb->a = pb->b;
        pb->b = tmp;
    }
    for (size_t i = 0; i < pb->a.n; i++)
        if ((rc = tok_bpe_piece(c, pb->a.v[i].p, pb->a.v[i].n))) return rc;
    return VLM_OK;
}

/* ---------------- added tokens ---------------- */

/* Leftmost-longest added token at or after pos. */
static int find_added(const vlm_tokenizer *t, const tok_trie *tr, const uint8_t *s, size_t n, size_t pos,
                      size_t *ms, size_t *me, int32_t *tok)
{
    for (size_t i = pos; i < n; i++) {
        int32_t node = tr->root_child[s[i]];
        if (node < 0) continue;
        int32_t best = -1;
        size_t best_end = 0, j = i + 1;
        for (;;) {
            if (tr->nodes[node].token >= 0) best = tr->nodes[node].token, best_end = j;
            if (j >= n) break;
            int32_t ch = tr->nodes[node].first_child;
            while (ch >= 0 && tr->nodes[ch].byte != s[j]) ch = tr->nodes[ch].next_sibling;
            if (ch < 0) break;
            node = ch;
            j++;
        }
        if (best >= 0) {
            *ms = i;
            *me = best_end;
            *tok = best;
            return 1;
        }
    }
    (void)t;
    return 0;
}

/* AddedVocabulary::find_matches + the work on each piece; pass 0 looks for
 * non-normalized tokens in the raw text, pass 1 for normalized tokens in the
 * (identity-)normalized gaps between them. */
static int encode_pass(tok_ctx *c, pretok_bufs *pb, const uint8_t *s, size_t n, int pass)
{
    const vlm_tokenizer *t = c->t;
    const tok_trie *tr = pass == 0 ? &t->trie_raw : &t->trie_norm;
    size_t start_offset = 0, pos = 0;
    int rc;
    for (;;) {
        size_t ms, me;
        int32_t k;
        if (tr->n == 0 || !find_added(t, tr, s, n, pos, &ms, &me, &k)) break;
        pos = me;
        const tok_added *a = &t->added[k];
        size_t start = ms, stop = me;
        if (a->single_word) {
            int start_space = start == 0 || !is_word_char(c, s + start - last_char_len(s, start),
                                                               last_char_len(s, start));
            int stop_space = stop == n || !is_word_char(c, s + stop, n - stop);
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t cl = last_char_len(s, ns);
                uint32_t cp;
                if (vlm_utf8_decode(s + ns - cl, cl, &cp) != (int)cl || !is_white_space(cp)) break;
                ns -= cl;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            uint32_t cp;
            int cl;
            while (stop < n && (cl = vlm_utf8_decode(s + stop, n - stop, &cp)) > 0 && is_white_space(cp))
                stop += (size_t)cl;
        }
        if (start_offset < start) {
            rc = pass == 0 ? encode_pass(c, pb, s + start_offset, start - start_offset, 1)
                           : encode_text(c, pb, s + start_offset, start - start_offset);
            if (rc) return rc;
        }
        if ((rc = tok_push_id(c, a->id))) return rc;
        start_offset = stop;
    }
    if (start_offset < n)
        return pass == 0 ? encode_pass(c, pb, s + start_offset, n - start_offset, 1)
                         : encode_text(c, pb, s + start_offset, n - start_offset);
    return VLM_OK;
}

int vlm_tokenizer_encode(const vlm_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len)) return vlm_errorf(VLM_ERR_INVALID, "tokenizer: encode needs a tokenizer and text");
    if (len > ((size_t)1 << 31)) return vlm_errorf(VLM_ERR_LIMIT, "tokenizer: text of %zu bytes is too long", len);
    tok_ctx c = {0};
    c.t = t;
    pretok_bufs pb = {0};
    int rc = VLM_OK;
    c.md = pcre2_match_data_create(1, NULL);
    if (!c.md) rc = vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    if (!rc) rc = tok_push_id(&c, 0); /* makes sure *ids is allocated */
    c.n_ids = 0;
    if (!rc && len) rc = encode_pass(&c, &pb, (const uint8_t *)text, len, 0);
    free(pb.a.v);
    free(pb.b.v);
    free(pb.segs.v);
    pcre2_match_data_free(c.md);
    tok_arena_free(&c.scratch);
    tok_ctx_free_bpe(&c);
    if (rc) {
        free(c.ids);
        return rc;
    }
    *ids = c.ids;
    *n_ids = c.n_ids;
    return VLM_OK;
}
