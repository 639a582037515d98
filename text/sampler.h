/* Next-token choice from a row of logits, with Hugging Face generate() semantics.
 *
 * Order (as HF applies its processors and warpers):
 *   1. repetition penalty over every distinct id in history (prompt + generated):
 *      logit > 0 ? logit / penalty : logit * penalty
 *   2. temperature == 0: greedy, argmax (lowest index on ties; NaN never chosen) -> done
 *   3. logits / temperature
 *   4. top-k: drop tokens whose logit is below the k-th largest (ties with the k-th stay)
 *   5. top-p: keep the highest-probability tokens until the probability mass before the
 *      next one reaches top_p (at least one token is kept)
 *   6. draw from the softmax of what is left with the sampler's PRNG (xoshiro256**, seeded
 *      through splitmix64): the same seed and inputs give the same tokens.
 * Off values: top_k 0, top_p 0 or 1, repetition_penalty 0 or 1; so a zeroed params struct
 * is plain greedy. Note HF's sampling defaults to top_k 50; pass it explicitly to match. */
#ifndef VLM_TEXT_SAMPLER_H
#define VLM_TEXT_SAMPLER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = off */
    float top_p;              /* 0 or 1 = off, else in (0, 1) */
    float repetition_penalty; /* 0 or 1 = off, else > 0 */
    uint64_t seed;
} vlm_sampler_params;

typedef struct vlm_sampler vlm_sampler;

int vlm_sampler_create(const vlm_sampler_params *p, int vocab, vlm_sampler **out);
void vlm_sampler_free(vlm_sampler *s);
/* Picks a token from logits [vocab] (modified in place by the steps above). history: the ids seen so far
 * (ids outside the vocabulary are ignored). Returns the token id (>= 0) or a negative VLM_ERR_*.
 * A model's logits are finite, so any NaN or infinite logit is refused first (VLM_ERR_FORMAT, "the model
 * produced NaN logits at step N (k of V): the checkpoint may be damaged"), where N counts this sampler's
 * calls from 1: one sampler per generation makes it the generated token's number. */
int32_t vlm_sampler_sample(vlm_sampler *s, float *logits, const int32_t *history, int64_t n_history);
/* The same steps without that check, for comparing kernels that share them (NaN is never chosen, -inf
 * only when greedy finds nothing larger; no candidate left is an error). Counts as a call. */
int32_t vlm_sampler_pick(vlm_sampler *s, float *logits, const int32_t *history, int64_t n_history);

#ifdef __cplusplus
}
#endif
#endif
