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
 * Work is split over blocks of 16 output features. A task repacks its block's weights once
 * (per block of 32 and group of 4 inputs: 16 features x 4 nibbles widened to bytes, the layout
 * vpmaddubsw wants against 4 broadcast input bytes) with their scales as fp32, then tiles of
 * 3 input rows x 16 features run over all of K with 12 accumulators in registers. */
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
    const int8_t *xq;  /* [M + MR][nb * QB]; the last MR rows are zero (tile padding) */
    const float *xd;   /* [M + MR][nb] */
    int32_t *x8;       /* [M + MR][nb]: 8 * sum of the block's int8 inputs (offset_task) */
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
/* pack_block with AVX2 (the same bytes and scales): per block, the 32 nibbles of each feature
 * unpacked to bytes in input order are 8 words of 4 inputs, and the packed layout is their 8 x 8
 * word transpose per group of 8 features. The pack runs once per call over all the weights, so
 * for the few input rows of a batched decode step it costs as much as the products. */
TGT static void pack_block_avx2(const vlm_weight *W, int64_t n0, int64_t nb, uint8_t *wp, float *ws)
{
    const int64_t ng = vlm_q_groups(W), bpg = W->group / QB;
    if (n0 + NC > W->rows) { /* a partial last block of features: the plain version */
        pack_block(W, n0, nb, wp, ws);
        return;
    }
    const __m128i m4 = _mm_set1_epi8(15);
    for (int v = 0; v < 2; v++) {
        const uint8_t *rows[8];
        const uint16_t *sc[8];
        for (int c = 0; c < 8; c++) {
            rows[c] = (const uint8_t *)W->data + (size_t)(n0 + 8 * v + c) * (size_t)W->row_bytes;
            sc[c] = W->scales + (size_t)(n0 + 8 * v + c) * (size_t)ng;
        }
        for (int64_t b = 0; b < nb; b++) {
            __m256i r[8];
            for (int c = 0; c < 8; c++) {
                const __m128i p = _mm_loadu_si128((const __m128i *)(rows[c] + b * (QB / 2)));
                r[c] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(p, 4), m4), _mm_and_si128(p, m4));
            }
            /* 8 x 8 transpose of 32-bit words: out[kq] = word kq of features c = 0..7 */
            __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
            __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
            __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
            __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
            __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
            __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
            __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
            __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
            uint8_t *o = wp + b * QB * NC + v * 32;
            _mm256_store_si256((__m256i *)(o + 0 * 64), _mm256_permute2x128_si256(u0, u4, 0x20));
            _mm256_store_si256((__m256i *)(o + 1 * 64), _mm256_permute2x128_si256(u1, u5, 0x20));
            _mm256_store_si256((__m256i *)(o + 2 * 64), _mm256_permute2x128_si256(u2, u6, 0x20));
            _mm256_store_si256((__m256i *)(o + 3 * 64), _mm256_permute2x128_si256(u3, u7, 0x20));
            _mm256_store_si256((__m256i *)(o + 4 * 64), _mm256_permute2x128_si256(u0, u4, 0x31));
            _mm256_store_si256((__m256i *)(o + 5 * 64), _mm256_permute2x128_si256(u1, u5, 0x31));
            _mm256_store_si256((__m256i *)(o + 6 * 64), _mm256_permute2x128_si256(u2, u6, 0x31));
            _mm256_store_si256((__m256i *)(o + 7 * 64), _mm256_permute2x128_si256(u3, u7, 0x31));
            for (int c = 0; c < 8; c++) ws[b * NC + 8 * v + c] = _cvtsh_ss(sc[c][b / bpg]);
        }
    }
}

TGT static void tile_avx2(const q4gemm_job *j, const uint8_t *wp, const float *ws, int64_t m0, int64_t n0)
{
    const int64_t nb = j->nb, N = j->W->rows, xs = nb * QB;
    const int8_t *x0 = j->xq + m0 * xs, *x1 = x0 + xs, *x2 = x1 + xs; /* rows past M are the zero rows */
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
            memcpy(&t, x1 + b * QB + kq * 4, 4);
            xb = _mm256_set1_epi32(t);
            STEP(a10, w0, xb);
            STEP(a11, w1, xb);
            memcpy(&t, x2 + b * QB + kq * 4, 4);
            xb = _mm256_set1_epi32(t);
            STEP(a20, w0, xb);
            STEP(a21, w1, xb);
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
        c = _mm256_set1_epi32(s1[b]);
        d = _mm256_broadcast_ss(d1 + b);
        SCALE(a10, c, d, ws0, f10);
        SCALE(a11, c, d, ws1, f11);
        c = _mm256_set1_epi32(s2[b]);
        d = _mm256_broadcast_ss(d2 + b);
        SCALE(a20, c, d, ws0, f20);
        SCALE(a21, c, d, ws1, f21);
#undef SCALE
    }
    float out[MR][NC];
    _mm256_storeu_ps(out[0], f00), _mm256_storeu_ps(out[0] + 8, f01);
    _mm256_storeu_ps(out[1], f10), _mm256_storeu_ps(out[1] + 8, f11);
    _mm256_storeu_ps(out[2], f20), _mm256_storeu_ps(out[2] + 8, f21);
    for (int r = 0; r < MR && m0 + r < j->M; r++)
        for (int f = 0; f < NC && n0 + f < N; f++)
            j->y[(m0 + r) * N + n0 + f] = out[r][f] + (j->bias ? j->bias[n0 + f] : 0.0f);
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
            pack_block_avx2(j->W, n0, nb, wp, ws);
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
    const int64_t K = W->cols, nb = (K + QB - 1) / QB, Mp = M + MR;
    /* one allocation: xq[Mp][nb * QB], xd[Mp][nb], x8[Mp][nb] */
    const size_t qbytes = (size_t)(Mp * nb * QB);
    uint8_t *buf = malloc(qbytes + (size_t)(Mp * nb) * (sizeof(float) + sizeof(int32_t)));
    if (!buf) return 0;
    int8_t *xq = (int8_t *)buf;
    float *xd = (float *)(buf + qbytes);
    int32_t *x8 = (int32_t *)(xd + Mp * nb);
    memset(xq + M * nb * QB, 0, (size_t)(MR * nb * QB));
    memset(xd + M * nb, 0, (size_t)(MR * nb) * sizeof(float));
    int avx = 0;
#ifdef VLM_HAVE_X86
    avx = vlm_ops_avx2();
#endif
    vlm_int8_quant_rows(x, M, K, nb, xq, xd);
    q4gemm_job j = {y, xq, xd, x8, M, nb, W, bias, avx, 0};
    vlm_pool_for(vlm_pool_default(), Mp, 16, offset_task, &j);
    vlm_pool_for(vlm_pool_default(), (W->rows + NC - 1) / NC, 1, q4gemm_task, &j);
    free(buf);
    return !j.failed;
}
