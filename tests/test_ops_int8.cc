// The int8-activation GEMM (core/ops_int8_panel.c) for q8/q4 weights.
//
// What is checked, per shape (M in {1, 5, 33, 729}, K in {32, 896, 4304, 1280}, odd N, q8 and q4,
// weight groups 32 and 64):
//  - the scalar and the AVX2 kernels give the same bits (integer sums are exact and the fp32 steps
//    are the same operations in the same order);
//  - the result equals an independent double-precision evaluation of the documented arithmetic
//    (inputs quantized per block of 32 with d = max|x| / 127 and round-half-even, sum over blocks
//    of S * d_w * d_x) within 1e-5 * sum|terms| + 1e-6 (fp32 accumulation);
//  - against the fp32 reference (vlm_op_linear on the dequantized weights) the error is bounded by
//    the input rounding: |y - ref| <= sum_blocks (d_x / 2) * sum_{k in block} |w_k| + 1e-5 |x||w|
//    + 1e-6, and the relative RMS error over all outputs is below 2.5e-2 (about 4e-3 for Gaussian
//    inputs; these inputs have an 8x outlier feature every 61, which coarsens their blocks' steps:
//    1e-2 to 1.7e-2);
//  - vlm_op_linear takes this path only for M >= 4, by default (auto) for q8 and q4 weights;
//    vlm_ops_set_int8_activations(0) turns it off for both;
//  - q4 products of 2 and 3 rows (core/ops_int8_rows.c, straight from the stored rows) give the same bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

extern "C" {
#include "core/error.h"
#include "core/ops.h"
#include "core/ops_internal.h"
#include "core/tensor.h"
}

namespace {

struct SimdRestore {
  ~SimdRestore() {
    vlm_ops_set_simd(1);
    vlm_ops_set_int8_activations(-1);
  }
};

struct Case {
  std::vector<float> w, x, bias;
  vlm_weight W{};
  int64_t M, N, K;
  ~Case() { vlm_weight_release(&W); }
};

// Weights N(0, 0.05) with one outlier per 97 rows; inputs N(0, 1) with every 61st feature 8x larger
// (activation outlier channels).
void make_case(Case &c, vlm_wquant fmt, int group, int64_t M, int64_t N, int64_t K, unsigned seed) {
  c.M = M, c.N = N, c.K = K;
  std::mt19937 g(seed);
  std::normal_distribution<float> nw(0, 0.05f), nx(0, 1);
  c.w.resize((size_t)(N * K));
  for (auto &v : c.w) v = nw(g);
  for (int64_t r = 0; r < N; r += 97) c.w[(size_t)(r * K + (r * 31) % K)] = 0.9f;
  c.x.resize((size_t)(M * K));
  for (int64_t i = 0; i < M * K; i++) c.x[(size_t)i] = nx(g) * ((i % K) % 61 == 7 ? 8.0f : 1.0f);
  c.bias.resize((size_t)N);
  for (int64_t n = 0; n < N; n++) c.bias[(size_t)n] = 0.01f * (float)n - 0.1f;
  c.W.dtype = VLM_DT_F32;
  c.W.rows = N;
  c.W.cols = K;
  c.W.data = c.w.data();
  vlm_quant_spec s{fmt, group};
  ASSERT_EQ(vlm_weight_convert(&c.W, &s), VLM_OK) << vlm_last_error();
}

std::vector<float> dequant(const vlm_weight &W) {
  std::vector<float> d((size_t)(W.rows * W.cols));
  for (int64_t r = 0; r < W.rows; r++) vlm_op_weight_row(&W, r, &d[(size_t)(r * W.cols)]);
  return d;
}

// The documented input quantization, written independently of the library.
void quant_input(const float *x, int64_t K, std::vector<int> &q, std::vector<float> &d) {
  const int64_t nb = (K + 31) / 32;
  q.assign((size_t)(nb * 32), 0);
  d.assign((size_t)nb, 0);
  for (int64_t b = 0; b < nb; b++) {
    float amax = 0;
    for (int64_t k = b * 32; k < std::min<int64_t>(K, b * 32 + 32); k++) amax = std::max(amax, std::fabs(x[k]));
    d[(size_t)b] = amax / 127.0f;
    const float inv = d[(size_t)b] > 0 ? 1.0f / d[(size_t)b] : 0.0f;
    for (int64_t k = b * 32; k < std::min<int64_t>(K, b * 32 + 32); k++)
      q[(size_t)k] = (int)std::max(-127.0f, std::min(127.0f, std::nearbyint(x[k] * inv)));
  }
}

std::vector<float> run_int8(const Case &c, bool simd) {
  std::vector<float> y((size_t)(c.M * c.N), -1.0f);
  SimdRestore restore;
  vlm_ops_set_simd(simd ? 1 : 0);
  EXPECT_EQ(vlm_linear_int8(y.data(), c.x.data(), c.M, &c.W, c.bias.data()), 1);
  return y;
}

void check(vlm_wquant fmt, int group, int64_t M, int64_t N, int64_t K) {
  SCOPED_TRACE(testing::Message() << vlm_wquant_name(fmt) << " group " << group << " M " << M << " N " << N << " K "
                                  << K);
  Case c;
  make_case(c, fmt, group, M, N, K, (unsigned)(M * 131 + N * 7 + K));
  if (testing::Test::HasFatalFailure()) return;
  std::vector<float> y = run_int8(c, true);
  if (std::string(vlm_ops_simd()) == "avx2") {
    std::vector<float> ys = run_int8(c, false);
    ASSERT_EQ(0, memcmp(y.data(), ys.data(), y.size() * sizeof(float))) << "scalar and AVX2 differ";
  }
  const std::vector<float> wd = dequant(c.W);
  std::vector<float> ref((size_t)(M * N));
  vlm_weight rw{};
  rw.dtype = VLM_DT_F32;
  rw.rows = N;
  rw.cols = K;
  rw.data = wd.data();
  vlm_op_linear(ref.data(), c.x.data(), M, &rw, c.bias.data());

  const int64_t ng = (K + group - 1) / group, nb = (K + 31) / 32;
  std::vector<int> q;
  std::vector<float> dx;
  double se = 0, sr = 0;
  for (int64_t m = 0; m < M; m++) {
    const float *xr = &c.x[(size_t)(m * K)];
    quant_input(xr, K, q, dx);
    for (int64_t n = 0; n < N; n++) {
      const float *wr = &wd[(size_t)(n * K)];
      double exact = c.bias[(size_t)n], mag = std::fabs(c.bias[(size_t)n]), bound = 0, absdot = 0;
      for (int64_t b = 0; b < nb; b++) {
        const double dw = vlm_f16_to_f32(c.W.scales[n * ng + (b * 32) / group]);
        double S = 0, wabs = 0;
        for (int64_t k = b * 32; k < std::min<int64_t>(K, b * 32 + 32); k++) {
          S += (dw > 0 ? (double)std::lround(wr[k] / dw) : 0.0) * q[(size_t)k];  // the stored integer weight
          wabs += std::fabs(wr[k]);
          absdot += std::fabs((double)xr[k] * wr[k]);
        }
        exact += S * dw * dx[(size_t)b];
        mag += std::fabs(S * dw * dx[(size_t)b]);
        bound += dx[(size_t)b] / 2 * wabs;
      }
      const double got = y[(size_t)(m * N + n)], r = ref[(size_t)(m * N + n)];
      ASSERT_NEAR(got, exact, 1e-5 * mag + 1e-6) << "row " << m << " out " << n;
      ASSERT_NEAR(got, r, bound * 1.001 + 1e-5 * absdot + 1e-6) << "row " << m << " out " << n;
      se += (got - r) * (got - r);
      sr += r * r;
    }
  }
  EXPECT_LT(std::sqrt(se / sr), 2.5e-2);
}

TEST(OpsInt8, MatchesScalarExactAndFp32WithinInputRounding) {
  for (vlm_wquant fmt : {VLM_WQ_Q8, VLM_WQ_Q4})
    for (int64_t M : {1, 5, 33, 729})
      for (int64_t K : {32, 896, 4304, 1280}) {
        // keep M * N * K small: the scalar kernel and the double-precision check run too
        const int64_t N = M >= 729 ? 5 : M >= 33 ? 13 : 37;
        check(fmt, 32, M, N, K);
        if (testing::Test::HasFatalFailure()) return;
      }
}

TEST(OpsInt8, LargerGroupsAndTileEdges) {
  for (vlm_wquant fmt : {VLM_WQ_Q8, VLM_WQ_Q4})
    for (int64_t M : {4, 6, 7}) {
      check(fmt, 64, M, 67, 4304);  // a partial last group and block
      check(fmt, 96, M, 3, 200);
      if (testing::Test::HasFatalFailure()) return;
    }
  // enough panels of 16 features that each pool task packs a run of them (prefetching the next)
  for (vlm_wquant fmt : {VLM_WQ_Q8, VLM_WQ_Q4}) {
    check(fmt, 32, 8, 1000, 1280);
    check(fmt, 32, 5, 1001, 896);
    if (testing::Test::HasFatalFailure()) return;
  }
}

// q4 products of 2 and 3 rows (a batched decode step's experts) read the stored rows (ops_int8_rows.c) and give
// the int8 GEMM's bits, AVX2 and scalar, whatever the int8 setting: partial groups of 8 features (the scalar
// tail), partial blocks and groups, many groups per pool task (prefetching the next), and any row range.
TEST(OpsInt8, FewQ4RowsFromStoredRowsGiveTheGemmBits) {
  struct Shape {
    int64_t N, K;
    int group;
  };
  for (const Shape sh : {Shape{37, 896, 32}, Shape{1000, 1280, 32}, Shape{67, 4304, 64}, Shape{3, 200, 96},
                         Shape{16, 40, 32}})
    for (int64_t M : {2, 3}) {
      SCOPED_TRACE(testing::Message() << "M " << M << " N " << sh.N << " K " << sh.K << " group " << sh.group);
      SimdRestore restore;
      Case c;
      make_case(c, VLM_WQ_Q4, sh.group, M, sh.N, sh.K, (unsigned)(M + sh.N + sh.K));
      ASSERT_FALSE(testing::Test::HasFatalFailure());
      EXPECT_EQ(vlm_q4_rows_applies(&c.W, M), 1);
      const size_t n = (size_t)(M * sh.N), bytes = n * sizeof(float);
      const std::vector<float> gemm = run_int8(c, true);
      std::vector<float> y(n, -1.0f), ys(n, -2.0f), yo(n, -3.0f), part(n, -4.0f);
      vlm_op_linear(y.data(), c.x.data(), M, &c.W, c.bias.data());
      EXPECT_EQ(0, memcmp(y.data(), gemm.data(), bytes)) << "AVX2 (when present) against the GEMM";
      vlm_ops_set_int8_activations(0);
      vlm_op_linear(yo.data(), c.x.data(), M, &c.W, c.bias.data());
      EXPECT_EQ(0, memcmp(yo.data(), gemm.data(), bytes)) << "with int8 activations off";
      vlm_ops_set_simd(0);
      vlm_op_linear(ys.data(), c.x.data(), M, &c.W, c.bias.data());
      EXPECT_EQ(0, memcmp(ys.data(), gemm.data(), bytes)) << "scalar against the GEMM";
      vlm_ops_set_simd(1);
      // the range entry over uneven pieces
      std::vector<uint8_t> buf(vlm_q4_rows_input_bytes(M, sh.K));
      vlm_q4_rows_input in;
      vlm_q4_rows_prepare(c.x.data(), M, sh.K, buf.data(), &in);
      for (int64_t n0 = 0; n0 < sh.N; n0 += 13)
        vlm_q4_rows_range(&in, &c.W, part.data(), c.bias.data(), n0, std::min<int64_t>(sh.N, n0 + 13));
      EXPECT_EQ(0, memcmp(part.data(), gemm.data(), bytes)) << "in pieces of 13 features";
    }
}

// vlm_op_linear uses the int8 GEMM for M >= 4 only (decode keeps its GEMV), by default; off, q8
// products of up to 16 rows take the int8 GEMV and longer ones, like q4's, the fp32 GEMM.
void check_selection(vlm_wquant fmt) {
  SCOPED_TRACE(vlm_wquant_name(fmt));
  SimdRestore restore;
  Case c;
  make_case(c, fmt, 32, 9, 21, 896, 5);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  EXPECT_EQ(vlm_ops_int8_activations(), -1);  // auto by default
  const size_t n = (size_t)(9 * 21);
  std::vector<float> y_auto(n), y_on(n), y_off(n);
  vlm_op_linear(y_auto.data(), c.x.data(), 9, &c.W, c.bias.data());
  vlm_ops_set_int8_activations(1);
  EXPECT_EQ(vlm_ops_int8_activations(), 1);
  vlm_op_linear(y_on.data(), c.x.data(), 9, &c.W, c.bias.data());
  vlm_ops_set_int8_activations(0);
  EXPECT_EQ(vlm_ops_int8_activations(), 0);
  vlm_op_linear(y_off.data(), c.x.data(), 9, &c.W, c.bias.data());
  std::vector<float> direct = run_int8(c, true);
  EXPECT_EQ(0, memcmp(y_on.data(), direct.data(), n * sizeof(float)));
  EXPECT_NE(0, memcmp(y_on.data(), y_off.data(), n * sizeof(float)));
  EXPECT_EQ(0, memcmp(y_auto.data(), y_on.data(), n * sizeof(float)));
  // decode rows: the same results whatever the setting
  std::vector<float> d_on(21), d_off(21);
  vlm_ops_set_int8_activations(1);
  vlm_op_linear(d_on.data(), c.x.data(), 1, &c.W, c.bias.data());
  vlm_ops_set_int8_activations(0);
  vlm_op_linear(d_off.data(), c.x.data(), 1, &c.W, c.bias.data());
  EXPECT_EQ(0, memcmp(d_on.data(), d_off.data(), d_on.size() * sizeof(float)));
}

TEST(OpsInt8, SelectedByTheOption) {
  check_selection(VLM_WQ_Q8);
  check_selection(VLM_WQ_Q4);
}

// Non-quantized weights are declined (the caller keeps its own path).
TEST(OpsInt8, DeclinesOtherFormats) {
  std::vector<float> w(4 * 32, 0.5f), x(4 * 32, 1.0f), y(16, 0.0f);
  vlm_weight W{};
  W.dtype = VLM_DT_F32;
  W.rows = 4;
  W.cols = 32;
  W.data = w.data();
  EXPECT_EQ(vlm_linear_int8(y.data(), x.data(), 4, &W, nullptr), 0);
  vlm_quant_spec s{VLM_WQ_BF16, 0};
  ASSERT_EQ(vlm_weight_convert(&W, &s), VLM_OK);
  EXPECT_EQ(vlm_linear_int8(y.data(), x.data(), 4, &W, nullptr), 0);
  vlm_weight_release(&W);
}

}  // namespace
