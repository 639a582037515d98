// The CUDA ops (cuda/cuda_ops.h) against their CPU reference ops, on random inputs of odd sizes.
// Every test that needs a device skips ("no CUDA device") when vlm_cuda_device_count() <= 0,
// which is always the case in a build without CUDA (make CUDA=0).
//
// Tolerances, |gpu - ref| <= atol + rtol * |ref| unless stated:
//  - linear F32: |y - ref| <= 1e-5 * sum_k |x_k w_k| + 1e-6 (fp32 accumulation in another order).
//  - linear BF16 / F16: x is rounded to 16 bits (unit roundoff u = 2^-8 / 2^-11, the weights are
//    the same 16-bit values in both), so |y - ref| <= (u + 1e-5) * sum_k |x_k w_k| + 1e-6; and
//    against the reference run on the rounded x, the fp32 bound above.
//  - norms, gelu, silu, softmax, RoPE: rtol 1e-5 (fp32 formulas in the same order; tree sums and
//    CUDA's tanhf / erff / expf, within 2 ulp, are the differences), atol 1e-6 to 2e-6 where
//    1 + tanh / 1 + erf cancel for negative inputs. add: exact.
//  - attention: atol 2e-5, rtol 1e-5 (scores differ by summation order; outputs are averages
//    of N(0, 1) values).
//  - MoE routing: expert ids exact, weights rtol 1e-5, atol 1e-7. Tokens whose decision is a
//    near tie (k-th vs (k+1)-th choice, or topk_group-th vs next group score, closer than 1e-5)
//    are not compared: expf differs in the last bits between CPU and GPU; they stay under 5%.
//  - MoE combine: atol 1e-5 (six fused multiply-adds of terms below 10). Argmax, grouping and
//    gather: exact. Sampling: the same token as vlm_sampler_sample for the same uniform number.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

extern "C" {
#include "core/error.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "cuda/cuda_ops.h"
#include "text/moe_router.h"
#include "text/sampler.h"
}

namespace {

#define OK(call) ASSERT_EQ((call), VLM_OK) << vlm_last_error()

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (vlm_cuda_device_count() <= 0) GTEST_SKIP() << "no CUDA device (" << vlm_last_error() << ")";
  }
  static void TearDownTestSuite() { vlm_cuda_shutdown(); }
};

// Device memory for n elements of T, freed with the object.
template <class T>
class Dev {
 public:
  explicit Dev(size_t n) : n_(n) { rc_ = vlm_cuda_malloc(&p_, n * sizeof(T)); }
  explicit Dev(const std::vector<T> &h) : Dev(h.size()) {
    if (rc_ == VLM_OK) rc_ = vlm_cuda_memcpy_h2d(p_, h.data(), n_ * sizeof(T));
  }
  ~Dev() { vlm_cuda_free(p_); }
  Dev(const Dev &) = delete;
  Dev &operator=(const Dev &) = delete;
  T *get() const { return static_cast<T *>(p_); }
  int status() const { return rc_; }
  // Waits for the device, then copies back (errors of earlier kernels show up here).
  std::vector<T> host() const {
    std::vector<T> h(n_);
    int rc = vlm_cuda_sync();
    if (rc == VLM_OK) rc = vlm_cuda_memcpy_d2h(h.data(), p_, n_ * sizeof(T));
    EXPECT_EQ(rc, VLM_OK) << vlm_last_error();
    return h;
  }

 private:
  void *p_ = nullptr;
  size_t n_;
  int rc_ = VLM_OK;
};

#define DEV(name, T, init) \
  Dev<T> name(init);       \
  ASSERT_EQ(name.status(), VLM_OK) << vlm_last_error()

std::vector<float> randn(size_t n, unsigned seed, float mean = 0.0f, float sd = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(mean, sd);
  std::vector<float> v(n);
  for (auto &x : v) x = d(g);
  return v;
}

// Counts elements outside atol + rtol * |want| and reports the first and the worst.
void expect_close(const std::vector<float> &got, const std::vector<float> &want, double rtol, double atol,
                  const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < got.size(); i++) {
    double tol = atol + rtol * std::fabs((double)want[i]), err = std::fabs((double)got[i] - (double)want[i]);
    if (!(err <= tol)) {
      if (bad++ == 0) ADD_FAILURE() << what << ": first mismatch at " << i << ": " << got[i] << " vs " << want[i];
      if (!(err - tol <= worst_excess)) worst_excess = err - tol, worst = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": worst at " << worst << ": " << (bad ? got[worst] : 0) << " vs "
                     << (bad ? want[worst] : 0);
}

const int64_t kRows[] = {1, 7, 729, 1023};

// ---- linear --------------------------------------------------------------------

struct Weight16 {
  std::vector<float> f32;
  std::vector<uint16_t> h;
  vlm_weight w{};
};

// W [N, K] ~ N(0, 0.05) stored as dt (the fp32 copy holds exactly the stored values).
Weight16 make_weight(vlm_dtype dt, int64_t N, int64_t K, unsigned seed) {
  Weight16 W;
  W.f32 = randn((size_t)(N * K), seed, 0.0f, 0.05f);
  if (dt != VLM_DT_F32) {
    W.h.resize(W.f32.size());
    for (size_t i = 0; i < W.f32.size(); i++) {
      W.h[i] = dt == VLM_DT_BF16 ? vlm_f32_to_bf16(W.f32[i]) : vlm_f32_to_f16(W.f32[i]);
      W.f32[i] = dt == VLM_DT_BF16 ? vlm_bf16_to_f32(W.h[i]) : vlm_f16_to_f32(W.h[i]);
    }
  }
  W.w.dtype = dt;
  W.w.rows = N;
  W.w.cols = K;
  W.w.data = dt == VLM_DT_F32 ? (const void *)W.f32.data() : (const void *)W.h.data();
  W.w.quant = VLM_WQ_NONE;
  return W;
}

TEST_F(CudaOps, LinearMatchesReferenceForEachWeightType) {
  const int64_t K = 333, N = 129;
  for (vlm_dtype dt : {VLM_DT_F32, VLM_DT_BF16, VLM_DT_F16}) {
    const double u = dt == VLM_DT_BF16 ? std::ldexp(1.0, -8) : dt == VLM_DT_F16 ? std::ldexp(1.0, -11) : 0.0;
    Weight16 W = make_weight(dt, N, K, 11 + (unsigned)dt);
    vlm_cuda_weight dW;
    OK(vlm_cuda_weight_upload(&W.w, &dW));
    std::vector<float> bias = randn((size_t)N, 5);
    DEV(d_bias, float, bias);
    for (int64_t M : kRows) {
      const bool with_bias = M != 7;
      std::vector<float> x = randn((size_t)(M * K), 100 + (unsigned)M);
      DEV(d_x, float, x);
      Dev<float> d_y((size_t)(M * N));
      ASSERT_EQ(d_y.status(), VLM_OK);
      ASSERT_EQ(vlm_cuda_linear(d_y.get(), d_x.get(), M, &dW, with_bias ? d_bias.get() : nullptr, nullptr), VLM_OK)
          << vlm_last_error();
      std::vector<float> y = d_y.host();

      std::vector<float> ref((size_t)(M * N)), ref_rounded((size_t)(M * N)), xr(x);
      vlm_op_linear(ref.data(), x.data(), M, &W.w, with_bias ? bias.data() : nullptr);
      for (auto &v : xr)
        v = dt == VLM_DT_BF16  ? vlm_bf16_to_f32(vlm_f32_to_bf16(v))
            : dt == VLM_DT_F16 ? vlm_f16_to_f32(vlm_f32_to_f16(v))
                               : v;
      vlm_op_linear(ref_rounded.data(), xr.data(), M, &W.w, with_bias ? bias.data() : nullptr);

      size_t bad = 0, bad_rounded = 0;
      for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
          double xw = with_bias ? std::fabs(bias[(size_t)n]) : 0.0;
          for (int64_t k = 0; k < K; k++) xw += std::fabs((double)x[(size_t)(m * K + k)] * W.f32[(size_t)(n * K + k)]);
          const size_t i = (size_t)(m * N + n);
          if (!(std::fabs((double)y[i] - ref[i]) <= (u + 1e-5) * xw + 1e-6)) bad++;
          if (!(std::fabs((double)y[i] - ref_rounded[i]) <= 1e-5 * xw + 1e-6)) bad_rounded++;
        }
      EXPECT_EQ(bad, 0u) << vlm_dtype_name(dt) << " M=" << M;
      EXPECT_EQ(bad_rounded, 0u) << vlm_dtype_name(dt) << " M=" << M << " (reference on the rounded x)";
    }
    vlm_cuda_weight_free(&dW);
  }
}

// ---- norms and pointwise -------------------------------------------------------

TEST_F(CudaOps, RmsnormAndLayernormMatchReference) {
  const int64_t D = 1151;
  std::vector<float> gamma = randn((size_t)D, 1, 1.0f, 0.1f), beta = randn((size_t)D, 2, 0.0f, 0.1f);
  DEV(d_gamma, float, gamma);
  DEV(d_beta, float, beta);
  for (int64_t M : kRows) {
    std::vector<float> x = randn((size_t)(M * D), 30 + (unsigned)M, 0.5f, 2.0f), ref((size_t)(M * D));
    DEV(d_x, float, x);
    Dev<float> d_y((size_t)(M * D));
    ASSERT_EQ(d_y.status(), VLM_OK);

    OK(vlm_cuda_rmsnorm(d_y.get(), d_x.get(), M, D, d_gamma.get(), 1e-6f, nullptr));
    vlm_op_rmsnorm(ref.data(), x.data(), M, D, gamma.data(), 1e-6f);
    expect_close(d_y.host(), ref, 1e-5, 1e-6, "rmsnorm M=" + std::to_string(M));

    OK(vlm_cuda_layernorm(d_y.get(), d_x.get(), M, D, d_gamma.get(), d_beta.get(), 1e-6f, nullptr));
    vlm_op_layernorm(ref.data(), x.data(), M, D, gamma.data(), beta.data(), 1e-6f);
    expect_close(d_y.host(), ref, 1e-5, 2e-6, "layernorm M=" + std::to_string(M));

    OK(vlm_cuda_layernorm(d_y.get(), d_x.get(), M, D, d_gamma.get(), nullptr, 1e-5f, nullptr));
    vlm_op_layernorm(ref.data(), x.data(), M, D, gamma.data(), nullptr, 1e-5f);
    expect_close(d_y.host(), ref, 1e-5, 2e-6, "layernorm without beta M=" + std::to_string(M));
  }
}

TEST_F(CudaOps, ActivationsAndAddMatchReference) {
  const int64_t n = 729 * 1151;
  std::vector<float> x = randn((size_t)n, 7, 0.0f, 2.0f), up = randn((size_t)n, 8);
  DEV(d_up, float, up);
  {
    DEV(d, float, x);
    std::vector<float> ref(x);
    OK(vlm_cuda_gelu_tanh(d.get(), n, nullptr));
    vlm_op_gelu_tanh(ref.data(), n);
    expect_close(d.host(), ref, 1e-5, 2e-6, "gelu_tanh");
  }
  {
    DEV(d, float, x);
    std::vector<float> ref(x);
    OK(vlm_cuda_gelu_erf(d.get(), n, nullptr));
    vlm_op_gelu_erf(ref.data(), n);
    expect_close(d.host(), ref, 1e-5, 2e-6, "gelu_erf");
  }
  {
    DEV(d, float, x);
    std::vector<float> ref(x);
    OK(vlm_cuda_silu_mul(d.get(), d_up.get(), n, nullptr));
    vlm_op_silu_mul(ref.data(), up.data(), n);
    expect_close(d.host(), ref, 1e-5, 1e-6, "silu_mul");
  }
  {
    DEV(d, float, x);
    std::vector<float> ref(x);
    OK(vlm_cuda_add(d.get(), d_up.get(), n, nullptr));
    vlm_op_add(ref.data(), up.data(), n);
    expect_close(d.host(), ref, 0.0, 0.0, "add");
  }
}

TEST_F(CudaOps, SoftmaxRowsMatchReference) {
  const int64_t n = 1001;
  for (int64_t M : kRows) {
    std::vector<float> x = randn((size_t)(M * n), 50 + (unsigned)M, 0.0f, 3.0f), ref(x);
    DEV(d, float, x);
    OK(vlm_cuda_softmax_rows(d.get(), M, n, nullptr));
    for (int64_t m = 0; m < M; m++) vlm_op_softmax(ref.data() + m * n, n);
    expect_close(d.host(), ref, 1e-5, 1e-10, "softmax M=" + std::to_string(M));
  }
}

// ---- RoPE ------------------------------------------------------------------------

TEST_F(CudaOps, RopeBothLayoutsMatchReferenceWithStrides) {
  const int n_heads = 3;
  for (int dim : {64, 128}) {
    const int h2 = dim / 2;
    const int64_t head_stride = dim + 5, tok_stride = n_heads * head_stride + 3;
    for (int64_t n_tok : {(int64_t)1, (int64_t)7, (int64_t)729}) {
      // token t at position 17 + t
      std::vector<float> cs((size_t)(n_tok * h2)), sn((size_t)(n_tok * h2));
      for (int64_t t = 0; t < n_tok; t++)
        vlm_rope_angles(&cs[(size_t)(t * h2)], &sn[(size_t)(t * h2)], 17 + t, dim, 10000.0f);
      DEV(d_cos, float, cs);
      DEV(d_sin, float, sn);
      for (int interleaved = 0; interleaved < 2; interleaved++) {
        std::vector<float> x = randn((size_t)(n_tok * tok_stride), 60 + (unsigned)dim + (unsigned)n_tok), ref(x);
        DEV(d_x, float, x);
        auto rope = interleaved ? vlm_cuda_rope_interleaved : vlm_cuda_rope_neox;
        OK(rope(d_x.get(), n_tok, tok_stride, n_heads, head_stride, dim, d_cos.get(), d_sin.get(), nullptr));
        for (int64_t t = 0; t < n_tok; t++) {
          float *v = ref.data() + t * tok_stride;
          if (interleaved)
            vlm_op_rope_interleaved(v, n_heads, head_stride, dim, &cs[(size_t)(t * h2)], &sn[(size_t)(t * h2)]);
          else
            vlm_op_rope_neox(v, n_heads, head_stride, dim, &cs[(size_t)(t * h2)], &sn[(size_t)(t * h2)]);
        }
        // the whole buffer: the padding between heads and tokens must come back as it was
        expect_close(d_x.host(), ref, 1e-5, 1e-6,
                     std::string(interleaved ? "rope_interleaved" : "rope_neox") + " dim=" + std::to_string(dim) +
                         " n_tok=" + std::to_string(n_tok));
      }
    }
  }
}

// ---- attention -------------------------------------------------------------------

struct AttnCase {
  const char *name;
  int64_t n_q, n_kv;
  int heads, kv_heads, qk, vd, causal;
  int64_t q_pos0;
};

TEST_F(CudaOps, AttentionMatchesReference) {
  const AttnCase cases[] = {
      {"vit_72", 729, 729, 4, 4, 72, 72, 0, 0},
      {"prefill_gqa_128", 7, 7, 4, 2, 128, 128, 1, 0},
      {"decode_gqa_128", 1, 1023, 8, 1, 128, 128, 1, 1022},
      {"mla_chunk_192_128", 7, 107, 3, 3, 192, 128, 1, 100},
      {"causal_256", 1023, 1023, 2, 1, 256, 256, 1, 0},
      {"causal_clipped", 7, 5, 2, 2, 64, 32, 1, 0},
      {"odd_dims", 1, 33, 3, 1, 31, 17, 0, 0},
  };
  for (const AttnCase &c : cases) {
    vlm_attention_params p{};
    p.n_q = c.n_q;
    p.n_kv = c.n_kv;
    p.n_heads = c.heads;
    p.n_kv_heads = c.kv_heads;
    p.qk_dim = c.qk;
    p.v_dim = c.vd;
    p.q_stride = (int64_t)c.heads * c.qk + 3;  // odd strides, padding between rows
    p.k_stride = (int64_t)c.kv_heads * c.qk + 1;
    p.v_stride = (int64_t)c.kv_heads * c.vd + 2;
    p.o_stride = (int64_t)c.heads * c.vd + 5;
    p.causal = c.causal;
    p.q_pos0 = c.q_pos0;
    p.scale = 1.0f / std::sqrt((float)c.qk);
    std::vector<float> q = randn((size_t)(c.n_q * p.q_stride), 70), k = randn((size_t)(c.n_kv * p.k_stride), 71),
                       v = randn((size_t)(c.n_kv * p.v_stride), 72), ref((size_t)(c.n_q * p.o_stride), 7.0f);
    DEV(d_q, float, q);
    DEV(d_k, float, k);
    DEV(d_v, float, v);
    DEV(d_o, float, ref);  // the sentinel 7.0 in the padding must survive
    OK(vlm_cuda_attention(&p, d_q.get(), d_k.get(), d_v.get(), d_o.get(), nullptr));
    OK(vlm_op_attention(&p, q.data(), k.data(), v.data(), ref.data()));
    expect_close(d_o.host(), ref, 1e-5, 2e-5, c.name);
  }
}

// ---- MoE ---------------------------------------------------------------------------

// The reference's decision margins for one token: k-th minus (k+1)-th choice (from vlm_moe_route)
// and, for the grouped methods, topk_group-th minus next group score (recomputed here).
double group_gap(const vlm_moe_router &r, const float *logits) {
  if (r.method == VLM_TOPK_GREEDY || r.topk_group >= r.n_group) return INFINITY;
  const int E = r.n_experts, per = E / r.n_group;
  std::vector<float> s(logits, logits + E);
  if (r.scoring == VLM_SCORE_SOFTMAX) vlm_op_softmax(s.data(), E);
  else
    for (auto &v : s) v = 1.0f / (1.0f + std::exp(-v));
  if (r.method == VLM_TOPK_NOAUX_TC)
    for (int e = 0; e < E; e++) s[(size_t)e] += r.bias[e];
  std::vector<float> gs;
  for (int g = 0; g < r.n_group; g++) {
    std::vector<float> c(s.begin() + g * per, s.begin() + (g + 1) * per);
    std::sort(c.begin(), c.end(), std::greater<float>());
    gs.push_back(r.method == VLM_TOPK_NOAUX_TC ? c[0] + c[1] : c[0]);
  }
  std::sort(gs.begin(), gs.end(), std::greater<float>());
  return (double)gs[(size_t)r.topk_group - 1] - gs[(size_t)r.topk_group];
}

struct RouteCase {
  const char *name;
  int E, top_k, n_group, topk_group;
  vlm_topk_method method;
  vlm_scoring_func scoring;
  int norm;
  float scaling;
};

TEST_F(CudaOps, MoeRoutingMatchesReference) {
  const RouteCase cases[] = {
      {"softmax_greedy", 64, 6, 1, 1, VLM_TOPK_GREEDY, VLM_SCORE_SOFTMAX, 0, 1.0f},
      {"softmax_greedy_norm", 72, 6, 1, 1, VLM_TOPK_GREEDY, VLM_SCORE_SOFTMAX, 1, 1.0f},
      {"softmax_group_limited", 160, 6, 8, 3, VLM_TOPK_GROUP_LIMITED_GREEDY, VLM_SCORE_SOFTMAX, 0, 16.0f},
      {"sigmoid_noaux_tc", 256, 8, 8, 4, VLM_TOPK_NOAUX_TC, VLM_SCORE_SIGMOID, 1, 2.5f},
  };
  for (const RouteCase &c : cases) {
    vlm_moe_router r{};
    r.n_experts = c.E;
    r.top_k = c.top_k;
    r.n_group = c.n_group;
    r.topk_group = c.topk_group;
    r.method = c.method;
    r.scoring = c.scoring;
    r.norm_topk_prob = c.norm;
    r.scaling = c.scaling;
    std::vector<float> bias = randn((size_t)c.E, 3, 0.0f, 0.1f);
    if (c.method == VLM_TOPK_NOAUX_TC) r.bias = bias.data();
    DEV(d_bias, float, bias);
    for (int64_t T : kRows) {
      std::vector<float> logits = randn((size_t)(T * c.E), 80 + (unsigned)T, 0.0f, 2.0f);
      DEV(d_logits, float, logits);
      Dev<int32_t> d_idx((size_t)(T * c.top_k));
      Dev<float> d_w((size_t)(T * c.top_k));
      ASSERT_EQ(d_idx.status(), VLM_OK);
      ASSERT_EQ(d_w.status(), VLM_OK);
      OK(vlm_cuda_moe_route(&r, c.method == VLM_TOPK_NOAUX_TC ? d_bias.get() : nullptr, d_logits.get(), T,
                            d_idx.get(), d_w.get(), nullptr));
      std::vector<int32_t> idx = d_idx.host();
      std::vector<float> w = d_w.host();
      int64_t skipped = 0;
      for (int64_t t = 0; t < T; t++) {
        std::vector<int32_t> ri((size_t)c.top_k);
        std::vector<float> rw((size_t)c.top_k);
        float gap = 0;
        OK(vlm_moe_route(&r, &logits[(size_t)(t * c.E)], nullptr, ri.data(), rw.data(), &gap));
        if (gap < 1e-5f || group_gap(r, &logits[(size_t)(t * c.E)]) < 1e-5) {
          skipped++;
          continue;
        }
        for (int j = 0; j < c.top_k; j++) {
          const size_t o = (size_t)(t * c.top_k + j);
          ASSERT_EQ(idx[o], ri[(size_t)j]) << c.name << " T=" << T << " token " << t << " slot " << j;
          ASSERT_NEAR(w[o], rw[(size_t)j], 1e-7 + 1e-5 * std::fabs(rw[(size_t)j])) << c.name << " token " << t;
        }
      }
      EXPECT_LE(skipped * 20, T) << c.name << ": too many near ties to compare";
    }
  }
}

TEST_F(CudaOps, MoeGroupGatherCombine) {
  const int64_t T = 729, D = 33;
  const int E = 64, K = 6;
  // each token's K distinct experts (as routing gives); one entry out of range, which must be left out
  std::mt19937 g(9);
  std::vector<int32_t> idx((size_t)(T * K));
  for (int64_t t = 0; t < T; t++) {
    std::vector<int32_t> e(E);
    for (int i = 0; i < E; i++) e[(size_t)i] = i;
    std::shuffle(e.begin(), e.end(), g);
    std::sort(e.begin(), e.begin() + K);
    std::copy(e.begin(), e.begin() + K, idx.begin() + t * K);
  }
  idx[100] = E;
  DEV(d_idx, int32_t, idx);
  Dev<int32_t> d_off((size_t)E + 1), d_rows((size_t)(T * K)), d_pos((size_t)(T * K));
  ASSERT_EQ(d_off.status(), VLM_OK);
  ASSERT_EQ(d_rows.status(), VLM_OK);
  ASSERT_EQ(d_pos.status(), VLM_OK);
  OK(vlm_cuda_moe_group(d_idx.get(), T, K, E, d_off.get(), d_rows.get(), d_pos.get(), nullptr));
  std::vector<int32_t> off = d_off.host(), rows = d_rows.host(), pos = d_pos.host();

  // expected: a counting sort, entries ascending within each expert
  std::vector<int32_t> want_off((size_t)E + 1, 0), want_rows;
  for (int e = 0; e < E; e++) {
    for (int64_t r = 0; r < T * K; r++)
      if (idx[(size_t)r] == e) want_rows.push_back((int32_t)r);
    want_off[(size_t)e + 1] = (int32_t)want_rows.size();
  }
  ASSERT_EQ(off, want_off);
  ASSERT_EQ(std::vector<int32_t>(rows.begin(), rows.begin() + want_off[(size_t)E]), want_rows);
  for (int64_t r = 0; r < T * K; r++)
    if (idx[(size_t)r] < E) ASSERT_EQ(rows[(size_t)pos[(size_t)r]], r);
    else ASSERT_EQ(pos[(size_t)r], -1);

  // gather: the expert inputs in grouped order
  const int64_t n = want_off[(size_t)E];
  std::vector<float> x = randn((size_t)(T * D), 10);
  DEV(d_x, float, x);
  Dev<float> d_xg((size_t)(n * D));
  ASSERT_EQ(d_xg.status(), VLM_OK);
  OK(vlm_cuda_gather_rows(d_xg.get(), d_x.get(), D, d_rows.get(), n, K, nullptr));
  std::vector<float> xg = d_xg.host();
  for (int64_t r = 0; r < n; r++)
    for (int64_t d = 0; d < D; d++)
      ASSERT_EQ(xg[(size_t)(r * D + d)], x[(size_t)((want_rows[(size_t)r] / K) * D + d)]);

  // combine: y += sum_j w * expert_out[pos], in j order
  std::vector<float> eo = randn((size_t)(T * K * D), 11), w = randn((size_t)(T * K), 12),
                     y = randn((size_t)(T * D), 13);
  DEV(d_eo, float, eo);
  DEV(d_w, float, w);
  DEV(d_y, float, y);
  OK(vlm_cuda_moe_combine(d_y.get(), d_eo.get(), d_w.get(), d_pos.get(), T, K, D, nullptr));
  std::vector<float> ref(y);
  for (int64_t t = 0; t < T; t++)
    for (int64_t d = 0; d < D; d++) {
      float acc = ref[(size_t)(t * D + d)];
      for (int j = 0; j < K; j++) {
        const int32_t p = pos[(size_t)(t * K + j)];
        if (p >= 0) acc += w[(size_t)(t * K + j)] * eo[(size_t)(p * D + d)];
      }
      ref[(size_t)(t * D + d)] = acc;
    }
  // fused multiply-adds round once less: up to half an ulp of each |w * eo| (< 10) per term
  expect_close(d_y.host(), ref, 1e-6, 1e-5, "moe combine");
}

// ---- token choice --------------------------------------------------------------------

TEST_F(CudaOps, ArgmaxMatchesGreedySampler) {
  const int64_t M = 7, V = 102401;
  std::vector<float> x = randn((size_t)(M * V), 20, 0.0f, 3.0f);
  float *r1 = &x[(size_t)V], *r2 = &x[(size_t)(2 * V)], *r3 = &x[(size_t)(3 * V)], *r4 = &x[(size_t)(4 * V)];
  r1[5000] = r1[90000] = 100.0f;  // a tie: the lower index wins
  for (int64_t i = 0; i < V; i += 3) r2[i] = NAN;  // NaN is never chosen
  r2[1] = NAN;
  std::fill(r3, r3 + V, NAN);  // nothing to choose: -1
  std::fill(r4, r4 + V, -INFINITY);  // all -inf: index 0, as the CPU loop
  x[(size_t)(5 * V + V - 1)] = 50.0f;  // the last element
  x[(size_t)(6 * V + 12345)] = INFINITY;
  DEV(d_x, float, x);
  Dev<int32_t> d_out((size_t)M);
  ASSERT_EQ(d_out.status(), VLM_OK);
  OK(vlm_cuda_argmax(d_x.get(), M, V, d_out.get(), nullptr));
  std::vector<int32_t> got = d_out.host();
  vlm_sampler_params sp{};  // temperature 0: greedy
  vlm_sampler *s = nullptr;
  OK(vlm_sampler_create(&sp, (int)V, &s));
  for (int64_t m = 0; m < M; m++) {
    std::vector<float> row(x.begin() + m * V, x.begin() + (m + 1) * V);
    int32_t want = vlm_sampler_pick(s, row.data(), nullptr, 0);  // (the same steps, NaN and inf allowed)
    EXPECT_EQ(got[(size_t)m], want < 0 ? -1 : want) << "row " << m;
  }
  vlm_sampler_free(s);
  EXPECT_EQ(got[1], 5000);
  EXPECT_EQ(got[3], -1);
}

// The first uniform number vlm_sampler draws for a seed (text/sampler.c: xoshiro256** seeded by
// splitmix64, 53 bits); kept in step with that file by the test below.
double first_uniform(uint64_t seed) {
  uint64_t s[4], x = seed;
  for (auto &v : s) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    v = z ^ (z >> 31);
  }
  const uint64_t m = s[1] * 5, r = ((m << 7) | (m >> 57)) * 9;
  return (double)(r >> 11) * 0x1.0p-53;
}

TEST_F(CudaOps, SampleMatchesCpuSamplerForTheSameUniform) {
  const int64_t V = 32003;
  std::vector<float> logits = randn((size_t)V, 21, 0.0f, 3.0f);
  logits[10] = logits[20] = logits[30] = 14.0f;  // tied top tokens (ascending ids among equals)
  logits[40] = -INFINITY;
  logits[50] = NAN;
  DEV(d_logits, float, logits);
  Dev<int32_t> d_out(1);
  ASSERT_EQ(d_out.status(), VLM_OK);
  struct {
    float temperature;
    int top_k;
    float top_p;
  } cfgs[] = {{0.7f, 0, 0.9f}, {1.0f, 50, 0.0f}, {1.3f, 40, 0.95f}, {0.5f, 0, 1.0f}, {2.0f, 2, 0.0f}, {0.0f, 0, 0.0f}};
  for (const auto &c : cfgs)
    for (uint64_t seed = 1; seed <= 16; seed++) {
      vlm_sampler_params sp{};
      sp.temperature = c.temperature;
      sp.top_k = c.top_k;
      sp.top_p = c.top_p;
      sp.seed = seed;
      vlm_sampler *s = nullptr;
      OK(vlm_sampler_create(&sp, (int)V, &s));
      std::vector<float> row(logits);
      const int32_t want = vlm_sampler_pick(s, row.data(), nullptr, 0);  // (the row has a NaN and a -inf)
      vlm_sampler_free(s);
      OK(vlm_cuda_sample(d_logits.get(), V, c.temperature, c.top_k, c.top_p, first_uniform(seed), d_out.get(),
                         nullptr));
      EXPECT_EQ(d_out.host()[0], want) << "temperature " << c.temperature << " top_k " << c.top_k << " top_p "
                                        << c.top_p << " seed " << seed;
    }
}

}  // namespace

// ---- without a device ----------------------------------------------------------------

// These run everywhere: the first checks the replica of the sampler's first draw against the
// sampler itself (a vocabulary of two equal logits picks id 0 iff u < 0.5).
TEST(CudaHost, FirstUniformMatchesSampler) {
  for (uint64_t seed = 1; seed <= 64; seed++) {
    vlm_sampler_params sp{};
    sp.temperature = 1.0f;
    sp.seed = seed;
    vlm_sampler *s = nullptr;
    ASSERT_EQ(vlm_sampler_create(&sp, 2, &s), VLM_OK);
    float l[2] = {0.0f, 0.0f};
    EXPECT_EQ(vlm_sampler_sample(s, l, nullptr, 0), first_uniform(seed) < 0.5 ? 0 : 1) << "seed " << seed;
    vlm_sampler_free(s);
  }
}

TEST(CudaHost, WithoutDeviceEveryCallFailsWithAReason) {
  if (vlm_cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  void *p = reinterpret_cast<void *>(1);
  const int rc = vlm_cuda_malloc(&p, 64);
  EXPECT_LT(rc, 0);
  EXPECT_EQ(p, nullptr);
#if VLM_HAVE_CUDA
  EXPECT_EQ(std::string(vlm_last_error()).rfind("cuda: ", 0), 0u) << vlm_last_error();
#else
  EXPECT_EQ(rc, VLM_ERR_UNSUPPORTED);
  EXPECT_STREQ(vlm_last_error(), "vlm was built without CUDA (rebuild with make CUDA=1)");
  float x = 0;
  EXPECT_EQ(vlm_cuda_gelu_tanh(&x, 1, nullptr), VLM_ERR_UNSUPPORTED);
  vlm_attention_params ap{};
  EXPECT_EQ(vlm_cuda_attention(&ap, &x, &x, &x, &x, nullptr), VLM_ERR_UNSUPPORTED);
  char name[8] = "x";
  EXPECT_EQ(vlm_cuda_device_name(0, name, sizeof name), VLM_ERR_UNSUPPORTED);
  EXPECT_STREQ(name, "");
#endif
}

#if VLM_HAVE_CUDA
// Argument checks come before any CUDA call, so these need no device.
TEST(CudaHost, RejectsBadArguments) {
  float *f = reinterpret_cast<float *>(16);  // never dereferenced: the checks fail first
  vlm_attention_params p{};
  p.n_q = 1;
  p.n_kv = 1;
  p.n_heads = 3;
  p.n_kv_heads = 2;
  p.qk_dim = p.v_dim = 64;
  EXPECT_EQ(vlm_cuda_attention(&p, f, f, f, f, nullptr), VLM_ERR_INVALID);
  p.n_kv_heads = 1;
  p.qk_dim = 300;
  EXPECT_EQ(vlm_cuda_attention(&p, f, f, f, f, nullptr), VLM_ERR_UNSUPPORTED);
  EXPECT_EQ(vlm_cuda_rope_neox(f, 1, 8, 1, 8, 7, f, f, nullptr), VLM_ERR_INVALID);
  EXPECT_EQ(vlm_cuda_rope_interleaved(f, 1, 1024, 1, 1024, 1024, f, f, nullptr), VLM_ERR_INVALID);
  vlm_moe_router r{};
  r.n_experts = 64;
  r.top_k = 6;
  r.method = VLM_TOPK_NOAUX_TC;
  r.scoring = VLM_SCORE_SIGMOID;
  r.n_group = 8;
  r.topk_group = 3;
  int32_t *i32 = reinterpret_cast<int32_t *>(16);
  EXPECT_EQ(vlm_cuda_moe_route(&r, nullptr, f, 1, i32, f, nullptr), VLM_ERR_INVALID);  // noaux_tc needs a bias
  EXPECT_EQ(vlm_cuda_sample(f, 10, 1.0f, 0, 2.0f, 0.5, i32, nullptr), VLM_ERR_INVALID);
  EXPECT_EQ(vlm_cuda_sample(f, 10, 1.0f, 0, 0.5f, 1.0, i32, nullptr), VLM_ERR_INVALID);
  vlm_cuda_weight w{VLM_DT_I8, 4, 4, f};
  EXPECT_EQ(vlm_cuda_linear(f, f, 1, &w, nullptr, nullptr), VLM_ERR_UNSUPPORTED);
  vlm_weight q{};
  q.dtype = VLM_DT_I8;
  q.rows = q.cols = 32;
  q.data = f;
  q.quant = VLM_WQ_Q8;
  vlm_cuda_weight out;
  EXPECT_EQ(vlm_cuda_weight_upload(&q, &out), VLM_ERR_UNSUPPORTED);
  EXPECT_EQ(vlm_cuda_moe_group(i32, 1, 0, 64, i32, i32, i32, nullptr), VLM_ERR_INVALID);
}
#endif
