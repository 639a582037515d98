/* Decoding ids back to bytes (tokenizers' decode with the ByteLevel decoder,
 * minus the final lossy UTF-8 conversion). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/tok_internal.h"

int vlm_tokenizer_token_bytes(const vlm_tokenizer *t, int32_t id, char *buf, size_t cap, int *sep_before)
{
    if (sep_before) *sep_before = !t->decoder_bytelevel;
    if (id < 0 || id >= t->n_ids || !t->id_str[id])
        return vlm_errorf(VLM_ERR_INVALID, "tokenizer: id %d is not in the vocabulary (size %d)", id, t->n_ids);
    const uint8_t *s = (const uint8_t *)t->id_str[id];
    size_t n = t->id_len[id], k = 0;
    if (t->decoder_bytelevel) {
        /* Every char must be in the byte alphabet, else the token's own UTF-8
         * is used (as ByteLevel::decode_chain does, e.g. for added tokens). */
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            int len = vlm_utf8_decode(s + i, n - i, &cp);
            int b = len > 0 ? tok_cp_to_byte(cp) : -1;
            if (b < 0) {
                k = 0;
                break;
            }
            if (k < cap) buf[k] = (char)b;
            k++;
            i += (size_t)len;
        }
        if (k) return (int)k;
    }
    if (n && cap) memcpy(buf, s, n < cap ? n : cap);
    return (int)n;
}

int vlm_tokenizer_decode(const vlm_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                         size_t *len)
{
    *text = NULL;
    *len = 0;
    size_t cap = 256, used = 0;
    char *out = malloc(cap);
    if (!out) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id >= 0 && id < t->n_ids && skip_special && (t->id_flags[id] & TOK_ID_SPECIAL)) continue;
        int sep;
        int need = vlm_tokenizer_token_bytes(t, id, NULL, 0, &sep);
        if (need < 0) {
            free(out);
            return need;
        }
        size_t extra = (size_t)need + (sep && !first);
        if (used + extra + 1 > cap) {
            while (used + extra + 1 > cap) cap *= 2;
            char *p = realloc(out, cap);
            if (!p) {
                free(out);
                return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
            }
            out = p;
        }
        if (sep && !first) out[used++] = ' ';
        vlm_tokenizer_token_bytes(t, id, out + used, (size_t)need, NULL);
        used += (size_t)need;
        first = 0;
    }
    out[used] = 0;
    *text = out;
    *len = used;
    return VLM_OK;
}
