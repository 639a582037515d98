/* The int8 GEMMs for q4 and q8 weights (M >= 4 input rows: prefill, ViT, batched decode), behind
 * vlm_linear_int8 (ops_int8.c quantizes the inputs: int8 per block of 32, d = max|x| / 127).
 *
 * Both compute, per output and block b of 32 inputs, the exact integer S_b = sum_k w_k x_k and
 * scale it into one fp32 accumulator, a = fma(float(S_b), dw_b * dx_b, a), blocks in order; the
 * output is a + bias. The scalar kernels do the same operations, so they give the AVX2 bits.
 *
 * Work is split over panels of 16 output features, runs of consecutive panels per pool task. A
 * task repacks a panel's weights once into the layout its tiles want, with the scales as fp32,
 * then tiles of up to 3 input rows x 16 features run over all of K with their accumulators in
 * registers, prefetching the next panel's stored weights as they go.
 *
 * q4: the stored nibbles u = q + 8 (0..15) are the unsigned operand of vpmaddubsw and the int8
 * inputs the signed one, so one instruction makes 32 products with no sign fix-up; and as
 * |u * x| <= 15 * 127, the 16-bit pair sums of a whole block of 32 fit in 16 bits
 * (16 * 15 * 127 = 30480), so they are added with vpaddw and widened once per block;
 * S_b = sum u x - 8 * sum x. The panel holds, per block and group of 4 inputs, 16 features x 4
 * nibbles widened to bytes (against 4 broadcast input bytes).
 *
 * q8: int8 x int8 products overflow vpmaddubsw's 16-bit pair sums (2 * 127 * 127 fits, but not
 * with an unsigned operand up to 255, and the sign trick costs two more instructions per
 * product), so weights and inputs are widened to int16 and vpmaddwd makes 16 products into int32
 * per instruction. The panel holds, per block and pair of inputs, 16 features x 2 int16 weights
 * (against one broadcast pair of int16 inputs): half the products per instruction of q4, and
 * about 1.6x the old q8 kernel at 8 rows. */
#include "core/ops.h"
#include "core/ops_internal.h"
#include "core/threadpool.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define VLM_HAVE_X86 1
#include <immintrin.h>
#include "core/ops_q4_words.h"
#define TGT __attribute__((target("avx2,fma,f16c")))
#endif

#define QB 32 /* block of inputs sharing one scale */
#define NC VLM_INT8_PANEL_FEATURES /* output features per panel (two vectors of 8) */
#define MR 3  /* input rows per tile */
#define PF_TILES 4 /* tiles over which the next panel is prefetched */

typedef struct {
    float *y;
    const int8_t *xq;  /* [M][nb * QB] */
    const float *xd;   /* [M][nb] */
    int32_t *x8;       /* q4: [M][nb], 8 * sum of the block's int8 inputs (offset_task) */
    int16_t *x16;      /* q8: [M][nb * QB], the int8 inputs widened (widen_task) */
    int64_t M, nb;
    const vlm_weight *W;
    const float *bias;
    int avx;
    int q8;
    int failed;
} panel_job;

/* Features [n0, n0 + NC) (missing ones: zero weights and scales) into the panel and ws[b][NC]:
 * q4: panel[b][kq][v][c][j] = u of feature n0 + 8 v + c, input 32 b + 4 kq + j (bytes);
 * q8: panel[b][kp][v][c][i] = w of feature n0 + 8 v + c, input 32 b + 2 kp + i (int16). */
static void pack_block(const vlm_weight *W, int64_t n0, int64_t nb, void *panel, float *ws)
{
    const int q8 = W->quant == VLM_WQ_Q8;
    const int64_t ng = vlm_q_groups(W), bpg = W->group / QB;
    memset(panel, 0, (size_t)(nb * QB * NC) * (q8 ? sizeof(int16_t) : 1));
    memset(ws, 0, (size_t)(nb * NC) * sizeof(float));
    for (int f = 0; f < NC && n0 + f < W->rows; f++) {
        const uint8_t *row = (const uint8_t *)W->data + (size_t)(n0 + f) * (size_t)W->row_bytes;
        const uint16_t *sc = W->scales + (size_t)(n0 + f) * (size_t)ng;
        const int v = f / 8, c = f % 8;
        for (int64_t b = 0; b < nb; b++) {
            if (q8) {
                int16_t *o = (int16_t *)panel + b * QB * NC + v * 16 + c * 2;
                for (int k = 0; k < QB; k++) o[(k / 2) * 32 + k % 2] = (int8_t)row[b * QB + k];
            } else {
                const uint8_t *p = row + b * (QB / 2);
                uint8_t u[QB], *o = (uint8_t *)panel + b * QB * NC + v * 32 + c * 4;
                for (int i = 0; i < QB / 2; i++) u[i] = p[i] & 15, u[i + QB / 2] = p[i] >> 4; /* inputs i, i + 16 */
                for (int kq = 0; kq < QB / 4; kq++) memcpy(o + kq * 64, u + 4 * kq, 4);
            }
            ws[b * NC + f] = vlm_f16_to_f32(sc[b / bpg]);
        }
    }
}

/* The tiles of panel n0 over all input rows, one output at a time. */
static void tiles_scalar(const panel_job *j, const void *panel, const float *ws, int64_t n0)
{
    const int64_t nb = j->nb, N = j->W->rows;
    for (int64_t m = 0; m < j->M; m++)
        for (int f = 0; f < NC && n0 + f < N; f++) {
            const int v = f / 8, c = f % 8;
            float a = 0;
            for (int64_t b = 0; b < nb; b++) {
                int32_t S = 0;
                if (j->q8) {
                    const int16_t *w = (const int16_t *)panel + b * QB * NC + v * 16 + c * 2;
                    const int16_t *x = j->x16 + (m * nb + b) * QB;
                    for (int k = 0; k < QB; k++) S += w[(k / 2) * 32 + k % 2] * x[k];
                } else {
                    const uint8_t *w = (const uint8_t *)panel + b * QB * NC + v * 32 + c * 4;
                    const int8_t *x = j->xq + (m * nb + b) * QB;
                    for (int k = 0; k < QB; k++) S += w[(k / 4) * 64 + k % 4] * x[k];
                    S -= j->x8[m * nb + b];
                }
                a = __builtin_fmaf((float)S, ws[b * NC + f] * j->xd[m * nb + b], a);
            }
            j->y[m * N + n0 + f] = a + (j->bias ? j->bias[n0 + f] : 0.0f);
        }
}

#ifdef VLM_HAVE_X86
/* The fp32 scales ws[b * ld + c] of 8 features (scale rows sc[c]) for blocks [0, nb): with one scale per
 * block (group 32), 8 blocks x 8 features at a time as an 8 x 8 transpose of the fp16 scales and
 * one conversion per block, the last 1-7 blocks through a zero-padded copy of each row's rest (no
 * read past a row: the last row's end may be the array's); other groups one by one. The rows are
 * named, not an array, so that GCC keeps them in registers. */
TGT void vlm_q_scales8_avx2(const uint16_t *const *sc, int64_t bpg, int64_t nb, float *ws, int64_t ld)
{
    if (bpg != 1) {
        for (int64_t b = 0; b < nb; b++)
            for (int c = 0; c < 8; c++) ws[b * ld + c] = _cvtsh_ss(sc[c][b / bpg]);
        return;
    }
    for (int64_t b = 0; b < nb; b += 8) {
        const int64_t left = nb - b;
        const uint16_t *src[8];
        uint16_t t[8][8];
        for (int c = 0; c < 8; c++) {
            if (left >= 8) {
                src[c] = sc[c] + b;
                continue;
            }
            memset(t[c], 0, sizeof t[c]);
            memcpy(t[c], sc[c] + b, (size_t)left * sizeof(uint16_t));
            src[c] = t[c];
        }
#define ROW(c) _mm_loadu_si128((const __m128i *)src[c])
        const __m128i r0 = ROW(0), r1 = ROW(1), r2 = ROW(2), r3 = ROW(3), r4 = ROW(4), r5 = ROW(5), r6 = ROW(6), r7 = ROW(7);
#undef ROW
        /* 8 x 8 transpose of 16-bit values: o_i = scale of block b + i for features 0..7 */
        const __m128i t0 = _mm_unpacklo_epi16(r0, r1), t1 = _mm_unpackhi_epi16(r0, r1);
        const __m128i t2 = _mm_unpacklo_epi16(r2, r3), t3 = _mm_unpackhi_epi16(r2, r3);
        const __m128i t4 = _mm_unpacklo_epi16(r4, r5), t5 = _mm_unpackhi_epi16(r4, r5);
        const __m128i t6 = _mm_unpacklo_epi16(r6, r7), t7 = _mm_unpackhi_epi16(r6, r7);
        const __m128i u0 = _mm_unpacklo_epi32(t0, t2), u1 = _mm_unpackhi_epi32(t0, t2);
        const __m128i u2 = _mm_unpacklo_epi32(t1, t3), u3 = _mm_unpackhi_epi32(t1, t3);
        const __m128i u4 = _mm_unpacklo_epi32(t4, t6), u5 = _mm_unpackhi_epi32(t4, t6);
        const __m128i u6 = _mm_unpacklo_epi32(t5, t7), u7 = _mm_unpackhi_epi32(t5, t7);
#define PUT(i, o) if ((i) < left) _mm256_storeu_ps(ws + (b + (i)) * ld, _mm256_cvtph_ps(o))
        PUT(0, _mm_unpacklo_epi64(u0, u4));
        PUT(1, _mm_unpackhi_epi64(u0, u4));
        PUT(2, _mm_unpacklo_epi64(u1, u5));
        PUT(3, _mm_unpackhi_epi64(u1, u5));
        PUT(4, _mm_unpacklo_epi64(u2, u6));
        PUT(5, _mm_unpackhi_epi64(u2, u6));
        PUT(6, _mm_unpacklo_epi64(u3, u7));
        PUT(7, _mm_unpackhi_epi64(u3, u7));
#undef PUT
    }
}

/* pack_block of q4 weights with AVX2 (the same bytes and scales). Per block and group of 8 features, the 16
 * stored bytes of each feature are 4 words; the 4 x 8 word transpose of the stored bytes comes
 * first, then the nibbles of each transposed word w are split: its low nibbles are inputs
 * 4w..4w+3 of the 8 features (kq = w), its high ones inputs 16+4w.. (kq = w + 4). The pack runs
 * once per call over all the weights, so for the few input rows of a batched decode step it costs
 * about as much as the products. */
TGT static void pack_block_avx2(const vlm_weight *W, int64_t n0, int64_t nb, uint8_t *wp, float *ws)
{
    const int64_t ng = vlm_q_groups(W), bpg = W->group / QB;
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
            VLM_Q4_BLOCK_WORDS(rows, b * (QB / 2), w0, w1, w2, w3);
            /* word i of features 0..7: its low nibbles are kq = i, its high ones kq = i + 4 */
            uint8_t *o = wp + b * QB * NC + v * 32;
#define SPLIT(i, wv)                                                                                \
    do {                                                                                            \
        const __m256i x_ = (wv);                                                                    \
        _mm256_store_si256((__m256i *)(o + (i) * 64), _mm256_and_si256(x_, m4));                    \
        _mm256_store_si256((__m256i *)(o + ((i) + 4) * 64), _mm256_and_si256(_mm256_srli_epi16(x_, 4), m4)); \
    } while (0)
            SPLIT(0, w0);
            SPLIT(1, w1);
            SPLIT(2, w2);
            SPLIT(3, w3);
#undef SPLIT
        }
        vlm_q_scales8_avx2(sc, bpg, nb, ws + 8 * v, NC);
    }
}

/* pack_block of q8 weights with AVX2 (the same values). Per block, half block and group of 8 features, the 16
 * stored bytes of each feature are widened to 8 pairs of int16 (one 32-bit word per pair), and an
 * 8 x 8 transpose of those words gives, per pair of inputs, the 8 features' words. */
TGT static void pack_block_q8_avx2(const vlm_weight *W, int64_t n0, int64_t nb, int16_t *wp, float *ws)
{
    const int64_t ng = vlm_q_groups(W), bpg = W->group / QB;
    if (n0 + NC > W->rows) {
        pack_block(W, n0, nb, wp, ws);
        return;
    }
    for (int v = 0; v < 2; v++) {
        const int8_t *rows[8];
        const uint16_t *sc[8];
        for (int c = 0; c < 8; c++) {
            rows[c] = (const int8_t *)W->data + (size_t)(n0 + 8 * v + c) * (size_t)W->row_bytes;
            sc[c] = W->scales + (size_t)(n0 + 8 * v + c) * (size_t)ng;
        }
        for (int64_t b = 0; b < nb; b++) {
            for (int h = 0; h < 2; h++) {
#define WIDE(c) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(rows[c] + b * QB + 16 * h)))
                const __m256i l0 = WIDE(0), l1 = WIDE(1), l2 = WIDE(2), l3 = WIDE(3);
                const __m256i l4 = WIDE(4), l5 = WIDE(5), l6 = WIDE(6), l7 = WIDE(7);
#undef WIDE
                const __m256i t0 = _mm256_unpacklo_epi32(l0, l1), t1 = _mm256_unpackhi_epi32(l0, l1);
                const __m256i t2 = _mm256_unpacklo_epi32(l2, l3), t3 = _mm256_unpackhi_epi32(l2, l3);
                const __m256i t4 = _mm256_unpacklo_epi32(l4, l5), t5 = _mm256_unpackhi_epi32(l4, l5);
                const __m256i t6 = _mm256_unpacklo_epi32(l6, l7), t7 = _mm256_unpackhi_epi32(l6, l7);
                /* uI: pair I (low lane) and pair I + 4 (high lane) of features 0..3 / 4..7 */
                const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
                const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
                const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
                const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
                int16_t *o = wp + b * QB * NC + (8 * h) * 32 + v * 16;
#define PUT(i, lo, hi)                                                                              \
    do {                                                                                            \
        _mm256_store_si256((__m256i *)(o + (i) * 32), _mm256_permute2x128_si256(lo, hi, 0x20));     \
        _mm256_store_si256((__m256i *)(o + ((i) + 4) * 32), _mm256_permute2x128_si256(lo, hi, 0x31)); \
    } while (0)
                PUT(0, u0, u4);
                PUT(1, u1, u5);
                PUT(2, u2, u6);
                PUT(3, u3, u7);
#undef PUT
            }
        }
        vlm_q_scales8_avx2(sc, bpg, nb, ws + 8 * v, NC);
    }
}

/* R (1..MR) input rows from m0 against a packed panel, R and the format constants after inlining
 * (the last tile of M rows takes only the rows left: M = 8 makes 8 rows, not 9). A step is one
 * 4-byte broadcast of each row's inputs against two vectors of the panel: q4, 4 int8 inputs x 8
 * features per vector in vpmaddubsw, 16-bit sums (8 steps a block); q8, 2 int16 inputs x 8 features
 * in vpmaddwd, 32-bit sums (16 steps a block). Per block the sums become S_b in int32 (q4: pairs
 * added by vpmaddwd, minus 8 * sum x) and are scaled into fp32 accumulators. */
static TGT __attribute__((always_inline)) inline void tile_rows_avx2(const panel_job *j, const void *panel,
                                                                     const float *ws, int64_t m0, int64_t n0,
                                                                     const int R, const int q8,
                                                                     const vlm_ahead *next)
{
    const int64_t nb = j->nb, N = j->W->rows, xs = nb * QB;
    const int64_t in_block = q8 ? QB * 2 : QB, in_row = nb * in_block; /* input bytes per block, per row */
    const uint8_t *x0 = q8 ? (const uint8_t *)(j->x16 + m0 * xs) : (const uint8_t *)(j->xq + m0 * xs);
    const uint8_t *x1 = x0 + in_row, *x2 = x1 + in_row; /* read only when R > 1, 2 */
    const float *d0 = j->xd + m0 * nb, *d1 = d0 + nb, *d2 = d1 + nb;
    const int32_t *s0 = q8 ? NULL : j->x8 + m0 * nb, *s1 = q8 ? NULL : s0 + nb, *s2 = q8 ? NULL : s1 + nb;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f00 = _mm256_setzero_ps(), f01 = f00, f10 = f00, f11 = f00, f20 = f00, f21 = f00;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *w = (const uint8_t *)panel + b * QB * NC * (q8 ? 2 : 1);
        if (next) vlm_prefetch_share(next, m0 / MR * nb + b);
        const int64_t xo = b * in_block;
        __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
        /* the empty asm keeps each sum a running total in its register: without it GCC
         * reassociates the unrolled adds into trees of products and spills them */
#define STEP(a, w, x)                                                                                         \
    do {                                                                                                      \
        a = q8 ? _mm256_add_epi32(a, _mm256_madd_epi16(w, x)) : _mm256_add_epi16(a, _mm256_maddubs_epi16(w, x)); \
        __asm__("" : "+x"(a));                                                                                \
    } while (0)
#define STEPS(k)                                                                     \
    do {                                                                             \
        const __m256i w0 = _mm256_load_si256((const __m256i *)(w + (k) * 64));       \
        const __m256i w1 = _mm256_load_si256((const __m256i *)(w + (k) * 64 + 32));  \
        int32_t t;                                                                   \
        memcpy(&t, x0 + xo + (k) * 4, 4);                                            \
        __m256i xb = _mm256_set1_epi32(t);                                           \
        STEP(a00, w0, xb);                                                           \
        STEP(a01, w1, xb);                                                           \
        if (R > 1) {                                                                 \
            memcpy(&t, x1 + xo + (k) * 4, 4);                                        \
            xb = _mm256_set1_epi32(t);                                               \
            STEP(a10, w0, xb);                                                       \
            STEP(a11, w1, xb);                                                       \
        }                                                                            \
        if (R > 2) {                                                                 \
            memcpy(&t, x2 + xo + (k) * 4, 4);                                        \
            xb = _mm256_set1_epi32(t);                                               \
            STEP(a20, w0, xb);                                                       \
            STEP(a21, w1, xb);                                                       \
        }                                                                            \
    } while (0)
        if (q8) {
#pragma GCC unroll 16
            for (int k = 0; k < QB / 2; k++) STEPS(k);
        } else {
#pragma GCC unroll 8
            for (int k = 0; k < QB / 4; k++) STEPS(k);
        }
#undef STEPS
#undef STEP
        const __m256 ws0 = _mm256_load_ps(ws + b * NC), ws1 = _mm256_load_ps(ws + b * NC + 8);
        /* S_b of a row's 8 features, from its sums and (q4) its x8 */
#define SB(acc, x8) (q8 ? (acc) : _mm256_sub_epi32(_mm256_madd_epi16(acc, ones), x8))
#define SCALE(acc, x8, dx, wsv, f) f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(SB(acc, x8)), _mm256_mul_ps(wsv, dx), f)
        __m256i c = q8 ? ones : _mm256_set1_epi32(s0[b]);
        __m256 d = _mm256_broadcast_ss(d0 + b);
        SCALE(a00, c, d, ws0, f00);
        SCALE(a01, c, d, ws1, f01);
        if (R > 1) {
            c = q8 ? ones : _mm256_set1_epi32(s1[b]);
            d = _mm256_broadcast_ss(d1 + b);
            SCALE(a10, c, d, ws0, f10);
            SCALE(a11, c, d, ws1, f11);
        }
        if (R > 2) {
            c = q8 ? ones : _mm256_set1_epi32(s2[b]);
            d = _mm256_broadcast_ss(d2 + b);
            SCALE(a20, c, d, ws0, f20);
            SCALE(a21, c, d, ws1, f21);
        }
#undef SCALE
#undef SB
    }
    if (n0 + NC <= N) { /* a whole panel: sums + bias (+ 0.0 without one, as below) stored as vectors */
        const __m256 b0 = j->bias ? _mm256_loadu_ps(j->bias + n0) : _mm256_setzero_ps();
        const __m256 b1 = j->bias ? _mm256_loadu_ps(j->bias + n0 + 8) : _mm256_setzero_ps();
        float *y = j->y + m0 * N + n0;
        _mm256_storeu_ps(y, _mm256_add_ps(f00, b0)), _mm256_storeu_ps(y + 8, _mm256_add_ps(f01, b1));
        if (R > 1) _mm256_storeu_ps(y + N, _mm256_add_ps(f10, b0)), _mm256_storeu_ps(y + N + 8, _mm256_add_ps(f11, b1));
        if (R > 2)
            _mm256_storeu_ps(y + 2 * N, _mm256_add_ps(f20, b0)), _mm256_storeu_ps(y + 2 * N + 8, _mm256_add_ps(f21, b1));
        return;
    }
    float out[MR][NC];
    _mm256_storeu_ps(out[0], f00), _mm256_storeu_ps(out[0] + 8, f01);
    _mm256_storeu_ps(out[1], f10), _mm256_storeu_ps(out[1] + 8, f11);
    _mm256_storeu_ps(out[2], f20), _mm256_storeu_ps(out[2] + 8, f21);
    for (int r = 0; r < R; r++)
        for (int f = 0; f < NC && n0 + f < N; f++)
            j->y[(m0 + r) * N + n0 + f] = out[r][f] + (j->bias ? j->bias[n0 + f] : 0.0f);
}

/* The tiles of panel n0 over all input rows, prefetching the scales of features n_next.. (the next
 * panel; none when n_next < 0) at once and their stored weights evenly over the tiles' steps.
 * Issued during the pack instead, the next panel's lines went out in one burst while the pack
 * itself waited on its loads: a cold 1280 x 1280 q4 product of 8 rows took ~1.4x as long
 * (129,280 x 1,280: 24.8 against 15.8 ms). */
TGT static void tiles_avx2(const panel_job *j, const void *panel, const float *ws, int64_t n0, int64_t n_next)
{
    /* over the steps of the first PF_TILES tiles: with many rows (prefill, ViT) the rest need none */
    const int64_t tiles = (j->M + MR - 1) / MR, pf_tiles = tiles < PF_TILES ? tiles : PF_TILES;
    const vlm_ahead ahead = vlm_rows_ahead(j->W, n_next, NC, pf_tiles * j->nb);
    vlm_prefetch_scales(j->W, n_next, NC);
    for (int64_t m0 = 0; m0 < j->M; m0 += MR) {
        const int64_t left = j->M - m0;
        const vlm_ahead *next = m0 / MR < pf_tiles ? &ahead : NULL;
        if (j->q8) {
            if (left >= 3)
                tile_rows_avx2(j, panel, ws, m0, n0, 3, 1, next);
            else if (left == 2)
                tile_rows_avx2(j, panel, ws, m0, n0, 2, 1, next);
            else
                tile_rows_avx2(j, panel, ws, m0, n0, 1, 1, next);
        } else if (left >= 3)
            tile_rows_avx2(j, panel, ws, m0, n0, 3, 0, next);
        else if (left == 2)
            tile_rows_avx2(j, panel, ws, m0, n0, 2, 0, next);
        else
            tile_rows_avx2(j, panel, ws, m0, n0, 1, 0, next);
    }
}
#endif

/* x8 of input rows [b, e): 8 * (sum of each block's int8 inputs), the +8 nibble offset to remove */
static void offset_task(void *ctx, int64_t b, int64_t e)
{
    const panel_job *j = ctx;
    vlm_int8_block_offsets(j->xq + b * j->nb * QB, (e - b) * j->nb, j->x8 + b * j->nb);
}

/* x16 of input rows [b, e): the int8 inputs as int16 (q8) */
static void widen_task(void *ctx, int64_t b, int64_t e)
{
    const panel_job *j = ctx;
    for (int64_t i = b * j->nb * QB; i < e * j->nb * QB; i++) j->x16[i] = j->xq[i];
}

/* Panels [b, e) of 16 output features: pack each, then its tiles over all input rows. */
static void panel_task(void *ctx, int64_t b, int64_t e)
{
    panel_job *j = ctx;
    const int64_t nb = j->nb;
    const size_t wbytes = (size_t)(nb * QB * NC) * (j->q8 ? sizeof(int16_t) : 1);
    /* packed weights (32-byte aligned for the vector loads) then the fp32 scales */
    uint8_t *buf = aligned_alloc(32, wbytes + (size_t)(nb * NC) * sizeof(float));
    if (!buf) {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED); /* the caller redoes the product */
        return;
    }
    float *ws = (float *)(buf + wbytes);
    for (int64_t t = b; t < e; t++) {
        const int64_t n0 = t * NC, next = t + 1 < e ? n0 + NC : -1;
#ifdef VLM_HAVE_X86
        if (j->avx) {
            if (j->q8)
                pack_block_q8_avx2(j->W, n0, nb, (int16_t *)buf, ws);
            else
                pack_block_avx2(j->W, n0, nb, buf, ws);
            tiles_avx2(j, buf, ws, n0, next);
            continue;
        }
#endif
        pack_block(j->W, n0, nb, buf, ws);
        tiles_scalar(j, buf, ws, n0);
    }
    free(buf);
}

/* One allocation: the job, then xq[M][nb * QB], xd[M][nb], then x8[M][nb] (q4) or x16[M][nb * QB] (q8). */
struct vlm_int8_panels {
    panel_job j;
};

vlm_int8_panels *vlm_int8_panels_prepare(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias)
{
    const int64_t K = W->cols, nb = (K + QB - 1) / QB;
    const int q8 = W->quant == VLM_WQ_Q8;
    const size_t qbytes = (size_t)(M * nb * QB), dbytes = (size_t)(M * nb) * sizeof(float);
    const size_t extra = q8 ? (size_t)(M * nb * QB) * sizeof(int16_t) : (size_t)(M * nb) * sizeof(int32_t);
    vlm_int8_panels *p = malloc(sizeof *p + qbytes + dbytes + extra);
    if (!p) return NULL;
    uint8_t *buf = (uint8_t *)(p + 1);
    int8_t *xq = (int8_t *)buf;
    float *xd = (float *)(buf + qbytes);
    void *rest = buf + qbytes + dbytes;
    int avx = 0;
#ifdef VLM_HAVE_X86
    avx = vlm_ops_avx2();
#endif
    vlm_int8_quant_rows(x, M, K, nb, xq, xd);
    p->j = (panel_job){y, xq, xd, q8 ? NULL : rest, q8 ? rest : NULL, M, nb, W, bias, avx, q8, 0};
    vlm_pool_for(vlm_pool_default(), M, 16, q8 ? widen_task : offset_task, &p->j);
    return p;
}

int64_t vlm_int8_panels_count(const vlm_int8_panels *p) { return (p->j.W->rows + NC - 1) / NC; }

void vlm_int8_panels_run(vlm_int8_panels *p, int64_t b, int64_t e) { panel_task(&p->j, b, e); }

int vlm_int8_panels_finish(vlm_int8_panels *p)
{
    const int ok = !p->j.failed;
    free(p);
    return ok;
}

static void panels_task(void *ctx, int64_t b, int64_t e) { vlm_int8_panels_run(ctx, b, e); }

int vlm_linear_int8_panel(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias)
{
    vlm_int8_panels *p = vlm_int8_panels_prepare(y, x, M, W, bias);
    if (!p) return 0;
    /* runs of consecutive panels per chunk (about 8 chunks per thread): each task reads one
     * stretch of weights front to back, prefetching the next panel as it goes */
    vlm_pool *pool = vlm_pool_default();
    const int64_t panels = vlm_int8_panels_count(p), threads = pool ? vlm_pool_threads(pool) : 1;
    const int64_t grain = panels / (8 * threads) > 1 ? panels / (8 * threads) : 1;
    vlm_pool_for(pool, panels, grain, panels_task, p);
    return vlm_int8_panels_finish(p);
}
