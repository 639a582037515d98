/* The int8 GEMM for q8/q4 weights with M >= 4 input rows (prefill, ViT), used instead of
 * the fp32 dequantizing GEMM of ops_fast.c when vlm_ops_set_int8_activations(1) is on.
 *
 * Each input row is quantized to int8 per block of 32 (symmetric: d = max|x| / 127,
 * q = round-to-nearest-even(x / d), as the decode GEMV does), so every output is a sum
 * over blocks b of  S_b * (dw_b * dx_b)  with S_b the exact int32 dot product of the
 * block's int8 weights and int8 inputs.
 *
 * The arithmetic is fixed so that the AVX2 and the scalar kernel give the same bits:
 * per output and block, the int32 sums of the block's two halves S_0, S_1 (exact) are
 * scaled into two fp32 accumulators, a_h = fma(float(S_h), dw_b * dx_b, a_h), over the
 * blocks in order, and the output is (a_0 + a_1) + bias.
 *
 * Work is split over blocks of output features on the thread pool. For each block a
 * task converts the weight scales to fp32 per 32-block once; tiles of 4 weight rows x 4
 * input rows then run over all of K, with the tile's input rows in L1 and the block's
 * weights in L2. q4 weights take their own kernel (ops_int8_q4.c).
 *
 * Speed: q8 (this file's kernel, with the sign trick) only matches the fp32 GEMM on Zen 3, so it
 * runs when asked for; q4 (ops_int8_q4.c) runs about 1.8x faster than it and is the default
 * (see vlm_ops_set_int8_activations). */
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
#define TGT_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline
#endif

#define QB 32 /* block of weights / inputs sharing one scale pair */
#define NROWS 32 /* output features per task, at most */

static volatile int g_int8_act = -1;

void vlm_ops_set_int8_activations(int mode) { g_int8_act = mode < 0 ? -1 : mode != 0; }
int vlm_ops_int8_activations(void) { return g_int8_act; }

int vlm_int8_act_applies(const vlm_weight *W)
{
    const int mode = g_int8_act;
    return W->quant == VLM_WQ_Q4 ? mode != 0 : W->quant == VLM_WQ_Q8 && mode == 1;
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
    vlm_pool *pool = vlm_pool_default();
    const int64_t per = M / (4 * vlm_pool_threads(pool));
    xquant_job xj = {x, K, nb, xq, xd};
    vlm_pool_for(pool, M, per > 1 ? per : 1, xquant_task, &xj);
}

/* ---- tiles ------------------------------------------------------------------- */

/* A tile is R weight rows (R <= 4) x 4 input rows (absent input rows point at a zero row).
 * Per output and block b, the int32 sums of the block's halves (elements 0..15, 16..31)
 * S_h are each scaled into their own accumulator, a_h = fma(float(S_h), dw_b * dx_b, a_h)
 * (S_h is at most 16 * 127 * 127, exact in fp32), and the output is (a_0 + a_1) + bias. */

/* dx4[b][8]: the 4 input rows' block scales twice over (the AVX2 lane order). */
static void tile_scalar(const int8_t *w, int64_t ws, const float *dw, int64_t dws, const int8_t *const *xr,
                        const float *dx4, int64_t nb, float *y, int64_t ldy, int C, const float *bias, int R)
{
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float a[2] = {0, 0};
            for (int64_t b = 0; b < nb; b++) {
                const int8_t *wp = w + r * ws + b * QB, *xp = xr[c] + b * QB;
                const float s = dw[r * dws + b] * dx4[b * 8 + c];
                for (int h = 0; h < 2; h++) {
                    int32_t S = 0;
                    for (int i = 16 * h; i < 16 * h + 16; i++) S += wp[i] * xp[i];
                    a[h] = fmaf((float)S, s, a[h]);
                }
            }
            y[c * ldy + r] = (a[0] + a[1]) + (bias ? bias[r] : 0.0f);
        }
}

#ifdef VLM_HAVE_X86
/* vpmaddubsw gives each input row's 16 pair sums (|w| times x with w's sign); the four rows'
 * results are interleaved (unpack) before vpmaddwd adds pairs, and once more after, so that
 * one vector holds [S_0 of rows 0..3 | S_1 of rows 0..3] and one conversion and one FMA
 * serve the four outputs of a weight row. */
static TGT_INLINE void tile_avx2(const int8_t *w, int64_t ws, const float *dw, int64_t dws, const int8_t *const *xr,
                                 const float *dx4, int64_t nb, float *y, int64_t ldy, int C, const float *bias,
                                 const int R)
{
    __m256 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3];
    for (int64_t b = 0; b < nb; b++) {
        const __m256i v0 = _mm256_loadu_si256((const __m256i *)(x0 + b * QB));
        const __m256i v1 = _mm256_loadu_si256((const __m256i *)(x1 + b * QB));
        const __m256i v2 = _mm256_loadu_si256((const __m256i *)(x2 + b * QB));
        const __m256i v3 = _mm256_loadu_si256((const __m256i *)(x3 + b * QB));
        const __m256 d4 = _mm256_loadu_ps(dx4 + b * 8);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + r * ws + b * QB));
            const __m256i aw = _mm256_sign_epi8(wv, wv);
            const __m256i p0 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(v0, wv));
            const __m256i p1 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(v1, wv));
            const __m256i p2 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(v2, wv));
            const __m256i p3 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(v3, wv));
            const __m256i s01 = _mm256_add_epi32(_mm256_madd_epi16(_mm256_unpacklo_epi32(p0, p1), ones),
                                                 _mm256_madd_epi16(_mm256_unpackhi_epi32(p0, p1), ones));
            const __m256i s23 = _mm256_add_epi32(_mm256_madd_epi16(_mm256_unpacklo_epi32(p2, p3), ones),
                                                 _mm256_madd_epi16(_mm256_unpackhi_epi32(p2, p3), ones));
            const __m256i s = _mm256_add_epi32(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
            const __m256 sc = _mm256_mul_ps(_mm256_broadcast_ss(dw + r * dws + b), d4);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float a[8];
        _mm256_storeu_ps(a, acc[r]);
        for (int c = 0; c < C; c++) y[c * ldy + r] = (a[c] + a[c + 4]) + (bias ? bias[r] : 0.0f);
    }
}

/* One instance per tile height, so that R is a constant in the loops above. */
#define TILE_FN(R)                                                                                                    \
    TGT static void tile_avx2_##R(const int8_t *w, int64_t ws, const float *dw, int64_t dws, const int8_t *const *xr, \
                                  const float *dx4, int64_t nb, float *y, int64_t ldy, int C, const float *bias)      \
    {                                                                                                                 \
        tile_avx2(w, ws, dw, dws, xr, dx4, nb, y, ldy, C, bias, R);                                                   \
    }
TILE_FN(1)
TILE_FN(2)
TILE_FN(3)
TILE_FN(4)
typedef void (*tile_fn)(const int8_t *, int64_t, const float *, int64_t, const int8_t *const *, const float *, int64_t,
                        float *, int64_t, int, const float *);
static const tile_fn g_tiles[4] = {tile_avx2_1, tile_avx2_2, tile_avx2_3, tile_avx2_4};
#endif

/* ---- the GEMM ---------------------------------------------------------------- */

#define RT 4 /* weight rows per tile */
#define CT 4 /* input rows per tile */

typedef struct {
    float *y;
    const int8_t *xq;  /* [M][nb * QB] */
    const float *dx4;  /* [ceil(M / CT)][nb][8] */
    const int8_t *zero; /* a zero input row (tile padding) */
    int64_t M, nb;
    const vlm_weight *W;
    const float *bias;
    int64_t nrows; /* output features per task */
    int avx;
    int failed;
} gemm8_job;

/* Output features [n0, n0 + nr) of a q8 weight: the weight scales as fp32 per block
 * (dw[nr][nb]), once; then every tile. */
static void gemm8_block(const gemm8_job *j, int64_t n0, int64_t nr, float *dw)
{
    const vlm_weight *W = j->W;
    const int64_t nb = j->nb, N = W->rows, ng = vlm_q_groups(W), bpg = W->group / QB;
    for (int64_t r = 0; r < nr; r++) {
        const uint16_t *sc = W->scales + (size_t)(n0 + r) * (size_t)ng;
        for (int64_t b = 0; b < nb; b++) dw[r * nb + b] = vlm_f16_to_f32(sc[b / bpg]);
    }
    const int8_t *w = (const int8_t *)W->data + (size_t)n0 * (size_t)W->row_bytes;
    const int64_t ws = W->row_bytes;
    const int64_t xs = nb * QB;
    for (int64_t m0 = 0; m0 < j->M; m0 += CT) {
        const int C = (int)(j->M - m0 < CT ? j->M - m0 : CT);
        const int8_t *xr[CT];
        for (int c = 0; c < CT; c++) xr[c] = c < C ? j->xq + (m0 + c) * xs : j->zero;
        const float *dx4 = j->dx4 + (m0 / CT) * nb * 8;
        for (int64_t r0 = 0; r0 < nr; r0 += RT) {
            const int R = (int)(nr - r0 < RT ? nr - r0 : RT);
            float *y = j->y + m0 * N + n0 + r0;
            const float *bias = j->bias ? j->bias + n0 + r0 : NULL;
#ifdef VLM_HAVE_X86
            if (j->avx) {
                g_tiles[R - 1](w + r0 * ws, ws, dw + r0 * nb, nb, xr, dx4, nb, y, N, C, bias);
                continue;
            }
#endif
            tile_scalar(w + r0 * ws, ws, dw + r0 * nb, nb, xr, dx4, nb, y, N, C, bias, R);
        }
    }
}

static void gemm8_task(void *ctx, int64_t b, int64_t e)
{
    gemm8_job *j = ctx;
    const int64_t N = j->W->rows;
    float *dw = malloc((size_t)(j->nrows * j->nb) * sizeof(float));
    if (dw)
        for (int64_t t = b; t < e; t++) {
            const int64_t n0 = t * j->nrows, nr = N - n0 < j->nrows ? N - n0 : j->nrows;
            gemm8_block(j, n0, nr, dw);
        }
    else
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED); /* the caller redoes the product */
    free(dw);
}

int vlm_linear_int8(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias)
{
    if (W->quant != VLM_WQ_Q8 && W->quant != VLM_WQ_Q4) return 0;
    if (M <= 0 || W->rows <= 0) return 1;
    if (W->quant == VLM_WQ_Q4) return vlm_linear_int8_q4(y, x, M, W, bias);
    const int64_t K = W->cols, nb = (K + QB - 1) / QB, tiles = (M + CT - 1) / CT;
    /* one allocation: xq[M][nb * QB], a zero row, dx[M][nb], dx4[tiles][nb][8] */
    const size_t qbytes = (size_t)((M + 1) * nb * QB), xd_off = (qbytes + 31) / 32 * 32;
    const size_t dx4_off = xd_off + (size_t)(M * nb) * sizeof(float);
    uint8_t *buf = malloc(dx4_off + (size_t)(tiles * nb * 8) * sizeof(float));
    if (!buf) return 0;
    int8_t *xq = (int8_t *)buf;
    float *xd = (float *)(buf + xd_off), *dx4 = (float *)(buf + dx4_off);
    memset(xq + M * nb * QB, 0, (size_t)(nb * QB));
    int avx = 0;
#ifdef VLM_HAVE_X86
    avx = vlm_ops_avx2();
#endif
    vlm_pool *pool = vlm_pool_default();
    const int threads = vlm_pool_threads(pool);
    vlm_int8_quant_rows(x, M, K, nb, xq, xd);
    for (int64_t t = 0; t < tiles; t++)
        for (int64_t b = 0; b < nb; b++)
            for (int c = 0; c < CT; c++) {
                const int64_t m = t * CT + c;
                dx4[(t * nb + b) * 8 + c] = dx4[(t * nb + b) * 8 + c + 4] = m < M ? xd[m * nb + b] : 0.0f;
            }
    /* output features per task: a multiple of the tile height, at most NROWS, with enough tasks
     * to balance the threads */
    int64_t nrows = NROWS;
    while (nrows > RT && (W->rows + nrows - 1) / nrows < 4 * threads) nrows -= RT;
    gemm8_job j = {y, xq, dx4, xq + M * nb * QB, M, nb, W, bias, nrows, avx, 0};
    vlm_pool_for(pool, (W->rows + nrows - 1) / nrows, 1, gemm8_task, &j);
    free(buf);
    return !j.failed;
}
