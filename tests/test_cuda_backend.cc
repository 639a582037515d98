// The CUDA backend (cuda/backend_cuda.h) and the device choice of the model (vlm_model_options.device,
// `--device` of vlm ask / verify / bench).
//
// Without a GPU (every build here; a CUDA=1 build on a machine without a driver or device too):
//  - a model asked for "cuda" loads on the CPU, says why in vlm_model_device_note, and computes
//    bit for bit what the "cpu" model computes (logits of the prompt and of every step, greedy ids);
//  - `vlm ask --device cuda` prints that note once on stderr and the CPU's answer; bad device names
//    are errors; vlm_lm_set_backend refuses weights a device backend cannot run (q8 / q4).
// With a GPU (GTEST_SKIP "no CUDA device" otherwise), against the CPU backend:
//  - every op on odd sizes. Exact: buffers, copies, copy_rows, gather, scatter-add (the CPU's order
//    and roundings), embedding rows, attention with heads wider than the kernel (runs the CPU op).
//    fp32 (weights F32, or BF16 stored and widened): linear |d| <= 1e-5 * sum_k |x_k w_k| + 1e-6;
//    norms, silu, softmax, RoPE: |d| <= 1e-5 |ref| + 1e-6; attention |d| <= 1e-5 |ref| + 2e-5.
//    bf16 weights (--quant bf16): x is rounded to BF16 on the GPU, |d| <= (2^-8 + 1e-5) sum|x w| + 1e-6.
//  - the decoder on both golden models (prefill 11 tokens, decode 3): weights as stored (fp32 math)
//    logits and hidden states within 1e-4 abs, routing identical; bf16 weights (routing forced to the
//    CPU's choice, since a near tie may flip with rounded inputs) logits within 2% of the largest
//    |logit| (x rounded to BF16 in every product of 4 layers: 2^-9 relative each).
//  - the whole model on every golden case, decoder on CUDA: as stored, the golden greedy ids and the
//    CPU's step logits within 1e-4; bf16, the CPU bf16 model's greedy ids up to the first step whose
//    top-2 logits are closer than that 2% (a near tie may go either way; after it the texts differ).
#include <gtest/gtest.h>

#include "buffer_util.h"

#include <algorithm>
#include <cjson/cJSON.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "golden_util.h"

extern "C" {
#include "core/backend.h"
#include "core/checkpoint.h"
#include "core/error.h"
#include "core/file.h"
#include "core/ops.h"
#include "cuda/backend_cuda.h"
#include "cuda/cuda_ops.h"
#include "fusion/config.h"
#include "fusion/model.h"
#include "text/decoder.h"
#include "text/lm_internal.h"
}

namespace {

using bufutil::Rand;
using bufutil::SameBits;

#define OK(call) ASSERT_EQ((call), VLM_OK) << vlm_last_error()

bool HasGpu() { return vlm_cuda_device_count() > 0; }

bool Contains(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

double MaxAbs(const std::vector<float> &v)
{
    double m = 0;
    for (float x : v) m = std::max(m, (double)std::fabs(x));
    return m;
}

std::string ReadText(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// ---- models and golden cases ------------------------------------------------------------

struct Model {
    vlm_model *m = nullptr;
    ~Model() { vlm_model_free(m); }
};

int LoadModel(const std::string &name, const char *device, const char *quant, Model *out)
{
    vlm_model_options mo{};
    mo.device = device;
    if (quant && vlm_quant_options_parse(quant, &mo.quant) != VLM_OK) return VLM_ERR_INVALID;
    return vlm_model_load(golden::model_dir(name).c_str(), &mo, &out->m);
}

std::vector<std::string> CaseImages(const std::string &cs)
{
    const std::string dir = golden::input_dir(cs);
    for (const char *ext : {"png", "jpg"})
        if (vlm_file_exists((dir + "/image." + ext).c_str())) return {dir + "/image." + ext};
    std::vector<std::string> out;
    for (int k = 1;; k++) {
        std::string found;
        for (const char *ext : {"png", "jpg"}) {
            const std::string p = dir + "/image_" + std::to_string(k) + "." + ext;
            if (vlm_file_exists(p.c_str())) found = p;
        }
        if (found.empty()) break;
        out.push_back(found);
    }
    return out;
}

// A golden case's request (its images and prompt through the chat template).
struct Request {
    std::vector<vlm_image> imgs;
    vlm_request req{};
    ~Request()
    {
        vlm_request_free(&req);
        for (auto &im : imgs) vlm_image_free(&im);
    }
};

void BuildRequest(const vlm_model *m, const std::string &cs, Request *r)
{
    const std::vector<std::string> paths = CaseImages(cs);
    r->imgs.assign(paths.size(), vlm_image{});
    for (size_t i = 0; i < paths.size(); i++)
        ASSERT_EQ(vlm_image_decode_file(paths[i].c_str(), nullptr, &r->imgs[i]), VLM_OK) << vlm_last_error();
    const std::string prompt = ReadText(golden::input_dir(cs) + "/prompt.txt");
    vlm_chat_message msgs[2] = {{"user", prompt.c_str()}, {"assistant", ""}};
    ASSERT_EQ(vlm_model_build_request(m, msgs, 2, r->imgs.data(), (int)r->imgs.size(), &r->req), VLM_OK)
        << vlm_last_error();
}

// Greedy generation of n tokens, with the logits of every prompt position and of every step.
struct Generated {
    std::vector<float> prompt_logits, step_logits;
    std::vector<int32_t> ids;
};

void Greedy(const vlm_model *m, const vlm_request *r, int n, Generated *g)
{
    const int64_t V = vlm_model_config(m)->lm.vocab_size;
    g->prompt_logits.assign((size_t)(r->n_ids * V), 0.f);
    g->step_logits.assign((size_t)(n * V), 0.f);
    vlm_generate_options go{};
    go.max_new_tokens = n;
    go.ignore_eos = 1;
    go.prompt_logits = g->prompt_logits.data();
    go.step_logits = g->step_logits.data();
    vlm_generation gen;
    ASSERT_EQ(vlm_model_generate(m, r, &go, &gen), VLM_OK) << vlm_last_error();
    g->ids.assign(gen.ids, gen.ids + gen.n_ids);
    vlm_generation_free(&gen);
}

// ---- (a) no usable CUDA: the CPU fallback ------------------------------------------------

TEST(CudaFallback, DeviceCudaWithoutAGpuRunsOnTheCpuBitForBit)
{
    if (HasGpu()) GTEST_SKIP() << "a CUDA device is present: the fallback is not taken";
    Model cpu;
    OK(LoadModel("tiny-mha", "cpu", nullptr, &cpu));
    EXPECT_EQ(vlm_model_device_note(cpu.m), nullptr);
    EXPECT_STREQ(vlm_model_device(cpu.m), "cpu");
    Request rc;
    BuildRequest(cpu.m, "case3_200x150_jpg", &rc);
    if (HasFatalFailure()) return;
    Generated want;
    Greedy(cpu.m, &rc.req, 8, &want);
    if (HasFatalFailure()) return;
    golden::File gold(golden::model_dir("tiny-mha") + "/case3_200x150_jpg.safetensors");
    const std::vector<int64_t> gids = gold.ints("generated_ids");
    ASSERT_GE(gids.size(), 8u);
    for (int i = 0; i < 8; i++) EXPECT_EQ(want.ids[(size_t)i], gids[(size_t)i]) << "step " << i;

    for (const char *device : {"cuda", "cuda:1"}) {
        Model dev;
        OK(LoadModel("tiny-mha", device, nullptr, &dev));
        const char *note = vlm_model_device_note(dev.m);
        ASSERT_NE(note, nullptr) << device;
        const std::string n = note;
        EXPECT_TRUE(Contains(n, std::string("device ") + device + ": CUDA not available (")) << n;
        EXPECT_TRUE(Contains(n, "); running on the CPU")) << n;
#ifdef VLM_HAVE_CUDA
        EXPECT_TRUE(Contains(n, "(cuda: ")) << n; // the runtime's reason (no device / no driver)
#else
        EXPECT_TRUE(Contains(n, "vlm was built without CUDA (rebuild with make CUDA=1)")) << n;
#endif
        EXPECT_STREQ(vlm_model_device(dev.m), "cpu");
        EXPECT_EQ(vlm_model_lm(dev.m)->be, vlm_backend_cpu());
        Request rd;
        BuildRequest(dev.m, "case3_200x150_jpg", &rd);
        if (HasFatalFailure()) return;
        Generated got;
        Greedy(dev.m, &rd.req, 8, &got);
        if (HasFatalFailure()) return;
        EXPECT_TRUE(SameBits(want.prompt_logits, got.prompt_logits)) << device;
        EXPECT_TRUE(SameBits(want.step_logits, got.step_logits)) << device;
        EXPECT_EQ(want.ids, got.ids) << device;
    }
}

TEST(CudaFallback, BadDeviceNamesAreErrors)
{
    for (const char *bad : {"gpu", "cuda:x", "CUDA", "cuda:-1", "cuda:", "cpu0"}) {
        Model m;
        EXPECT_EQ(LoadModel("tiny-mha", bad, nullptr, &m), VLM_ERR_INVALID) << bad;
        EXPECT_EQ(m.m, nullptr) << bad;
        EXPECT_TRUE(Contains(vlm_last_error(), std::string("unknown device '") + bad + "'")) << vlm_last_error();
    }
    if (HasGpu() && vlm_cuda_device_count() < 1000) {
        Model m;
        EXPECT_EQ(LoadModel("tiny-mha", "cuda:999", nullptr, &m), VLM_ERR_INVALID);
        EXPECT_TRUE(Contains(vlm_last_error(), "device cuda:999 does not exist")) << vlm_last_error();
    }
}

TEST(CudaFallback, OpeningWithoutADeviceGivesTheReason)
{
    // not CUDA: the resident-copy calls do nothing
    size_t bytes = 7;
    EXPECT_EQ(vlm_cuda_backend_resident(vlm_backend_cpu(), &bytes), 0u);
    EXPECT_EQ(bytes, 0u);
    vlm_cuda_backend_attach(vlm_backend_cpu());
    vlm_cuda_backend_detach(vlm_backend_cpu());
    vlm_cuda_backend_detach(nullptr);
    if (HasGpu()) GTEST_SKIP() << "a CUDA device is present";
    const vlm_backend *be = vlm_backend_cpu();
    EXPECT_EQ(vlm_cuda_backend_open(0, &be), VLM_ERR_UNSUPPORTED);
    EXPECT_EQ(be, nullptr);
    const std::string why = vlm_last_error();
    EXPECT_EQ(why.rfind("cuda: ", 0), 0u) << why;
#ifndef VLM_HAVE_CUDA
    EXPECT_EQ(why, "cuda: no usable CUDA device: vlm was built without CUDA (rebuild with make CUDA=1)");
    // registering does nothing in this build: lookups keep the build's own message
    vlm_cuda_backend_register();
    EXPECT_EQ(vlm_backend_by_name("cuda", &be), VLM_ERR_UNSUPPORTED);
    EXPECT_STREQ(vlm_last_error(), "vlm was built without CUDA (rebuild with make CUDA=1)");
#else
    vlm_cuda_backend_register();
    EXPECT_EQ(vlm_backend_by_name("cuda:2", &be), VLM_ERR_UNSUPPORTED);
    EXPECT_EQ(std::string(vlm_last_error()).rfind("cuda: ", 0), 0u) << vlm_last_error();
#endif
}

// The decoder alone, loaded from a golden checkpoint (weights converted as `quant` says).
struct Lm {
    vlm_checkpoint *ck = nullptr;
    vlm_lm *lm = nullptr;
    ~Lm()
    {
        vlm_lm_free(lm);
        vlm_checkpoint_close(ck);
    }
};

void LoadLm(const std::string &name, const char *attention, const char *experts, const char *lm_head, Lm *m)
{
    const std::string dir = golden::model_dir(name);
    vlm_vl2_config cfg;
    ASSERT_EQ(vlm_vl2_config_load(dir.c_str(), &cfg), VLM_OK) << vlm_last_error();
    ASSERT_EQ(vlm_checkpoint_open(dir.c_str(), &m->ck), VLM_OK) << vlm_last_error();
    vlm_lm_quant q{};
    ASSERT_EQ(vlm_quant_spec_parse(attention, &q.attention), VLM_OK);
    ASSERT_EQ(vlm_quant_spec_parse(experts, &q.experts), VLM_OK);
    ASSERT_EQ(vlm_quant_spec_parse(lm_head, &q.lm_head), VLM_OK);
    ASSERT_EQ(vlm_lm_load_q(m->ck, "language.", &cfg.lm, &q, &m->lm), VLM_OK) << vlm_last_error();
}

TEST(CudaFallback, SetBackendRefusesWeightsADeviceCannotRun)
{
    vlm_backend device = *vlm_backend_cpu(); // the CPU's ops, but "device memory" for the check
    device.name = "fake-device";
    device.kind = VLM_BACKEND_CUDA;
    device.host_memory = 0;
    const struct {
        const char *att, *exp, *head, *group, *fmt;
    } refused[] = {{"none", "none", "q8", "lm_head", "q8"},
                   {"q4", "none", "none", "attention", "q4"},
                   {"bf16", "q8", "bf16", "experts", "q8"}};
    for (const auto &r : refused) {
        Lm m;
        LoadLm("tiny-mla", r.att, r.exp, r.head, &m);
        if (HasFatalFailure()) return;
        EXPECT_EQ(vlm_lm_set_backend(m.lm, &device), VLM_ERR_UNSUPPORTED) << r.group;
        const std::string e = vlm_last_error();
        EXPECT_TRUE(Contains(e, std::string("the fake-device backend cannot run the decoder's ") + r.group +
                                    " weights in " + r.fmt + " format"))
            << e;
        EXPECT_TRUE(Contains(e, "--quant bf16 or --quant none")) << e;
        EXPECT_EQ(m.lm->be, vlm_backend_cpu()) << "a refused backend leaves the model where it was";
        OK(vlm_lm_set_backend(m.lm, vlm_backend_cpu())); // the CPU runs every format
    }
    for (const char *q : {"none", "bf16"}) {
        Lm m;
        LoadLm("tiny-mha", q, q, q, &m);
        if (HasFatalFailure()) return;
        OK(vlm_lm_set_backend(m.lm, &device));
        EXPECT_EQ(m.lm->be, &device);
        OK(vlm_lm_set_backend(m.lm, nullptr));
        EXPECT_EQ(m.lm->be, vlm_backend_cpu());
    }
    EXPECT_EQ(vlm_lm_set_backend(nullptr, &device), VLM_ERR_INVALID);
}

// ---- (a) the same through the program -------------------------------------------------------

struct Result {
    int status;
    std::string out, err;
};

// `vlm <args>` with stdout and stderr apart.
Result Vlm(const std::string &args)
{
    const std::string base = "/tmp/vlm_cudabe_" + std::to_string(getpid()), out = base + "_out", err = base + "_err";
    const int st = std::system((golden::vlm_bin() + " " + args + " < /dev/null > " + out + " 2> " + err).c_str());
    Result r{WIFEXITED(st) ? WEXITSTATUS(st) : -1, ReadText(out), ReadText(err)};
    remove(out.c_str());
    remove(err.c_str());
    return r;
}

std::vector<int> TokenIds(const std::string &json)
{
    std::vector<int> ids;
    cJSON *j = cJSON_Parse(json.c_str());
    EXPECT_TRUE(j) << json;
    const cJSON *t = j ? cJSON_GetObjectItem(j, "token_ids") : nullptr;
    EXPECT_TRUE(cJSON_IsArray(t)) << json;
    for (const cJSON *e = t ? t->child : nullptr; e; e = e->next) ids.push_back(e->valueint);
    cJSON_Delete(j);
    return ids;
}

TEST(CudaFallbackCli, AskWithDeviceCudaSaysSoOnceAndAnswersAsTheCpu)
{
    if (HasGpu()) GTEST_SKIP() << "a CUDA device is present: the fallback is not taken";
    const std::string ask = "ask -m " + golden::model_dir("tiny-mha") +
                            " --ids 0,9,100,200,300,10 --max-tokens 6 --ignore-eos --json --device ";
    const Result cpu = Vlm(ask + "cpu"), dev = Vlm(ask + "cuda");
    ASSERT_EQ(cpu.status, 0) << cpu.err;
    EXPECT_EQ(cpu.err, "");
    ASSERT_EQ(dev.status, 0) << dev.err;
    // exactly one line on stderr, naming the device, CUDA's reason and the fallback
    EXPECT_EQ(std::count(dev.err.begin(), dev.err.end(), '\n'), 1) << dev.err;
    EXPECT_EQ(dev.err.rfind("vlm ask: device cuda: CUDA not available (", 0), 0u) << dev.err;
    EXPECT_TRUE(Contains(dev.err, "); running on the CPU\n")) << dev.err;
    const std::vector<int> a = TokenIds(cpu.out), b = TokenIds(dev.out);
    EXPECT_EQ(a.size(), 6u);
    EXPECT_EQ(a, b);
}

TEST(CudaFallbackCli, BadDevicesAndMissingValuesAreErrors)
{
    const std::string model = golden::model_dir("tiny-mha");
    for (const char *bad : {"gpu", "cuda:x"}) {
        const Result r = Vlm("ask -m " + model + " --ids 0,9 --max-tokens 1 --device " + bad);
        EXPECT_EQ(r.status, 1) << bad;
        EXPECT_EQ(r.err, std::string("vlm ask: unknown device '") + bad +
                             "' (expected cpu, cuda or cuda:N with N in 0..1023)\n");
        EXPECT_EQ(r.out, "");
    }
    Result r = Vlm("ask -m " + model + " --ids 0,9 --device");
    EXPECT_EQ(r.status, 2);
    EXPECT_TRUE(Contains(r.err, "--device needs a value")) << r.err;
    const std::string cs = "case3_200x150_jpg";
    r = Vlm("verify --model " + model + " --input " + golden::input_dir(cs) + " --golden " + model + "/" + cs +
            ".safetensors --device gpu");
    EXPECT_EQ(r.status, 1);
    EXPECT_TRUE(Contains(r.err, "vlm verify: unknown device 'gpu'")) << r.err;
    r = Vlm("bench --device");
    EXPECT_EQ(r.status, 2);
    for (const char *cmd : {"ask", "bench", "verify"}) {
        r = Vlm(std::string(cmd) + " --help");
        EXPECT_EQ(r.status, 0) << cmd;
        EXPECT_TRUE(Contains(r.out, "--device")) << cmd << ": " << r.out;
    }
}

TEST(CudaFallbackCli, VerifyOnDeviceCudaPassesOnTheCpu)
{
    if (HasGpu()) GTEST_SKIP() << "a CUDA device is present: the fallback is not taken";
    const std::string model = golden::model_dir("tiny-mla"), cs = "case3_200x150_jpg";
    const Result r = Vlm("verify --model " + model + " --input " + golden::input_dir(cs) + " --golden " + model + "/" +
                         cs + ".safetensors --device cuda");
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_TRUE(Contains(r.out, "verify: PASS")) << r.out;
    EXPECT_EQ(r.err.rfind("vlm verify: device cuda: CUDA not available (", 0), 0u) << r.err;
}

// ---- (b) on a GPU: every op against the CPU backend --------------------------------------------

class CudaBackend : public ::testing::Test {
  protected:
    const vlm_backend *be = nullptr;
    const vlm_backend *cpu = vlm_backend_cpu();
    void SetUp() override
    {
        if (!HasGpu()) GTEST_SKIP() << "no CUDA device (" << vlm_last_error() << ")";
        ASSERT_EQ(vlm_cuda_backend_open(0, &be), VLM_OK) << vlm_last_error();
        // the test's host weights die with it: detaching at the end frees their resident copies
        vlm_cuda_backend_attach(be);
    }
    void TearDown() override
    {
        if (be) vlm_cuda_backend_detach(be);
    }

    // A device buffer holding host data h (freed by the fixture's caller through Free).
    template <class T> T *Up(const std::vector<T> &h)
    {
        void *p = nullptr;
        EXPECT_EQ(be->alloc(be, h.size() * sizeof(T), &p), VLM_OK) << vlm_last_error();
        if (p) {
            EXPECT_EQ(be->upload(be, p, h.data(), h.size() * sizeof(T)), VLM_OK) << vlm_last_error();
        }
        bufs_.push_back(p);
        return (T *)p;
    }
    template <class T> std::vector<T> Down(const T *d, size_t n)
    {
        std::vector<T> h(n);
        EXPECT_EQ(be->download(be, h.data(), d, n * sizeof(T)), VLM_OK) << vlm_last_error();
        return h;
    }
    ~CudaBackend() override
    {
        for (void *p : bufs_)
            if (be) be->free(be, p);
    }

  private:
    std::vector<void *> bufs_;
};

// |got - want| <= rtol |want| + atol for every element.
void ExpectClose(const std::vector<float> &want, const std::vector<float> &got, double rtol, double atol,
                 const std::string &what)
{
    ASSERT_EQ(want.size(), got.size()) << what;
    int bad = 0;
    for (size_t i = 0; i < want.size() && bad < 5; i++)
        if (!(std::fabs((double)got[i] - want[i]) <= rtol * std::fabs((double)want[i]) + atol)) {
            ADD_FAILURE() << what << " [" << i << "]: " << got[i] << " vs " << want[i];
            bad++;
        }
}

TEST_F(CudaBackend, BuffersCopiesAndRowsAreExact)
{
    const std::vector<float> a = Rand(1001, 1), b = Rand(1001, 2);
    float *da = Up(a), *db = Up(b);
    EXPECT_TRUE(SameBits(Down(da, a.size()), a));
    OK(be->copy(be, db, da, 999 * sizeof(float)));
    std::vector<float> want = b;
    std::memcpy(want.data(), a.data(), 999 * sizeof(float));
    EXPECT_TRUE(SameBits(Down(db, b.size()), want));
    // overlapping copies have memmove's result, as on the CPU
    std::vector<float> h = a;
    OK(be->copy(be, da + 3, da, 500 * sizeof(float)));
    std::memmove(h.data() + 3, h.data(), 500 * sizeof(float));
    EXPECT_TRUE(SameBits(Down(da, a.size()), h));
    OK(be->copy(be, da, da + 7, 600 * sizeof(float)));
    std::memmove(h.data(), h.data() + 7, 600 * sizeof(float));
    EXPECT_TRUE(SameBits(Down(da, a.size()), h));
    // rows: 7 rows of 13 from stride 19 into stride 17 (what lies between rows is kept)
    const std::vector<float> src = Rand(7 * 19, 3), dst0 = Rand(7 * 17, 4);
    std::vector<float> dst = dst0;
    float *ds = Up(src), *dd = Up(dst0);
    OK(cpu->copy_rows(cpu, dst.data(), 17, src.data(), 19, 7, 13));
    OK(be->copy_rows(be, dd, 17, ds, 19, 7, 13));
    EXPECT_TRUE(SameBits(Down(dd, dst.size()), dst));
    OK(be->zero(be, dd, 5 * sizeof(float)));
    std::vector<float> z = Down(dd, 5);
    for (float v : z) EXPECT_EQ(v, 0.f);
}

// A [rows, cols] weight owning its F32 values; View() as stored, As() converted (bf16 / q8) or BF16-stored.
struct Mat {
    std::vector<float> w;
    std::vector<uint16_t> w16;
    int64_t rows, cols;
    Mat(int64_t r, int64_t c, uint32_t seed) : w(Rand((size_t)(r * c), seed, -0.5f, 0.5f)), rows(r), cols(c)
    {
        for (float x : w) w16.push_back(vlm_f32_to_bf16(x));
    }
    vlm_weight View(bool bf16_stored = false) const
    {
        vlm_weight W{};
        W.dtype = bf16_stored ? VLM_DT_BF16 : VLM_DT_F32;
        W.rows = rows;
        W.cols = cols;
        W.data = bf16_stored ? (const void *)w16.data() : (const void *)w.data();
        return W;
    }
};

// sum_k |x_k w_k| of each output, for the linear tolerances.
std::vector<double> AbsDots(const std::vector<float> &x, int64_t M, const vlm_weight &W)
{
    std::vector<float> wr((size_t)W.cols);
    std::vector<double> s((size_t)(M * W.rows), 0.0);
    for (int64_t n = 0; n < W.rows; n++) {
        vlm_op_weight_row(&W, n, wr.data());
        for (int64_t m = 0; m < M; m++)
            for (int64_t k = 0; k < W.cols; k++)
                s[(size_t)(m * W.rows + n)] += std::fabs((double)x[(size_t)(m * W.cols + k)] * wr[(size_t)k]);
    }
    return s;
}

TEST_F(CudaBackend, LinearAndLinearManyPerWeightFormat)
{
    const Mat m(29, 37, 11), m2(45, 37, 12);
    const std::vector<float> bias = Rand(29, 13);
    float *dbias = Up(bias);
    struct Fmt {
        const char *name;
        bool bf16_stored;
        vlm_wquant conv;
        double u; // relative rounding of x on the GPU
    } fmts[] = {{"f32", false, VLM_WQ_NONE, 0.0}, {"bf16-stored", true, VLM_WQ_NONE, 0.0},
                {"bf16", false, VLM_WQ_BF16, 1.0 / 256}};
    for (const Fmt &f : fmts) {
        vlm_weight W = m.View(f.bf16_stored), W2 = m2.View(f.bf16_stored);
        vlm_quant_spec spec{f.conv, 0};
        OK(vlm_weight_convert(&W, &spec));
        OK(vlm_weight_convert(&W2, &spec));
        for (int64_t M : {1, 3, 7}) {
            const std::vector<float> x = Rand((size_t)(M * 37), 20 + (uint32_t)M);
            std::vector<float> want((size_t)(M * 29)), want2((size_t)(M * 45));
            OK(cpu->linear(cpu, want.data(), x.data(), M, &W, bias.data()));
            OK(cpu->linear(cpu, want2.data(), x.data(), M, &W2, nullptr));
            float *dx = Up(x), *dy = Up(std::vector<float>(want.size())), *dy2 = Up(std::vector<float>(want2.size()));
            const std::vector<double> s = AbsDots(x, M, W), s2 = AbsDots(x, M, W2);
            auto check = [&](const std::vector<float> &w, const std::vector<float> &g, const std::vector<double> &sd,
                             const std::string &what) {
                for (size_t i = 0; i < w.size(); i++)
                    EXPECT_LE(std::fabs((double)g[i] - w[i]), (f.u + 1e-5) * sd[i] + 1e-6)
                        << what << " " << f.name << " M " << M << " [" << i << "]";
            };
            OK(be->linear(be, dy, dx, M, &W, bias.data())); // host bias: a resident copy
            check(want, Down(dy, want.size()), s, "linear");
            OK(be->linear(be, dy, dx, M, &W, dbias)); // device bias: used as it is
            check(want, Down(dy, want.size()), s, "linear, device bias");
            const vlm_linear_job jobs[2] = {{dy, dx, M, &W, bias.data()}, {dy2, dx, M, &W2, nullptr}};
            OK(be->linear_many(be, jobs, 2));
            check(want, Down(dy, want.size()), s, "linear_many[0]");
            check(want2, Down(dy2, want2.size()), s2, "linear_many[1]");
        }
        vlm_weight_release(&W);
        vlm_weight_release(&W2);
    }
    // q8 / q4 do not run on CUDA
    for (vlm_wquant q : {VLM_WQ_Q8, VLM_WQ_Q4}) {
        vlm_weight W = m.View();
        vlm_quant_spec spec{q, 0};
        OK(vlm_weight_convert(&W, &spec));
        float *dx = Up(Rand(37, 5)), *dy = Up(std::vector<float>(29));
        EXPECT_EQ(be->linear(be, dy, dx, 1, &W, nullptr), VLM_ERR_UNSUPPORTED);
        EXPECT_TRUE(Contains(vlm_last_error(), "--quant bf16 or --quant none")) << vlm_last_error();
        vlm_weight_release(&W);
    }
}

TEST_F(CudaBackend, NormsPointwiseAndSoftmax)
{
    // rmsnorm: contiguous rows, then rows of 37 at stride 41 in place (the gaps stay)
    const std::vector<float> x = Rand(5 * 41, 30, -2.f, 2.f), gamma = Rand(41, 31);
    for (int64_t D : {41, 37}) {
        std::vector<float> want = x;
        OK(cpu->rmsnorm(cpu, want.data(), want.data(), 5, D, 41, gamma.data(), 1e-6f));
        float *dx = Up(x);
        OK(be->rmsnorm(be, dx, dx, 5, D, 41, gamma.data(), 1e-6f));
        const std::vector<float> got = Down(dx, x.size());
        ExpectClose(want, got, 1e-5, 1e-6, "rmsnorm D " + std::to_string(D));
        for (int64_t t = 0; t < 5; t++)
            for (int64_t i = D; i < 41; i++) EXPECT_EQ(got[(size_t)(t * 41 + i)], x[(size_t)(t * 41 + i)]);
    }
    const std::vector<float> g = Rand(1003, 32, -6.f, 6.f), u = Rand(1003, 33);
    std::vector<float> want = g;
    OK(cpu->silu_mul(cpu, want.data(), u.data(), 1003));
    float *dg = Up(g), *du = Up(u);
    OK(be->silu_mul(be, dg, du, 1003));
    ExpectClose(want, Down(dg, g.size()), 1e-5, 1e-6, "silu_mul");
    want = g;
    OK(cpu->add(cpu, want.data(), u.data(), 1003));
    float *dg2 = Up(g);
    OK(be->add(be, dg2, du, 1003));
    EXPECT_TRUE(SameBits(want, Down(dg2, g.size()))) << "add";
    const std::vector<float> s = Rand(3 * 1001, 34, -8.f, 8.f);
    want = s;
    OK(cpu->softmax_rows(cpu, want.data(), 3, 1001));
    float *ds = Up(s);
    OK(be->softmax_rows(be, ds, 3, 1001));
    ExpectClose(want, Down(ds, s.size()), 1e-5, 1e-9, "softmax_rows");
}

TEST_F(CudaBackend, RopeBothLayouts)
{
    const int nh = 3, dim = 14, T = 5;
    const int64_t hs = 19, ts = nh * hs + 4;
    std::vector<float> cs((size_t)(T * dim / 2)), sn(cs.size());
    for (int t = 0; t < T; t++) vlm_rope_angles(cs.data() + t * dim / 2, sn.data() + t * dim / 2, 40 + t, dim, 10000.f);
    const float *dc = Up(cs), *dsn = Up(sn);
    const std::vector<float> x = Rand((size_t)(T * ts), 40);
    for (int inter = 0; inter < 2; inter++) {
        std::vector<float> want = x;
        float *dx = Up(x);
        if (inter) {
            OK(cpu->rope_interleaved(cpu, want.data(), T, ts, nh, hs, dim, cs.data(), sn.data()));
            OK(be->rope_interleaved(be, dx, T, ts, nh, hs, dim, dc, dsn));
        } else {
            OK(cpu->rope_neox(cpu, want.data(), T, ts, nh, hs, dim, cs.data(), sn.data()));
            OK(be->rope_neox(be, dx, T, ts, nh, hs, dim, dc, dsn));
        }
        ExpectClose(want, Down(dx, x.size()), 1e-5, 1e-6, inter ? "rope_interleaved" : "rope_neox");
    }
}

TEST_F(CudaBackend, AttentionKernelAndWideHeadsOnTheHost)
{
    struct Shape {
        int nh, nkv, qk, v;
        bool exact; // wider than the kernel: the CPU op itself runs
    } shapes[] = {{4, 2, 40, 24, false}, {3, 1, 300, 260, true}};
    for (const Shape &sh : shapes) {
        vlm_attention_params p{};
        p.n_q = 7, p.n_kv = 19, p.n_heads = sh.nh, p.n_kv_heads = sh.nkv, p.qk_dim = sh.qk, p.v_dim = sh.v;
        p.q_stride = (int64_t)sh.nh * sh.qk + 3, p.k_stride = (int64_t)sh.nkv * sh.qk + 5;
        p.v_stride = (int64_t)sh.nkv * sh.v + 1, p.o_stride = (int64_t)sh.nh * sh.v + 2;
        p.causal = 1, p.q_pos0 = 12, p.scale = 1.0f / std::sqrt((float)sh.qk);
        const std::vector<float> q = Rand((size_t)(p.n_q * p.q_stride), 50), k = Rand((size_t)(p.n_kv * p.k_stride), 51),
                                 v = Rand((size_t)(p.n_kv * p.v_stride), 52, -2.f, 2.f);
        const std::vector<float> o0 = Rand((size_t)(p.n_q * p.o_stride), 53);
        std::vector<float> want = o0;
        OK(cpu->attention(cpu, &p, q.data(), k.data(), v.data(), want.data(), 0));
        float *dq = Up(q), *dk = Up(k), *dv = Up(v), *dout = Up(o0);
        OK(be->attention(be, &p, dq, dk, dv, dout, 0));
        const std::vector<float> got = Down(dout, o0.size());
        if (sh.exact)
            EXPECT_TRUE(SameBits(want, got)) << "wide heads";
        else
            ExpectClose(want, got, 1e-5, 2e-5, "attention");
        for (int64_t i = 0; i < p.n_q; i++) // the gap after each output row is untouched
            for (int64_t j = (int64_t)sh.nh * sh.v; j < p.o_stride; j++)
                EXPECT_EQ(got[(size_t)(i * p.o_stride + j)], o0[(size_t)(i * p.o_stride + j)]);
    }
}

TEST_F(CudaBackend, EmbedGatherAndScatterAddAreExact)
{
    const Mat table(23, 33, 60);
    const std::vector<int32_t> ids = {5, 0, 22, 5, 17, 9, 1};
    const int32_t *dids = Up(ids);
    for (bool bf16 : {false, true}) {
        const vlm_weight W = table.View(bf16);
        std::vector<float> want(ids.size() * 33);
        OK(cpu->embed_rows(cpu, want.data(), &W, ids.data(), (int64_t)ids.size()));
        float *dd = Up(std::vector<float>(want.size()));
        OK(be->embed_rows(be, dd, &W, dids, (int64_t)ids.size()));
        EXPECT_TRUE(SameBits(want, Down(dd, want.size()))) << (bf16 ? "bf16 table" : "f32 table");
    }
    // MoE bookkeeping: 4 tokens x top 3 = 12 entries grouped by expert, D = 35
    const int K = 3, T = 4;
    const int64_t D = 35;
    const std::vector<int32_t> order = {0, 4, 9, 1, 5, 10, 2, 6, 11, 3, 7, 8}; // entries t * K + j
    const std::vector<float> w = Rand(T * K, 61, 0.f, 1.f), src = Rand((size_t)(T * D), 62),
                             ex = Rand((size_t)(T * K * D), 63), y0 = Rand((size_t)(T * D), 64);
    const int32_t *dorder = Up(order);
    const float *dw = Up(w), *dsrc = Up(src), *dex = Up(ex);
    std::vector<float> gw((size_t)(T * K * D));
    OK(cpu->gather_rows(cpu, gw.data(), src.data(), D, order.data(), T * K, K));
    float *dgw = Up(std::vector<float>(gw.size()));
    OK(be->gather_rows(be, dgw, dsrc, D, dorder, T * K, K));
    EXPECT_TRUE(SameBits(gw, Down(dgw, gw.size()))) << "gather_rows";
    std::vector<float> y = y0;
    OK(cpu->scatter_add_rows(cpu, y.data(), ex.data(), D, order.data(), w.data(), T * K, K));
    float *dy = Up(y0);
    OK(be->scatter_add_rows(be, dy, dex, D, dorder, dw, T * K, K));
    EXPECT_TRUE(SameBits(y, Down(dy, y.size()))) << "scatter_add_rows (the CPU's order and roundings)";
}

TEST_F(CudaBackend, ResidentCopiesAreMadeOnceAndFreedWhenTheLastUserDetaches)
{
    const size_t before = vlm_cuda_backend_resident(be, nullptr);
    const Mat m(9, 16, 70);
    const std::vector<float> bias = Rand(9, 71), x = Rand(16, 72);
    const vlm_weight W = m.View(true);
    float *dx = Up(x), *dy = Up(std::vector<float>(9));
    for (int i = 0; i < 3; i++) OK(be->linear(be, dy, dx, 1, &W, bias.data()));
    size_t bytes = 0;
    EXPECT_EQ(vlm_cuda_backend_resident(be, &bytes), before + 2); // the widened weight and the bias
    EXPECT_GE(bytes, (size_t)(9 * 16 * 4 + 9 * 4));
    vlm_cuda_backend_attach(be); // a second user: detaching one keeps the copies
    vlm_cuda_backend_detach(be);
    EXPECT_EQ(vlm_cuda_backend_resident(be, nullptr), before + 2);
    vlm_cuda_backend_detach(be); // the fixture's: the last one
    EXPECT_EQ(vlm_cuda_backend_resident(be, &bytes), 0u);
    EXPECT_EQ(bytes, 0u);
    vlm_cuda_backend_attach(be); // for TearDown
}

// ---- (b) on a GPU: the decoder, and the whole model on the golden cases -------------------------

struct Outputs {
    std::vector<float> logits, hidden;
    std::vector<std::vector<int32_t>> idx; // per forward call: [n_moe, T, top_k]
    std::vector<std::vector<float>> weight;
};

// Prefill 11 tokens (all logits, hidden states) then 3 single-token steps; routing recorded per
// call, or forced to `force`'s (the CPU's choice) when given.
void RunDecoder(vlm_lm *lm, const vlm_backend *be, const Outputs *force, Outputs *o)
{
    OK(vlm_lm_set_backend(lm, be));
    const vlm_lm_config *c = vlm_lm_get_config(lm);
    const int H = c->hidden_size, V = c->vocab_size, NL = c->num_hidden_layers, K = c->num_experts_per_tok;
    const int NM = vlm_lm_n_moe_layers(lm), T = 11, steps = 3;
    vlm_kv_cache *kc = nullptr;
    OK(vlm_kv_cache_create(lm, 32, &kc));
    std::vector<int32_t> ids(T + steps);
    for (int i = 0; i < T + steps; i++) ids[(size_t)i] = (i * 37 + 5) % V;
    std::vector<float> emb((size_t)(T + steps) * H);
    OK(vlm_lm_embed(lm, ids.data(), T + steps, emb.data()));
    o->logits.assign((size_t)(T + steps) * V, 0.f);
    o->hidden.assign((size_t)(NL + 1) * T * H, 0.f);
    o->idx.assign(steps + 1, {});
    o->weight.assign(steps + 1, {});
    std::vector<uint8_t> mask((size_t)(NM * T), 1);
    for (int call = 0; call <= steps; call++) {
        const int n = call == 0 ? T : 1;
        o->idx[(size_t)call].assign((size_t)(NM * n * K), 0);
        o->weight[(size_t)call].assign(o->idx[(size_t)call].size(), 0.f);
        vlm_lm_trace tr{};
        tr.hidden_states = call == 0 ? o->hidden.data() : nullptr;
        tr.routing_idx = o->idx[(size_t)call].data();
        tr.routing_weight = o->weight[(size_t)call].data();
        if (force) {
            tr.force_idx = force->idx[(size_t)call].data();
            tr.force_mask = mask.data();
        }
        const int64_t at = call == 0 ? 0 : T + call - 1;
        EXPECT_EQ(vlm_lm_forward(lm, kc, emb.data() + at * H, n, o->logits.data() + at * V, call == 0, &tr), VLM_OK)
            << vlm_last_error();
    }
    EXPECT_EQ(vlm_kv_cache_len(kc), T + steps);
    vlm_kv_cache_free(kc);
    OK(vlm_lm_set_backend(lm, nullptr));
}

// Holds a user of the backend's resident copies for a scope (detaching frees them with the last user).
struct Attached {
    const vlm_backend *be;
    explicit Attached(const vlm_backend *b) : be(b) { vlm_cuda_backend_attach(be); }
    ~Attached() { vlm_cuda_backend_detach(be); }
};

class CudaDecoder : public ::testing::TestWithParam<std::tuple<const char *, const char *, int>> {};

TEST_P(CudaDecoder, MatchesTheCpuBackend)
{
    if (!HasGpu()) GTEST_SKIP() << "no CUDA device (" << vlm_last_error() << ")";
    const auto [model, quant, absorbed] = GetParam();
    const vlm_backend *be = nullptr;
    OK(vlm_cuda_backend_open(0, &be));
    const bool bf16 = !strcmp(quant, "bf16");
    Lm m;
    LoadLm(model, quant, quant, quant, &m);
    if (HasFatalFailure()) return;
    vlm_lm_set_mla_absorbed(m.lm, absorbed);
    const Attached user(be); // detached before m's weights are freed (declared after m)
    Outputs cpu, dev;
    RunDecoder(m.lm, vlm_backend_cpu(), nullptr, &cpu);
    RunDecoder(m.lm, be, bf16 ? &cpu : nullptr, &dev);
    if (!bf16) {
        EXPECT_LE(golden::max_abs_diff(cpu.logits.data(), dev.logits.data(), cpu.logits.size()), 1e-4);
        EXPECT_LE(golden::max_abs_diff(cpu.hidden.data(), dev.hidden.data(), cpu.hidden.size()), 1e-4);
        EXPECT_EQ(cpu.idx, dev.idx) << "routing";
        for (size_t c = 0; c < cpu.weight.size(); c++)
            EXPECT_LE(golden::max_abs_diff(cpu.weight[c].data(), dev.weight[c].data(), cpu.weight[c].size()), 1e-5);
    } else {
        const double tol = 0.02 * MaxAbs(cpu.logits);
        EXPECT_LE(golden::max_abs_diff(cpu.logits.data(), dev.logits.data(), cpu.logits.size()), tol);
    }
}

INSTANTIATE_TEST_SUITE_P(Models, CudaDecoder,
                         ::testing::Values(std::make_tuple("tiny-mha", "none", 1), std::make_tuple("tiny-mha", "bf16", 1),
                                           std::make_tuple("tiny-mla", "none", 1), std::make_tuple("tiny-mla", "none", 0),
                                           std::make_tuple("tiny-mla", "bf16", 1)),
                         [](const auto &info) {
                             std::string s = std::string(std::get<0>(info.param)) + "_" + std::get<1>(info.param) +
                                             (std::get<2>(info.param) ? "" : "_expanded");
                             for (auto &ch : s)
                                 if (!isalnum((unsigned char)ch)) ch = '_';
                             return s;
                         });

class CudaGolden : public ::testing::TestWithParam<std::tuple<std::string, std::string, const char *>> {};

TEST_P(CudaGolden, GreedyIdsOnTheDecoderOnCuda)
{
    if (!HasGpu()) GTEST_SKIP() << "no CUDA device (" << vlm_last_error() << ")";
    const std::string model = std::get<0>(GetParam()), cs = std::get<1>(GetParam());
    const char *quant = std::get<2>(GetParam());
    const bool bf16 = !strcmp(quant, "bf16");
    Model cpu, dev;
    OK(LoadModel(model, "cpu", quant, &cpu));
    OK(LoadModel(model, "cuda", quant, &dev));
    EXPECT_EQ(vlm_model_device_note(dev.m), nullptr);
    EXPECT_STREQ(vlm_model_device(dev.m), "cuda:0");
    Request rc, rd;
    BuildRequest(cpu.m, cs, &rc);
    BuildRequest(dev.m, cs, &rd);
    if (HasFatalFailure()) return;
    const int n = 16;
    Generated want, got;
    Greedy(cpu.m, &rc.req, n, &want);
    Greedy(dev.m, &rd.req, n, &got);
    if (HasFatalFailure()) return;
    const int64_t V = vlm_model_config(cpu.m)->lm.vocab_size;
    if (!bf16) {
        golden::File gold(golden::model_dir(model) + "/" + cs + ".safetensors");
        const std::vector<int64_t> gids = gold.ints("generated_ids");
        ASSERT_EQ(gids.size(), (size_t)n);
        for (int i = 0; i < n; i++) EXPECT_EQ(got.ids[(size_t)i], gids[(size_t)i]) << "step " << i;
        EXPECT_LE(golden::max_abs_diff(want.step_logits.data(), got.step_logits.data(), want.step_logits.size()),
                  1e-4);
        return;
    }
    const double tol = 0.02 * MaxAbs(want.step_logits);
    for (int i = 0; i < n; i++) {
        const float *l = want.step_logits.data() + (size_t)i * V;
        std::vector<float> row(l, l + V);
        std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<float>());
        if (row[0] - row[1] < tol) break; // a near tie: either choice is right, and the rest differs
        ASSERT_EQ(got.ids[(size_t)i], want.ids[(size_t)i]) << "step " << i;
    }
}

std::vector<std::tuple<std::string, std::string, const char *>> GoldenParams()
{
    std::vector<std::tuple<std::string, std::string, const char *>> v;
    for (const auto &m : golden::models())
        for (const auto &c : golden::cases())
            for (const char *q : {"ref", "bf16"}) v.emplace_back(m, c, q);
    return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaGolden, ::testing::ValuesIn(GoldenParams()), [](const auto &info) {
    std::string s = std::get<0>(info.param) + "_" + std::get<1>(info.param) + "_" + std::get<2>(info.param);
    for (auto &ch : s)
        if (!isalnum((unsigned char)ch)) ch = '_';
    return s;
});

} // namespace
