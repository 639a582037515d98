/* The decoder's KV cache: one fixed-capacity fp32 or f16 block per layer and buffer, allocated
 * once in a buffer of the model's backend (on the CPU, pages are only touched as tokens
 * arrive). */
#include "text/lm_internal.h"

#include "core/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* An f16 cache needs a backend whose attention reads it. */
static int kv_type_check(const vlm_lm *lm, vlm_kv_type t)
{
    const vlm_backend *be = vlm_lm_backend(lm);
    if (t == VLM_KV_F16 && !be->kv_f16)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "an f16 KV cache is not available on %s: use --kv-cache f32 or auto",
                          be->name);
    return VLM_OK;
}

int vlm_lm_set_kv_type(vlm_lm *lm, vlm_kv_type t)
{
    int rc = kv_type_check(lm, t);
    if (rc == VLM_OK) lm->kv_type = t;
    return rc;
}

vlm_kv_type vlm_lm_kv_type(const vlm_lm *lm)
{
    if (lm->kv_type != VLM_KV_AUTO) return lm->kv_type;
    /* converted attention weights run the fast kernels, which is where a 16-bit cache belongs */
    const int fast = lm->cfg.num_hidden_layers > 0 && lm->layers[0].attn.o.quant != VLM_WQ_NONE;
    return fast && vlm_lm_backend(lm)->kv_f16 ? VLM_KV_F16 : VLM_KV_F32;
}

static int64_t row_values(const vlm_lm *lm, int *n_bufs)
{
    const vlm_lm_config *c = &lm->cfg;
    *n_bufs = c->use_mla ? 1 : 2;
    return c->use_mla ? (int64_t)c->kv_lora_rank + c->qk_rope_head_dim : (int64_t)c->num_key_value_heads * lm->head_dim;
}

int64_t vlm_lm_kv_bytes_per_token(const vlm_lm *lm)
{
    int n_bufs;
    const int64_t row = row_values(lm, &n_bufs);
    return (int64_t)lm->cfg.num_hidden_layers * n_bufs * row * (vlm_lm_kv_type(lm) == VLM_KV_F16 ? 2 : 4);
}

static const char *const k_kv_names[] = {"auto", "f32", "f16"}; /* in vlm_kv_type order */

int vlm_kv_type_parse(const char *s, vlm_kv_type *out)
{
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, k_kv_names[i])) {
            *out = (vlm_kv_type)i;
            return VLM_OK;
        }
    return vlm_errorf(VLM_ERR_INVALID, "KV cache type '%s': use auto, f32 or f16", s ? s : "");
}

const char *vlm_kv_type_name(vlm_kv_type t) { return t >= VLM_KV_AUTO && t <= VLM_KV_F16 ? k_kv_names[t] : "auto"; }

int vlm_kv_cache_create(const vlm_lm *lm, int64_t max_tokens, vlm_kv_cache **out)
{
    *out = NULL;
    if (!lm) return vlm_errorf(VLM_ERR_INVALID, "kv cache: no model");
    if (max_tokens <= 0) return vlm_errorf(VLM_ERR_INVALID, "kv cache: capacity %lld must be positive", (long long)max_tokens);
    /* the backend may have changed since the type was set */
    int rc = kv_type_check(lm, vlm_lm_kv_type(lm));
    if (rc) return rc;
    vlm_kv_cache *kc = calloc(1, sizeof *kc);
    if (!kc) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    kc->lm = lm;
    kc->cap = max_tokens;
    kc->row = row_values(lm, &kc->n_bufs);
    kc->be = vlm_lm_backend(lm);
    kc->f16 = vlm_lm_kv_type(lm) == VLM_KV_F16;
    double total = (double)vlm_lm_kv_bytes_per_token(lm) * (double)max_tokens;
    if (total > (double)(SIZE_MAX / 2)) {
        free(kc);
        return vlm_errorf(VLM_ERR_LIMIT, "kv cache: %lld tokens would need %.0f bytes", (long long)max_tokens, total);
    }
    void *data = NULL;
    rc = kc->be->alloc(kc->be, (size_t)total, &data);
    if (rc != VLM_OK) {
        free(kc);
        return vlm_error_prefix(rc, "kv cache for %lld tokens on %s", (long long)max_tokens, vlm_lm_backend(lm)->name);
    }
    kc->data = data;
    *out = kc;
    return VLM_OK;
}

void vlm_kv_cache_free(vlm_kv_cache *c)
{
    if (!c) return;
    if (c->be) c->be->free(c->be, c->data);
    free(c);
}

void vlm_kv_cache_reset(vlm_kv_cache *c) { c->len = 0; }

int vlm_kv_cache_truncate(vlm_kv_cache *c, int64_t n)
{
    if (n < 0 || n > c->len)
        return vlm_errorf(VLM_ERR_INVALID, "kv cache: cannot truncate to %lld tokens (it holds %lld)", (long long)n,
                          (long long)c->len);
    c->len = n;
    return VLM_OK;
}

int vlm_kv_store_f16(const vlm_kv_cache *c, int l, int b, int64_t pos, const float *src, int64_t src_stride, int64_t T)
{
    return c->be->rows_to_f16(c->be, vlm_kv_at(c, l, b, pos), c->row, src, src_stride, T, c->row);
}

int vlm_kv_store_part(const vlm_lm_part *p, int l, int b, const float *src, int64_t row_stride)
{
    const vlm_kv_cache *c = p->c;
    const float *rows = src + p->row0 * row_stride;
    if (c->f16) return vlm_kv_store_f16(c, l, b, p->pos0, rows, row_stride, p->T);
    return c->be->copy_rows(c->be, vlm_kv_at(c, l, b, p->pos0), c->row, rows, row_stride, p->T, c->row);
}

vlm_kv_type vlm_kv_cache_type(const vlm_kv_cache *c) { return c->f16 ? VLM_KV_F16 : VLM_KV_F32; }
int64_t vlm_kv_cache_len(const vlm_kv_cache *c) { return c->len; }
int64_t vlm_kv_cache_capacity(const vlm_kv_cache *c) { return c->cap; }

int64_t vlm_kv_cache_token_bytes(const vlm_kv_cache *c)
{
    return (int64_t)c->lm->cfg.num_hidden_layers * c->n_bufs * (int64_t)vlm_kv_row_bytes(c);
}

/* Copies n tokens at pos between the cache and host memory [layer][buffer][n][row], either way. */
static int kv_transfer(const vlm_kv_cache *c, int64_t pos, int64_t n, void *host, int to_host)
{
    const size_t rb = vlm_kv_row_bytes(c), span = (size_t)n * rb;
    char *h = host;
    for (int l = 0; l < c->lm->cfg.num_hidden_layers; l++)
        for (int b = 0; b < c->n_bufs; b++, h += span) {
            void *at = vlm_kv_at(c, l, b, pos);
            int rc = to_host ? c->be->download(c->be, h, at, span) : c->be->upload(c->be, at, h, span);
            if (rc) return rc;
        }
    return VLM_OK;
}

int vlm_kv_cache_export(const vlm_kv_cache *c, int64_t pos, int64_t n, void *dst)
{
    if (pos < 0 || n < 0 || pos + n > c->len)
        return vlm_errorf(VLM_ERR_INVALID, "kv cache: tokens %lld..%lld are not cached (it holds %lld)", (long long)pos,
                          (long long)(pos + n), (long long)c->len);
    return kv_transfer(c, pos, n, dst, 1);
}

int vlm_kv_cache_import(vlm_kv_cache *c, int64_t pos, int64_t n, const void *src)
{
    if (pos < 0 || n < 0 || pos > c->len || pos + n > c->cap)
        return vlm_errorf(VLM_ERR_INVALID, "kv cache: cannot write tokens %lld..%lld (length %lld, capacity %lld)",
                          (long long)pos, (long long)(pos + n), (long long)c->len, (long long)c->cap);
    int rc = kv_transfer(c, pos, n, (void *)src, 0);
    if (rc == VLM_OK) c->len = pos + n;
    return rc;
}
