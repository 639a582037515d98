/* The int8 GEMM for q4 weights (M >= 4 input rows: prefill, ViT), the q4 part of
 * vlm_linear_int8 (ops_int8.c quantizes the inputs: int8 per block of 32, d = max|x| / 127).
 *
 * The stored nibbles u = q + 8 (0..15) are the unsigned operand of vpmaddubsw and the int8
 * inputs the signed one, so one instruction makes 32 products with no sign fix-up; and as
 * |u * x| <= 15 * 127, the 16-bit pair sums of a whole block of 32 fit in 16 bits
 * (16 * 15 * 127 = 30480), so they are added with vpaddw and widened once per block.
 * Per output and block b the exact integer  S_b = sum u x - 8 * sum x  (= sum q x) is scaled
 * into one fp32 accumulator,  a = fma(float(S_b), dw_b * dx_b, a), blocks in order; the output
 * is a + bias. The scalar kernel does the same operations, so both give the same bits.
 *
 * Work is split over panels of 16 output features, runs of consecutive panels per pool task. A
 * task repacks a panel's weights once (per block of 32 and group of 4 inputs: 16 features x 4
 * nibbles widened to bytes, the layout vpmaddubsw wants against 4 broadcast input bytes) with
 * their scales as fp32, prefetching the next panel, then tiles of up to 3 input rows x 16 features
 * run over all of K with 12 accumulators in registers. */
#include "core/ops.h"
#include "core/ops_internal.h"
#include "core/threadpool.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define VLM_HAVE_X86 1
#include <immintrin.h>
#define TGT __attribute__((target("avx2,fma,f16c")))
#endif

#define QB 32 /* block of inputs sharing one scale */
#define NC 16 /* output features per task (two vectors of 8) */
#define MR 3  /* input rows per tile */

typedef struct {
    float *y;
    const int8_t *xq;  /* [M][nb * QB] */
    const float *xd;   /* [M][nb] */
    int32_t *x8;       /* [M][nb]: 8 * sum of the block's int8 inputs (offset_task) */
    int64_t M, nb;
    const vlm_weight *W;
    const float *bias;
    int avx;
    int failed;
} q4gemm_job;

/* Features [n0, n0 + NC) (missing ones: zero weights and scales) into
 * wp[b][kq][v][c][j] = u of feature n0 + 8 v + c, input 32 b + 4 kq + j, and ws[b][NC]. */
static void pack_block(const vlm_weight *W, int64_t n0, int64_t nb, uint8_t *wp, float *ws)
{
    const int64_t ng = vlm_q_groups(W), bpg = W->group / QB;
    memset(wp, 0, (size_t)(nb * QB * NC));
    memset(ws, 0, (size_t)(nb * NC) * sizeof(float));
    for (int f = 0; f < NC && n0 + f < W->rows; f++) {
        const uint8_t *row = (const uint8_t *)W->data + (size_t)(n0 + f) * (size_t)W->row_bytes;
        const uint16_t *sc = W->scales + (size_t)(n0 + f) * (size_t)ng;
        const int v = f / 8, c = f % 8;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *p = row + b * (QB / 2);
            uint8_t u[QB], *o = wp + b * QB * NC + v * 32 + c * 4;
            for (int i = 0; i < QB / 2; i++) u[i] = p[i] & 15, u[i + QB / 2] = p[i] >> 4; /* inputs i, i + 16 */
            for (int kq = 0; kq < QB / 4; kq++) memcpy(o + kq * 64, u + 4 * kq, 4);
            ws[b * NC + f] = vlm_f16_to_f32(sc[b / bpg]);
        }
    }
}

static void tile_scalar(const q4gemm_job *j, const uint8_t *wp, const float *ws, int64_t m0, int64_t n0)
{
    const int64_t nb = j->nb, N = j->W->rows;
    for (int r = 0; r < MR && m0 + r < j->M; r++) {
        const int8_t *x = j->xq + (m0 + r) * nb * QB;
        for (int f = 0; f < NC && n0 + f < N; f++) {
            const int v = f / 8, c = f % 8;
            float a = 0;
            for (int64_t b = 0; b < nb; b++) {
                int32_t S = 0;
                for (int k = 0; k < QB; k++) S += wp[b * QB * NC + (k / 4) * 64 + v * 32 + c * 4 + k % 4] * x[b * QB + k];
                S -= j->x8[(m0 + r) * nb + b];
                a = __builtin_fmaf((float)S, ws[b * NC + f] * j->xd[(m0 + r) * nb + b], a);
            }
            j->y[(m0 + r) * N + n0 + f] = a + (j->bias ? j->bias[n0 + f] : 0.0f);
        }
    }
}

#ifdef VLM_HAVE_X86
/* The fp32 scales ws[b][NC] of features [n0, n0 + 8 v + 8) for blocks [0, nb): with one scale per
 * block (group 32), 8 blocks x 8 features at a time as an 8 x 8 transpose of the fp16 scales and
 * one conversion per block; the rest one by one. */
TGT static void pack_scales_avx2(const uint16_t *const *sc, int64_t bpg, int64_t nb, int v, float *ws)
{
    int64_t b = 0;
    if (bpg == 1)
        for (; b + 8 <= nb; b += 8) {
            __m128i r[8];
            for (int c = 0; c < 8; c++) r[c] = _mm_loadu_si128((const __m128i *)(sc[c] + b));
            /* 8 x 8 transpose of 16-bit values: out[i] = scale of block b + i for features 0..7 */
            const __m128i t0 = _mm_unpacklo_epi16(r[0], r[1]), t1 = _mm_unpackhi_epi16(r[0], r[1]);
            const __m128i t2 = _mm_unpacklo_epi16(r[2], r[3]), t3 = _mm_unpackhi_epi16(r[2], r[3]);
            const __m128i t4 = _mm_unpacklo_epi16(r[4], r[5]), t5 = _mm_unpackhi_epi16(r[4], r[5]);
            const __m128i t6 = _mm_unpacklo_epi16(r[6], r[7]), t7 = _mm_unpackhi_epi16(r[6], r[7]);
            const __m128i u0 = _mm_unpacklo_epi32(t0, t2), u1 = _mm_unpackhi_epi32(t0, t2);
            const __m128i u2 = _mm_unpacklo_epi32(t1, t3), u3 = _mm_unpackhi_epi32(t1, t3);
            const __m128i u4 = _mm_unpacklo_epi32(t4, t6), u5 = _mm_unpackhi_epi32(t4, t6);
            const __m128i u6 = _mm_unpacklo_epi32(t5, t7), u7 = _mm_unpackhi_epi32(t5, t7);
            const __m128i o[8] = {_mm_unpacklo_epi64(u0, u4), _mm_unpackhi_epi64(u0, u4), _mm_unpacklo_epi64(u1, u5),
                                  _mm_unpackhi_epi64(u1, u5), _mm_unpacklo_epi64(u2, u6), _mm_unpackhi_epi64(u2, u6),
                                  _mm_unpacklo_epi64(u3, u7), _mm_unpackhi_epi64(u3, u7)};
            for (int i = 0; i < 8; i++) _mm256_store_ps(ws + (b + i) * NC + 8 * v, _mm256_cvtph_ps(o[i]));
        }
    for (; b < nb; b++)
        for (int c = 0; c < 8; c++) ws[b * NC + 8 * v + c] = _cvtsh_ss(sc[c][b / bpg]);
}

/* pack_block with AVX2 (the same bytes and scales). Per block and group of 8 features, the 16
 * stored bytes of each feature are 4 words; the 4 x 8 word transpose of the stored bytes comes
 * first, then the nibbles of each transposed word w are split: its low nibbles are inputs
 * 4w..4w+3 of the 8 features (kq = w), its high ones inputs 16+4w.. (kq = w + 4). The pack runs
 * once per call over all the weights, so for the few input rows of a batched decode step it costs
 * about as much as the products. */
TGT static void pack_block_avx2(const vlm_weight *W, int64_t n0, int64_t nb, uint8_t *wp, float *ws,
                                int64_t n_next)
{
    const int64_t ng = vlm_q_groups(W), bpg = W->group / QB;
    /* The next panel this task packs (n_next, or -1), prefetched into L2 two lines per step so
     * that its rows arrive while this panel is packed and its tiles computed: a panel's 16 rows
     * are one contiguous stretch, but each step reads only 16 bytes of 8 rows, too little of a
     * stream for the hardware prefetcher (without this the pack waited on memory, ~9 GB/s). */
    const uint8_t *ahead = n_next >= 0 ? (const uint8_t *)W->data + (size_t)n_next * (size_t)W->row_bytes : NULL;
    const int64_t ahead_rows = n_next >= 0 ? (W->rows - n_next < NC ? W->rows - n_next : NC) : 0;
    const uint8_t *ahead_end = ahead ? ahead + (size_t)ahead_rows * (size_t)W->row_bytes : NULL;
    if (n0 + NC > W->rows) { /* a partial last block of features: the plain version */
        pack_block(W, n0, nb, wp, ws);
        return;
    }
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int v = 0; v < 2; v++) {
        const uint8_t *rows[8];
        const uint16_t *sc[8];
        for (int c = 0; c < 8; c++) {
            rows[c] = (const uint8_t *)W->data + (size_t)(n0 + 8 * v + c) * (size_t)W->row_bytes;
            sc[c] = W->scales + (size_t)(n0 + 8 * v + c) * (size_t)ng;
        }
        for (int64_t b = 0; b < nb; b++) {
            if (ahead && ahead < ahead_end) {
                _mm_prefetch((const char *)ahead, _MM_HINT_T1);
                _mm_prefetch((const char *)ahead + 64, _MM_HINT_T1);
                ahead += 128;
            }
            const int64_t o16 = b * (QB / 2);
            /* aC = stored bytes of features C (low lane) and C + 4 (high lane); written out, as
             * arrays of vectors were kept in memory by GCC */
#define LOAD2(c) _mm256_loadu2_m128i((const __m128i *)(rows[(c) + 4] + o16), (const __m128i *)(rows[c] + o16))
            const __m256i a0 = LOAD2(0), a1 = LOAD2(1), a2 = LOAD2(2), a3 = LOAD2(3);
#undef LOAD2
            const __m256i t0 = _mm256_unpacklo_epi32(a0, a1), t1 = _mm256_unpackhi_epi32(a0, a1);
            const __m256i t2 = _mm256_unpacklo_epi32(a2, a3), t3 = _mm256_unpackhi_epi32(a2, a3);
            /* word i of features 0..7, in feature order: its low nibbles are kq = i, its high ones kq = i + 4 */
            uint8_t *o = wp + b * QB * NC + v * 32;
#define SPLIT(i, wv)                                                                                \
    do {                                                                                            \
        const __m256i x_ = (wv);                                                                    \
        _mm256_store_si256((__m256i *)(o + (i) * 64), _mm256_and_si256(x_, m4));                    \
        _mm256_store_si256((__m256i *)(o + ((i) + 4) * 64), _mm256_and_si256(_mm256_srli_epi16(x_, 4), m4)); \
    } while (0)
            SPLIT(0, _mm256_unpacklo_epi64(t0, t2));
            SPLIT(1, _mm256_unpackhi_epi64(t0, t2));
            SPLIT(2, _mm256_unpacklo_epi64(t1, t3));
            SPLIT(3, _mm256_unpackhi_epi64(t1, t3));
#undef SPLIT
        }
        pack_scales_avx2(sc, bpg, nb, v, ws);
    }
}

/* R (1..MR, a constant after inlining) input rows from m0: the last tile of M rows takes only the
 * rows left, instead of products with zero rows (M = 8: 8 rows computed, not 9). */
static TGT __attribute__((always_inline)) inline void tile_rows_avx2(const q4gemm_job *j, const uint8_t *wp,
                                                                     const float *ws, int64_t m0, int64_t n0,
                                                                     const int R)
{
    const int64_t nb = j->nb, N = j->W->rows, xs = nb * QB;
    const int8_t *x0 = j->xq + m0 * xs, *x1 = x0 + xs, *x2 = x1 + xs; /* x1, x2 read only when R > 1, 2 */
    const float *d0 = j->xd + m0 * nb, *d1 = d0 + nb, *d2 = d1 + nb;
    const int32_t *s0 = j->x8 + m0 * nb, *s1 = s0 + nb, *s2 = s1 + nb;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f00 = _mm256_setzero_ps(), f01 = f00, f10 = f00, f11 = f00, f20 = f00, f21 = f00;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *w = wp + b * QB * NC;
        __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
        /* the empty asm keeps each sum a running total in its register: without it GCC
         * reassociates the unrolled adds into trees of products and spills them */
#define STEP(a, w, x)                                      \
    do {                                                   \
        a = _mm256_add_epi16(a, _mm256_maddubs_epi16(w, x)); \
        __asm__("" : "+x"(a));                             \
    } while (0)
#pragma GCC unroll 8
        for (int kq = 0; kq < QB / 4; kq++) {
            const __m256i w0 = _mm256_load_si256((const __m256i *)(w + kq * 64));
            const __m256i w1 = _mm256_load_si256((const __m256i *)(w + kq * 64 + 32));
            int32_t t;
            memcpy(&t, x0 + b * QB + kq * 4, 4);
            __m256i xb = _mm256_set1_epi32(t);
            STEP(a00, w0, xb);
            STEP(a01, w1, xb);
            if (R > 1) {
                memcpy(&t, x1 + b * QB + kq * 4, 4);
                xb = _mm256_set1_epi32(t);
                STEP(a10, w0, xb);
                STEP(a11, w1, xb);
            }
            if (R > 2) {
                memcpy(&t, x2 + b * QB + kq * 4, 4);
                xb = _mm256_set1_epi32(t);
                STEP(a20, w0, xb);
                STEP(a21, w1, xb);
            }
        }
#undef STEP
        const __m256 ws0 = _mm256_load_ps(ws + b * NC), ws1 = _mm256_load_ps(ws + b * NC + 8);
#define SCALE(acc, x8, dx, wsv, f)                                                                                   \
    f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_madd_epi16(acc, ones), x8)),                    \
                        _mm256_mul_ps(wsv, dx), f)
        __m256i c = _mm256_set1_epi32(s0[b]);
        __m256 d = _mm256_broadcast_ss(d0 + b);
        SCALE(a00, c, d, ws0, f00);
        SCALE(a01, c, d, ws1, f01);
        if (R > 1) {
            c = _mm256_set1_epi32(s1[b]);
            d = _mm256_broadcast_ss(d1 + b);
            SCALE(a10, c, d, ws0, f10);
            SCALE(a11, c, d, ws1, f11);
        }
        if (R > 2) {
            c = _mm256_set1_epi32(s2[b]);
            d = _mm256_broadcast_ss(d2 + b);
            SCALE(a20, c, d, ws0, f20);
            SCALE(a21, c, d, ws1, f21);
        }
#undef SCALE
    }
    float out[MR][NC];
    _mm256_storeu_ps(out[0], f00), _mm256_storeu_ps(out[0] + 8, f01);
    _mm256_storeu_ps(out[1], f10), _mm256_storeu_ps(out[1] + 8, f11);
    _mm256_storeu_ps(out[2], f20), _mm256_storeu_ps(out[2] + 8, f21);
    for (int r = 0; r < R; r++)
        for (int f = 0; f < NC && n0 + f < N; f++)
            j->y[(m0 + r) * N + n0 + f] = out[r][f] + (j->bias ? j->bias[n0 + f] : 0.0f);
}

TGT static void tile_avx2(const q4gemm_job *j, const uint8_t *wp, const float *ws, int64_t m0, int64_t n0)
{
    const int64_t left = j->M - m0;
    if (left >= 3)
        tile_rows_avx2(j, wp, ws, m0, n0, 3);
    else if (left == 2)
        tile_rows_avx2(j, wp, ws, m0, n0, 2);
    else
        tile_rows_avx2(j, wp, ws, m0, n0, 1);
}
#endif

/* x8 of input rows [b, e): 8 * (sum of each block's int8 inputs), the +8 nibble offset to remove */
static void offset_task(void *ctx, int64_t b, int64_t e)
{
    const q4gemm_job *j = ctx;
    for (int64_t i = b * j->nb; i < e * j->nb; i++) {
        int32_t s = 0;
        for (int k = 0; k < QB; k++) s += j->xq[i * QB + k];
        j->x8[i] = 8 * s;
    }
}

static void q4gemm_task(void *ctx, int64_t b, int64_t e)
{
    q4gemm_job *j = ctx;
    const int64_t nb = j->nb;
    /* packed weights (32-byte aligned for the vector loads) then the fp32 scales */
    uint8_t *buf = aligned_alloc(32, (size_t)(nb * QB * NC) + (size_t)(nb * NC) * sizeof(float));
    if (!buf) {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED); /* the caller redoes the product */
        return;
    }
    uint8_t *wp = buf;
    float *ws = (float *)(buf + nb * QB * NC);
    for (int64_t t = b; t < e; t++) {
        const int64_t n0 = t * NC;
#ifdef VLM_HAVE_X86
        if (j->avx)
            pack_block_avx2(j->W, n0, nb, wp, ws, t + 1 < e ? n0 + NC : -1);
        else
#endif
            pack_block(j->W, n0, nb, wp, ws);
        for (int64_t m0 = 0; m0 < j->M; m0 += MR) {
#ifdef VLM_HAVE_X86
            if (j->avx) {
                tile_avx2(j, wp, ws, m0, n0);
                continue;
            }
#endif
            tile_scalar(j, wp, ws, m0, n0);
        }
    }
    free(buf);
}

int vlm_linear_int8_q4(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias)
{
    const int64_t K = W->cols, nb = (K + QB - 1) / QB;
    /* one allocation: xq[M][nb * QB], xd[M][nb], x8[M][nb] */
    const size_t qbytes = (size_t)(M * nb * QB);
    uint8_t *buf = malloc(qbytes + (size_t)(M * nb) * (sizeof(float) + sizeof(int32_t)));
    if (!buf) return 0;
    int8_t *xq = (int8_t *)buf;
    float *xd = (float *)(buf + qbytes);
    int32_t *x8 = (int32_t *)(xd + M * nb);
    int avx = 0;
#ifdef VLM_HAVE_X86
    avx = vlm_ops_avx2();
#endif
    vlm_int8_quant_rows(x, M, K, nb, xq, xd);
    q4gemm_job j = {y, xq, xd, x8, M, nb, W, bias, avx, 0};
    vlm_pool *pool = vlm_pool_default();
    vlm_pool_for(pool, M, 16, offset_task, &j);
    /* runs of consecutive panels per chunk (about 8 chunks per thread): each task reads one
     * stretch of weights front to back, prefetching the next panel as it goes */
    const int64_t panels = (W->rows + NC - 1) / NC, threads = pool ? vlm_pool_threads(pool) : 1;
    const int64_t grain = panels / (8 * threads) > 1 ? panels / (8 * threads) : 1;
    vlm_pool_for(pool, panels, grain, q4gemm_task, &j);
    free(buf);
    return !j.failed;
}
