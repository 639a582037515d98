/* The decoder's KV cache: one fixed-capacity fp32 block per layer and buffer, allocated
 * once in a buffer of the model's backend (on the CPU, pages are only touched as tokens
 * arrive). */
#include "text/lm_internal.h"

#include "core/error.h"

#include <stdint.h>
#include <stdlib.h>

int vlm_kv_cache_create(const vlm_lm *lm, int64_t max_tokens, vlm_kv_cache **out)
{
    *out = NULL;
    if (!lm) return vlm_errorf(VLM_ERR_INVALID, "kv cache: no model");
    if (max_tokens <= 0) return vlm_errorf(VLM_ERR_INVALID, "kv cache: capacity %lld must be positive", (long long)max_tokens);
    const vlm_lm_config *c = &lm->cfg;
    vlm_kv_cache *kc = calloc(1, sizeof *kc);
    if (!kc) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    kc->lm = lm;
    kc->cap = max_tokens;
    if (c->use_mla) {
        kc->n_bufs = 1;
        kc->row = (int64_t)c->kv_lora_rank + c->qk_rope_head_dim;
    } else {
        kc->n_bufs = 2;
        kc->row = (int64_t)c->num_key_value_heads * lm->head_dim;
    }
    double total = (double)c->num_hidden_layers * kc->n_bufs * (double)max_tokens * (double)kc->row * sizeof(float);
    if (total > (double)(SIZE_MAX / 2)) {
        free(kc);
        return vlm_errorf(VLM_ERR_LIMIT, "kv cache: %lld tokens would need %.0f bytes", (long long)max_tokens, total);
    }
    kc->be = vlm_lm_backend(lm);
    void *data = NULL;
    int rc = kc->be->alloc(kc->be, (size_t)total, &data);
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

int64_t vlm_kv_cache_len(const vlm_kv_cache *c) { return c->len; }
int64_t vlm_kv_cache_capacity(const vlm_kv_cache *c) { return c->cap; }
