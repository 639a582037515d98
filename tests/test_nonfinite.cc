// NaN and infinite logits: the sampler refuses them with a message naming the step, and a damaged checkpoint
// (the golden tiny-mha with poisoned weights) makes `vlm ask`, vlm_engine_ask and vlm_model_generate fail with
// that message instead of answering with a wrong or out-of-vocabulary token.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "golden_util.h"

extern "C" {
#include "fusion/model.h"
#include "text/sampler.h"
#include "vlm.h"
}

namespace {

struct Sampler {
    vlm_sampler *s = nullptr;
    Sampler(float temperature, int vocab)
    {
        vlm_sampler_params p{};
        p.temperature = temperature;
        p.seed = 7;
        EXPECT_EQ(vlm_sampler_create(&p, vocab, &s), VLM_OK) << vlm_last_error();
    }
    ~Sampler() { vlm_sampler_free(s); }
};

bool has(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

TEST(NonFinite, SamplerRefusesNaNAndInfinityNamingTheStep)
{
    for (float temperature : {0.0f, 0.8f}) {
        Sampler s(temperature, 6);
        std::vector<float> ok = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, 0.0f};
        EXPECT_GE(vlm_sampler_sample(s.s, ok.data(), nullptr, 0), 0) << vlm_last_error();  // step 1
        std::vector<float> l = {0.5f, NAN, -1.0f, 2.0f, 1.9f, 0.0f};
        EXPECT_EQ(vlm_sampler_sample(s.s, l.data(), nullptr, 0), VLM_ERR_FORMAT);
        EXPECT_EQ(std::string(vlm_last_error()),
                  "the model produced NaN logits at step 2 (1 of 6): the checkpoint may be damaged");
        l = {0.5f, 1.0f, INFINITY, 2.0f, 1.9f, 0.0f};
        EXPECT_EQ(vlm_sampler_sample(s.s, l.data(), nullptr, 0), VLM_ERR_FORMAT);
        EXPECT_TRUE(has(vlm_last_error(), "infinite logits at step 3 (1 of 6)")) << vlm_last_error();
        l = {-INFINITY, 1.0f, 1.0f, 2.0f, 1.9f, 0.0f};
        EXPECT_EQ(vlm_sampler_sample(s.s, l.data(), nullptr, 0), VLM_ERR_FORMAT);
        EXPECT_TRUE(has(vlm_last_error(), "infinite logits at step 4")) << vlm_last_error();
        l = {NAN, NAN, INFINITY, NAN, -INFINITY, NAN};
        EXPECT_EQ(vlm_sampler_sample(s.s, l.data(), nullptr, 0), VLM_ERR_FORMAT);
        EXPECT_TRUE(has(vlm_last_error(), "NaN and infinite logits at step 5 (6 of 6)")) << vlm_last_error();
    }
}

// Finite logits over a tiny temperature overflow to +inf: the tokens that did share the choice.
TEST(NonFinite, TemperatureOverflowKeepsTheLargestLogits)
{
    for (uint64_t seed = 0; seed < 20; seed++) {
        vlm_sampler_params p{};
        p.temperature = 1e-38f;
        p.seed = seed;
        vlm_sampler *s;
        ASSERT_EQ(vlm_sampler_create(&p, 4, &s), VLM_OK);
        std::vector<float> l = {1.0f, 30.0f, -5.0f, 30.0f};
        const int32_t id = vlm_sampler_sample(s, l.data(), nullptr, 0);
        EXPECT_TRUE(id == 1 || id == 3) << id << " " << vlm_last_error();
        vlm_sampler_free(s);
    }
}

// ---- poisoned checkpoints ------------------------------------------------------------------

std::string slurp(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

const uint16_t kBf16NaN = 0x7fc0, kBf16Inf = 0x7f80, kBf16Zero = 0;

// A copy of tiny-mha whose tensor `name` (BF16) has elements [first, first + values.size()) replaced.
class Poisoned {
  public:
    Poisoned(const char *name, int64_t first, const std::vector<uint16_t> &values)
    {
        char d[] = "/tmp/vlm_nonfinite_XXXXXX";
        dir = mkdtemp(d);
        const std::string src = golden::model_dir("tiny-mha");
        for (const char *f : {"config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json"})
            std::ofstream(dir + "/" + f, std::ios::binary) << slurp(src + "/" + f);
        vlm_st_file *st;
        EXPECT_EQ(vlm_st_open((src + "/model.safetensors").c_str(), &st), VLM_OK) << vlm_last_error();
        if (!st) return;
        std::vector<vlm_tensor_view> views;
        std::vector<uint16_t> changed;
        for (int i = 0; i < vlm_st_count(st); i++) {
            vlm_tensor_view v = *vlm_st_at(st, i);
            if (!strcmp(v.name, name)) {
                EXPECT_EQ(v.dtype, VLM_DT_BF16);
                changed.resize(v.nbytes / 2);
                memcpy(changed.data(), v.data, v.nbytes);
                EXPECT_LE(first + (int64_t)values.size(), (int64_t)changed.size());
                for (size_t k = 0; k < values.size(); k++) changed[(size_t)first + k] = values[k];
                v.data = changed.data();
            }
            views.push_back(v);
        }
        EXPECT_FALSE(changed.empty()) << name << " not in the checkpoint";
        EXPECT_EQ(vlm_st_write((dir + "/model.safetensors").c_str(), views.data(), (int)views.size()), VLM_OK)
            << vlm_last_error();
        vlm_st_close(st);
    }
    ~Poisoned() { (void)!std::system(("rm -rf '" + dir + "'").c_str()); }
    std::string dir;
};

struct Cli {
    int status;
    std::string out, err;
};

Cli ask(const std::string &model, const std::string &args)
{
    const std::string base = "/tmp/vlm_nonfinite_" + std::to_string(getpid()), out = base + ".out", err = base + ".err";
    const std::string cmd = golden::vlm_bin() + " ask -m '" + model + "' " + args + " < /dev/null > " + out + " 2> " + err;
    const int st = std::system(cmd.c_str());
    Cli r{WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(out), slurp(err)};
    remove(out.c_str());
    remove(err.c_str());
    return r;
}

const int64_t kHidden = 64, kVocab = 512;  // tiny-mha: language.lm_head.weight is [512, 64]

// One lm_head row: NaN weights give that token a NaN logit, which greedy decoding used to pass over silently.
TEST(NonFinite, NaNWeightsMakeAskFailNamingTheStep)
{
    Poisoned p("language.lm_head.weight", 7 * kHidden, std::vector<uint16_t>(kHidden, kBf16NaN));
    for (const char *quant : {"", "--quant ref"}) {
        Cli r = ask(p.dir, std::string(quant) + " --max-tokens 4 Hello");
        EXPECT_NE(r.status, 0) << quant << "\n" << r.out << r.err;
        EXPECT_TRUE(has(r.err, "the model produced NaN logits at step 1 (1 of 512): the checkpoint may be damaged"))
            << quant << "\n" << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;  // one line
        EXPECT_FALSE(has(r.err, "AddressSanitizer") || has(r.err, "runtime error")) << r.err;
    }
}

// A single +inf weight in a row that is otherwise zero: that token's logit is x * inf, infinite.
TEST(NonFinite, InfiniteWeightsMakeAskFail)
{
    std::vector<uint16_t> row(kHidden, kBf16Zero);
    row[5] = kBf16Inf;
    Poisoned p("language.lm_head.weight", 300 * kHidden, row);
    Cli r = ask(p.dir, "--max-tokens 4 --json Hello");
    EXPECT_NE(r.status, 0) << r.out << r.err;
    EXPECT_TRUE(has(r.err, "the model produced infinite logits at step 1 (1 of 512)")) << r.err;
}

// The first generated token's embedding row poisoned: the prompt runs clean, the second step is NaN.
TEST(NonFinite, LaterStepIsNamed)
{
    Cli clean = ask(golden::model_dir("tiny-mha"), "--ids 20,21,22 --max-tokens 1 --ignore-eos --json");
    ASSERT_EQ(clean.status, 0) << clean.err;
    const size_t at = clean.out.find("\"token_ids\":");
    ASSERT_NE(at, std::string::npos) << clean.out;
    const int first = std::atoi(clean.out.c_str() + clean.out.find('[', at) + 1);
    ASSERT_TRUE((first < 20 || first > 22) && first >= 0 && first < kVocab) << "the test needs a first token outside the prompt: " << clean.out;
    Poisoned p("language.model.embed_tokens.weight", first * kHidden, std::vector<uint16_t>(kHidden, kBf16NaN));
    Cli r = ask(p.dir, "--ids 20,21,22 --max-tokens 4 --ignore-eos");
    EXPECT_NE(r.status, 0) << r.out << r.err;
    EXPECT_TRUE(has(r.err, "the model produced NaN logits at step 2 (512 of 512)")) << r.err;
}

TEST(NonFinite, EngineAndModelGenerateReportIt)
{
    Poisoned p("language.lm_head.weight", 7 * kHidden, std::vector<uint16_t>(kHidden, kBf16NaN));
    vlm_engine *e = nullptr;
    ASSERT_EQ(vlm_engine_open(p.dir.c_str(), nullptr, &e), VLM_OK) << vlm_last_error();
    vlm_ask_options o;
    vlm_ask_options_default(&o);
    o.max_new_tokens = 4;
    char *answer = nullptr;
    EXPECT_NE(vlm_engine_ask(e, "Hello", nullptr, 0, &o, &answer), 0);
    EXPECT_TRUE(has(vlm_last_error(), "the model produced NaN logits at step 1")) << vlm_last_error();
    free(answer);
    vlm_engine_close(e);

    vlm_model *m = nullptr;
    ASSERT_EQ(vlm_model_load(p.dir.c_str(), nullptr, &m), VLM_OK) << vlm_last_error();
    std::vector<int32_t> ids = {20, 21, 22};
    vlm_request r = {};
    r.ids = ids.data();
    r.n_ids = (int64_t)ids.size();
    vlm_generate_options go = {};
    go.max_new_tokens = 4;
    vlm_generation g;
    EXPECT_EQ(vlm_model_generate(m, &r, &go, &g), VLM_ERR_FORMAT);
    EXPECT_TRUE(has(vlm_last_error(), "the model produced NaN logits at step 1 (1 of 512)")) << vlm_last_error();
    EXPECT_EQ(g.ids, nullptr);
    vlm_model_free(m);
}

}  // namespace
