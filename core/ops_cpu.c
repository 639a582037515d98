/* fp32 reference implementation of core/ops.h. */
#include "core/ops.h"
#include "core/error.h"
#include "core/ops_internal.h"
#include "core/threadpool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- linear ----------------------------------------------------------------
 * Work is split over blocks of output features. A task widens its block of
 * weight rows to fp32 once, then sweeps all input rows through a 4x2 register
 * kernel that keeps 8 partial sums per dot product (summation order differs
 * from a plain loop only by fp32 rounding). */

/* GCC vector type; without AVX it lowers to pairs of SSE ops. Loads are macros
 * (statement expressions), not functions: a function returning a 256-bit vector
 * has a different ABI with and without AVX, which clang refuses in the default clone. */
typedef float v8f __attribute__((vector_size(32)));
#define LIN_NB 16 /* weight rows per task */

#define load8(p) __extension__({ v8f v8_; memcpy(&v8_, (p), sizeof v8_); v8_; })

static inline __attribute__((always_inline)) float hsum8(const v8f *pv)
{
    v8f v = *pv;
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

__attribute__((target_clones("arch=x86-64-v3", "default")))
static void kernel_4x2(const float *x, int64_t ldx, const float *w, int64_t K, float out[4][2])
{
    v8f a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx, *w0 = w, *w1 = w + K;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        v8f b0 = load8(w0 + k), b1 = load8(w1 + k), v;
        v = load8(x0 + k); a00 += v * b0; a01 += v * b1;
        v = load8(x1 + k); a10 += v * b0; a11 += v * b1;
        v = load8(x2 + k); a20 += v * b0; a21 += v * b1;
        v = load8(x3 + k); a30 += v * b0; a31 += v * b1;
    }
    float s[4][2] = {{hsum8(&a00), hsum8(&a01)}, {hsum8(&a10), hsum8(&a11)},
                     {hsum8(&a20), hsum8(&a21)}, {hsum8(&a30), hsum8(&a31)}};
    for (; k < K; k++)
        for (int i = 0; i < 4; i++) {
            s[i][0] += x[i * ldx + k] * w0[k];
            s[i][1] += x[i * ldx + k] * w1[k];
        }
    memcpy(out, s, sizeof s);
}

__attribute__((target_clones("arch=x86-64-v3", "default")))
static float dot1(const float *a, const float *b, int64_t K)
{
    v8f acc = {0};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) acc += load8(a + k) * load8(b + k);
    float s = hsum8(&acc);
    for (; k < K; k++) s += a[k] * b[k];
    return s;
}

/* Few input rows (decode): dot products straight from BF16 storage, four weight
 * rows at a time, so each weight byte is read once and never widened to memory. */
typedef uint16_t v8h __attribute__((vector_size(16)));
typedef uint32_t v8u __attribute__((vector_size(32)));

/* BF16 -> fp32 is a 16-bit left shift of the bit pattern. */
#define load8_bf16(p) __extension__({ v8h h8_; memcpy(&h8_, (p), sizeof h8_); \
    v8u u8_ = __builtin_convertvector(h8_, v8u) << 16; v8f f8_; memcpy(&f8_, &u8_, sizeof f8_); f8_; })

__attribute__((target_clones("arch=x86-64-v3", "default")))
static void gemv_bf16_rows4(const float *x, const uint16_t *w, int64_t K, float out[4])
{
    v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    const uint16_t *w0 = w, *w1 = w + K, *w2 = w + 2 * K, *w3 = w + 3 * K;
    int64_t k = 0;
    /* the 4 rows are 8 K contiguous bytes read 64 per step: fetch the same 64 bytes two such tiles
     * ahead (see GEMV_PF_GROUPS in ops_fast.c; rows are too short for the hardware prefetcher) */
    const uint16_t *ahead = w + 8 * K;
    for (; k + 8 <= K; k += 8) {
        __builtin_prefetch(ahead + 4 * k);
        v8f xv = load8(x + k);
        a0 += xv * load8_bf16(w0 + k);
        a1 += xv * load8_bf16(w1 + k);
        a2 += xv * load8_bf16(w2 + k);
        a3 += xv * load8_bf16(w3 + k);
    }
    float s[4] = {hsum8(&a0), hsum8(&a1), hsum8(&a2), hsum8(&a3)};
    for (; k < K; k++) {
        s[0] += x[k] * vlm_bf16_to_f32(w0[k]);
        s[1] += x[k] * vlm_bf16_to_f32(w1[k]);
        s[2] += x[k] * vlm_bf16_to_f32(w2[k]);
        s[3] += x[k] * vlm_bf16_to_f32(w3[k]);
    }
    memcpy(out, s, sizeof s);
}

__attribute__((target_clones("arch=x86-64-v3", "default")))
static float dot_bf16(const float *x, const uint16_t *w, int64_t K)
{
    v8f acc = {0};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) acc += load8(x + k) * load8_bf16(w + k);
    float s = hsum8(&acc);
    for (; k < K; k++) s += x[k] * vlm_bf16_to_f32(w[k]);
    return s;
}

/* a GEMV task is one vlm_linear_job (core/ops.h) split over output rows */
typedef vlm_linear_job gemv_job;

/* Output rows [b, e) for every input row, the input rows inner: a tile of 4 weight rows is read
 * from memory once for all of them (a decode step of a batch of sequences). */
void vlm_gemv_bf16_range(float *yy, const float *xx, int64_t M, const vlm_weight *W, const float *bias, int64_t b,
                         int64_t e)
{
    const int64_t K = W->cols, N = W->rows;
    const uint16_t *w = W->data;
    for (int64_t n = b; n < e;) {
        const int R = e - n >= 4 ? 4 : 1;
        for (int64_t m = 0; m < M; m++) {
            const float *x = xx + m * K;
            float *y = yy + m * N;
            if (R == 4) gemv_bf16_rows4(x, w + n * K, K, y + n);
            else y[n] = dot_bf16(x, w + n * K, K);
            if (bias)
                for (int r = 0; r < R; r++) y[n + r] += bias[n + r];
        }
        n += R;
    }
}

static void gemv_bf16_task(void *ctx, int64_t b, int64_t e)
{
    const gemv_job *j = ctx;
    vlm_gemv_bf16_range(j->y, j->x, j->M, j->W, j->bias, b, e);
}

typedef struct {
    float *y;
    const float *x;
    int64_t M;
    const vlm_weight *W;
    const float *bias;
    int64_t nb;
} linear_job;

static void widen_rows(const vlm_weight *W, int64_t r0, int64_t nr, float *dst)
{
    const size_t K = (size_t)W->cols;
    switch (W->dtype) {
    case VLM_DT_BF16: {
        const uint16_t *s = (const uint16_t *)W->data + (size_t)r0 * K;
        for (size_t i = 0; i < (size_t)nr * K; i++) dst[i] = vlm_bf16_to_f32(s[i]);
        break;
    }
    case VLM_DT_F16: {
        const uint16_t *s = (const uint16_t *)W->data + (size_t)r0 * K;
        for (size_t i = 0; i < (size_t)nr * K; i++) dst[i] = vlm_f16_to_f32(s[i]);
        break;
    }
    default:
        memcpy(dst, (const float *)W->data + (size_t)r0 * K, (size_t)nr * K * sizeof(float));
        break;
    }
}

static void linear_task(void *ctx, int64_t b, int64_t e)
{
    const linear_job *j = ctx;
    const int64_t K = j->W->cols, N = j->W->rows, M = j->M;
    float *wbuf = NULL;
    if (j->W->dtype != VLM_DT_F32) wbuf = malloc((size_t)j->nb * (size_t)K * sizeof(float));
    for (int64_t blk = b; blk < e; blk++) {
        int64_t n0 = blk * j->nb, nr = N - n0 < j->nb ? N - n0 : j->nb;
        const float *w;
        if (wbuf) {
            widen_rows(j->W, n0, nr, wbuf);
            w = wbuf;
        } else {
            w = (const float *)j->W->data + (size_t)n0 * (size_t)K;
        }
        int64_t m = 0;
        for (; m + 4 <= M; m += 4) {
            int64_t n = 0;
            for (; n + 2 <= nr; n += 2) {
                float o[4][2];
                kernel_4x2(j->x + m * K, K, w + n * K, K, o);
                for (int i = 0; i < 4; i++) {
                    j->y[(m + i) * N + n0 + n] = o[i][0];
                    j->y[(m + i) * N + n0 + n + 1] = o[i][1];
                }
            }
            for (; n < nr; n++)
                for (int i = 0; i < 4; i++) j->y[(m + i) * N + n0 + n] = dot1(j->x + (m + i) * K, w + n * K, K);
        }
        for (; m < M; m++)
            for (int64_t n = 0; n < nr; n++) j->y[m * N + n0 + n] = dot1(j->x + m * K, w + n * K, K);
        if (j->bias)
            for (int64_t mm = 0; mm < M; mm++)
                for (int64_t n = 0; n < nr; n++) j->y[mm * N + n0 + n] += j->bias[n0 + n];
    }
    free(wbuf);
}

void vlm_op_linear(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias)
{
    if (M <= 0 || W->rows <= 0) return;
    if (W->quant != VLM_WQ_NONE) {
        vlm_linear_fast(y, x, M, W, bias);
        return;
    }
    vlm_linear_ref(y, x, M, W, bias);
}

void vlm_gemv_bf16(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias)
{
    gemv_job g = {y, x, M, W, bias};
    vlm_pool_for(vlm_pool_default(), W->rows, 64, gemv_bf16_task, &g);
}

void vlm_linear_ref(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias)
{
    if (M <= 0 || W->rows <= 0) return;
    vlm_pool *pool = vlm_pool_default();
    if (M < 4 && W->dtype == VLM_DT_BF16) {
        vlm_gemv_bf16(y, x, M, W, bias);
        return;
    }
    int threads = vlm_pool_threads(pool);
    int64_t nb = LIN_NB;
    /* small outputs: smaller blocks so every thread gets work */
    while (nb > 2 && (W->rows + nb - 1) / nb < 4 * threads) nb /= 2;
    linear_job j = {y, x, M, W, bias, nb};
    vlm_pool_for(pool, (W->rows + nb - 1) / nb, 1, linear_task, &j);
}

void vlm_op_weight_row(const vlm_weight *W, int64_t r, float *dst)
{
    if (W->quant == VLM_WQ_Q8 || W->quant == VLM_WQ_Q4)
        vlm_q_dequant_row(W, r, dst);
    else
        widen_rows(W, r, 1, dst);
}

/* ---- norms and pointwise ---------------------------------------------------- */

/* Norms: rows are independent, so the pool splits them (each row's arithmetic is the same
 * whichever thread runs it: the result does not depend on the thread count). */
typedef struct norm_job norm_job;
struct norm_job {
    float *y;
    const float *x;
    int64_t D;
    const float *gamma, *beta;
    float eps;
    void (*row)(const norm_job *j, const float *xr, float *yr);
};

static void layernorm_row(const norm_job *j, const float *xr, float *yr)
{
    const int64_t D = j->D;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < D; i++) mean += xr[i];
    mean /= (double)D;
    for (int64_t i = 0; i < D; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
    var /= (double)D;
    float rstd = (float)(1.0 / sqrt(var + j->eps)), mf = (float)mean;
    for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - mf) * rstd * j->gamma[i] + (j->beta ? j->beta[i] : 0.0f);
}

static void rmsnorm_row(const norm_job *j, const float *xr, float *yr)
{
    const int64_t D = j->D;
    double ss = 0;
    for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
    float r = (float)(1.0 / sqrt(ss / (double)D + j->eps));
    for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] * r) * j->gamma[i];
}

static void norm_rows(void *ctx, int64_t b, int64_t e)
{
    const norm_job *j = ctx;
    for (int64_t m = b; m < e; m++) j->row(j, j->x + m * j->D, j->y + m * j->D);
}

/* a few rows run where they are; more go to the pool in chunks of at least 32K values */
static void norm_run(norm_job *j, int64_t M)
{
    const int64_t grain = j->D > 0 ? (32768 + j->D - 1) / j->D : M;
    if (M <= grain) {
        norm_rows(j, 0, M);
        return;
    }
    vlm_pool_for(vlm_pool_default(), M, grain, norm_rows, j);
}

void vlm_op_layernorm(float *y, const float *x, int64_t M, int64_t D, const float *gamma, const float *beta, float eps)
{
    norm_job j = {y, x, D, gamma, beta, eps, layernorm_row};
    norm_run(&j, M);
}

void vlm_op_rmsnorm(float *y, const float *x, int64_t M, int64_t D, const float *gamma, float eps)
{
    norm_job j = {y, x, D, gamma, NULL, eps, rmsnorm_row};
    norm_run(&j, M);
}

/* Elementwise ops: values are independent, so a long array goes to the pool in chunks of at least
 * 32K values (each value's arithmetic is the same whichever thread runs it). Run on one thread they
 * were ~5 % of a prefill (the MoE's SwiGLU), with the other threads waiting. */
#define ELEMENTWISE_GRAIN 32768

typedef struct {
    vlm_elementwise_fn fn;
    float *y;
    const float *x;
} elementwise_job;

static void elementwise_task(void *ctx, int64_t b, int64_t e)
{
    const elementwise_job *j = ctx;
    j->fn(j->y + b, j->x ? j->x + b : NULL, e - b);
}

void vlm_elementwise(vlm_elementwise_fn fn, float *y, const float *x, int64_t n)
{
    if (n <= ELEMENTWISE_GRAIN) {
        if (n > 0) fn(y, x, n);
        return;
    }
    elementwise_job j = {fn, y, x};
    vlm_pool_for(vlm_pool_default(), n, ELEMENTWISE_GRAIN, elementwise_task, &j);
}

static void gelu_tanh_range(float *x, const float *unused, int64_t n)
{
    (void)unused;
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

void vlm_op_gelu_tanh(float *x, int64_t n) { vlm_elementwise(gelu_tanh_range, x, NULL, n); }

static void gelu_erf_range(float *x, const float *unused, int64_t n)
{
    (void)unused;
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void vlm_op_gelu_erf(float *x, int64_t n) { vlm_elementwise(gelu_erf_range, x, NULL, n); }

static void silu_mul_range(float *g, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * up[i];
}

void vlm_op_silu_mul(float *g, const float *up, int64_t n) { vlm_elementwise(silu_mul_range, g, up, n); }

void vlm_op_softmax(float *x, int64_t n)
{
    if (n <= 0) return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static void add_range(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void vlm_op_add(float *y, const float *x, int64_t n) { vlm_elementwise(add_range, y, x, n); }

/* ---- RoPE ------------------------------------------------------------------ */

void vlm_rope_angles(float *cos_out, float *sin_out, int64_t pos, int dim, float theta)
{
    for (int i = 0; i < dim / 2; i++) {
        float expo = (float)(2 * i) / (float)dim;
        float inv_freq = (float)(1.0 / (double)powf(theta, expo));
        float ang = (float)pos * inv_freq;
        cos_out[i] = (float)cos((double)ang);
        sin_out[i] = (float)sin((double)ang);
    }
}

void vlm_op_rope_neox(float *x, int n_heads, int64_t head_stride, int dim, const float *cos, const float *sin)
{
    int h2 = dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + h * head_stride;
        for (int i = 0; i < h2; i++) {
            float a = v[i], b = v[i + h2];
            v[i] = a * cos[i] - b * sin[i];
            v[i + h2] = b * cos[i] + a * sin[i];
        }
    }
}

void vlm_op_rope_interleaved(float *x, int n_heads, int64_t head_stride, int dim, const float *cos, const float *sin)
{
    int h2 = dim / 2;
    float tmp[512];
    for (int h = 0; h < n_heads; h++) {
        float *v = x + h * head_stride;
        for (int i = 0; i < h2; i++) {
            float a = v[2 * i], b = v[2 * i + 1];
            tmp[i] = a * cos[i] - b * sin[i];
            tmp[i + h2] = b * cos[i] + a * sin[i];
        }
        memcpy(v, tmp, (size_t)dim * sizeof(float));
    }
}

/* ---- attention ---------------------------------------------------------------
 * Tasks are (query row, head) pairs; each chunk of tasks owns one score row of
 * n_kv floats, so no n_q x n_kv matrix is ever allocated. */

typedef struct {
    const vlm_attention_params *p;
    const float *q;
    const void *k, *v;
    float *out;
    float *scores; /* [n_chunks, n_kv + row]: a score row, then room for one widened f16 row */
    int64_t grain, row;
} attn_job;

__attribute__((target_clones("arch=x86-64-v3", "default")))
static void axpy(float *y, float a, const float *x, int64_t n)
{
    int64_t i = 0;
    v8f av = {a, a, a, a, a, a, a, a};
    for (; i + 8 <= n; i += 8) {
        v8f yv = load8(y + i);
        yv += av * load8(x + i);
        memcpy(y + i, &yv, sizeof yv);
    }
    for (; i < n; i++) y[i] += a * x[i];
}

static void attn_task(void *ctx, int64_t b, int64_t e)
{
    const attn_job *j = ctx;
    const vlm_attention_params *p = j->p;
    float *s = j->scores + (b / j->grain) * (p->n_kv + j->row), *tmp = s + p->n_kv;
    int group = p->n_heads / p->n_kv_heads;
    for (int64_t t = b; t < e; t++) {
        int64_t i = t / p->n_heads;
        int h = (int)(t % p->n_heads), g = h / group;
        const float *qi = j->q + i * p->q_stride + (int64_t)h * p->qk_dim;
        int64_t n = p->causal ? p->q_pos0 + i + 1 : p->n_kv;
        if (n > p->n_kv) n = p->n_kv;
        for (int64_t jj = 0; jj < n; jj++)
            s[jj] = dot1(qi, vlm_kv_piece(j->k, p->kv_f16, jj * p->k_stride + (int64_t)g * p->qk_dim, p->qk_dim, tmp),
                         p->qk_dim) * p->scale;
        vlm_op_softmax(s, n);
        float *o = j->out + i * p->o_stride + (int64_t)h * p->v_dim;
        memset(o, 0, (size_t)p->v_dim * sizeof(float));
        for (int64_t jj = 0; jj < n; jj++)
            axpy(o, s[jj], vlm_kv_piece(j->v, p->kv_f16, jj * p->v_stride + (int64_t)g * p->v_dim, p->v_dim, tmp),
                 p->v_dim);
    }
}

int vlm_op_attention(const vlm_attention_params *p, const float *q, const void *k, const void *v, float *out)
{
    const int64_t tasks = p->n_q * p->n_heads;
    if (tasks <= 0) return VLM_OK;
    if (p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads)
        return vlm_errorf(VLM_ERR_INVALID, "attention: %d heads cannot share %d kv heads", p->n_heads, p->n_kv_heads);
    vlm_pool *pool = vlm_pool_default();
    /* a few chunks per thread balance the causal triangle without many score rows */
    int64_t max_chunks = 8 * (int64_t)vlm_pool_threads(pool), grain = (tasks + max_chunks - 1) / max_chunks;
    int64_t n_chunks = (tasks + grain - 1) / grain;
    const int64_t row = p->kv_f16 ? (p->qk_dim > p->v_dim ? p->qk_dim : p->v_dim) : 0;
    attn_job j = {p, q, k, v, out, malloc((size_t)(n_chunks * (p->n_kv + row)) * sizeof(float)), grain, row};
    if (!j.scores) return vlm_errorf(VLM_ERR_NOMEM, "out of memory for attention scores (%lld keys)", (long long)p->n_kv);
    vlm_pool_for(pool, tasks, grain, attn_task, &j);
    free(j.scores);
    return VLM_OK;
}

void vlm_op_rows_to_f16(uint16_t *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                        int64_t width)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = vlm_f16_row_fast(src + r * src_stride, width, dst + r * dst_stride); i < width; i++) {
            float x = src[r * src_stride + i];
            x = x > 65504.0f ? 65504.0f : x < -65504.0f ? -65504.0f : x; /* NaN passes through */
            dst[r * dst_stride + i] = vlm_f32_to_f16(x);
        }
}

void vlm_op_rows_from_f16(float *dst, int64_t dst_stride, const uint16_t *src, int64_t src_stride, int64_t rows,
                          int64_t width)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = vlm_f16_row_widen_fast(src + r * src_stride, width, dst + r * dst_stride); i < width; i++)
            dst[r * dst_stride + i] = vlm_f16_to_f32(src[r * src_stride + i]);
}
