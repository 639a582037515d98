// The op backend interface (core/backend.h): the CPU backend's ops against the core ops they
// wrap (bit for bit, odd sizes), backend lookup by name, the staging helpers, and the decoder
// run through a backend: a counting wrapper of the CPU backend and a fake "device" whose
// buffers are tagged pointers that crash if the decoder ever touches them on the host; both
// must reproduce the CPU backend's logits, hidden states and routing exactly.
#include <gtest/gtest.h>

#include "buffer_util.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

extern "C" {
#include "core/backend.h"
#include "core/checkpoint.h"
#include "core/error.h"
#include "core/ops.h"
#include "fusion/config.h"
#include "text/decoder.h"
#include "text/lm_internal.h"
}

namespace {

using bufutil::Rand;
using bufutil::SameBits;

// A [rows, cols] F32 weight owning its data; convert() gives a quantized copy.
struct Mat {
    std::vector<float> w;
    int64_t rows, cols;
    Mat(int64_t r, int64_t c, uint32_t seed) : w(Rand((size_t)(r * c), seed, -0.5f, 0.5f)), rows(r), cols(c) {}
    vlm_weight view() const
    {
        vlm_weight W{};
        W.dtype = VLM_DT_F32;
        W.rows = rows;
        W.cols = cols;
        W.data = w.data();
        return W;
    }
};

struct WeightDel { void operator()(vlm_weight *w) const { vlm_weight_release(w); delete w; } };
using WeightPtr = std::unique_ptr<vlm_weight, WeightDel>;

WeightPtr Convert(const Mat &m, vlm_wquant fmt)
{
    WeightPtr W(new vlm_weight(m.view()));
    vlm_quant_spec s{fmt, 0};
    EXPECT_EQ(vlm_weight_convert(W.get(), &s), VLM_OK) << vlm_last_error();
    return W;
}

TEST(BackendCpu, LinearAndLinearManyEqualCoreOps)
{
    const vlm_backend *be = vlm_backend_cpu();
    const Mat m(29, 37, 1), m2(45, 37, 2);
    for (vlm_wquant fmt : {VLM_WQ_NONE, VLM_WQ_BF16, VLM_WQ_Q8, VLM_WQ_Q4}) {
        WeightPtr W = Convert(m, fmt), W2 = Convert(m2, fmt);
        const std::vector<float> bias = Rand(29, 3);
        for (int64_t M : {1, 3, 7}) {
            const std::vector<float> x = Rand((size_t)(M * 37), 4 + (uint32_t)M);
            std::vector<float> want((size_t)(M * 29)), got(want.size(), -7.f);
            vlm_op_linear(want.data(), x.data(), M, W.get(), bias.data());
            ASSERT_EQ(be->linear(be, got.data(), x.data(), M, W.get(), bias.data()), VLM_OK);
            EXPECT_TRUE(SameBits(want, got)) << "linear fmt " << fmt << " M " << M;

            // linear_many: three jobs of different shapes in one call
            std::vector<float> w1(want.size()), w2((size_t)(M * 45)), w3((size_t)29);
            std::vector<float> g1(w1.size()), g2(w2.size()), g3(w3.size());
            vlm_linear_job want_jobs[3] = {{w1.data(), x.data(), M, W.get(), nullptr},
                                           {w2.data(), x.data(), M, W2.get(), nullptr},
                                           {w3.data(), x.data(), 1, W.get(), bias.data()}};
            vlm_linear_job got_jobs[3] = {{g1.data(), x.data(), M, W.get(), nullptr},
                                          {g2.data(), x.data(), M, W2.get(), nullptr},
                                          {g3.data(), x.data(), 1, W.get(), bias.data()}};
            vlm_op_linear_many(want_jobs, 3);
            ASSERT_EQ(be->linear_many(be, got_jobs, 3), VLM_OK);
            EXPECT_TRUE(SameBits(w1, g1) && SameBits(w2, g2) && SameBits(w3, g3)) << "linear_many fmt " << fmt;
        }
    }
}

TEST(BackendCpu, PointwiseNormsAndSoftmaxEqualCoreOps)
{
    const vlm_backend *be = vlm_backend_cpu();
    const int64_t M = 5, D = 37, stride = 45;
    const std::vector<float> x = Rand((size_t)(M * stride), 10), gamma = Rand((size_t)D, 11, 0.5f, 1.5f);

    std::vector<float> want((size_t)(M * D)), got(want.size());
    vlm_op_rmsnorm(want.data(), x.data(), M, D, gamma.data(), 1e-6f); // contiguous rows of x's first M * D
    ASSERT_EQ(be->rmsnorm(be, got.data(), x.data(), M, D, D, gamma.data(), 1e-6f), VLM_OK);
    EXPECT_TRUE(SameBits(want, got));

    // strided rows, in place: the first D values of each row normed, the rest untouched
    std::vector<float> ws = x, gs = x;
    for (int64_t t = 0; t < M; t++) vlm_op_rmsnorm(ws.data() + t * stride, ws.data() + t * stride, 1, D, gamma.data(), 1e-6f);
    ASSERT_EQ(be->rmsnorm(be, gs.data(), gs.data(), M, D, stride, gamma.data(), 1e-6f), VLM_OK);
    EXPECT_TRUE(SameBits(ws, gs));
    EXPECT_EQ(gs[(size_t)(D + 1)], x[(size_t)(D + 1)]);

    const int64_t n = 101;
    std::vector<float> g = Rand(n, 12, -4, 4), up = Rand(n, 13), g2 = g;
    vlm_op_silu_mul(g.data(), up.data(), n);
    ASSERT_EQ(be->silu_mul(be, g2.data(), up.data(), n), VLM_OK);
    EXPECT_TRUE(SameBits(g, g2));

    std::vector<float> y = Rand(n, 14), y2 = y;
    vlm_op_add(y.data(), up.data(), n);
    ASSERT_EQ(be->add(be, y2.data(), up.data(), n), VLM_OK);
    EXPECT_TRUE(SameBits(y, y2));

    std::vector<float> s = Rand(3 * 17, 15, -6, 6), s2 = s;
    for (int r = 0; r < 3; r++) vlm_op_softmax(s.data() + r * 17, 17);
    ASSERT_EQ(be->softmax_rows(be, s2.data(), 3, 17), VLM_OK);
    EXPECT_TRUE(SameBits(s, s2));
    float sum = 0;
    for (int i = 0; i < 17; i++) sum += s2[(size_t)i];
    EXPECT_NEAR(sum, 1.0f, 1e-5f);
}

TEST(BackendCpu, RopeOverTokensEqualsPerTokenCoreOps)
{
    const vlm_backend *be = vlm_backend_cpu();
    const int T = 3, nh = 3, dim = 10, head_stride = 14; // heads with a gap, tokens with another
    const int64_t tok_stride = nh * head_stride + 5;
    std::vector<float> cs((size_t)(T * dim / 2)), sn(cs.size());
    for (int t = 0; t < T; t++) vlm_rope_angles(cs.data() + t * dim / 2, sn.data() + t * dim / 2, 7 + t, dim, 10000.f);
    const std::vector<float> x = Rand((size_t)(T * tok_stride), 20);
    for (int layout = 0; layout < 2; layout++) {
        std::vector<float> want = x, got = x;
        for (int t = 0; t < T; t++) {
            float *p = want.data() + t * tok_stride;
            if (layout == 0) vlm_op_rope_neox(p, nh, head_stride, dim, cs.data() + t * dim / 2, sn.data() + t * dim / 2);
            else vlm_op_rope_interleaved(p, nh, head_stride, dim, cs.data() + t * dim / 2, sn.data() + t * dim / 2);
        }
        auto fn = layout == 0 ? be->rope_neox : be->rope_interleaved;
        ASSERT_EQ(fn(be, got.data(), T, tok_stride, nh, head_stride, dim, cs.data(), sn.data()), VLM_OK);
        EXPECT_TRUE(SameBits(want, got)) << "layout " << layout;
        EXPECT_FALSE(SameBits(x, got)); // it did rotate
    }
}

TEST(BackendCpu, AttentionPicksTheKernelTheFlagAsksFor)
{
    const vlm_backend *be = vlm_backend_cpu();
    vlm_attention_params p{};
    p.n_q = 9, p.n_kv = 13, p.n_heads = 4, p.n_kv_heads = 2, p.qk_dim = 12, p.v_dim = 10;
    p.q_stride = 4 * 12, p.k_stride = 2 * 12, p.v_stride = 2 * 10, p.o_stride = 4 * 10;
    p.causal = 1, p.q_pos0 = 4, p.scale = 0.3f;
    const std::vector<float> q = Rand((size_t)(p.n_q * p.q_stride), 30), k = Rand((size_t)(p.n_kv * p.k_stride), 31),
                             v = Rand((size_t)(p.n_kv * p.v_stride), 32);
    const size_t no = (size_t)(p.n_q * p.o_stride);
    std::vector<float> ref(no), fast(no), got_ref(no), got_fast(no);
    ASSERT_EQ(vlm_op_attention(&p, q.data(), k.data(), v.data(), ref.data()), VLM_OK);
    ASSERT_EQ(vlm_op_attention_fast(&p, q.data(), k.data(), v.data(), fast.data()), VLM_OK);
    ASSERT_EQ(be->attention(be, &p, q.data(), k.data(), v.data(), got_ref.data(), 0), VLM_OK);
    ASSERT_EQ(be->attention(be, &p, q.data(), k.data(), v.data(), got_fast.data(), 1), VLM_OK);
    EXPECT_TRUE(SameBits(ref, got_ref));
    EXPECT_TRUE(SameBits(fast, got_fast));
}

// Long arrays go to the thread pool in chunks: the same bits as the op run on short pieces (one
// thread), for lengths that are not multiples of the chunk or the vector width.
TEST(BackendCpu, LongElementwiseOpsOnThePoolEqualShortPieces)
{
    const int64_t n = 100003, piece = 997;
    const std::vector<float> g0 = Rand((size_t)n, 50, -6, 6), up = Rand((size_t)n, 51);
    auto pieces = [&](std::vector<float> v, void (*op)(float *, const float *, int64_t), bool with_up, int64_t len) {
        for (int64_t i = 0; i < n; i += len) op(v.data() + i, with_up ? up.data() + i : nullptr, std::min(len, n - i));
        return v;
    };
    std::vector<float> g = g0;
    vlm_op_silu_mul(g.data(), up.data(), n);
    EXPECT_TRUE(SameBits(g, pieces(g0, [](float *y, const float *x, int64_t m) { vlm_op_silu_mul(y, x, m); }, true, piece)));
    g = g0;
    vlm_op_add(g.data(), up.data(), n);
    EXPECT_TRUE(SameBits(g, pieces(g0, [](float *y, const float *x, int64_t m) { vlm_op_add(y, x, m); }, true, piece)));
    g = g0;
    vlm_op_gelu_tanh(g.data(), n);
    EXPECT_TRUE(SameBits(g, pieces(g0, [](float *y, const float *, int64_t m) { vlm_op_gelu_tanh(y, m); }, false, piece)));
    g = g0;
    vlm_op_gelu_tanh_fast(g.data(), n);
    // (its last values short of 8 take the scalar formula: pieces of a multiple of 8 keep the vector groups)
    EXPECT_TRUE(SameBits(g, pieces(g0, [](float *y, const float *, int64_t m) { vlm_op_gelu_tanh_fast(y, m); }, false, 1000)));
    g = g0;
    vlm_op_gelu_erf(g.data(), n);
    EXPECT_TRUE(SameBits(g, pieces(g0, [](float *y, const float *, int64_t m) { vlm_op_gelu_erf(y, m); }, false, piece)));
    // and each value is the formula's: silu(g) * up
    g = g0;
    vlm_op_silu_mul(g.data(), up.data(), n);
    for (int64_t i = 0; i < n; i += 4999) {
        const float s = g0[(size_t)i] / (1.0f + std::exp(-g0[(size_t)i]));
        EXPECT_NEAR(g[(size_t)i], s * up[(size_t)i], 1e-6f * (1 + std::fabs(s))) << i;
    }
}

// A prefill's weighted scatter-add (thousands of routed rows) runs over slices of columns on the
// pool: the same sums, in the same order per destination, as one thread's loop.
TEST(BackendCpu, LongScatterAddEqualsTheSerialSums)
{
    const vlm_backend *be = vlm_backend_cpu();
    for (const int D : {1000, 1280, 1283}) {
        const int K = 3, T = 100, n = T * K; // 300 x D values: over the single-thread bound
        std::vector<int32_t> rows((size_t)n);
        for (int i = 0; i < n; i++) rows[(size_t)i] = (int32_t)((i * 37 + 5) % n); // every entry once, scrambled
        const std::vector<float> src = Rand((size_t)(n * D), 60 + D), w = Rand((size_t)n, 61);
        std::vector<float> y = Rand((size_t)(T * D), 62), want = y;
        for (int i = 0; i < n; i++)
            for (int h = 0; h < D; h++) {
                const float prod = w[(size_t)rows[(size_t)i]] * src[(size_t)(i * D + h)];
                want[(size_t)(rows[(size_t)i] / K * D + h)] = want[(size_t)(rows[(size_t)i] / K * D + h)] + prod;
            }
        ASSERT_EQ(be->scatter_add_rows(be, y.data(), src.data(), D, rows.data(), w.data(), n, K), VLM_OK);
        EXPECT_TRUE(SameBits(want, y)) << D;
    }
}

TEST(BackendCpu, RowOpsAndBuffers)
{
    const vlm_backend *be = vlm_backend_cpu();
    EXPECT_STREQ(be->name, "cpu");
    EXPECT_EQ(be->kind, VLM_BACKEND_CPU);
    EXPECT_EQ(be->host_memory, 1);

    // embedding rows from a bf16 table equal vlm_op_weight_row
    const Mat table(11, 19, 40);
    WeightPtr E = Convert(table, VLM_WQ_BF16);
    const int32_t ids[4] = {10, 0, 7, 7};
    std::vector<float> want(4 * 19), got(want.size());
    for (int i = 0; i < 4; i++) vlm_op_weight_row(E.get(), ids[i], want.data() + i * 19);
    ASSERT_EQ(be->embed_rows(be, got.data(), E.get(), ids, 4), VLM_OK);
    EXPECT_TRUE(SameBits(want, got));

    // gather / weighted scatter-add with div: entries e = t * 3 + j of 4 tokens, D = 5
    const int D = 5, K = 3;
    const std::vector<float> src = Rand(4 * D, 41), w = Rand(12, 42);
    const int32_t rows[5] = {11, 2, 3, 9, 4}; // tokens 3, 0, 1, 3, 1
    std::vector<float> gat(5 * D);
    ASSERT_EQ(be->gather_rows(be, gat.data(), src.data(), D, rows, 5, K), VLM_OK);
    for (int i = 0; i < 5; i++)
        for (int h = 0; h < D; h++) EXPECT_EQ(gat[(size_t)(i * D + h)], src[(size_t)(rows[i] / K * D + h)]);
    std::vector<float> y = Rand(4 * D, 43), y2 = y;
    for (int i = 0; i < 5; i++)
        for (int h = 0; h < D; h++) {
            float prod = w[(size_t)rows[i]] * gat[(size_t)(i * D + h)]; // rounded product, then the sum
            y2[(size_t)(rows[i] / K * D + h)] = y2[(size_t)(rows[i] / K * D + h)] + prod;
        }
    ASSERT_EQ(be->scatter_add_rows(be, y.data(), gat.data(), D, rows, w.data(), 5, K), VLM_OK);
    EXPECT_TRUE(SameBits(y, y2));

    // buffers: alloc, upload, copy, copy_rows, zero, download
    float *a = nullptr, *b = nullptr;
    ASSERT_EQ(be->alloc(be, 24 * sizeof(float), (void **)&a), VLM_OK);
    ASSERT_EQ(be->alloc(be, 24 * sizeof(float), (void **)&b), VLM_OK);
    const std::vector<float> h = Rand(24, 44);
    std::vector<float> back(24);
    ASSERT_EQ(be->upload(be, a, h.data(), 24 * sizeof(float)), VLM_OK);
    ASSERT_EQ(be->copy(be, b, a, 24 * sizeof(float)), VLM_OK);
    ASSERT_EQ(be->zero(be, a, 24 * sizeof(float)), VLM_OK);
    ASSERT_EQ(be->copy_rows(be, a + 1, 6, b + 2, 8, 3, 4), VLM_OK); // 3 rows of 4
    ASSERT_EQ(be->download(be, back.data(), a, 24 * sizeof(float)), VLM_OK);
    for (int i = 0; i < 24; i++) {
        const int r = (i - 1) / 6, c = (i - 1) % 6;
        const bool in = i >= 1 && r < 3 && c < 4;
        EXPECT_EQ(back[(size_t)i], in ? h[(size_t)(2 + r * 8 + c)] : 0.f) << i;
    }
    be->free(be, a);
    be->free(be, b);
    void *none = (void *)1;
    EXPECT_EQ(be->alloc(be, 0, &none), VLM_OK);
    EXPECT_EQ(none, nullptr);
    be->free(be, nullptr);
}

TEST(BackendCpu, StagingCopiesNothing)
{
    const vlm_backend *be = vlm_backend_cpu();
    float host[3] = {1, 2, 3};
    const void *v = nullptr;
    ASSERT_EQ(vlm_be_buffer_view(be, host, sizeof host, &v), VLM_OK);
    EXPECT_EQ(v, (const void *)host);
    vlm_be_buffer_view_release(be, v);
    ASSERT_EQ(vlm_be_host_view(be, host, sizeof host, &v), VLM_OK);
    EXPECT_EQ(v, (const void *)host);
    vlm_be_host_view_release(be, v);
    void *o = nullptr;
    ASSERT_EQ(vlm_be_output_view(be, host, sizeof host, &o), VLM_OK);
    EXPECT_EQ(o, (void *)host);
    EXPECT_EQ(vlm_be_output_finish(be, host, o, sizeof host, 1), VLM_OK);
}

TEST(BackendByName, CpuAndBadNames)
{
    const vlm_backend *be = nullptr;
    ASSERT_EQ(vlm_backend_by_name("cpu", &be), VLM_OK);
    EXPECT_EQ(be, vlm_backend_cpu());
    for (const char *bad : {"gpu", "cuda:x", "cuda:", "cuda:-1", "cuda:1x", "cuda0", "CPU", "", "cuda:99999999999"}) {
        be = vlm_backend_cpu();
        EXPECT_EQ(vlm_backend_by_name(bad, &be), VLM_ERR_INVALID) << bad;
        EXPECT_EQ(be, nullptr) << bad;
        EXPECT_NE(std::string(vlm_last_error()).find("unknown device '" + std::string(bad) + "'"), std::string::npos)
            << vlm_last_error();
    }
    EXPECT_EQ(vlm_backend_by_name(nullptr, &be), VLM_ERR_INVALID);
}

#ifndef VLM_HAVE_CUDA
TEST(BackendByName, CudaNeedsACudaBuild)
{
    for (const char *name : {"cuda", "cuda:0", "cuda:3"}) {
        const vlm_backend *be = vlm_backend_cpu();
        EXPECT_EQ(vlm_backend_by_name(name, &be), VLM_ERR_UNSUPPORTED) << name;
        EXPECT_EQ(be, nullptr);
        EXPECT_STREQ(vlm_last_error(), "vlm was built without CUDA (rebuild with make CUDA=1)");
    }
}

int g_opened_device = -1;
vlm_backend g_fake_cuda;
int FakeOpen(int device, const vlm_backend **out)
{
    g_opened_device = device;
    if (device == 5) return vlm_errorf(VLM_ERR_UNSUPPORTED, "no device 5");
    *out = &g_fake_cuda;
    return VLM_OK;
}

TEST(BackendByName, RegisteredCudaBackendIsUsed)
{
    g_fake_cuda = *vlm_backend_cpu();
    g_fake_cuda.name = "fake-cuda";
    vlm_backend_register_cuda(FakeOpen);
    const vlm_backend *be = nullptr;
    EXPECT_EQ(vlm_backend_by_name("cuda:2", &be), VLM_OK);
    EXPECT_EQ(g_opened_device, 2);
    EXPECT_EQ(be, &g_fake_cuda);
    EXPECT_EQ(vlm_backend_by_name("cuda", &be), VLM_OK);
    EXPECT_EQ(g_opened_device, 0);
    EXPECT_EQ(vlm_backend_by_name("cuda:5", &be), VLM_ERR_UNSUPPORTED);
    EXPECT_EQ(be, nullptr);
    EXPECT_STREQ(vlm_last_error(), "no device 5");
    vlm_backend_register_cuda(nullptr);
    EXPECT_EQ(vlm_backend_by_name("cuda", &be), VLM_ERR_UNSUPPORTED);
}
#endif

// ---- the decoder through a backend ---------------------------------------------------------

// A backend with its own memory, simulated: buffers are host allocations whose pointers carry
// bit 62 (non-canonical on x86-64, so any host access to a buffer faults). Ops strip the tag and
// run the CPU backend. Pointers without the tag (the loader's gammas and biases) pass through.
constexpr uintptr_t kTag = uintptr_t(1) << 62;
template <typename T> T *Dev(T *p) { return (T *)((uintptr_t)p & ~kTag); }
template <typename T> const T *Dev(const T *p) { return (const T *)((uintptr_t)p & ~kTag); }

struct Counts {
    int64_t allocs = 0, frees = 0, linear = 0, many = 0, attention = 0, uploads = 0, downloads = 0;
} g_counts;
const vlm_backend *Cpu() { return vlm_backend_cpu(); }

int FAlloc(const vlm_backend *, size_t bytes, void **out)
{
    int rc = Cpu()->alloc(Cpu(), bytes, out);
    if (rc == VLM_OK && *out) {
        *out = (void *)((uintptr_t)*out | kTag);
        g_counts.allocs++;
    }
    return rc;
}
void FFree(const vlm_backend *, void *p)
{
    if (!p) return;
    EXPECT_TRUE((uintptr_t)p & kTag) << "a host pointer freed as a buffer";
    g_counts.frees++;
    Cpu()->free(Cpu(), Dev(p));
}
int FZero(const vlm_backend *, void *p, size_t n) { return Cpu()->zero(Cpu(), Dev(p), n); }
int FUpload(const vlm_backend *, void *d, const void *h, size_t n)
{
    EXPECT_FALSE((uintptr_t)h & kTag);
    g_counts.uploads++;
    return Cpu()->upload(Cpu(), Dev(d), h, n);
}
int FDownload(const vlm_backend *, void *h, const void *s, size_t n)
{
    EXPECT_FALSE((uintptr_t)h & kTag);
    g_counts.downloads++;
    return Cpu()->download(Cpu(), h, Dev(s), n);
}
int FCopy(const vlm_backend *, void *d, const void *s, size_t n) { return Cpu()->copy(Cpu(), Dev(d), Dev(s), n); }
int FCopyRows(const vlm_backend *, float *d, int64_t ds, const float *s, int64_t ss, int64_t r, int64_t w)
{
    return Cpu()->copy_rows(Cpu(), Dev(d), ds, Dev(s), ss, r, w);
}
int FToF16(const vlm_backend *, uint16_t *d, int64_t ds, const float *s, int64_t ss, int64_t r, int64_t w)
{
    return Cpu()->rows_to_f16(Cpu(), Dev(d), ds, Dev(s), ss, r, w);
}
int FFromF16(const vlm_backend *, float *d, int64_t ds, const uint16_t *s, int64_t ss, int64_t r, int64_t w)
{
    return Cpu()->rows_from_f16(Cpu(), Dev(d), ds, Dev(s), ss, r, w);
}
int FLinear(const vlm_backend *, float *y, const float *x, int64_t M, const vlm_weight *W, const float *b)
{
    g_counts.linear++;
    return Cpu()->linear(Cpu(), Dev(y), Dev(x), M, W, Dev(b));
}
int FLinearMany(const vlm_backend *, const vlm_linear_job *jobs, int n)
{
    g_counts.many++;
    std::vector<vlm_linear_job> j(jobs, jobs + n);
    for (auto &e : j) e.y = Dev(e.y), e.x = Dev(e.x), e.bias = Dev(e.bias);
    return Cpu()->linear_many(Cpu(), j.data(), n);
}
int FRmsnorm(const vlm_backend *, float *y, const float *x, int64_t M, int64_t D, int64_t st, const float *g, float e)
{
    return Cpu()->rmsnorm(Cpu(), Dev(y), Dev(x), M, D, st, Dev(g), e);
}
int FSiluMul(const vlm_backend *, float *g, const float *u, int64_t n) { return Cpu()->silu_mul(Cpu(), Dev(g), Dev(u), n); }
int FAdd(const vlm_backend *, float *y, const float *x, int64_t n) { return Cpu()->add(Cpu(), Dev(y), Dev(x), n); }
int FSoftmax(const vlm_backend *, float *x, int64_t M, int64_t n) { return Cpu()->softmax_rows(Cpu(), Dev(x), M, n); }
int FRopeNeox(const vlm_backend *, float *x, int64_t T, int64_t ts, int nh, int64_t hs, int dim, const float *c,
              const float *s)
{
    return Cpu()->rope_neox(Cpu(), Dev(x), T, ts, nh, hs, dim, Dev(c), Dev(s));
}
int FRopeInter(const vlm_backend *, float *x, int64_t T, int64_t ts, int nh, int64_t hs, int dim, const float *c,
               const float *s)
{
    return Cpu()->rope_interleaved(Cpu(), Dev(x), T, ts, nh, hs, dim, Dev(c), Dev(s));
}
int FAttention(const vlm_backend *, const vlm_attention_params *p, const float *q, const void *k, const void *v,
               float *o, int fast)
{
    g_counts.attention++;
    return Cpu()->attention(Cpu(), p, Dev(q), Dev(k), Dev(v), Dev(o), fast);
}
int FEmbed(const vlm_backend *, float *d, const vlm_weight *W, const int32_t *ids, int64_t n)
{
    return Cpu()->embed_rows(Cpu(), Dev(d), W, Dev(ids), n);
}
int FGather(const vlm_backend *, float *d, const float *s, int64_t D, const int32_t *r, int64_t n, int div)
{
    return Cpu()->gather_rows(Cpu(), Dev(d), Dev(s), D, Dev(r), n, div);
}
int FScatter(const vlm_backend *, float *y, const float *s, int64_t D, const int32_t *r, const float *w, int64_t n, int div)
{
    return Cpu()->scatter_add_rows(Cpu(), Dev(y), Dev(s), D, Dev(r), Dev(w), n, div);
}

vlm_backend FakeDevice()
{
    vlm_backend b{};
    b.name = "fake-device";
    b.kind = VLM_BACKEND_CUDA;
    b.host_memory = 0;
    b.kv_f16 = 1; /* as the CPU: the decoder then makes the same cache on both */
    b.rows_to_f16 = FToF16, b.rows_from_f16 = FFromF16;
    b.alloc = FAlloc, b.free = FFree, b.zero = FZero, b.upload = FUpload, b.download = FDownload, b.copy = FCopy;
    b.copy_rows = FCopyRows, b.linear = FLinear, b.linear_many = FLinearMany, b.rmsnorm = FRmsnorm;
    b.silu_mul = FSiluMul, b.add = FAdd, b.softmax_rows = FSoftmax, b.rope_neox = FRopeNeox;
    b.rope_interleaved = FRopeInter, b.attention = FAttention, b.embed_rows = FEmbed, b.gather_rows = FGather;
    b.scatter_add_rows = FScatter;
    return b;
}

struct Outputs {
    std::vector<float> logits, hidden, weight;
    std::vector<int32_t> idx;
};

// Prefill 11 tokens (all logits, traces) then decode 3 tokens one at a time (last logits):
// the MoE loop path and, for converted weights, the batched decode path.
void RunDecoder(vlm_lm *lm, const vlm_backend *be, Outputs *o)
{
    lm->be = be;
    const vlm_lm_config *c = vlm_lm_get_config(lm);
    const int H = c->hidden_size, V = c->vocab_size, NL = c->num_hidden_layers, K = c->num_experts_per_tok;
    const int NM = vlm_lm_n_moe_layers(lm), T = 11;
    vlm_kv_cache *kc = nullptr;
    ASSERT_EQ(vlm_kv_cache_create(lm, 32, &kc), VLM_OK) << vlm_last_error();
    std::vector<int32_t> ids(T + 3);
    for (int i = 0; i < T + 3; i++) ids[(size_t)i] = (i * 37 + 5) % V;
    std::vector<float> emb((size_t)(T + 3) * H);
    ASSERT_EQ(vlm_lm_embed(lm, ids.data(), T + 3, emb.data()), VLM_OK);
    o->logits.assign((size_t)(T + 3) * V, 0.f);
    o->hidden.assign((size_t)(NL + 1) * T * H, 0.f);
    o->idx.assign((size_t)NM * T * K, 0);
    o->weight.assign(o->idx.size(), 0.f);
    vlm_lm_trace tr{};
    tr.hidden_states = o->hidden.data(), tr.routing_idx = o->idx.data(), tr.routing_weight = o->weight.data();
    EXPECT_EQ(vlm_lm_forward(lm, kc, emb.data(), T, o->logits.data(), 1, &tr), VLM_OK) << vlm_last_error();
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(vlm_lm_forward(lm, kc, emb.data() + (T + i) * H, 1, o->logits.data() + (T + i) * V, 0, nullptr), VLM_OK)
            << vlm_last_error();
    EXPECT_EQ(vlm_kv_cache_len(kc), T + 3);
    vlm_kv_cache_free(kc);
    lm->be = vlm_backend_cpu();
}

struct Loaded {
    vlm_checkpoint *ck = nullptr;
    vlm_lm *lm = nullptr;
    ~Loaded()
    {
        vlm_lm_free(lm);
        vlm_checkpoint_close(ck);
    }
};

void Load(const std::string &name, const char *quant, Loaded *m)
{
    const std::string dir = std::string(VLM_TEST_DATA) + "/golden/" + name;
    vlm_vl2_config cfg;
    ASSERT_EQ(vlm_vl2_config_load(dir.c_str(), &cfg), VLM_OK) << vlm_last_error();
    ASSERT_EQ(vlm_checkpoint_open(dir.c_str(), &m->ck), VLM_OK) << vlm_last_error();
    vlm_lm_quant q{};
    if (quant) {
        vlm_quant_spec s;
        ASSERT_EQ(vlm_quant_spec_parse(quant, &s), VLM_OK);
        q.attention = q.experts = q.lm_head = s;
    }
    ASSERT_EQ(vlm_lm_load_q(m->ck, "language.", &cfg.lm, &q, &m->lm), VLM_OK) << vlm_last_error();
}

class BackendDecoder : public ::testing::TestWithParam<std::tuple<const char *, const char *, int>> {};

TEST_P(BackendDecoder, FakeDeviceEqualsCpuBitForBit)
{
    const auto [model, quant, absorbed] = GetParam();
    Loaded m;
    Load(model, *quant ? quant : nullptr, &m);
    if (HasFatalFailure()) return;
    EXPECT_EQ(m.lm->be, vlm_backend_cpu()) << "the loader sets the CPU backend";
    // converted weights: a 16-bit cache (on both: the fake device says it has f16 attention)
    EXPECT_EQ(vlm_lm_kv_type(m.lm), *quant ? VLM_KV_F16 : VLM_KV_F32);
    vlm_lm_set_mla_absorbed(m.lm, absorbed);
    Outputs cpu, dev;
    RunDecoder(m.lm, vlm_backend_cpu(), &cpu);
    const vlm_backend fake = FakeDevice();
    g_counts = Counts{};
    RunDecoder(m.lm, &fake, &dev);
    EXPECT_TRUE(SameBits(cpu.logits, dev.logits));
    EXPECT_TRUE(SameBits(cpu.hidden, dev.hidden));
    EXPECT_TRUE(SameBits(cpu.weight, dev.weight));
    EXPECT_EQ(cpu.idx, dev.idx);
    // everything went through the fake: every buffer freed, products and attention called
    EXPECT_GT(g_counts.allocs, 0);
    EXPECT_EQ(g_counts.allocs, g_counts.frees);
    EXPECT_GT(g_counts.linear, 0);
    EXPECT_GT(g_counts.attention, 0);
    if (std::string(model) == "tiny-mha") {
        EXPECT_GE(g_counts.many, 4 * 4); // q/k/v in one pass per layer and step
    }
    EXPECT_GT(g_counts.uploads, 0);
    EXPECT_GT(g_counts.downloads, 0);
}

INSTANTIATE_TEST_SUITE_P(Models, BackendDecoder,
                         ::testing::Values(std::make_tuple("tiny-mha", "", 1), std::make_tuple("tiny-mha", "q4", 1),
                                           std::make_tuple("tiny-mla", "", 1), std::make_tuple("tiny-mla", "", 0),
                                           std::make_tuple("tiny-mla", "q8", 1), std::make_tuple("tiny-mla", "q8", 0)),
                         [](const auto &info) {
                           std::string s = std::string(std::get<0>(info.param)) + "_" +
                                           (*std::get<1>(info.param) ? std::get<1>(info.param) : "asis") +
                                           (std::get<2>(info.param) ? "" : "_expanded");
                           for (auto &ch : s)
                             if (!isalnum((unsigned char)ch)) ch = '_';
                           return s;
                         });

TEST(BackendDecoderCache, CacheOfAnotherBackendIsRefused)
{
    Loaded m;
    Load("tiny-mha", nullptr, &m);
    if (HasFatalFailure()) return;
    vlm_kv_cache *kc = nullptr;
    ASSERT_EQ(vlm_kv_cache_create(m.lm, 4, &kc), VLM_OK);
    const vlm_backend fake = FakeDevice();
    m.lm->be = &fake;
    std::vector<float> emb((size_t)vlm_lm_get_config(m.lm)->hidden_size, 0.1f);
    EXPECT_EQ(vlm_lm_forward(m.lm, kc, emb.data(), 1, nullptr, 0, nullptr), VLM_ERR_INVALID);
    EXPECT_NE(std::string(vlm_last_error()).find("KV cache is on backend cpu, the model on fake-device"),
              std::string::npos)
        << vlm_last_error();
    EXPECT_EQ(vlm_kv_cache_len(kc), 0);
    m.lm->be = vlm_backend_cpu();
    vlm_kv_cache_free(kc);
}

} // namespace
