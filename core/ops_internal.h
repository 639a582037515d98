/* Internals shared by the CPU op files (not a public header). */
#ifndef VLM_CORE_OPS_INTERNAL_H
#define VLM_CORE_OPS_INTERNAL_H

#include "core/ops.h"

/* Scale groups per row of a q8/q4 weight (inline: the kernels ask per panel, tile and group of rows). */
static inline int64_t vlm_q_groups(const vlm_weight *W) { return (W->cols + W->group - 1) / W->group; }
/* Row r of any weight as fp32 (q8/q4 dequantized: q * fp16 scale). */
void vlm_q_dequant_row(const vlm_weight *W, int64_t r, float *dst);
/* vlm_op_linear for weights with quant != VLM_WQ_NONE (core/ops_fast.c). */
void vlm_linear_fast(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias);
/* The reference linear (ops_cpu.c), used by the fast path for BF16 GEMV. */
void vlm_linear_ref(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias);

/* Of the GEMV's products, those on q4 weights with 2..VLM_Q4_ROWS_MAX input rows (weight rows of at most
 * VLM_Q4_ROWS_MAX_BLOCKS blocks of 32) take vlm_q4_rows_range (ops_int8_rows.c) instead. */
#define VLM_Q4_ROWS_MAX 3
#define VLM_Q4_ROWS_MAX_BLOCKS 512
/* The input rows of such a product: int8 per block of 32, the block scales, and 8 * each block's sum. */
typedef struct {
    const int8_t *xq;  /* [M][nb * 32] */
    const float *xd;   /* [M][nb] */
    const int32_t *x8; /* [M][nb] */
    int64_t M, nb;
} vlm_q4_rows_input;
int vlm_q4_rows_applies(const vlm_weight *W, int64_t M);
/* Bytes of buf for vlm_q4_rows_prepare, which quantizes x[M][K] into it (on the calling thread). */
size_t vlm_q4_rows_input_bytes(int64_t M, int64_t K);
void vlm_q4_rows_prepare(const float *x, int64_t M, int64_t K, uint8_t *buf, vlm_q4_rows_input *in);
/* Output features [n0, n1) of y[M][W->rows] = x . W^T (+ bias), with the int8 panel GEMM's arithmetic and bits. */
void vlm_q4_rows_range(const vlm_q4_rows_input *in, const vlm_weight *W, float *y, const float *bias, int64_t n0,
                       int64_t n1);
/* Up to this many input rows (decode; a batch of up to 3 sequences), products on converted weights
 * run as GEMVs that read each weight tile once for all the rows (each row's sums as for one row);
 * more rows take the GEMMs. */
#ifndef VLM_GEMV_MAX_ROWS
#define VLM_GEMV_MAX_ROWS 3
#endif
/* With int8 activations off, q8 weights take the GEMV for up to this many rows: their GEMM (fp32
 * products on weights dequantized into panels) costs the dequantization of every weight per call,
 * so a batched decode step of up to 16 sequences is cheaper as int8 GEMVs (which quantize their
 * inputs whatever the setting). */
#define VLM_GEMV_MAX_ROWS_Q8 16
/* The GEMV row limit for W's format. */
static inline int vlm_gemv_max_rows(const vlm_weight *W)
{
    return W->quant == VLM_WQ_Q8 && vlm_ops_int8_activations() == 0 ? VLM_GEMV_MAX_ROWS_Q8 : VLM_GEMV_MAX_ROWS;
}
/* The pooled BF16 GEMV (y = x W^T + bias, M rows), and its rows [b, e) (ops_cpu.c). */
void vlm_gemv_bf16(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias);
void vlm_gemv_bf16_range(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias, int64_t b,
                         int64_t e);

/* The int8 GEMM (ops_int8_panel.c) for q8/q4 weights: y = x . W^T (+ bias) with x quantized to int8 per
 * block of 32; the scalar kernel (vlm_ops_set_simd(0)) gives the same bits as the AVX2 one. Returns 1 when done,
 * 0 when W is not q8/q4 or memory ran out (y is then to be computed another way). */
int vlm_linear_int8(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias);
/* Whether products with W for M >= 4 take vlm_linear_int8 under the current setting
 * (vlm_ops_set_int8_activations: auto = on). */
int vlm_int8_act_applies(const vlm_weight *W);
/* vlm_linear_int8 past its argument checks (ops_int8_panel.c). */
int vlm_linear_int8_panel(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias);
/* The same product in pieces, for a pass that runs it beside others (vlm_op_linear_many): prepare quantizes
 * the inputs (NULL when memory ran out), run computes output panels [b, e) of VLM_INT8_PANEL_FEATURES (any thread, each
 * panel once), finish frees it and returns 1, or 0 when a piece ran out of memory (y is then to be computed
 * another way). */
typedef struct vlm_int8_panels vlm_int8_panels;
#define VLM_INT8_PANEL_FEATURES 16 /* output features per panel */
vlm_int8_panels *vlm_int8_panels_prepare(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias);
int64_t vlm_int8_panels_count(const vlm_int8_panels *p);
void vlm_int8_panels_run(vlm_int8_panels *p, int64_t b, int64_t e);
int vlm_int8_panels_finish(vlm_int8_panels *p);
/* One row x[K] quantized to int8 per block of 32 into q[nb * 32] (zero padded) and d[nb]: d = max|x| / 127,
 * q = round-half-even(x / d) clamped to +-127 (AVX2 and scalar give the same bytes). */
void vlm_int8_quant_row(const float *x, int64_t K, int64_t nb, int8_t *q, float *d);
/* M rows of x[M][K] quantized to int8 per block of 32 into xq[M][nb * 32] (zero padded) and xd[M][nb]
 * (on the thread pool; AVX2 and scalar give the same bytes). */
void vlm_int8_quant_rows(const float *x, int64_t M, int64_t K, int64_t nb, int8_t *xq, float *xd);
/* x8[i] = 8 * (sum of block i's 32 int8 inputs) for blocks [0, n) of xq: the +8 offset of stored q4 nibbles to
 * remove from their products. */
void vlm_int8_block_offsets(const int8_t *xq, int64_t n, int32_t *x8);

/* Rows [n, n + rows) of W (fewer at its end; none when n < 0), to be prefetched into L2 a share per step
 * over `steps` steps of the work before them, so that they arrive while that work runs: a kernel that
 * reads 16 or 32 bytes of each of 8 or 16 rows per step is too little of a stream for the hardware
 * prefetcher (without this the q4 panel pack waited on memory, ~9 GB/s). */
typedef struct {
    const char *p, *end;
    int64_t step; /* bytes per step, whole cache lines */
} vlm_ahead;

static inline vlm_ahead vlm_rows_ahead(const vlm_weight *W, int64_t n, int64_t rows, int64_t steps)
{
    vlm_ahead a = {NULL, NULL, 0};
    if (n < 0 || n >= W->rows) return a;
    if (rows > W->rows - n) rows = W->rows - n;
    const int64_t bytes = rows * W->row_bytes;
    a.p = (const char *)W->data + (size_t)n * (size_t)W->row_bytes;
    a.end = a.p + bytes;
    a.step = ((bytes + steps - 1) / steps + 63) / 64 * 64;
    return a;
}

/* Share i (step i of the `steps`) of those rows: computed from i, so nothing is carried between steps. */
static inline void vlm_prefetch_share(const vlm_ahead *a, int64_t i)
{
    if (!a->p) return; /* no rows */
    for (const char *p = a->p + i * a->step, *e = p + a->step; p < e && p < a->end; p += 64) __builtin_prefetch(p, 0, 2);
}

/* The fp16 scales of rows [n, n + rows) of W (fewer at its end; none when n < 0) into L2: a few lines,
 * fetched at once before the work that precedes their use. */
static inline void vlm_prefetch_scales(const vlm_weight *W, int64_t n, int64_t rows)
{
    if (n < 0 || n >= W->rows) return;
    if (rows > W->rows - n) rows = W->rows - n;
    const int64_t ng = vlm_q_groups(W);
    const char *p = (const char *)(W->scales + (size_t)n * (size_t)ng);
    for (int64_t o = 0; o < rows * ng * 2; o += 64) __builtin_prefetch(p + o, 0, 2);
}

/* fn(y, x, n) over [0, n) of y (and x, when not NULL) in pieces: on the calling thread for a short
 * array, in chunks on the default pool for a long one. For elementwise ops only; like every pool
 * user, not from inside a pool task (the pool runs one job at a time). */
typedef void (*vlm_elementwise_fn)(float *y, const float *x, int64_t n);
void vlm_elementwise(vlm_elementwise_fn fn, float *y, const float *x, int64_t n);

/* 1 when the AVX2+FMA+F16C kernels run here (and are not disabled by vlm_ops_set_simd). */
int vlm_ops_avx2(void);
#if defined(__x86_64__) || defined(__i386__)
/* out[6][16] = X[6][kc] . P[kc][16] (AVX2; call only when vlm_ops_avx2()): x rows given by
 * pointer, P packed k-major 16 wide, 32-byte aligned. */
void vlm_k6x16(const float *const *xr, const float *pk, int64_t kc, float *out);
/* The fp32 scales ws[b * ld + c] of 8 q8/q4 weight rows (their fp16 scale rows sc[c], bpg blocks of 32
 * per group) for blocks [0, nb) (AVX2; ops_int8_panel.c). */
void vlm_q_scales8_avx2(const uint16_t *const *sc, int64_t bpg, int64_t nb, float *ws, int64_t ld);
#endif

/* SIMD versions used at load when available (return 0 when not: use the scalar code).
 * quantize: one row of K weights into q8/q4 storage (padding already set) and its scales. */
int vlm_q_quantize_row_fast(const float *row, int64_t K, vlm_wquant quant, int group, uint8_t *out, uint16_t *scales);
int vlm_bf16_row_fast(const uint16_t *src, int64_t K, float *dst);
/* vlm_op_rows_to_f16 / vlm_op_rows_from_f16 for one row with F16C (the same bits): the number of
 * leading values done (a multiple of 8; 0 without F16C), the caller converts the rest. */
int64_t vlm_f16_row_fast(const float *src, int64_t n, uint16_t *dst);
int64_t vlm_f16_row_widen_fast(const uint16_t *src, int64_t n, float *dst);

/* n values at index `at` of an attention K or V buffer (vlm_attention_params.kv_f16: halves, else
 * floats) as floats: a pointer into the buffer, or the values widened into tmp. */
static inline const float *vlm_kv_piece(const void *base, int f16, int64_t at, int64_t n, float *tmp)
{
    if (!f16) return (const float *)base + at;
    vlm_op_rows_from_f16(tmp, n, (const uint16_t *)base + at, n, 1, n);
    return tmp;
}

#endif
