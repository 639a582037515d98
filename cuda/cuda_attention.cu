// Scaled dot-product attention, flash style.  CPU reference: vlm_op_attention (core/ops_cpu.c).
//
// One warp computes one (query row i, head h): the output row softmax(q k^T * scale) v without
// storing the scores. Keys are taken 32 at a time, lane j scoring key j0 + j; the running max m,
// the running sum l of exp(s - m) and the output accumulator are rescaled by exp(m_old - m_new)
// whenever the max grows (the online softmax). The value rows are then read coalesced: lane d
// accumulates output elements d, d + 32, ... (so head dims up to 32 * ATT_MAX_PER_LANE).
//
// Warps of a block take consecutive query rows of the same head, so they read the same key and
// value rows (cache hits). Everything is fp32; only the summation order and expf differ from the
// CPU op.
#include "cuda/cuda_internal.cuh"

#define ATT_WARPS 4
#define ATT_MAX_PER_LANE 8
#define ATT_MAX_DIM (32 * ATT_MAX_PER_LANE) // 256

static __global__ void __launch_bounds__(ATT_WARPS * 32)
attention_kernel(vlm_attention_params p, const float *q, const float *k, const float *v, float *out)
{
    __shared__ float q_sh[ATT_WARPS][ATT_MAX_DIM];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t task = (int64_t)blockIdx.x * ATT_WARPS + warp;
    if (task >= p.n_q * p.n_heads) return; // the whole warp leaves; no block barrier follows
    const int h = (int)(task / p.n_q);
    const int64_t i = task % p.n_q;
    const int g = h / (p.n_heads / p.n_kv_heads);

    const float *qi = q + i * p.q_stride + (int64_t)h * p.qk_dim;
    for (int d = lane; d < p.qk_dim; d += 32) q_sh[warp][d] = qi[d];
    __syncwarp();

    // keys 0 .. n-1 are visible (as the CPU op: causal rows see keys j <= q_pos0 + i)
    int64_t n = p.causal ? p.q_pos0 + i + 1 : p.n_kv;
    if (n > p.n_kv) n = p.n_kv;

    const float *kg = k + (int64_t)g * p.qk_dim, *vg = v + (int64_t)g * p.v_dim;
    float m = -INFINITY, l = 0.0f, acc[ATT_MAX_PER_LANE];
#pragma unroll
    for (int t = 0; t < ATT_MAX_PER_LANE; t++) acc[t] = 0.0f;

    for (int64_t j0 = 0; j0 < n; j0 += 32) {
        const int64_t j = j0 + lane;
        float s = -INFINITY;
        if (j < n) {
            const float *kj = kg + j * p.k_stride;
            float dot = 0.0f;
            for (int d = 0; d < p.qk_dim; d++) dot += q_sh[warp][d] * kj[d];
            s = dot * p.scale;
        }
        const float m_new = fmaxf(m, vlm_warp_max(s)); // finite: key j0 is visible
        const float corr = expf(m - m_new);              // 0 on the first block (m = -inf)
        const float pj = j < n ? expf(s - m_new) : 0.0f;
        l = l * corr + vlm_warp_sum(pj);
#pragma unroll
        for (int t = 0; t < ATT_MAX_PER_LANE; t++) acc[t] *= corr;
        const int cnt = n - j0 < 32 ? (int)(n - j0) : 32; // the same in every lane
        for (int jj = 0; jj < cnt; jj++) {
            const float w = __shfl_sync(VLM_FULL_MASK, pj, jj);
            const float *vj = vg + (j0 + jj) * p.v_stride;
#pragma unroll
            for (int t = 0; t < ATT_MAX_PER_LANE; t++) {
                const int d = lane + 32 * t;
                if (d < p.v_dim) acc[t] += w * vj[d];
            }
        }
        m = m_new;
    }

    // no visible key (n <= 0): zeros, as the CPU op
    const float inv = n > 0 ? 1.0f / l : 0.0f;
    float *o = out + i * p.o_stride + (int64_t)h * p.v_dim;
#pragma unroll
    for (int t = 0; t < ATT_MAX_PER_LANE; t++) {
        const int d = lane + 32 * t;
        if (d < p.v_dim) o[d] = acc[t] * inv;
    }
}

extern "C" int vlm_cuda_attention(const vlm_attention_params *p, const float *q, const float *k, const float *v,
                                  float *out, vlm_cuda_stream stream)
{
    if (!p) return vlm_errorf(VLM_ERR_INVALID, "cuda attention: no parameters");
    if (p->n_q < 0 || p->n_kv < 0 || p->n_heads < 0)
        return vlm_errorf(VLM_ERR_INVALID, "cuda attention: negative size");
    const int64_t tasks = p->n_q * p->n_heads;
    if (tasks == 0) return VLM_OK;
    if (p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads)
        return vlm_errorf(VLM_ERR_INVALID, "cuda attention: %d heads cannot share %d kv heads", p->n_heads,
                          p->n_kv_heads);
    if (p->qk_dim <= 0 || p->qk_dim > ATT_MAX_DIM || p->v_dim <= 0 || p->v_dim > ATT_MAX_DIM)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "cuda attention: head dims qk %d / v %d (1..%d supported)", p->qk_dim,
                          p->v_dim, ATT_MAX_DIM);
    if (!q || !out || (p->n_kv > 0 && (!k || !v))) return vlm_errorf(VLM_ERR_INVALID, "cuda attention: NULL pointer");
    const int64_t blocks = (tasks + ATT_WARPS - 1) / ATT_WARPS;
    if (blocks > INT32_MAX) return vlm_errorf(VLM_ERR_LIMIT, "cuda attention: %lld query heads", (long long)tasks);
    attention_kernel<<<(unsigned)blocks, ATT_WARPS * 32, 0, vlm_stream(stream)>>>(*p, q, k, v, out);
    return vlm_cuda_check_launch("attention");
}
