// MoE routing and the bookkeeping for batched expert GEMMs.
// CPU reference: vlm_moe_route (text/moe_router.c); the formulas and the tie rule are in
// text/moe_router.h. Here one warp routes one token, with the CPU code's steps in the same order:
// scores, choice (+ bias for noaux_tc), group mask, top-k, weights, sort by expert id.
#include "cuda/cuda_internal.cuh"

#define MOE_MAX_E VLM_MOE_MAX_EXPERTS

struct route_args {
    int n_experts, top_k, n_group, topk_group, norm_topk_prob;
    int method, scoring; // vlm_topk_method, vlm_scoring_func
    float scaling;
};

// a ranks before b: NaN first, then the larger value, then the lower index (index -1 = none).
__device__ __forceinline__ bool ranks_before(float va, int ia, float vb, int ib)
{
    if (ib < 0) return ia >= 0;
    if (ia < 0) return false;
    const bool na = isnan(va), nb = isnan(vb);
    if (na != nb) return na;
    if (!na && va != vb) return va > vb;
    return ia < ib;
}

// The best (value, index) of the warp, in every lane.
__device__ __forceinline__ void warp_best(float &v, int &i)
{
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(VLM_FULL_MASK, v, off);
        const int oi = __shfl_xor_sync(VLM_FULL_MASK, i, off);
        if (ranks_before(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
}

// Indices of the k best of v[0..n) in rank order into out (shared memory); k rounds of a warp argmax.
static __device__ void warp_top_k(const float *v, int n, int k, unsigned char *taken, int *out)
{
    const int lane = threadIdx.x;
    for (int i = lane; i < n; i += 32) taken[i] = 0;
    __syncwarp();
    for (int j = 0; j < k; j++) {
        float bv = 0.0f;
        int bi = -1;
        for (int i = lane; i < n; i += 32)
            if (!taken[i] && ranks_before(v[i], i, bv, bi)) {
                bv = v[i];
                bi = i;
            }
        warp_best(bv, bi);
        if (lane == 0) {
            taken[bi] = 1;
            out[j] = bi;
        }
        __syncwarp();
    }
}

// One block of 32 threads per token.
static __global__ void moe_route_kernel(route_args a, const float *bias, const float *logits, int32_t *idx,
                                        float *weight)
{
    __shared__ float scores[MOE_MAX_E], choice[MOE_MAX_E], group_score[MOE_MAX_E], w[MOE_MAX_E];
    __shared__ int sel[MOE_MAX_E];
    __shared__ unsigned char taken[MOE_MAX_E];
    const int lane = threadIdx.x, E = a.n_experts, K = a.top_k;
    const float *lg = logits + (int64_t)blockIdx.x * E;

    // scores = softmax(logits) or sigmoid(logits)
    if (a.scoring == VLM_SCORE_SOFTMAX) {
        float mx = -INFINITY;
        for (int e = lane; e < E; e += 32) mx = fmaxf(mx, lg[e]);
        mx = vlm_warp_max(mx);
        float sum = 0.0f;
        for (int e = lane; e < E; e += 32) {
            scores[e] = expf(lg[e] - mx);
            sum += scores[e];
        }
        const float inv = 1.0f / vlm_warp_sum(sum);
        for (int e = lane; e < E; e += 32) scores[e] *= inv;
    } else {
        for (int e = lane; e < E; e += 32) scores[e] = 1.0f / (1.0f + expf(-lg[e]));
    }
    for (int e = lane; e < E; e += 32) choice[e] = a.method == VLM_TOPK_NOAUX_TC ? scores[e] + bias[e] : scores[e];
    __syncwarp();

    // group limit: keep the topk_group best groups, the other groups' experts get 0.0
    if (a.method != VLM_TOPK_GREEDY) {
        const int G = a.n_group, per = E / G, two = a.method == VLM_TOPK_NOAUX_TC ? 2 : 1;
        for (int g = 0; g < G; g++) {
            warp_top_k(choice + g * per, per, two, taken, sel);
            const float *c = choice + g * per;
            if (lane == 0) group_score[g] = two == 2 ? c[sel[0]] + c[sel[1]] : c[sel[0]];
            __syncwarp();
        }
        warp_top_k(group_score, G, a.topk_group, taken, sel);
        // taken[] now marks the kept groups
        for (int e = lane; e < E; e += 32)
            if (!taken[e / per]) choice[e] = 0.0f;
        __syncwarp();
    }

    warp_top_k(choice, E, K, taken, sel);

    // weights in selection order, normalised, then sorted by expert id (lane 0: K is small)
    if (lane == 0) {
        for (int j = 0; j < K; j++) w[j] = a.method == VLM_TOPK_NOAUX_TC ? scores[sel[j]] : choice[sel[j]];
        if (K > 1 && a.norm_topk_prob) {
            float sum = 0.0f;
            for (int j = 0; j < K; j++) sum += w[j];
            sum += 1e-20f;
            for (int j = 0; j < K; j++) w[j] = w[j] / sum * a.scaling;
        } else {
            for (int j = 0; j < K; j++) w[j] *= a.scaling;
        }
        for (int j = 1; j < K; j++) {
            const int si = sel[j];
            const float sw = w[j];
            int i = j - 1;
            for (; i >= 0 && sel[i] > si; i--) {
                sel[i + 1] = sel[i];
                w[i + 1] = w[i];
            }
            sel[i + 1] = si;
            w[i + 1] = sw;
        }
    }
    __syncwarp();
    for (int j = lane; j < K; j += 32) {
        idx[(int64_t)blockIdx.x * K + j] = sel[j];
        weight[(int64_t)blockIdx.x * K + j] = w[j];
    }
}

extern "C" int vlm_cuda_moe_route(const vlm_moe_router *r, const float *bias, const float *logits, int64_t T,
                                  int32_t *idx, float *weight, vlm_cuda_stream stream)
{
    if (!r) return vlm_errorf(VLM_ERR_INVALID, "cuda moe route: no router");
    vlm_moe_router chk = *r;
    chk.bias = bias; // the check only looks at whether there is one
    int rc = vlm_moe_router_check(&chk);
    if (rc != VLM_OK) return rc;
    if (T < 0 || T > INT32_MAX) return vlm_errorf(VLM_ERR_INVALID, "cuda moe route: %lld tokens", (long long)T);
    if (T == 0) return VLM_OK;
    if (!logits || !idx || !weight) return vlm_errorf(VLM_ERR_INVALID, "cuda moe route: NULL pointer");
    route_args a = {r->n_experts, r->top_k, r->n_group, r->topk_group, r->norm_topk_prob,
                    (int)r->method, (int)r->scoring, r->scaling};
    moe_route_kernel<<<(unsigned)T, 32, 0, vlm_stream(stream)>>>(a, bias, logits, idx, weight);
    return vlm_cuda_check_launch("moe route");
}

// ---- grouping by expert ------------------------------------------------------
// Three small steps: count each expert's entries (a warp per expert, scanning all entries with
// ballots), an exclusive scan of the counts (one thread: n_experts <= 1024), and a fill that
// writes each expert's entries in ascending order (ballot + popcount give each match its slot).

static __global__ void moe_count_kernel(const int32_t *idx, int64_t n, int32_t *offsets)
{
    const int e = blockIdx.x, lane = threadIdx.x;
    int count = 0;
    for (int64_t r0 = 0; r0 < n; r0 += 32) {
        const int64_t r = r0 + lane;
        const unsigned hit = __ballot_sync(VLM_FULL_MASK, r < n && idx[r] == e);
        count += __popc(hit);
    }
    if (lane == 0) offsets[e + 1] = count;
}

static __global__ void moe_scan_kernel(int32_t *offsets, int n_experts)
{
    offsets[0] = 0;
    for (int e = 0; e < n_experts; e++) offsets[e + 1] += offsets[e];
}

static __global__ void moe_fill_kernel(const int32_t *idx, int64_t n, const int32_t *offsets, int32_t *rows,
                                       int32_t *pos)
{
    const int e = blockIdx.x, lane = threadIdx.x;
    int base = offsets[e];
    for (int64_t r0 = 0; r0 < n; r0 += 32) {
        const int64_t r = r0 + lane;
        const bool match = r < n && idx[r] == e;
        const unsigned hit = __ballot_sync(VLM_FULL_MASK, match);
        if (match) {
            const int slot = base + __popc(hit & ((1u << lane) - 1u));
            rows[slot] = (int32_t)r;
            pos[r] = slot;
        }
        base += __popc(hit);
    }
}

extern "C" int vlm_cuda_moe_group(const int32_t *idx, int64_t T, int top_k, int n_experts, int32_t *offsets,
                                  int32_t *rows, int32_t *pos, vlm_cuda_stream stream)
{
    if (T < 0 || top_k <= 0 || n_experts <= 0 || n_experts > VLM_MOE_MAX_EXPERTS)
        return vlm_errorf(VLM_ERR_INVALID, "cuda moe group: %lld tokens, top_k %d, %d experts", (long long)T, top_k,
                          n_experts);
    const int64_t n = T * top_k;
    if (n > INT32_MAX) return vlm_errorf(VLM_ERR_LIMIT, "cuda moe group: %lld entries", (long long)n);
    if (!offsets || (n > 0 && (!idx || !rows || !pos)))
        return vlm_errorf(VLM_ERR_INVALID, "cuda moe group: NULL pointer");
    cudaStream_t s = vlm_stream(stream);
    if (n > 0) VLM_CUDA_TRY(cudaMemsetAsync(pos, 0xff, (size_t)n * sizeof(int32_t), s), "moe group: clear"); // -1
    moe_count_kernel<<<n_experts, 32, 0, s>>>(idx, n, offsets);
    moe_scan_kernel<<<1, 1, 0, s>>>(offsets, n_experts);
    moe_fill_kernel<<<n_experts, 32, 0, s>>>(idx, n, offsets, rows, pos);
    return vlm_cuda_check_launch("moe group");
}

static __global__ void gather_rows_kernel(float *dst, const float *src, int64_t D, const int32_t *rows, int64_t n,
                                          int div)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n * D; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = e / D, d = e % D;
        dst[e] = src[(int64_t)(rows[r] / div) * D + d];
    }
}

extern "C" int vlm_cuda_gather_rows(float *dst, const float *src, int64_t D, const int32_t *rows, int64_t n, int div,
                                    vlm_cuda_stream stream)
{
    if (n < 0 || D < 0 || div <= 0) return vlm_errorf(VLM_ERR_INVALID, "cuda gather: bad sizes");
    if (n == 0 || D == 0) return VLM_OK;
    if (!dst || !src || !rows) return vlm_errorf(VLM_ERR_INVALID, "cuda gather: NULL pointer");
    gather_rows_kernel<<<vlm_grid_for(n * D, 256), 256, 0, vlm_stream(stream)>>>(dst, src, D, rows, n, div);
    return vlm_cuda_check_launch("gather rows");
}

static __global__ void moe_combine_kernel(float *y, const float *expert_out, const float *weight, const int32_t *pos,
                                   int64_t T, int top_k, int64_t D)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < T * D; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = e / D, d = e % D;
        float acc = y[e];
        for (int j = 0; j < top_k; j++) {
            const int32_t p = pos[t * top_k + j];
            if (p >= 0) acc += weight[t * top_k + j] * expert_out[(int64_t)p * D + d];
        }
        y[e] = acc;
    }
}

extern "C" int vlm_cuda_moe_combine(float *y, const float *expert_out, const float *weight, const int32_t *pos,
                                    int64_t T, int top_k, int64_t D, vlm_cuda_stream stream)
{
    if (T < 0 || D < 0 || top_k <= 0) return vlm_errorf(VLM_ERR_INVALID, "cuda moe combine: bad sizes");
    if (T == 0 || D == 0) return VLM_OK;
    if (!y || !expert_out || !weight || !pos) return vlm_errorf(VLM_ERR_INVALID, "cuda moe combine: NULL pointer");
    moe_combine_kernel<<<vlm_grid_for(T * D, 256), 256, 0, vlm_stream(stream)>>>(y, expert_out, weight, pos, T,
                                                                                  top_k, D);
    return vlm_cuda_check_launch("moe combine");
}
