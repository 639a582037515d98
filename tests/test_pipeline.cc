// The whole model through the library API and through the vlm program, on every golden case
// of both tiny checkpoints; and the user-facing errors of `vlm ask`.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "golden_util.h"

extern "C" {
#include "core/file.h"
#include "fusion/model.h"
}

namespace {

std::string read_text(const std::string &path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::vector<std::string> case_images(const std::string &cs) {
  std::vector<std::string> out;
  std::string dir = golden::input_dir(cs);
  for (const char *ext : {"png", "jpg"})
    if (vlm_file_exists((dir + "/image." + ext).c_str())) return {dir + "/image." + ext};
  for (int k = 1;; k++) {
    std::string found;
    for (const char *ext : {"png", "jpg"}) {
      std::string p = dir + "/image_" + std::to_string(k) + "." + ext;
      if (vlm_file_exists(p.c_str())) found = p;
    }
    if (found.empty()) break;
    out.push_back(found);
  }
  return out;
}

struct PipelineCase : ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(PipelineCase, LibraryReproducesPromptEmbeddingsLogitsAndGreedyTokens) {
  const std::string model = std::get<0>(GetParam()), cs = std::get<1>(GetParam());
  vlm_model *m;
  ASSERT_EQ(vlm_model_load(golden::model_dir(model).c_str(), nullptr, &m), VLM_OK) << vlm_last_error();
  std::vector<std::string> paths = case_images(cs);
  std::vector<vlm_image> imgs(paths.size());
  for (size_t i = 0; i < paths.size(); i++)
    ASSERT_EQ(vlm_image_decode_file(paths[i].c_str(), nullptr, &imgs[i]), VLM_OK) << vlm_last_error();
  std::string prompt = read_text(golden::input_dir(cs) + "/prompt.txt");
  vlm_chat_message msgs[2] = {{"user", prompt.c_str()}, {"assistant", ""}};
  vlm_request req;
  ASSERT_EQ(vlm_model_build_request(m, msgs, 2, imgs.data(), (int)imgs.size(), &req), VLM_OK) << vlm_last_error();

  golden::File gold(golden::model_dir(model) + "/" + cs + ".safetensors");
  std::vector<int64_t> ids = gold.ints("input_ids");
  ASSERT_EQ((int64_t)ids.size(), req.n_ids);
  for (size_t i = 0; i < ids.size(); i++) ASSERT_EQ(ids[i], req.ids[i]) << "position " << i;

  const int64_t H = vlm_model_config(m)->lm.hidden_size, V = vlm_model_config(m)->lm.vocab_size;
  std::vector<float> embeds((size_t)(req.n_ids * H));
  ASSERT_EQ(vlm_model_embed(m, &req, embeds.data(), nullptr), VLM_OK) << vlm_last_error();
  std::vector<float> ge = gold.f32("inputs_embeds");
  EXPECT_LE(golden::max_abs_diff(embeds.data(), ge.data(), ge.size()), 1e-4);

  std::vector<float> step((size_t)(16 * V));
  vlm_generate_options go = {};
  go.max_new_tokens = 16;
  go.ignore_eos = 1;
  go.step_logits = step.data();
  vlm_generation gen;
  ASSERT_EQ(vlm_model_generate(m, &req, &go, &gen), VLM_OK) << vlm_last_error();
  std::vector<int64_t> want = gold.ints("generated_ids");
  ASSERT_EQ((int64_t)want.size(), gen.n_ids);
  for (size_t i = 0; i < want.size(); i++) EXPECT_EQ(want[i], gen.ids[i]) << "step " << i;
  std::vector<float> gs = gold.f32("generated_step_logits");
  EXPECT_LE(golden::max_abs_diff(step.data(), gs.data(), gs.size()), 2e-4);
  EXPECT_EQ(gen.prompt_tokens, req.n_ids);

  vlm_generation_free(&gen);
  vlm_request_free(&req);
  for (auto &im : imgs) vlm_image_free(&im);
  vlm_model_free(m);
}

TEST_P(PipelineCase, VerifyCommandPasses) {
  const std::string model = std::get<0>(GetParam()), cs = std::get<1>(GetParam());
  std::string out;
  int st = golden::run(golden::vlm_bin() + " verify --model " + golden::model_dir(model) + " --input " +
                           golden::input_dir(cs) + " --golden " + golden::model_dir(model) + "/" + cs + ".safetensors",
                       &out);
  EXPECT_EQ(st, 0) << out;
  EXPECT_NE(out.find("\nverify: PASS\n"), std::string::npos) << out;
  for (const char *stage : {"pixel_u8", "input_ids", "vision_output", "projector_output", "inputs_embeds", "last_logits",
                            "routing_topk_idx", "generated_step_logits", "generated_ids"})
    EXPECT_NE(out.find(stage), std::string::npos) << stage << " not compared:\n" << out;
}

TEST_P(PipelineCase, AskPrintsTheGoldenGreedyTokens) {
  const std::string model = std::get<0>(GetParam()), cs = std::get<1>(GetParam());
  std::string prompt = read_text(golden::input_dir(cs) + "/prompt.txt");
  std::string cmd = golden::vlm_bin() + " ask --json --temperature 0 --max-tokens 16 --ignore-eos -m " + golden::model_dir(model);
  for (auto &p : case_images(cs)) cmd += " -i " + p;
  // the prompt goes through the shell: write it to a file and pass it with $(cat)
  std::string pfile = "/tmp/vlm_prompt_" + model + "_" + cs + ".txt";
  std::ofstream(pfile) << prompt;
  std::string out;
  ASSERT_EQ(golden::run(cmd + " \"$(cat " + pfile + ")\"", &out), 0) << out;
  golden::File gold(golden::model_dir(model) + "/" + cs + ".safetensors");
  std::string want = "\"token_ids\":[";
  std::vector<int64_t> ids = gold.ints("generated_ids");
  for (size_t i = 0; i < ids.size(); i++) want += (i ? "," : "") + std::to_string(ids[i]);
  want += "]";
  EXPECT_NE(out.find(want), std::string::npos) << "want " << want << "\ngot " << out;
}

INSTANTIATE_TEST_SUITE_P(Golden, PipelineCase,
                         ::testing::Combine(::testing::ValuesIn(golden::models()), ::testing::ValuesIn(golden::cases())),
                         [](const auto &info) {
                           std::string s = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           for (auto &ch : s) if (!isalnum((unsigned char)ch)) ch = '_';
                           return s;
                         });

// One image and a plain question: the image goes first, as in the golden prompt.txt files.
TEST(Ask, PlainQuestionGetsTheImageFirst) {
  std::string out;
  std::string cmd = golden::vlm_bin() + " ask --json --max-tokens 16 --ignore-eos -m " + golden::model_dir("tiny-mha") +
                    " -i " + golden::input_dir("case1_640x480_png") + "/image.png 'Describe this image.'";
  ASSERT_EQ(golden::run(cmd, &out), 0) << out;
  EXPECT_NE(out.find("\"token_ids\":[444,374,59,12,374,59,12,374,59,12,374,59,12,374,59,12]"), std::string::npos) << out;
}

struct AskError {
  std::string args, message;
};

TEST(Ask, BadInputsGiveOneLineErrors) {
  std::string tmp = "/tmp/vlm_ask_err";
  std::string mk;
  golden::run("mkdir -p " + tmp + " && : > " + tmp + "/empty.png && printf 'hello' > " + tmp + "/text.jpg", &mk);
  const std::string model = " -m " + golden::model_dir("tiny-mha");
  const std::string img = " -i " + golden::input_dir("case1_640x480_png") + "/image.png";
  std::vector<AskError> cases = {
      {model + " -i /nonexistent.png 'q'", "/nonexistent.png"},
      {model + " -i " + tmp + "/empty.png 'q'", "empty.png"},
      {model + " -i " + tmp + "/text.jpg 'q'", "text.jpg"},
      {" -m /nonexistent-model" + img + " 'q'", "/nonexistent-model"},
      {" -m " + tmp + img + " 'q'", "config.json"},
      {model + img + " --max-pixels 1000 'q'", "1000"},
      {model + img + " --context 500 'q'", "context"},
      {model + img + " --temperature abc 'q'", "--temperature"},
      {model + img + " 'one <image> two <image>'", "<image>"},
      {model + " --ids 0,9,99999 'q'", "99999"},
  };
  for (auto &c : cases) {
    std::string out;
    int st = golden::run(golden::vlm_bin() + " ask" + c.args, &out);
    EXPECT_NE(st, 0) << c.args << "\n" << out;
    EXPECT_NE(st, -1) << "crashed: " << c.args;
    EXPECT_NE(out.find("vlm ask: "), std::string::npos) << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << c.args << "\n" << out;
    EXPECT_EQ(out.find("AddressSanitizer"), std::string::npos) << out;
    EXPECT_EQ(out.find("runtime error"), std::string::npos) << out;
  }
}

TEST(Model, ContextOverflowIsAnErrorNotACrash) {
  vlm_model *m;
  vlm_model_options o = {};
  o.max_context = 100;
  ASSERT_EQ(vlm_model_load(golden::model_dir("tiny-mla").c_str(), &o, &m), VLM_OK) << vlm_last_error();
  EXPECT_EQ(vlm_model_context(m), 100);
  vlm_request r = {};
  std::vector<int32_t> ids(150, 20);
  r.ids = ids.data();
  r.n_ids = (int64_t)ids.size();
  vlm_generate_options go = {};
  go.max_new_tokens = 4;
  vlm_generation g;
  EXPECT_EQ(vlm_model_generate(m, &r, &go, &g), VLM_ERR_LIMIT);
  EXPECT_NE(std::string(vlm_last_error()).find("150 tokens"), std::string::npos) << vlm_last_error();
  // a prompt that fits, with more new tokens than room: stops at the context
  r.n_ids = 90;
  go.max_new_tokens = 50;
  go.ignore_eos = 1;
  ASSERT_EQ(vlm_model_generate(m, &r, &go, &g), VLM_OK) << vlm_last_error();
  EXPECT_EQ(g.stop, VLM_STOP_CONTEXT);
  EXPECT_EQ(g.n_ids, 11);
  vlm_generation_free(&g);
  vlm_model_free(m);
}

}  // namespace
