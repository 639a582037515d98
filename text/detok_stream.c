/* Streaming detokenizer (see detok_stream.h). */
#include "text/detok_stream.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

struct vlm_detok_stream {
    const vlm_tokenizer *t;
    int print_special, any;
    unsigned char pend[4]; /* start of a character that is not complete yet */
    size_t n_pend;
    char *out;
    size_t cap;
    char *tok; /* one token's bytes */
    size_t tok_cap;
};

int vlm_detok_stream_new(const vlm_tokenizer *t, int print_special, vlm_detok_stream **out)
{
    *out = NULL;
    if (!t) return vlm_errorf(VLM_ERR_INVALID, "detok: no tokenizer");
    vlm_detok_stream *s = calloc(1, sizeof *s);
    if (!s) return vlm_errorf(VLM_ERR_NOMEM, "detok: out of memory");
    s->t = t;
    s->print_special = print_special;
    *out = s;
    return VLM_OK;
}

void vlm_detok_stream_free(vlm_detok_stream *s)
{
    if (!s) return;
    free(s->out);
    free(s->tok);
    free(s);
}

void vlm_detok_stream_reset(vlm_detok_stream *s)
{
    s->n_pend = 0;
    s->any = 0;
}

static int reserve(char **p, size_t *cap, size_t need)
{
    if (need <= *cap) return VLM_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return vlm_errorf(VLM_ERR_NOMEM, "detok: out of memory");
    *p = q;
    *cap = c;
    return VLM_OK;
}

/* Bytes a well-formed sequence starting with lead b has (0: b cannot start one). */
static int seq_len(unsigned char b)
{
    if (b < 0x80) return 1;
    if (b >= 0xc2 && b <= 0xdf) return 2;
    if (b >= 0xe0 && b <= 0xef) return 3;
    if (b >= 0xf0 && b <= 0xf4) return 4;
    return 0;
}

/* Whether c may follow lead at position 1 (the Unicode table of well-formed
 * UTF-8); later positions take any continuation byte. */
static int second_ok(unsigned char lead, unsigned char c)
{
    unsigned lo = 0x80, hi = 0xbf;
    if (lead == 0xe0) lo = 0xa0;
    else if (lead == 0xed) hi = 0x9f;
    else if (lead == 0xf0) lo = 0x90;
    else if (lead == 0xf4) hi = 0x8f;
    return c >= lo && c <= hi;
}

/* Moves the complete part of src[0..n) into s->out at *used (U+FFFD for each
 * maximal invalid subpart); an incomplete tail goes to s->pend unless final. */
static void convert(vlm_detok_stream *s, const unsigned char *src, size_t n, size_t *used, int final)
{
    size_t i = 0;
    while (i < n) {
        int len = seq_len(src[i]);
        if (len == 0) {
            memcpy(s->out + *used, "\xef\xbf\xbd", 3), *used += 3, i++;
            continue;
        }
        int k = 1; /* bytes of a valid prefix seen */
        while (k < len && i + (size_t)k < n &&
               (k == 1 ? second_ok(src[i], src[i + 1]) : (src[i + (size_t)k] & 0xc0) == 0x80))
            k++;
        if (k == len) {
            memcpy(s->out + *used, src + i, (size_t)len), *used += (size_t)len, i += (size_t)len;
        } else if (i + (size_t)k == n && !final) {
            memcpy(s->pend, src + i, (size_t)k); /* may still complete */
            s->n_pend = (size_t)k;
            return;
        } else {
            memcpy(s->out + *used, "\xef\xbf\xbd", 3), *used += 3, i += (size_t)k;
        }
    }
    s->n_pend = 0;
}

int vlm_detok_stream_push(vlm_detok_stream *s, int32_t id, const char **text, size_t *len)
{
    *text = "";
    *len = 0;
    if (!s->print_special && vlm_tokenizer_is_special(s->t, id)) return VLM_OK;
    int sep;
    int n = vlm_tokenizer_token_bytes(s->t, id, NULL, 0, &sep);
    if (n < 0) return n;
    size_t total = s->n_pend + (size_t)n + (sep && s->any);
    int rc = reserve(&s->tok, &s->tok_cap, total);
    if (!rc) rc = reserve(&s->out, &s->cap, 3 * total + 1);
    if (rc) return rc;
    /* pending bytes, the separator (no decoder: tokens joined by spaces), the token */
    memcpy(s->tok, s->pend, s->n_pend);
    size_t k = s->n_pend;
    if (sep && s->any) s->tok[k++] = ' ';
    vlm_tokenizer_token_bytes(s->t, id, s->tok + k, (size_t)n, NULL);
    k += (size_t)n;
    s->any = 1;
    size_t used = 0;
    convert(s, (const unsigned char *)s->tok, k, &used, 0);
    s->out[used] = 0;
    *text = s->out;
    *len = used;
    return VLM_OK;
}

int vlm_detok_stream_flush(vlm_detok_stream *s, const char **text, size_t *len)
{
    *text = "";
    *len = 0;
    int rc = reserve(&s->out, &s->cap, 3 * s->n_pend + 1);
    if (rc) return rc;
    unsigned char tmp[4];
    size_t n = s->n_pend, used = 0;
    memcpy(tmp, s->pend, n);
    convert(s, tmp, n, &used, 1);
    s->out[used] = 0;
    s->any = 0;
    *text = s->out;
    *len = used;
    return VLM_OK;
}
