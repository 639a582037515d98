/* Int8 activations for products with q8/q4 weights: the input quantization (per block of 32,
 * d = max|x| / 127, round-half-even, as the decode GEMV does) and the choice of when the int8
 * GEMM runs (vlm_ops_set_int8_activations). The GEMM itself is in ops_int8_panel.c. */
#include "core/ops.h"
#include "core/ops_internal.h"
#include "core/threadpool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define VLM_HAVE_X86 1
#include <immintrin.h>
#define TGT __attribute__((target("avx2,fma,f16c")))
#endif

#define QB 32 /* block of inputs sharing one scale */

static volatile int g_int8_act = -1;

void vlm_ops_set_int8_activations(int mode) { g_int8_act = mode < 0 ? -1 : mode != 0; }
int vlm_ops_int8_activations(void) { return g_int8_act; }

int vlm_int8_act_applies(const vlm_weight *W)
{
    const int mode = g_int8_act;
    return (W->quant == VLM_WQ_Q4 || W->quant == VLM_WQ_Q8) && mode != 0;
}

/* ---- input quantization ------------------------------------------------------ */

/* Row x[K] into q[nb * QB] (zero padded) and d[nb]. */
static void quant_row_scalar(const float *x, int64_t K, int64_t nb, int8_t *q, float *d)
{
    for (int64_t b = 0; b < nb; b++) {
        const int64_t k0 = b * QB, n = K - k0 < QB ? K - k0 : QB;
        float amax = 0;
        for (int64_t i = 0; i < n; i++) amax = fabsf(x[k0 + i]) > amax ? fabsf(x[k0 + i]) : amax;
        const float dd = amax / 127.0f, inv = dd > 0 ? 1.0f / dd : 0.0f;
        d[b] = dd;
        for (int64_t i = 0; i < QB; i++) {
            float v = i < n ? nearbyintf(x[k0 + i] * inv) : 0.0f;
            q[k0 + i] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : (int)v);
        }
    }
}

#ifdef VLM_HAVE_X86
/* The same bytes and scales as quant_row_scalar (max is exact, x * inv rounds the same,
 * vroundps rounds to nearest even like nearbyintf in the default mode). */
TGT static void quant_row_avx2(const float *x, int64_t K, int64_t nb, int8_t *q, float *d)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const int64_t full = K / QB;
    for (int64_t b = 0; b < full; b++) {
        const float *s = x + b * QB;
        __m256 v0 = _mm256_loadu_ps(s), v1 = _mm256_loadu_ps(s + 8), v2 = _mm256_loadu_ps(s + 16), v3 = _mm256_loadu_ps(s + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                                 _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float dd = amax / 127.0f, inv = dd > 0 ? 1.0f / dd : 0.0f;
        d[b] = dd;
        const __m256 vi = _mm256_set1_ps(inv);
#define QV(v) _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_round_ps(_mm256_mul_ps(v, vi), \
                                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))))
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(QV(v0), QV(v1)), _mm256_packs_epi32(QV(v2), QV(v3)));
#undef QV
        _mm256_storeu_si256((__m256i *)(q + b * QB), _mm256_permutevar8x32_epi32(p, perm));
    }
    if (full < nb) quant_row_scalar(x + full * QB, K - full * QB, nb - full, q + full * QB, d + full);
}
#endif

typedef struct {
    const float *x;
    int64_t K, nb;
    int8_t *xq;
    float *xd;
} xquant_job;

static void xquant_task(void *ctx, int64_t b, int64_t e)
{
    const xquant_job *j = ctx;
    for (int64_t m = b; m < e; m++) vlm_int8_quant_row(j->x + m * j->K, j->K, j->nb, j->xq + m * j->nb * QB, j->xd + m * j->nb);
}

void vlm_int8_quant_row(const float *x, int64_t K, int64_t nb, int8_t *q, float *d)
{
#ifdef VLM_HAVE_X86
    if (vlm_ops_avx2()) {
        quant_row_avx2(x, K, nb, q, d);
        return;
    }
#endif
    quant_row_scalar(x, K, nb, q, d);
}

void vlm_int8_quant_rows(const float *x, int64_t M, int64_t K, int64_t nb, int8_t *xq, float *xd)
{
    /* a decode step's few rows (under 64K values, a few microseconds) on the calling thread: a pool pass
     * would cost as much as the work */
    vlm_pool *pool = M * K < 65536 ? NULL : vlm_pool_default();
    const int64_t per = M / (4 * vlm_pool_threads(pool));
    xquant_job xj = {x, K, nb, xq, xd};
    vlm_pool_for(pool, M, per > 1 ? per : 1, xquant_task, &xj);
}

void vlm_int8_block_offsets(const int8_t *xq, int64_t n, int32_t *x8)
{
    for (int64_t i = 0; i < n; i++) {
        int32_t s = 0;
        for (int k = 0; k < QB; k++) s += xq[i * QB + k];
        x8[i] = 8 * s;
    }
}

int vlm_linear_int8(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias)
{
    if (W->quant != VLM_WQ_Q8 && W->quant != VLM_WQ_Q4) return 0;
    if (M <= 0 || W->rows <= 0) return 1;
    return vlm_linear_int8_panel(y, x, M, W, bias);
}
