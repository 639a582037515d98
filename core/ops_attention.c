/* Fast attention and GELU for the fast path (components whose weights were converted at
 * load; the reference ops in ops_cpu.c stay as they are).
 *
 * Attention: per kv head, K is packed transposed in panels of 16 keys ([d][16]) and V in
 * panels of 16 value columns ([n_kv][16]); a task takes one head and a block of QB query
 * rows, computes their score rows with the 6x16 register kernel (QB x n_kv floats: a block
 * of rows, never the n_q x n_kv matrix), a vectorized softmax, then P . V with the same
 * kernel. Causal masking skips key panels past the block's last visible key. One query row
 * (decode) takes its own path below (attention_decode). Without AVX2, or for 2 to 5 query
 * rows, it calls the reference vlm_op_attention. */
#include "core/error.h"
#include "core/ops.h"
#include "core/ops_internal.h"
#include "core/threadpool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TGT __attribute__((target("avx2,fma,f16c")))
#define TGT_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

#define QB 24 /* query rows per task (a multiple of the kernel's 6) */

/* e^x to about 1 ulp for x in [-87, 88] (clamped outside): 2^n * e^r, |r| <= ln2/2,
 * degree-6 Taylor polynomial for e^r. */
static TGT_INLINE __m256 exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

TGT static void gelu_tanh_avx2(float *x, const float *unused, int64_t n)
{
    (void)unused;
    /* 0.5 x (1 + tanh(u)) = x / (1 + e^(-2u)),  u = sqrt(2/pi) (x + 0.044715 x^3) */
    const __m256 k2 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), c = _mm256_set1_ps(0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 u = _mm256_mul_ps(k2, _mm256_fmadd_ps(_mm256_mul_ps(c, v), _mm256_mul_ps(v, v), v));
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, exp256(u))));
    }
    if (i < n) vlm_op_gelu_tanh(x + i, n - i);
}

/* The 8-wide part of vlm_op_rows_to_f16 / vlm_op_rows_from_f16 for one row; they return how many
 * values they did (the callers finish the rest with the scalar conversion). */
TGT static int64_t f16_row_avx2(const float *src, int64_t n, uint16_t *dst)
{
    const __m256 hi = _mm256_set1_ps(65504.0f), lo = _mm256_set1_ps(-65504.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        /* max/min return their second operand for NaN: a NaN input stays NaN */
        __m256 x = _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_loadu_ps(src + i)));
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    return i;
}

TGT static int64_t f16_widen_avx2(const uint16_t *h, int64_t n, float *dst)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    return i;
}

/* ---- attention ----------------------------------------------------------------- */

typedef struct {
    const vlm_attention_params *p;
    const float *q;
    const void *k, *v;
    float *out;
    float *pk;          /* per kv head: K panels [npk][d][16], then V panels [npv][kvpad][16] */
    int64_t npk, npv, kvpad, per_head;
    int64_t n_qb;
    const float *zero;  /* max(d, kvpad) zeros */
    int failed;
} fattn_job;

TGT static void pack_task(void *ctx, int64_t b, int64_t e)
{
    fattn_job *j = ctx;
    const vlm_attention_params *p = j->p;
    const int64_t d = p->qk_dim, dv = p->v_dim;
    float *row = malloc((size_t)d * sizeof(float));
    if (!row) {
        j->failed = 1;
        return;
    }
    for (int64_t g = b; g < e; g++) {
        float *kp = j->pk + g * j->per_head, *vp = kp + j->npk * d * 16;
        for (int64_t pn = 0; pn < j->npk; pn++)
            for (int64_t c = 0; c < 16; c++) {
                int64_t key = pn * 16 + c;
                float *dst = kp + pn * d * 16 + c;
                if (key < p->n_kv) {
                    const float *src = vlm_kv_piece(j->k, p->kv_f16, key * p->k_stride + g * d, d, row);
                    for (int64_t kk = 0; kk < d; kk++) dst[kk * 16] = src[kk];
                } else {
                    for (int64_t kk = 0; kk < d; kk++) dst[kk * 16] = 0;
                }
            }
        for (int64_t pn = 0; pn < j->npv; pn++) {
            const int64_t c0 = pn * 16, nc = dv - c0 < 16 ? dv - c0 : 16;
            for (int64_t key = 0; key < j->kvpad; key++) {
                float *dst = vp + (pn * j->kvpad + key) * 16;
                if (key < p->n_kv) {
                    const float *src = vlm_kv_piece(j->v, p->kv_f16, key * p->v_stride + g * dv + c0, nc, dst);
                    if (src != dst) memcpy(dst, src, (size_t)nc * sizeof(float));
                    for (int64_t c = nc; c < 16; c++) dst[c] = 0;
                } else {
                    memset(dst, 0, 16 * sizeof(float));
                }
            }
        }
    }
    free(row);
}

TGT static void softmax_row(float *row, int64_t n, int64_t pad, float *inv_sum)
{
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(row + j));
    float t[8], m;
    _mm256_storeu_ps(t, mx);
    m = t[0];
    for (int i = 1; i < 8; i++) m = t[i] > m ? t[i] : m;
    for (; j < n; j++) m = row[j] > m ? row[j] : m;
    const __m256 vm = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
        _mm256_storeu_ps(row + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    _mm256_storeu_ps(t, sum);
    float s = ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
    for (; j < n; j++) {
        float e[8] = {row[j] - m};
        __m256 ev = exp256(_mm256_loadu_ps(e));
        _mm256_storeu_ps(e, ev);
        row[j] = e[0];
        s += e[0];
    }
    memset(row + n, 0, (size_t)(pad - n) * sizeof(float));
    *inv_sum = 1.0f / s;
}

TGT static void fattn_task(void *ctx, int64_t b, int64_t e)
{
    fattn_job *j = ctx;
    const vlm_attention_params *p = j->p;
    const int64_t d = p->qk_dim, dv = p->v_dim, kvpad = j->kvpad;
    const int group = p->n_heads / p->n_kv_heads;
    float *S = aligned_alloc(64, (size_t)(QB * kvpad) * sizeof(float));
    if (!S) {
        j->failed = 1;
        return;
    }
    float ct[96] __attribute__((aligned(32))), inv[QB];
    for (int64_t t = b; t < e; t++) {
        const int h = (int)(t / j->n_qb), g = h / group;
        const int64_t q0 = (t % j->n_qb) * QB, rows = p->n_q - q0 < QB ? p->n_q - q0 : QB;
        const float *kp = j->pk + g * j->per_head, *vp = kp + j->npk * d * 16;
        int64_t nvis[QB];
        for (int64_t i = 0; i < rows; i++) {
            int64_t n = p->causal ? p->q_pos0 + q0 + i + 1 : p->n_kv;
            nvis[i] = n < p->n_kv ? n : p->n_kv;
        }
        for (int64_t i0 = 0; i0 < rows; i0 += 6) {
            const int mr = (int)(rows - i0 < 6 ? rows - i0 : 6);
            const float *xr[6];
            int64_t maxn = 0;
            for (int i = 0; i < 6; i++) {
                xr[i] = i < mr ? j->q + (q0 + i0 + i) * p->q_stride + (int64_t)h * d : j->zero;
                if (i < mr && nvis[i0 + i] > maxn) maxn = nvis[i0 + i];
            }
            /* scores for the key panels any of these rows can see */
            for (int64_t pn = 0; pn * 16 < maxn; pn++) {
                vlm_k6x16(xr, kp + pn * d * 16, d, ct);
                for (int i = 0; i < mr; i++)
                    for (int c = 0; c < 16; c++) S[(i0 + i) * kvpad + pn * 16 + c] = ct[i * 16 + c] * p->scale;
            }
            for (int i = 0; i < mr; i++) softmax_row(S + (i0 + i) * kvpad, nvis[i0 + i], kvpad, &inv[i0 + i]);
            /* P . V over the visible keys (later columns of P are zero) */
            const float *pr[6];
            for (int i = 0; i < 6; i++) pr[i] = i < mr ? S + (i0 + i) * kvpad : j->zero;
            for (int64_t pn = 0; pn < j->npv; pn++) {
                vlm_k6x16(pr, vp + pn * kvpad * 16, maxn, ct);
                const int64_t c0 = pn * 16, nc = dv - c0 < 16 ? dv - c0 : 16;
                for (int i = 0; i < mr; i++) {
                    float *o = j->out + (q0 + i0 + i) * p->o_stride + (int64_t)h * dv + c0;
                    for (int64_t c = 0; c < nc; c++) o[c] = ct[i * 16 + c] * inv[i0 + i];
                }
            }
        }
    }
    free(S);
}

/* ---- decode attention (one query row) ----------------------------------------------
 * A head's keys are short pieces a whole cache row apart; reading them head by head strides
 * through the cache. Instead tasks take blocks of DEC_KEYS keys and go through each key row
 * once, front to back, for every head (heads sharing a kv head reuse its piece from cache):
 * scores, then per head a softmax, then per block a partial P.V for every head, added up in
 * block order (so the result does not depend on the thread count). */
#define DEC_KEYS 128
#define DEC_MIN_KEYS 64 /* fewer keys: the reference op (its per-head split is as good there) */

typedef struct {
    const vlm_attention_params *p;
    const float *q;
    const void *k, *v;
    float *s;    /* [n_heads][kpad]: scores, then e^(s - max) */
    float *inv;  /* [n_heads]: 1 / sum */
    float *part; /* [n_blocks][n_heads][v_dim] */
    int64_t n, kpad;
} dattn_job;

/* 8 values / one value at index i of a cache row: floats, or halves widened (f16 is a constant
 * at each call site, so each kernel below is compiled once per element type) */
static TGT_INLINE __m256 kv_load8(const void *b, int64_t i, const int f16)
{
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)b + i)))
               : _mm256_loadu_ps((const float *)b + i);
}
static TGT_INLINE float kv_load1(const void *b, int64_t i, const int f16)
{
    return f16 ? vlm_f16_to_f32(((const uint16_t *)b)[i]) : ((const float *)b)[i];
}

/* a . row[at, at + n) */
static TGT_INLINE float dot_kv(const float *a, const void *row, int64_t at, int n, const int f16)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), kv_load8(row, at + i, f16), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), kv_load8(row, at + i + 8, f16), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), kv_load8(row, at + i, f16), a0);
    __m256 t = _mm256_add_ps(a0, a1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r += a[i] * kv_load1(row, at + i, f16);
    return r;
}

/* y[0, n) += w * row[at, at + n) */
static TGT_INLINE void axpy_kv(float *y, float w, const void *row, int64_t at, int n, const int f16)
{
    const __m256 wv = _mm256_set1_ps(w);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(wv, kv_load8(row, at + i, f16), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += w * kv_load1(row, at + i, f16);
}

TGT static void dattn_scores(void *ctx, int64_t b, int64_t e)
{
    const dattn_job *j = ctx;
    const vlm_attention_params *p = j->p;
    const int group = p->n_heads / p->n_kv_heads;
    const int64_t k1 = e * DEC_KEYS < j->n ? e * DEC_KEYS : j->n;
    for (int64_t t = b * DEC_KEYS; t < k1; t++)
        for (int h = 0; h < p->n_heads; h++) {
            const float *qh = j->q + (int64_t)h * p->qk_dim;
            const int64_t at = t * p->k_stride + (int64_t)(h / group) * p->qk_dim;
            const float d = p->kv_f16 ? dot_kv(qh, j->k, at, p->qk_dim, 1) : dot_kv(qh, j->k, at, p->qk_dim, 0);
            j->s[h * j->kpad + t] = d * p->scale;
        }
}

TGT static void dattn_softmax(void *ctx, int64_t b, int64_t e)
{
    const dattn_job *j = ctx;
    for (int64_t h = b; h < e; h++) softmax_row(j->s + h * j->kpad, j->n, j->n, j->inv + h);
}

TGT static void dattn_values(void *ctx, int64_t b, int64_t e)
{
    const dattn_job *j = ctx;
    const vlm_attention_params *p = j->p;
    const int group = p->n_heads / p->n_kv_heads, dv = p->v_dim;
    for (int64_t blk = b; blk < e; blk++) {
        float *o = j->part + blk * p->n_heads * dv;
        memset(o, 0, (size_t)p->n_heads * (size_t)dv * sizeof(float));
        const int64_t k1 = (blk + 1) * DEC_KEYS < j->n ? (blk + 1) * DEC_KEYS : j->n;
        for (int64_t t = blk * DEC_KEYS; t < k1; t++)
            for (int h = 0; h < p->n_heads; h++) {
                const float wt = j->s[h * j->kpad + t];
                const int64_t at = t * p->v_stride + (int64_t)(h / group) * dv;
                float *y = o + (int64_t)h * dv;
                if (p->kv_f16)
                    axpy_kv(y, wt, j->v, at, dv, 1);
                else
                    axpy_kv(y, wt, j->v, at, dv, 0);
            }
    }
}

/* Returns 0 when it ran, 1 when memory ran out (the caller uses the reference op). */
TGT static int attention_decode(const vlm_attention_params *p, const float *q, const void *k, const void *v,
                                float *out)
{
    int64_t n = p->causal ? p->q_pos0 + 1 : p->n_kv;
    if (n > p->n_kv) n = p->n_kv;
    const int64_t kpad = (n + 7) / 8 * 8, blocks = (n + DEC_KEYS - 1) / DEC_KEYS, dv = p->v_dim;
    float *s = malloc((size_t)(p->n_heads * kpad + p->n_heads + blocks * p->n_heads * dv) * sizeof(float));
    if (!s) return 1;
    dattn_job j = {p, q, k, v, s, s + p->n_heads * kpad, s + p->n_heads * kpad + p->n_heads, n, kpad};
    vlm_pool *pool = vlm_pool_default();
    vlm_pool_for(pool, blocks, 1, dattn_scores, &j);
    vlm_pool_for(pool, p->n_heads, 1, dattn_softmax, &j);
    vlm_pool_for(pool, blocks, 1, dattn_values, &j);
    for (int h = 0; h < p->n_heads; h++) {
        float *o = out + (int64_t)h * dv;
        for (int64_t i = 0; i < dv; i++) {
            float acc = 0;
            for (int64_t blk = 0; blk < blocks; blk++) acc += j.part[(blk * p->n_heads + h) * dv + i];
            o[i] = acc * j.inv[h];
        }
    }
    free(s);
    return 0;
}
#endif

int64_t vlm_f16_row_fast(const float *src, int64_t n, uint16_t *dst)
{
#if defined(__x86_64__) || defined(__i386__)
    if (vlm_ops_avx2()) return f16_row_avx2(src, n, dst);
#endif
    (void)src, (void)n, (void)dst;
    return 0;
}

int64_t vlm_f16_row_widen_fast(const uint16_t *src, int64_t n, float *dst)
{
#if defined(__x86_64__) || defined(__i386__)
    if (vlm_ops_avx2()) return f16_widen_avx2(src, n, dst);
#endif
    (void)src, (void)n, (void)dst;
    return 0;
}

void vlm_op_gelu_tanh_fast(float *x, int64_t n)
{
#if defined(__x86_64__) || defined(__i386__)
    if (vlm_ops_avx2()) {
        vlm_elementwise(gelu_tanh_avx2, x, NULL, n);
        return;
    }
#endif
    vlm_op_gelu_tanh(x, n);
}

int vlm_op_attention_fast(const vlm_attention_params *p, const float *q, const void *k, const void *v, float *out)
{
#if defined(__x86_64__) || defined(__i386__)
    if (!vlm_ops_avx2() || p->n_kv <= 0 || p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads)
        return vlm_op_attention(p, q, k, v, out);
    if (p->n_q == 1 && p->n_kv >= DEC_MIN_KEYS)
        return attention_decode(p, q, k, v, out) ? vlm_op_attention(p, q, k, v, out) : VLM_OK;
    if (p->n_q < 6) return vlm_op_attention(p, q, k, v, out);
    fattn_job j = {.p = p, .q = q, .k = k, .v = v, .out = out};
    j.npk = (p->n_kv + 15) / 16;
    j.kvpad = j.npk * 16;
    j.npv = (p->v_dim + 15) / 16;
    j.per_head = j.npk * p->qk_dim * 16 + j.npv * j.kvpad * 16;
    j.n_qb = (p->n_q + QB - 1) / QB;
    const int64_t zn = p->qk_dim > j.kvpad ? p->qk_dim : j.kvpad;
    float *zero = calloc((size_t)zn, sizeof(float));
    j.pk = aligned_alloc(64, ((size_t)(p->n_kv_heads * j.per_head) * sizeof(float) + 63) / 64 * 64);
    if (!zero || !j.pk) {
        free(zero);
        free(j.pk);
        return vlm_op_attention(p, q, k, v, out); /* needs less memory */
    }
    j.zero = zero;
    vlm_pool *pool = vlm_pool_default();
    vlm_pool_for(pool, p->n_kv_heads, 1, pack_task, &j);
    if (!j.failed) vlm_pool_for(pool, (int64_t)p->n_heads * j.n_qb, 1, fattn_task, &j);
    free(zero);
    free(j.pk);
    if (j.failed) return vlm_op_attention(p, q, k, v, out);
    return VLM_OK;
#else
    return vlm_op_attention(p, q, k, v, out);
#endif
}
