/* Fast linear kernels for weights converted at load time (vlm_weight.quant != NONE).
 *
 * Decode (M < 4 input rows) on q8/q4: each input row is quantized to int8 in blocks
 * of 32 with an fp32 scale per block (max|x| / 127), and every weight row is a sum of
 * int8 x int8 (q8) or u4 x int8 (q4) block dot products, each scaled by the weight
 * group's and the input block's scale. AVX2: vpmaddubsw + vpmaddwd (the sign trick for
 * q8; for q4 the +8 offset is removed by subtracting 8 * sum(x) per pair). q4 with 2 or 3
 * rows takes vlm_q4_rows_range (ops_int8_rows.c) inside the same jobs.
 * BF16 decode uses the reference BF16 GEMV of ops_cpu.c.
 *
 * Prefill / ViT (M >= 4): a cache-blocked GEMM. Work is split over blocks of NB output
 * features; for each K-slice of KC the block's weights are dequantized (fused: q * d, or
 * BF16 widened) into an fp32 panel that stays in L1/L2, and 4x3 register tiles of
 * 8-wide fp32 FMAs sweep all input rows over it. The result equals an fp32 product
 * with the dequantized weights up to summation order.
 *
 * Runtime dispatch: AVX2+FMA+F16C when the CPU has them, else portable scalar code
 * with the same blocking and the same integer arithmetic. */
#include "core/ops.h"
#include "core/ops_internal.h"
#include "core/threadpool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define VLM_HAVE_X86 1
#include <cpuid.h>
#include <immintrin.h>
#define TGT __attribute__((target("avx2,fma,f16c")))
#define TGT_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline
#endif

#define QB 32  /* quantization block (weights and activations) */
#define KC 256 /* GEMM K slice; a multiple of QB */
#define NBMAX 48

static volatile int g_simd = -1; /* -1: not yet detected, 0: scalar, 1: avx2 */

static int detect_simd(void)
{
#ifdef VLM_HAVE_X86
    __builtin_cpu_init();
    unsigned a, b, c, d;
    const int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)); /* CPUID.1:ECX.F16C */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
    return 0;
#endif
}

static int use_avx2(void)
{
    if (g_simd < 0) g_simd = detect_simd();
    return g_simd == 1;
}

int vlm_ops_avx2(void) { return use_avx2(); }
void vlm_ops_set_simd(int enable) { g_simd = enable ? detect_simd() : 0; }
const char *vlm_ops_simd(void) { return use_avx2() ? "avx2" : "scalar"; }

/* q4 pairs of blocks (see q4_pairs_rows): the input row rearranged once per product, for
 * every chunk of rows the pool hands out (rows are cut short: K <= 64 * Q4_MAX_PAIRS). */
#define Q4_MAX_PAIRS 512
typedef struct {
    const int8_t *xp;  /* per pair, 64 bytes: x_b[0..15] x_b1[0..15] x_b[16..31] x_b1[16..31] */
    const int16_t *x8; /* per pair, 16: 8 * (sums of adjacent x pairs), the +8 offset to remove */
    const float *xd;   /* per block: the input scale (the quantized row's own, not copied) */
} q4_xpack;

/* Bytes of one input row so rearranged (q4_prep): 64 + 32 per pair of blocks. */
static size_t q4_pack_bytes(int64_t nb) { return (size_t)(nb / 2) * 96; }

typedef struct {
    float *y;
    const int8_t *xq;
    const float *xd;
    int64_t M, nb;
    const vlm_weight *W;
    const float *bias;
    const uint8_t *pk; /* NULL, or M packed rows of q4_pack_bytes(nb) bytes for the AVX2 q4 kernel */
    int direct;        /* vlm_q4_rows_applies (q4, 2 or 3 rows): vlm_q4_rows_range on ri; xq, xd unused */
    vlm_q4_rows_input ri;
} qgemv_job;

static float dot_q_scalar(const vlm_weight *W, int64_t r, const int8_t *xq, const float *xd, int64_t nb)
{
    const int64_t ng = vlm_q_groups(W), bpg = W->group / QB;
    const uint8_t *w = (const uint8_t *)W->data + (size_t)r * (size_t)W->row_bytes;
    const uint16_t *sc = W->scales + (size_t)r * (size_t)ng;
    float s = 0;
    for (int64_t b = 0; b < nb; b++) {
        int32_t acc = 0;
        if (W->quant == VLM_WQ_Q8) {
            for (int i = 0; i < QB; i++) acc += (int8_t)w[b * QB + i] * xq[b * QB + i];
        } else {
            const uint8_t *p = w + b * (QB / 2);
            for (int i = 0; i < QB / 2; i++)
                acc += ((p[i] & 15) - 8) * xq[b * QB + i] + ((p[i] >> 4) - 8) * xq[b * QB + i + QB / 2];
        }
        s += (float)acc * (vlm_f16_to_f32(sc[b / bpg]) * xd[b]);
    }
    return s;
}

static void qgemv_range_scalar(const qgemv_job *j, int64_t b, int64_t e)
{
    const int64_t N = j->W->rows;
    for (int64_t m = 0; m < j->M; m++)
        for (int64_t n = b; n < e; n++)
            j->y[m * N + n] = dot_q_scalar(j->W, n, j->xq + m * j->nb * QB, j->xd + m * j->nb, j->nb) +
                              (j->bias ? j->bias[n] : 0.0f);
}

#ifdef VLM_HAVE_X86
static TGT_INLINE float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Software prefetch for the GEMVs: a tile of 4 weight rows is one contiguous stretch of memory,
 * read front to back in 4 interleaved streams; at each step the kernels fetch the bytes the
 * same step will read GEMV_PF_GROUPS tiles ahead, so one linear stream runs ahead of them.
 * Rows are short (640 bytes for K = 1280 in q4), too short for the hardware prefetcher to lock
 * on to each row (fetching ahead within each row instead streamed 22 GB/s on both cores of the
 * Zen 3 this was measured on, this 27-34 GB/s). */
#define GEMV_PF_GROUPS 2

/* cs[b] = (weight scale of block b) * xd[b] for blocks [0, nb) of one row: the same float
 * product the dot loops would form per block, made once ahead of them (8 at a time when every
 * block has its own scale). */
#define QSCALE_MAX_BLOCKS 1024
static TGT_INLINE void block_scales(const uint16_t *s, int64_t bpg, const float *xd, int64_t nb, float *cs)
{
    int64_t b = 0;
    if (bpg == 1)
        for (; b + 8 <= nb; b += 8)
            _mm256_storeu_ps(cs + b, _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + b))),
                                                   _mm256_loadu_ps(xd + b)));
    for (int64_t g = b / bpg, k = b % bpg; b < nb; b++) {
        cs[b] = _cvtsh_ss(s[g]) * xd[b];
        if (++k == bpg) k = 0, g++;
    }
}

/* R weight rows (R <= 4, a constant after inlining) against one quantized input row. */
static TGT_INLINE void qdot_rows(const vlm_weight *W, int64_t r0, const int8_t *xq, const float *xd, int64_t nb,
                                 float *out, const int R)
{
    const int64_t ng = vlm_q_groups(W), bpg = W->group / QB, rb = W->row_bytes;
    const uint8_t *w = (const uint8_t *)W->data + (size_t)r0 * (size_t)rb;
    const uint16_t *sc = W->scales + (size_t)r0 * (size_t)ng;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m128i m4 = _mm_set1_epi8(15);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    if (W->quant == VLM_WQ_Q8) { /* nb <= QSCALE_MAX_BLOCKS: see qgemv_range */
        /* pairs of blocks: vphaddd puts block b's partial sums in lanes 0,1,4,5 and b+1's in
         * 2,3,6,7, so one conversion and one FMA cover 64 weights */
        const __m256i idx = _mm256_setr_epi32(0, 0, 1, 1, 0, 0, 1, 1);
        float cs[4][QSCALE_MAX_BLOCKS];
        for (int r = 0; r < R; r++) block_scales(sc + r * ng, bpg, xd, nb, cs[r]);
        int64_t b = 0;
        for (; b + 2 <= nb; b += 2) {
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + b * QB));
            const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + b * QB + QB));
            if (R == 4) { /* 256 bytes of the tile per step */
                const uint8_t *ahead = w + (GEMV_PF_GROUPS * 4) * rb + b * 128;
                for (int l = 0; l < 4; l++) _mm_prefetch((const char *)(ahead + 64 * l), _MM_HINT_T0);
            }
            for (int r = 0; r < R; r++) {
                __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + r * rb + b * QB));
                __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + r * rb + b * QB + QB));
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0)), ones);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1)), ones);
                __m256 f = _mm256_cvtepi32_ps(_mm256_hadd_epi32(p0, p1));
                __m256 d = _mm256_permutevar8x32_ps(
                    _mm256_castps128_ps256(_mm_castpd_ps(_mm_load_sd((const double *)(cs[r] + b)))), idx);
                acc[r] = _mm256_fmadd_ps(f, d, acc[r]);
            }
        }
        for (; b < nb; b++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * QB));
            for (int r = 0; r < R; r++) {
                __m256i wv = _mm256_loadu_si256((const __m256i *)(w + r * rb + b * QB));
                __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
                __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                acc[r] = _mm256_fmadd_ps(f, _mm256_set1_ps(cs[r][b]), acc[r]);
            }
        }
    } else {
        const __m256i eight = _mm256_set1_epi8(8);
        for (int64_t b = 0; b < nb; b++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * QB));
            const __m256i x8 = _mm256_maddubs_epi16(eight, xv);
            const float dx = xd[b];
            const int64_t g = b / bpg;
            for (int r = 0; r < R; r++) {
                __m128i raw = _mm_loadu_si128((const __m128i *)(w + r * rb + b * (QB / 2)));
                __m256i wv = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(wv, xv), x8);
                __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                acc[r] = _mm256_fmadd_ps(f, _mm256_set1_ps(_cvtsh_ss(sc[r * ng + g]) * dx), acc[r]);
            }
        }
    }
    for (int r = 0; r < R; r++) out[r] = hsum256(acc[r]);
}

/* Block b alone of a q4 row (the odd last block). */
TGT static void qdot_tail_q4(const vlm_weight *W, int64_t r, const int8_t *xq, const float *xd, int64_t b, float *out)
{
    const int64_t ng = vlm_q_groups(W);
    const uint8_t *w = (const uint8_t *)W->data + (size_t)r * (size_t)W->row_bytes + b * (QB / 2);
    const int8_t *x = xq + b * QB;
    int32_t acc = 0;
    for (int i = 0; i < QB / 2; i++) acc += ((w[i] & 15) - 8) * x[i] + ((w[i] >> 4) - 8) * x[i + QB / 2];
    *out = (float)acc * (_cvtsh_ss(W->scales[(size_t)r * (size_t)ng + (size_t)(b / (W->group / QB))]) * xd[b]);
}

/* q4 in pairs of blocks: 32 stored bytes hold blocks b and b+1 as [b: w0-15 | w16-31 nibbles]
 * [b+1: ...]; their low nibbles are [b: w0..15 | b+1: w0..15] and their high nibbles
 * [b: w16..31 | b+1: w16..31]. The input row is rearranged the same way once per call
 * (xp), so one 256-bit load, two masks and two vpmaddubsw cover 64 weights; lanes 0-3 of
 * the int32 sums belong to block b, lanes 4-7 to b+1, scaled by [d_b x4 | d_b+1 x4]. */
static q4_xpack q4_view(const uint8_t *buf, int64_t np, const float *xd)
{
    return (q4_xpack){(const int8_t *)buf, (const int16_t *)(buf + np * 64), xd};
}

TGT static void q4_prep(const int8_t *xq, int64_t np, uint8_t *buf)
{
    const __m256i eight = _mm256_set1_epi8(8);
    int8_t *xp = (int8_t *)buf;
    int16_t *x8 = (int16_t *)(buf + np * 64);
    for (int64_t p = 0; p < np; p++) {
        const int8_t *x0 = xq + 2 * p * QB, *x1 = x0 + QB;
        int8_t *o = xp + p * 64;
        memcpy(o, x0, 16);
        memcpy(o + 16, x1, 16);
        memcpy(o + 32, x0 + 16, 16);
        memcpy(o + 48, x1 + 16, 16);
        __m256i lo = _mm256_loadu_si256((const __m256i *)o), hi = _mm256_loadu_si256((const __m256i *)(o + 32));
        _mm256_storeu_si256((__m256i *)(x8 + p * 16),
                            _mm256_add_epi16(_mm256_maddubs_epi16(eight, lo), _mm256_maddubs_epi16(eight, hi)));
    }
}

static TGT_INLINE void q4_pairs_rows(const vlm_weight *W, int64_t r0, const q4_xpack *pk, int64_t np, __m256 *acc,
                                     const int R)
{
    const int64_t ng = vlm_q_groups(W), bpg = W->group / QB, rb = W->row_bytes;
    const uint8_t *w = (const uint8_t *)W->data + (size_t)r0 * (size_t)rb;
    const uint16_t *sc = W->scales + (size_t)r0 * (size_t)ng;
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(15);
    const __m256i idx = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    /* the product of weight and input scale of every block, per row, ahead of the loop (the
     * same float product the loop would form, so the result does not change) */
    float cs[4][2 * Q4_MAX_PAIRS];
    for (int r = 0; r < R; r++) block_scales(sc + r * ng, bpg, pk->xd, 2 * np, cs[r]);
    /* accumulators in registers (R is a constant after inlining) */
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t p = 0; p < np; p++) {
        const __m256i xlo = _mm256_loadu_si256((const __m256i *)(pk->xp + p * 64));
        const __m256i xhi = _mm256_loadu_si256((const __m256i *)(pk->xp + p * 64 + 32));
        const __m256i x8 = _mm256_loadu_si256((const __m256i *)(pk->x8 + p * 16));
        /* one row's 64 weights of this pair (written out per row: a loop over r with the
         * accumulator picked by index was left rolled, with a branch per row) */
#define Q4_ROW(r, a)                                                                                        \
    do {                                                                                                    \
        const uint8_t *wr = w + (r) * rb + p * QB;                                                          \
        __m256i v = _mm256_loadu_si256((const __m256i *)wr);                                                \
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);           \
        __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));       \
        __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_sub_epi16(p16, x8), ones));                  \
        __m256 d = _mm256_permutevar8x32_ps(                                                                \
            _mm256_castps128_ps256(_mm_castpd_ps(_mm_load_sd((const double *)(cs[r] + 2 * p)))), idx);      \
        a = _mm256_fmadd_ps(f, d, a);                                                                       \
    } while (0)
        if (R == 4) {
            /* the four rows are one contiguous stretch of 4 * rb bytes, read 128 bytes per pair: fetch
             * the same 128 bytes of the stretch GEMV_PF_GROUPS groups ahead */
            const uint8_t *ahead = w + (GEMV_PF_GROUPS * 4) * rb + p * 128;
            _mm_prefetch((const char *)ahead, _MM_HINT_T0);
            _mm_prefetch((const char *)(ahead + 64), _MM_HINT_T0);
            Q4_ROW(0, a0);
            Q4_ROW(1, a1);
            Q4_ROW(2, a2);
            Q4_ROW(3, a3);
        } else {
            Q4_ROW(0, a0);
        }
#undef Q4_ROW
    }
    acc[0] = a0;
    if (R > 1) acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

/* Output rows [b, e) for every input row. The input rows are the inner loop: a tile of 4 weight rows
 * is read from memory once and then from L1 for each further input row (a decode step of a batch of
 * sequences reads the weights once, not once per sequence); each (input, output) sum is computed
 * exactly as for a single input row. */
TGT static void qgemv_range_avx2(const qgemv_job *j, int64_t b, int64_t e)
{
    const int64_t N = j->W->rows;
    if (j->pk) {
        const int64_t np = j->nb / 2;
        for (int64_t n = b; n < e;) {
            const int R = e - n >= 4 ? 4 : 1;
            for (int64_t m = 0; m < j->M; m++) {
                const int8_t *xq = j->xq + m * j->nb * QB;
                const float *xd = j->xd + m * j->nb;
                const q4_xpack pk = q4_view(j->pk + (size_t)m * q4_pack_bytes(j->nb), np, xd);
                float *y = j->y + m * N;
                __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
                if (R == 4)
                    q4_pairs_rows(j->W, n, &pk, np, acc, 4);
                else
                    q4_pairs_rows(j->W, n, &pk, np, acc, 1);
                for (int r = 0; r < R; r++) {
                    float s = hsum256(acc[r]);
                    if (j->nb % 2) { /* the odd last block */
                        float t;
                        qdot_tail_q4(j->W, n + r, xq, xd, j->nb - 1, &t);
                        s += t;
                    }
                    y[n + r] = s + (j->bias ? j->bias[n + r] : 0.0f);
                }
            }
            n += R;
        }
        return;
    }
    for (int64_t n = b; n < e;) {
        const int R = e - n >= 4 ? 4 : 1;
        for (int64_t m = 0; m < j->M; m++) {
            float *y = j->y + m * N;
            qdot_rows(j->W, n, j->xq + m * j->nb * QB, j->xd + m * j->nb, j->nb, y + n, R);
            if (j->bias)
                for (int r = 0; r < R; r++) y[n + r] += j->bias[n + r];
        }
        n += R;
    }
}
#endif

static void qgemv_range(const qgemv_job *j, int64_t b, int64_t e)
{
    if (j->direct) {
        vlm_q4_rows_range(&j->ri, j->W, j->y, j->bias, b, e);
        return;
    }
#ifdef VLM_HAVE_X86
    if (use_avx2() && j->nb <= QSCALE_MAX_BLOCKS) { /* longer rows (K > 32768): the scalar kernel */
        qgemv_range_avx2(j, b, e);
        return;
    }
#endif
    qgemv_range_scalar(j, b, e);
}

static void qgemv_task(void *ctx, int64_t b, int64_t e) { qgemv_range(ctx, b, e); }

/* Rows per pool chunk: about per_thread chunks a thread, within [lo, hi], whole groups of 8 (tiles
 * of 4, the few-rows kernel's groups of 8). The GEMVs take about 4 (8..4,096 rows): the prefetch runs
 * ahead within a chunk only, so a chunk's first tiles wait on memory, and with 16 chunks a thread
 * (40 rows of a 1280-row matrix) cold 1280 x 1280 products of 1 to 3 rows took 15-25 % longer. */
static int64_t chunk_rows(int64_t rows, int threads, int per_thread, int64_t lo, int64_t hi)
{
    const int64_t g = rows / (per_thread * (int64_t)threads);
    return g < lo ? lo : g > hi ? hi : (g + 7) / 8 * 8;
}

/* Whether products with W take the AVX2 q4 kernel, which wants the rearranged input. */
static int q4_packed(const vlm_weight *W, int64_t nb)
{
#ifdef VLM_HAVE_X86
    return W->quant == VLM_WQ_Q4 && use_avx2() && nb >= 2 && nb / 2 <= Q4_MAX_PAIRS && nb <= QSCALE_MAX_BLOCKS;
#else
    (void)W, (void)nb;
    return 0;
#endif
}

/* Bytes qx_prepare needs for M input rows of a product with W. */
static size_t qx_bytes(const vlm_weight *W, int64_t M)
{
    const int64_t nb = (W->cols + QB - 1) / QB;
    if (vlm_q4_rows_applies(W, M)) return vlm_q4_rows_input_bytes(M, W->cols);
    return (size_t)M * ((size_t)nb * (QB + sizeof(float)) + (q4_packed(W, nb) ? q4_pack_bytes(nb) : 0));
}

/* Quantizes the M input rows x for a product with W into buf (qx_bytes(W, M) bytes), once per
 * product rather than once per chunk of rows, and fills in the job. */
static void qx_prepare(qgemv_job *j, float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias,
                       uint8_t *buf)
{
    const int64_t K = W->cols, nb = (K + QB - 1) / QB;
    if (vlm_q4_rows_applies(W, M)) {
        *j = (qgemv_job){y, NULL, NULL, M, nb, W, bias, NULL, 1, {0}};
        vlm_q4_rows_prepare(x, M, K, buf, &j->ri);
        return;
    }
    int8_t *xq = (int8_t *)buf;
    float *xd = (float *)(buf + (size_t)(M * nb * QB));
    for (int64_t m = 0; m < M; m++) vlm_int8_quant_row(x + m * K, K, nb, xq + m * nb * QB, xd + m * nb);
    uint8_t *pk = NULL;
#ifdef VLM_HAVE_X86
    if (q4_packed(W, nb)) {
        pk = buf + (size_t)M * (size_t)nb * (QB + sizeof(float));
        for (int64_t m = 0; m < M; m++)
            q4_prep(xq + m * nb * QB, nb / 2, pk + (size_t)m * q4_pack_bytes(nb));
    }
#endif
    *j = (qgemv_job){y, xq, xd, M, nb, W, bias, pk, 0, {0}};
}

/* ---- conversion at load ---------------------------------------------------- */

#ifdef VLM_HAVE_X86
/* The AVX2 version of the q8/q4 row quantizer in ops_quant.c (same rounding: nearest-even
 * of w * (1 / d) with d the stored fp16 scale; same clamping; so the same bytes). */
TGT static void quant_row_avx2(const float *row, int64_t K, vlm_wquant quant, int group, uint8_t *o, uint16_t *scales)
{
    const int64_t ng = (K + group - 1) / group;
    const float qmax = quant == VLM_WQ_Q8 ? 127.0f : 7.0f;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t g = 0; g < ng; g++) {
        const int64_t k0 = g * group, k1 = k0 + group < K ? k0 + group : K;
        __m256 mx = _mm256_setzero_ps();
        int64_t k = k0;
        for (; k + 8 <= k1; k += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(row + k), absmask));
        float t[8], amax;
        _mm256_storeu_ps(t, mx);
        amax = t[0];
        for (int i = 1; i < 8; i++) amax = t[i] > amax ? t[i] : amax;
        for (; k < k1; k++) amax = fabsf(row[k]) > amax ? fabsf(row[k]) : amax;
        const uint16_t dh = vlm_f32_to_f16(amax / qmax);
        scales[g] = dh;
        const float d = vlm_f16_to_f32(dh), inv = d > 0 ? 1.0f / d : 0.0f;
        const __m256 vinv = _mm256_set1_ps(inv), hi = _mm256_set1_ps(qmax), lo = _mm256_set1_ps(-qmax);
        /* blocks of 32 inside the group; a partial last block is done by the scalar code below */
        for (k = k0; k + 32 <= k1; k += 32) {
            __m256i q[4];
            for (int i = 0; i < 4; i++) {
                __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(row + k + 8 * i), vinv),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q[i] = _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, v)));
            }
            /* int32 x 32 -> int8 x 32 in order (packs work per 128-bit lane; fix with a permute) */
            __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
            __m256i p8 = _mm256_packs_epi16(p16a, p16b);
            p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            if (quant == VLM_WQ_Q8) {
                _mm256_storeu_si256((__m256i *)(o + k), p8);
            } else {
                __m256i u = _mm256_add_epi8(p8, _mm256_set1_epi8(8));
                __m128i a = _mm256_castsi256_si128(u), b = _mm256_extracti128_si256(u, 1);
                _mm_storeu_si128((__m128i *)(o + k / 2), _mm_or_si128(a, _mm_slli_epi16(b, 4)));
            }
        }
        for (; k < k1; k++) {
            float v = nearbyintf(row[k] * inv);
            int qv = (int)(v > qmax ? qmax : v < -qmax ? -qmax : v);
            if (quant == VLM_WQ_Q8) {
                o[k] = (uint8_t)(int8_t)qv;
            } else {
                uint8_t *p = o + (k / 32) * 16 + (k % 16);
                *p = (k % 32) < 16 ? (uint8_t)((*p & 0xf0) | (qv + 8)) : (uint8_t)((*p & 0x0f) | ((qv + 8) << 4));
            }
        }
    }
}

TGT static void bf16_row_avx2(const uint16_t *s, int64_t K, float *dst)
{
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + k)));
        _mm256_storeu_ps(dst + k, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    for (; k < K; k++) dst[k] = vlm_bf16_to_f32(s[k]);
}
#endif

int vlm_q_quantize_row_fast(const float *row, int64_t K, vlm_wquant quant, int group, uint8_t *out, uint16_t *scales)
{
#ifdef VLM_HAVE_X86
    if (use_avx2()) {
        quant_row_avx2(row, K, quant, group, out, scales);
        return 1;
    }
#endif
    (void)row, (void)K, (void)quant, (void)group, (void)out, (void)scales;
    return 0;
}

int vlm_bf16_row_fast(const uint16_t *src, int64_t K, float *dst)
{
#ifdef VLM_HAVE_X86
    if (use_avx2()) {
        bf16_row_avx2(src, K, dst);
        return 1;
    }
#endif
    (void)src, (void)K, (void)dst;
    return 0;
}

/* ---- GEMM (prefill, ViT) --------------------------------------------------- */

typedef struct {
    float *y;
    const float *x;
    int64_t M;
    const vlm_weight *W;
    const float *bias;
    int64_t nb; /* output features per task */
} gemm_job;

/* Rows n0..n0+nr, columns k0..k0+kc of W as fp32 into p[j * KC + k] (scalar). */
static void panel_scalar(const vlm_weight *W, int64_t n0, int64_t nr, int64_t k0, int64_t kc, float *p)
{
    for (int64_t j = 0; j < nr; j++) {
        float *o = p + j * KC;
        const int64_t r = n0 + j;
        if (W->quant == VLM_WQ_Q8 || W->quant == VLM_WQ_Q4) {
            const uint8_t *w = (const uint8_t *)W->data + (size_t)r * (size_t)W->row_bytes;
            const uint16_t *sc = W->scales + (size_t)r * (size_t)vlm_q_groups(W);
            for (int64_t k = k0; k < k0 + kc; k++) {
                int q;
                if (W->quant == VLM_WQ_Q8) {
                    q = (int8_t)w[k];
                } else {
                    uint8_t b = w[(k / QB) * (QB / 2) + (k % (QB / 2))];
                    q = ((k % QB) < QB / 2 ? (b & 15) : (b >> 4)) - 8;
                }
                o[k - k0] = (float)q * vlm_f16_to_f32(sc[k / W->group]);
            }
        } else if (W->dtype == VLM_DT_BF16) {
            const uint16_t *s = (const uint16_t *)W->data + (size_t)r * (size_t)W->cols + k0;
            for (int64_t k = 0; k < kc; k++) o[k] = vlm_bf16_to_f32(s[k]);
        } else if (W->dtype == VLM_DT_F16) {
            const uint16_t *s = (const uint16_t *)W->data + (size_t)r * (size_t)W->cols + k0;
            for (int64_t k = 0; k < kc; k++) o[k] = vlm_f16_to_f32(s[k]);
        } else {
            memcpy(o, (const float *)W->data + (size_t)r * (size_t)W->cols + k0, (size_t)kc * sizeof(float));
        }
    }
}

static void micro_scalar(const float *x, int64_t ldx, const float *w, int64_t kc, float *c, int64_t ldc, int mr, int nr)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float s = 0;
            for (int64_t k = 0; k < kc; k++) s += x[i * ldx + k] * w[j * KC + k];
            c[i * ldc + j] += s;
        }
}

#ifdef VLM_HAVE_X86
TGT static void panel_avx2(const vlm_weight *W, int64_t n0, int64_t nr, int64_t k0, int64_t kc, float *p)
{
    if (W->quant != VLM_WQ_Q8 && W->quant != VLM_WQ_Q4 && W->dtype != VLM_DT_BF16) {
        panel_scalar(W, n0, nr, k0, kc, p);
        return;
    }
    for (int64_t j = 0; j < nr; j++) {
        float *o = p + j * KC;
        const int64_t r = n0 + j;
        if (W->quant == VLM_WQ_Q8 || W->quant == VLM_WQ_Q4) {
            const uint8_t *w = (const uint8_t *)W->data + (size_t)r * (size_t)W->row_bytes;
            const uint16_t *sc = W->scales + (size_t)r * (size_t)vlm_q_groups(W);
            const __m128i m4 = _mm_set1_epi8(15), e8 = _mm_set1_epi8(8);
            /* whole blocks: the row is padded to a multiple of QB and so is the panel row */
            for (int64_t k = k0; k < k0 + kc; k += QB) {
                const __m256 d = _mm256_set1_ps(_cvtsh_ss(sc[k / W->group]));
                __m128i lo, hi; /* weights k..k+15 and k+16..k+31 as int8 */
                if (W->quant == VLM_WQ_Q8) {
                    lo = _mm_loadu_si128((const __m128i *)(w + k));
                    hi = _mm_loadu_si128((const __m128i *)(w + k + 16));
                } else {
                    __m128i raw = _mm_loadu_si128((const __m128i *)(w + k / 2));
                    lo = _mm_sub_epi8(_mm_and_si128(raw, m4), e8);
                    hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), e8);
                }
                float *dst = o + (k - k0);
                _mm256_storeu_ps(dst, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d));
                _mm256_storeu_ps(dst + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d));
                _mm256_storeu_ps(dst + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d));
                _mm256_storeu_ps(dst + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d));
            }
        } else {
            const uint16_t *s = (const uint16_t *)W->data + (size_t)r * (size_t)W->cols + k0;
            int64_t k = 0;
            for (; k + 8 <= kc; k += 8) {
                __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + k)));
                _mm256_storeu_ps(o + k, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
            }
            for (; k < kc; k++) o[k] = vlm_bf16_to_f32(s[k]);
        }
    }
}

/* dst[k][0..7] = src[0..7][k] for 8 consecutive k (rows of src are ls apart). */
static TGT_INLINE void transpose8(const float *src, int64_t ls, float *dst, int64_t ld)
{
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ls), r2 = _mm256_loadu_ps(src + 2 * ls);
    __m256 r3 = _mm256_loadu_ps(src + 3 * ls), r4 = _mm256_loadu_ps(src + 4 * ls), r5 = _mm256_loadu_ps(src + 5 * ls);
    __m256 r6 = _mm256_loadu_ps(src + 6 * ls), r7 = _mm256_loadu_ps(src + 7 * ls);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3);
    __m256 t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst + 0 * ld, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 1 * ld, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* 16 row-major weight rows (stride KC) of a K slice -> k-major pk[k][16]. */
TGT static void pack16(const float *rows, int64_t kc, float *pk)
{
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        transpose8(rows + k, KC, pk + k * 16, 16);
        transpose8(rows + 8 * KC + k, KC, pk + k * 16 + 8, 16);
    }
    for (; k < kc; k++)
        for (int j = 0; j < 16; j++) pk[k * 16 + j] = rows[j * KC + k];
}

/* out[6][16] = X[6][kc] . P[kc][16]: 12 accumulators; each x element is broadcast from memory. */
TGT void vlm_k6x16(const float *const *xr, const float *pk, int64_t kc, float *out)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3], *x4 = xr[4], *x5 = xr[5];
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(pk + k * 16), b1 = _mm256_load_ps(pk + k * 16 + 8);
        __m256 a = _mm256_broadcast_ss(x0 + k);
        c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(x1 + k);
        c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(x2 + k);
        c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(x3 + k);
        c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(x4 + k);
        c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(x5 + k);
        c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    _mm256_storeu_ps(out + 0, c00); _mm256_storeu_ps(out + 8, c01);
    _mm256_storeu_ps(out + 16, c10); _mm256_storeu_ps(out + 24, c11);
    _mm256_storeu_ps(out + 32, c20); _mm256_storeu_ps(out + 40, c21);
    _mm256_storeu_ps(out + 48, c30); _mm256_storeu_ps(out + 56, c31);
    _mm256_storeu_ps(out + 64, c40); _mm256_storeu_ps(out + 72, c41);
    _mm256_storeu_ps(out + 80, c50); _mm256_storeu_ps(out + 88, c51);
}

static const float g_zero_row[KC];

/* One K slice of an output block: rows[nr][KC] hold the dequantized weights. */
TGT static void slice_avx2(const gemm_job *j, int64_t n0, int64_t nr, int64_t k0, int64_t kc, float *rows, float *pk)
{
    const int64_t K = j->W->cols, N = j->W->rows, M = j->M;
    const int64_t np = (nr + 15) / 16;
    for (int64_t r = nr; r < np * 16; r++) memset(rows + r * KC, 0, (size_t)kc * sizeof(float));
    for (int64_t p = 0; p < np; p++) pack16(rows + p * 16 * KC, kc, pk + p * 16 * KC);
    float ct[96] __attribute__((aligned(32)));
    for (int64_t m0 = 0; m0 < M; m0 += 6) {
        const int mr = (int)(M - m0 < 6 ? M - m0 : 6);
        const float *xr[6];
        for (int i = 0; i < 6; i++) xr[i] = i < mr ? j->x + (m0 + i) * K + k0 : g_zero_row;
        for (int64_t p = 0; p < np; p++) {
            vlm_k6x16(xr, pk + p * 16 * KC, kc, ct);
            const int64_t cols = nr - p * 16 < 16 ? nr - p * 16 : 16;
            /* the first K slice stores (bias + sums), later ones add: y is read once less */
            const float *bias = k0 == 0 && j->bias ? j->bias + n0 + p * 16 : g_zero_row;
            for (int i = 0; i < mr; i++) {
                float *yr = j->y + (m0 + i) * N + n0 + p * 16;
                if (cols == 16) {
                    const __m256 b0 = k0 ? _mm256_loadu_ps(yr) : _mm256_loadu_ps(bias);
                    const __m256 b1 = k0 ? _mm256_loadu_ps(yr + 8) : _mm256_loadu_ps(bias + 8);
                    _mm256_storeu_ps(yr, _mm256_add_ps(b0, _mm256_load_ps(ct + i * 16)));
                    _mm256_storeu_ps(yr + 8, _mm256_add_ps(b1, _mm256_load_ps(ct + i * 16 + 8)));
                } else {
                    for (int64_t c = 0; c < cols; c++) yr[c] = (k0 ? yr[c] : bias[c]) + ct[i * 16 + c];
                }
            }
        }
    }
}
#endif

static void gemm_run(const gemm_job *j, int64_t b, int64_t e, int avx)
{
    const vlm_weight *W = j->W;
    const int64_t K = W->cols, N = W->rows, M = j->M;
    /* rows: the block's dequantized weights, row-major; pk: the same packed k-major */
    float rows[NBMAX * KC] __attribute__((aligned(64)));
    float pk[NBMAX * KC] __attribute__((aligned(64)));
    for (int64_t blk = b; blk < e; blk++) {
        const int64_t n0 = blk * j->nb, nr = N - n0 < j->nb ? N - n0 : j->nb;
        if (!avx) /* the AVX2 slices store their first K slice with the bias instead */
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < nr; n++) j->y[m * N + n0 + n] = j->bias ? j->bias[n0 + n] : 0.0f;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t kc = K - k0 < KC ? K - k0 : KC;
#ifdef VLM_HAVE_X86
            if (avx) {
                panel_avx2(W, n0, nr, k0, kc, rows);
                slice_avx2(j, n0, nr, k0, kc, rows, pk);
                continue;
            }
#endif
            (void)pk;
            panel_scalar(W, n0, nr, k0, kc, rows);
            for (int64_t m0 = 0; m0 < M; m0 += 4) {
                const int mr = (int)(M - m0 < 4 ? M - m0 : 4);
                for (int64_t j0 = 0; j0 < nr; j0 += 3) {
                    const int jr = (int)(nr - j0 < 3 ? nr - j0 : 3);
                    micro_scalar(j->x + m0 * K + k0, K, rows + j0 * KC, kc, j->y + m0 * N + n0 + j0, N, mr, jr);
                }
            }
        }
    }
}

static void gemm_task_avx2(void *ctx, int64_t b, int64_t e) { gemm_run(ctx, b, e, 1); }
static void gemm_task_scalar(void *ctx, int64_t b, int64_t e) { gemm_run(ctx, b, e, 0); }

void vlm_linear_fast(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias)
{
    if (M <= 0 || W->rows <= 0) return;
    vlm_pool *pool = vlm_pool_default();
    const int threads = vlm_pool_threads(pool), avx = use_avx2();
    const int quantized = W->quant == VLM_WQ_Q8 || W->quant == VLM_WQ_Q4;
    if (M <= VLM_GEMV_MAX_ROWS && !quantized && W->dtype == VLM_DT_BF16) {
        vlm_gemv_bf16(y, x, M, W, bias); /* BF16 decode: the reference GEMV reads BF16 directly */
        return;
    }
    if (M <= vlm_gemv_max_rows(W) && quantized) {
        uint8_t *buf = malloc(qx_bytes(W, M));
        if (buf) {
            qgemv_job g;
            qx_prepare(&g, y, x, M, W, bias, buf);
            vlm_pool_for(pool, W->rows, chunk_rows(W->rows, threads, 4, 8, 4096), qgemv_task, &g);
            free(buf);
            return;
        }
        /* out of memory: the GEMM below needs no allocation */
    }
    if (quantized && vlm_int8_act_applies(W) && vlm_linear_int8(y, x, M, W, bias)) return;
    int64_t nb = NBMAX; /* a multiple of 16 (the packed panel width) */
    while (nb > 16 && (W->rows + nb - 1) / nb < 4 * threads) nb -= 16;
    gemm_job j = {y, x, M, W, bias, nb};
    vlm_pool_for(pool, (W->rows + nb - 1) / nb, 1, avx ? gemm_task_avx2 : gemm_task_scalar, &j);
}

/* ---- several GEMVs in one pass ------------------------------------------------ */

#define MANY_MAX 64

/* Products past the GEMV's rows that join the pass as int8 GEMMs, up to this many input rows (a batched
 * decode step's shared experts, and routed experts given 4 or more tokens): run beside the others, each
 * one's panels go to whichever thread is free instead of a pool pass of its own, and the compute-bound
 * GEMMs overlap the memory-bound GEMVs. Prompts' longer products keep their own passes. */
#define MANY_GEMM_MAX_ROWS 32

typedef struct {
    const vlm_linear_job *jobs;
    int n;
    qgemv_job q[MANY_MAX];
    char as_gemm[MANY_MAX];          /* many_gemm of each job, decided once per pass */
    vlm_int8_panels *gemm[MANY_MAX]; /* their prepared GEMMs (NULL: out of memory, run after the pass) */
    int64_t first[MANY_MAX + 1];     /* prefix sums of rows */
    int64_t grain;
} many_job;

static int many_gemm(const vlm_linear_job *j)
{
    return j->M > vlm_gemv_max_rows(j->W) && j->M <= MANY_GEMM_MAX_ROWS &&
           (j->W->quant == VLM_WQ_Q8 || j->W->quant == VLM_WQ_Q4) && vlm_int8_act_applies(j->W);
}

static int batchable(const vlm_linear_job *j)
{
    if (j->M <= 0 || j->W->rows <= 0) return 0;
    return many_gemm(j) || (j->M <= vlm_gemv_max_rows(j->W) && j->W->quant != VLM_WQ_NONE &&
                            (j->W->quant != VLM_WQ_BF16 || j->W->dtype == VLM_DT_BF16));
}

/* Rows [b, e) of the concatenated row space; each chunk may span jobs. */
static void many_task(void *ctx, int64_t b, int64_t e)
{
    const many_job *mj = ctx;
    int i = 0;
    while (i < mj->n && mj->first[i + 1] <= b) i++;
    for (; i < mj->n && mj->first[i] < e; i++) {
        const vlm_linear_job *j = &mj->jobs[i];
        int64_t lo = b > mj->first[i] ? b - mj->first[i] : 0;
        int64_t hi = (e < mj->first[i + 1] ? e : mj->first[i + 1]) - mj->first[i];
        if (hi <= lo) continue;
        if (mj->as_gemm[i]) { /* the panels that start in [lo, hi); none if not prepared */
            const int64_t w = VLM_INT8_PANEL_FEATURES;
            if (mj->gemm[i]) vlm_int8_panels_run(mj->gemm[i], (lo + w - 1) / w, (hi + w - 1) / w);
        } else if (j->W->quant == VLM_WQ_Q8 || j->W->quant == VLM_WQ_Q4)
            qgemv_range(&mj->q[i], lo, hi);
        else
            vlm_gemv_bf16_range(j->y, j->x, j->M, j->W, j->bias, lo, hi);
    }
}

/* One parallel pass over n <= MANY_MAX batchable jobs. */
static void linear_many_pass(const vlm_linear_job *jobs, int n)
{
    many_job *mj = calloc(1, sizeof *mj);
    size_t xbytes = 0;
    for (int i = 0; i < n; i++) {
        const int as_gemm = many_gemm(&jobs[i]);
        if (mj) mj->as_gemm[i] = (char)as_gemm;
        if (!as_gemm && (jobs[i].W->quant == VLM_WQ_Q8 || jobs[i].W->quant == VLM_WQ_Q4))
            xbytes += qx_bytes(jobs[i].W, jobs[i].M);
    }
    uint8_t *xbuf = malloc(xbytes ? xbytes : 1);
    if (!mj || !xbuf) { /* out of memory: the single calls need less */
        free(mj);
        free(xbuf);
        for (int i = 0; i < n; i++) vlm_op_linear(jobs[i].y, jobs[i].x, jobs[i].M, jobs[i].W, jobs[i].bias);
        return;
    }
    mj->jobs = jobs;
    mj->n = n;
    uint8_t *p = xbuf;
    for (int i = 0; i < n; i++) {
        const vlm_linear_job *j = &jobs[i];
        mj->first[i + 1] = mj->first[i] + j->W->rows;
        if (mj->as_gemm[i]) {
            /* out of memory: run on its own after the pass (its rows are then skipped) */
            mj->gemm[i] = vlm_int8_panels_prepare(j->y, j->x, j->M, j->W, j->bias);
            continue;
        }
        if (j->W->quant != VLM_WQ_Q8 && j->W->quant != VLM_WQ_Q4) continue;
        const int64_t K = j->W->cols, nb = (K + QB - 1) / QB;
        /* the same input as the GEMV before (gate and up of one MLP): quantized once */
        int k = i - 1;
        while (k >= 0 && (mj->as_gemm[k] || (jobs[k].W->quant != VLM_WQ_Q8 && jobs[k].W->quant != VLM_WQ_Q4))) k--;
        if (k >= 0 && jobs[k].x == j->x && jobs[k].M == j->M && mj->q[k].nb == nb && jobs[k].W->cols == K &&
            (mj->q[k].pk != NULL) == q4_packed(j->W, nb) && mj->q[k].direct == vlm_q4_rows_applies(j->W, j->M)) {
            mj->q[i] = mj->q[k];
            mj->q[i].y = j->y, mj->q[i].W = j->W, mj->q[i].bias = j->bias;
            continue;
        }
        qx_prepare(&mj->q[i], j->y, j->x, j->M, j->W, j->bias, p);
        p += qx_bytes(j->W, j->M);
    }
    vlm_pool *pool = vlm_pool_default();
    const int threads = vlm_pool_threads(pool);
    int one_row = 1;
    for (int i = 0; i < n; i++) one_row &= jobs[i].M == 1;
    /* one input row everywhere (single-stream decode): the GEMVs' long chunks; with the few-row
     * products of a batch, whose rows cost unequal work (a 3-row expert 3x a 1-row one), about 16
     * chunks a thread balance the threads better (longer ones: the 8-stream expert mix 9 % slower) */
    const int64_t grain = one_row ? chunk_rows(mj->first[n], threads, 4, 8, 4096)
                                  : chunk_rows(mj->first[n], threads, 16, 16, 256);
    vlm_pool_for(pool, mj->first[n], grain, many_task, mj);
    for (int i = 0; i < n; i++)
        if (mj->as_gemm[i] && !(mj->gemm[i] && vlm_int8_panels_finish(mj->gemm[i])))
            vlm_op_linear(jobs[i].y, jobs[i].x, jobs[i].M, jobs[i].W, jobs[i].bias);
    free(xbuf);
    free(mj);
}

void vlm_op_linear_many(const vlm_linear_job *jobs, int n)
{
    /* the few-row products on converted weights go together, MANY_MAX per pass (in their order,
     * so gate and up of one MLP still share the quantized input); the others one by one */
    vlm_linear_job batch[MANY_MAX];
    int nb = 0;
    for (int i = 0; i < n; i++) {
        if (!batchable(&jobs[i])) {
            vlm_op_linear(jobs[i].y, jobs[i].x, jobs[i].M, jobs[i].W, jobs[i].bias);
            continue;
        }
        batch[nb++] = jobs[i];
        if (nb == MANY_MAX) {
            linear_many_pass(batch, nb);
            nb = 0;
        }
    }
    if (nb) linear_many_pass(batch, nb);
}
