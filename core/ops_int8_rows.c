/* The q4 int8 products for 2 or 3 input rows (a batched decode step's routed experts mostly get 1 to 3 tokens
 * each), straight from the stored weight rows.
 *
 * The arithmetic is the int8 panel GEMM's (ops_int8_panel.c), so the bits are the same: per output and
 * block b of 32 inputs the exact S_b = sum u x - 8 sum x (u = q + 8, the stored nibble), scaled into one
 * fp32 accumulator a = fma(float(S_b), dw_b * dx_b, a), blocks in order; the output is a + bias.
 *
 * Why a third kernel: the GEMV (ops_fast.c) reads the stored rows but reduces each block of each (weight
 * row, input row) pair across its lanes, so at 2 and 3 input rows it is compute-bound (expert-shaped
 * weights, cold: 10-14 and 8-11 GB/s against 18-20 at one row); the panel GEMM would repack every weight
 * into an L1 panel first, as costly as the products at so few rows. Here a group of 8 output features is
 * transposed in registers per block (the panel pack's 4 x 8 word transpose, never stored): one vpmaddubsw
 * makes 32 products for 8 features and one scaling step covers 8 features. The next group's rows are
 * prefetched while this one runs (8 rows read 16 bytes a block are too thin a stream for the hardware
 * prefetcher). One row stays with the GEMV (as fast, memory-bound); 4 and more rows with the panel GEMM,
 * whose tiles make more products per instruction (about equal at 8 rows, cold). */
#include "core/ops.h"
#include "core/ops_internal.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define VLM_HAVE_X86 1
#include <immintrin.h>
#include "core/ops_q4_words.h"
#define TGT __attribute__((target("avx2,fma,f16c")))
#endif

#define QB 32 /* block of inputs sharing one scale */
#define G 8   /* output features per group */

int vlm_q4_rows_applies(const vlm_weight *W, int64_t M)
{
    return W->quant == VLM_WQ_Q4 && M >= 2 && M <= VLM_Q4_ROWS_MAX && (W->cols + QB - 1) / QB <= VLM_Q4_ROWS_MAX_BLOCKS;
}

size_t vlm_q4_rows_input_bytes(int64_t M, int64_t K)
{
    const int64_t nb = (K + QB - 1) / QB;
    return (size_t)(M * nb) * (QB + sizeof(float) + sizeof(int32_t));
}

void vlm_q4_rows_prepare(const float *x, int64_t M, int64_t K, uint8_t *buf, vlm_q4_rows_input *in)
{
    const int64_t nb = (K + QB - 1) / QB;
    int8_t *xq = (int8_t *)buf;
    float *xd = (float *)(buf + (size_t)(M * nb * QB));
    int32_t *x8 = (int32_t *)(xd + M * nb);
    for (int64_t m = 0; m < M; m++) vlm_int8_quant_row(x + m * K, K, nb, xq + m * nb * QB, xd + m * nb);
    vlm_int8_block_offsets(xq, M * nb, x8);
    *in = (vlm_q4_rows_input){xq, xd, x8, M, nb};
}

/* Output feature n for every input row, one block at a time (the reference; the AVX2 groups give its bits). */
static void feature_scalar(const vlm_q4_rows_input *in, const vlm_weight *W, float *y, const float *bias, int64_t n)
{
    const int64_t nb = in->nb, ng = vlm_q_groups(W), bpg = W->group / QB;
    const uint8_t *row = (const uint8_t *)W->data + (size_t)n * (size_t)W->row_bytes;
    const uint16_t *sc = W->scales + (size_t)n * (size_t)ng;
    for (int64_t m = 0; m < in->M; m++) {
        float a = 0;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *p = row + b * (QB / 2);
            const int8_t *x = in->xq + (m * nb + b) * QB;
            int32_t S = 0;
            for (int i = 0; i < QB / 2; i++) S += (p[i] & 15) * x[i] + (p[i] >> 4) * x[i + QB / 2];
            S -= in->x8[m * nb + b];
            a = __builtin_fmaf((float)S, vlm_f16_to_f32(sc[b / bpg]) * in->xd[m * nb + b], a);
        }
        y[m * W->rows + n] = a + (bias ? bias[n] : 0.0f);
    }
}

#ifdef VLM_HAVE_X86
/* The R (1..3) input rows against the 8 features from n: rows[c] are the features' stored rows, ws[b][8] their
 * fp32 scales. Per block, the 16 stored bytes of each feature are 4 words; the 4 x 8 word transpose gives
 * word i of the 8 features in one vector (features 0-3 in the low lane, 4-7 in the high one), whose low
 * nibbles are inputs 4i..4i+3 and high nibbles inputs 16+4i.. against 4 broadcast input bytes. The 16-bit
 * pair sums of a block fit (16 * 15 * 127 = 30480); vpmaddwd then makes the 8 features' sums. A share of
 * the next group's rows (ahead: none past the last group) is prefetched per block. */
static TGT __attribute__((always_inline)) inline void group_rows_avx2(const vlm_q4_rows_input *in,
                                                                      const uint8_t *const *rows, const float *ws,
                                                                      const int R, const vlm_ahead *ahead, float *y,
                                                                      int64_t N, const float *bias, int64_t n)
{
    const int64_t nb = in->nb;
    const int8_t *x0 = in->xq, *x1 = x0 + nb * QB, *x2 = x1 + nb * QB; /* read only when R > 1, 2 */
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256 f0 = _mm256_setzero_ps(), f1 = f0, f2 = f0;
    for (int64_t b = 0; b < nb; b++) {
        vlm_prefetch_share(ahead, b);
        const int64_t xo = b * QB;
        VLM_Q4_BLOCK_WORDS(rows, b * (QB / 2), w0, w1, w2, w3);
        __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0;
        /* the empty asm keeps each sum a running total in its register (as in the panel tiles) */
#define STEP(c, xr, w, k)                                                                        \
    do {                                                                                         \
        int32_t t_;                                                                              \
        memcpy(&t_, (xr) + xo + (k), 4);                                                         \
        c = _mm256_add_epi16(c, _mm256_maddubs_epi16(w, _mm256_set1_epi32(t_)));                 \
        __asm__("" : "+x"(c));                                                                   \
    } while (0)
#define WORD(i, wv)                                                                              \
    do {                                                                                         \
        const __m256i v_ = (wv);                                                                 \
        const __m256i lo_ = _mm256_and_si256(v_, m4), hi_ = _mm256_and_si256(_mm256_srli_epi16(v_, 4), m4); \
        STEP(c0, x0, lo_, 4 * (i));                                                              \
        STEP(c0, x0, hi_, 16 + 4 * (i));                                                         \
        if (R > 1) {                                                                             \
            STEP(c1, x1, lo_, 4 * (i));                                                          \
            STEP(c1, x1, hi_, 16 + 4 * (i));                                                     \
        }                                                                                        \
        if (R > 2) {                                                                             \
            STEP(c2, x2, lo_, 4 * (i));                                                          \
            STEP(c2, x2, hi_, 16 + 4 * (i));                                                     \
        }                                                                                        \
    } while (0)
        WORD(0, w0);
        WORD(1, w1);
        WORD(2, w2);
        WORD(3, w3);
#undef WORD
#undef STEP
        /* S_b = sums - 8 * sum x, scaled as the panel tiles do: fma(S_b, ws * dx, f) */
        const __m256 wsv = _mm256_loadu_ps(ws + b * G);
#define SCALE(c, r, f)                                                                                      \
    f = _mm256_fmadd_ps(                                                                                    \
        _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_madd_epi16(c, ones), _mm256_set1_epi32(in->x8[(r) * nb + b]))), \
        _mm256_mul_ps(wsv, _mm256_broadcast_ss(in->xd + (r) * nb + b)), f)
        SCALE(c0, 0, f0);
        if (R > 1) SCALE(c1, 1, f1);
        if (R > 2) SCALE(c2, 2, f2);
#undef SCALE
    }
    /* sums + bias (+ 0.0 without one, as the scalar features), a vector per row */
    const __m256 bv = bias ? _mm256_loadu_ps(bias + n) : _mm256_setzero_ps();
    _mm256_storeu_ps(y + n, _mm256_add_ps(f0, bv));
    if (R > 1) _mm256_storeu_ps(y + N + n, _mm256_add_ps(f1, bv));
    if (R > 2) _mm256_storeu_ps(y + 2 * N + n, _mm256_add_ps(f2, bv));
}

/* Features [n, n + 8) for the input rows: their scales, then the products, prefetching the rows of the next
 * group [n_next, n_next + 8) (none when n_next < 0). */
TGT static void group_avx2(const vlm_q4_rows_input *in, const vlm_weight *W, float *y, const float *bias, int64_t n,
                           int64_t n_next, float *ws)
{
    const int64_t nb = in->nb, ng = vlm_q_groups(W), N = W->rows;
    const uint8_t *rows[G];
    const uint16_t *sc[G];
    for (int c = 0; c < G; c++) {
        rows[c] = (const uint8_t *)W->data + (size_t)(n + c) * (size_t)W->row_bytes;
        sc[c] = W->scales + (size_t)(n + c) * (size_t)ng;
    }
    vlm_prefetch_scales(W, n_next, G);
    vlm_q_scales8_avx2(sc, W->group / QB, nb, ws, G);
    const vlm_ahead ahead = vlm_rows_ahead(W, n_next, G, nb); /* empty when n_next < 0 */
    if (in->M >= 3)
        group_rows_avx2(in, rows, ws, 3, &ahead, y, N, bias, n);
    else if (in->M == 2)
        group_rows_avx2(in, rows, ws, 2, &ahead, y, N, bias, n);
    else
        group_rows_avx2(in, rows, ws, 1, &ahead, y, N, bias, n);
}
#endif

void vlm_q4_rows_range(const vlm_q4_rows_input *in, const vlm_weight *W, float *y, const float *bias, int64_t n0,
                       int64_t n1)
{
    int64_t n = n0;
#ifdef VLM_HAVE_X86
    if (vlm_ops_avx2() && in->M <= VLM_Q4_ROWS_MAX && in->nb <= VLM_Q4_ROWS_MAX_BLOCKS) {
        float ws[VLM_Q4_ROWS_MAX_BLOCKS * G];
        for (; n + G <= n1; n += G) group_avx2(in, W, y, bias, n, n + 2 * G <= n1 ? n + G : -1, ws);
    }
#endif
    for (; n < n1; n++) feature_scalar(in, W, y, bias, n);
}
