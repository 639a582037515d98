// The public C API (include/vlm.h): an engine over a golden checkpoint answers with the text of
// the official model's greedy tokens; its options (quant, device) are checked and applied.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "core/ops.h"
#include "vlm.h"
#include "core/error.h"
#include "fusion/model.h"
#include "text/detok_stream.h"
#include "text/tokenizer.h"
}
#include <cjson/cJSON.h>
#include "golden_util.h"

namespace {

const char *kCase = "case1_640x480_png";

// Ids as text the way an answer is shown: through the streaming detokenizer, special tokens
// left out, an incomplete UTF-8 sequence at the end as U+FFFD.
std::string StreamText(const std::string &model, const std::vector<int32_t> &ids)
{
    vlm_model *m = nullptr;
    EXPECT_EQ(vlm_model_load(golden::model_dir(model).c_str(), nullptr, &m), VLM_OK) << vlm_last_error();
    if (!m) return "";
    vlm_detok_stream *s = nullptr;
    EXPECT_EQ(vlm_detok_stream_new(vlm_model_tokenizer(m), 0, &s), VLM_OK);
    std::string out;
    const char *p;
    size_t n;
    for (int32_t id : ids)
        if (s && vlm_detok_stream_push(s, id, &p, &n) == VLM_OK) out.append(p, n);
    if (s && vlm_detok_stream_flush(s, &p, &n) == VLM_OK) out.append(p, n);
    vlm_detok_stream_free(s);
    vlm_model_free(m);
    return out;
}

// The official model's greedy tokens as text.
std::string GoldenAnswer(const std::string &model)
{
    golden::File gold(golden::model_dir(model) + "/" + kCase + ".safetensors");
    std::vector<int64_t> g = gold.ints("generated_ids");
    return StreamText(model, std::vector<int32_t>(g.begin(), g.end()));
}

std::string Ask(vlm_engine *e, int *rc)
{
    const std::string image = golden::input_dir(kCase) + "/image.png";
    const char *images[] = {image.c_str()};
    vlm_ask_options o;
    vlm_ask_options_default(&o);
    o.max_new_tokens = 16;
    o.ignore_eos = 1;
    char *answer = nullptr;
    *rc = vlm_engine_ask(e, "<image>\nDescribe this image.", images, 1, &o, &answer);
    std::string out = answer ? answer : "";
    free(answer);
    return out;
}

TEST(Engine, AnswersWithTheOfficialGreedyTokens)
{
    for (const char *model : {"tiny-mha", "tiny-mla"}) {
        SCOPED_TRACE(model);
        const std::string want = GoldenAnswer(model);
        ASSERT_FALSE(want.empty());
        vlm_engine *e = nullptr;
        ASSERT_EQ(vlm_engine_open(golden::model_dir(model).c_str(), nullptr, &e), VLM_OK) << vlm_last_error();
        EXPECT_EQ(vlm_engine_device_note(e), nullptr);
        int rc;
        EXPECT_EQ(Ask(e, &rc), want);
        EXPECT_EQ(rc, VLM_OK) << vlm_last_error();
        vlm_engine_close(e);
    }
}

TEST(Engine, DeviceOptionRunsOrFallsBackWithANote)
{
    vlm_engine_options opt = {};
    opt.device = "cuda";
    vlm_engine *e = nullptr;
    ASSERT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), &opt, &e), VLM_OK) << vlm_last_error();
    // Without a usable GPU (and in CPU-only builds) the engine says so and runs on the CPU.
    const char *note = vlm_engine_device_note(e);
    if (note) {
        EXPECT_NE(std::strstr(note, "CUDA"), nullptr) << note;
    }
    int rc;
    EXPECT_EQ(Ask(e, &rc), GoldenAnswer("tiny-mha"));
    EXPECT_EQ(rc, VLM_OK) << vlm_last_error();
    vlm_engine_close(e);

    opt.device = "gpu";
    e = nullptr;
    EXPECT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), &opt, &e), VLM_ERR_INVALID);
    EXPECT_EQ(e, nullptr);
    EXPECT_NE(std::strstr(vlm_last_error(), "gpu"), nullptr) << vlm_last_error();
}

// The ids `vlm ask` prints for case 1 with the given extra options.
std::vector<int32_t> CliIds(const std::string &opts)
{
    std::string cli;
    const std::string cmd = golden::vlm_bin() + " ask -m " + golden::model_dir("tiny-mha") + " -i " +
                            golden::input_dir(kCase) + "/image.png --max-tokens 16 --ignore-eos --json " + opts +
                            " \"Describe this image.\" 2>/dev/null";
    EXPECT_EQ(golden::run(cmd, &cli), 0) << cli;
    cJSON *j = cJSON_Parse(cli.c_str());
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "token_ids");
    std::vector<int32_t> v;
    for (const cJSON *x = ids ? ids->child : nullptr; x; x = x->next) v.push_back((int32_t)x->valuedouble);
    cJSON_Delete(j);
    return v;
}

// The engine's answer to case 1 with these options (open, ask, close); a failure fails the test.
std::string EngineAnswer(const vlm_engine_options &opt)
{
    vlm_engine *e = nullptr;
    EXPECT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), &opt, &e), VLM_OK) << vlm_last_error();
    if (!e) return std::string();
    int rc;
    const std::string text = Ask(e, &rc);
    EXPECT_EQ(rc, VLM_OK) << vlm_last_error();
    vlm_engine_close(e);
    return text;
}

TEST(Engine, QuantOptionIsParsedAndApplied)
{
    vlm_engine_options opt = {};
    opt.quant = "q5";
    vlm_engine *e = nullptr;
    EXPECT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), &opt, &e), VLM_ERR_INVALID);
    EXPECT_EQ(e, nullptr);
    EXPECT_NE(std::strstr(vlm_last_error(), "q5"), nullptr) << vlm_last_error();

    // bf16 keeps all 16 greedy ids of case 1 on the tiny models (README, "Tolerances").
    opt.quant = "bf16";
    ASSERT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), &opt, &e), VLM_OK) << vlm_last_error();
    int rc;
    EXPECT_EQ(Ask(e, &rc), GoldenAnswer("tiny-mha"));
    EXPECT_EQ(rc, VLM_OK) << vlm_last_error();
    vlm_engine_close(e);

    // q4 is applied: on these random weights it changes the greedy answer (its first token is
    // 257 where the golden one is 444), and the engine answers with the tokens `vlm ask --quant q4`
    // generates.
    opt.quant = "q4";
    const std::string q4 = EngineAnswer(opt);
    EXPECT_NE(q4, GoldenAnswer("tiny-mha"));
    const std::vector<int32_t> cli_ids = CliIds("--quant q4");
    ASSERT_EQ(cli_ids.size(), 16u);
    EXPECT_EQ(q4, StreamText("tiny-mha", cli_ids));
}

// --int8-act sets the process-wide int8-activation mode: `vlm ask --quant q4 --int8-act off` answers
// as the engine does with vlm_ops_set_int8_activations(0), and --int8-act on / auto (q4: int8 either
// way) as the engine with the default; a bad value is an error.
TEST(Engine, Int8ActivationModeMatchesTheCli)
{
    vlm_engine_options opt = {};
    opt.quant = "q4";
    vlm_ops_set_int8_activations(0);
    const std::string off = EngineAnswer(opt);
    vlm_ops_set_int8_activations(-1);
    const std::string dflt = EngineAnswer(opt);

    EXPECT_EQ(off, StreamText("tiny-mha", CliIds("--quant q4 --int8-act off")));
    const std::vector<int32_t> on = CliIds("--quant q4 --int8-act on");
    EXPECT_EQ(dflt, StreamText("tiny-mha", on));
    EXPECT_EQ(on, CliIds("--quant q4 --int8-act auto"));
    EXPECT_EQ(on, CliIds("--quant q4"));

    std::string out;
    EXPECT_EQ(golden::run(golden::vlm_bin() + " ask -m " + golden::model_dir("tiny-mha") + " --int8-act sometimes Hi 2>&1",
                          &out),
              2);
    EXPECT_NE(out.find("--int8-act takes auto, on or off, not 'sometimes'"), std::string::npos) << out;
}

// The KV cache type: the engine's option and the CLI's flag give the same ids; on case 1 in q4 the
// 16-bit cache (the default) and the fp32 one part from token 9, so the test tells them apart.
TEST(Engine, KvCacheTypeMatchesTheCli)
{
    vlm_engine_options opt = {};
    opt.quant = "q4";
    opt.kv_cache = "f32";
    const std::string text_f32 = EngineAnswer(opt);
    opt.kv_cache = nullptr;
    const std::string text_default = EngineAnswer(opt);
    const std::vector<int32_t> f32 = CliIds("--quant q4 --kv-cache f32"), f16 = CliIds("--quant q4 --kv-cache f16");
    EXPECT_EQ(text_f32, StreamText("tiny-mha", f32));
    EXPECT_EQ(text_default, StreamText("tiny-mha", f16));
    EXPECT_EQ(f16, CliIds("--quant q4"));
    EXPECT_EQ(f16, CliIds("--quant q4 --kv-cache auto"));
    ASSERT_EQ(f16.size(), 16u);
    EXPECT_NE(f16, f32);

    opt.kv_cache = "f8";
    vlm_engine *e = nullptr;
    EXPECT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), &opt, &e), VLM_ERR_INVALID);
    EXPECT_EQ(e, nullptr);
    EXPECT_NE(std::strstr(vlm_last_error(), "'f8'"), nullptr) << vlm_last_error();
    std::string out;
    EXPECT_EQ(golden::run(golden::vlm_bin() + " ask -m " + golden::model_dir("tiny-mha") + " --kv-cache f8 Hi 2>&1", &out), 2);
    EXPECT_NE(out.find("--kv-cache takes auto, f16 or f32, not 'f8'"), std::string::npos) << out;
}

}  // namespace
