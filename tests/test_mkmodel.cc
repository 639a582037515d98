// vlm mkmodel: the built-in shapes' configs, and a small-dimension checkpoint with Tiny's vocabulary
// written in several shards: it loads (every tensor present with the shape the loaders check), its
// tokenizer has the special tokens at the real ids, its weights have the intended scale, the same
// seed writes the same bytes, and it runs in every weight format.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <dirent.h>
#include <unistd.h>
#include <vector>

extern "C" {
#include "core/checkpoint.h"
#include "core/error.h"
#include "fusion/mkmodel.h"
#include "fusion/model.h"
}

namespace {

std::string read_all(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(MkModel, BuiltInShapesParseToTheSpecShapes) {
  struct {
    const char *name;
    int hidden, layers, experts, vocab, use_mla, bos;
  } want[] = {{"tiny", 1280, 12, 64, 129280, 0, 0}, {"small", 2048, 27, 64, 102400, 1, 100000},
              {"base", 2560, 30, 72, 129280, 1, 0}};
  for (auto &w : want) {
    char *json = nullptr;
    ASSERT_EQ(vlm_mkmodel_shape_config(w.name, &json), VLM_OK) << vlm_last_error();
    vlm_vl2_config c;
    ASSERT_EQ(vlm_vl2_config_parse(json, std::strlen(json), &c), VLM_OK) << vlm_last_error();
    free(json);
    EXPECT_EQ(c.lm.hidden_size, w.hidden) << w.name;
    EXPECT_EQ(c.lm.num_hidden_layers, w.layers) << w.name;
    EXPECT_EQ(c.lm.n_routed_experts, w.experts) << w.name;
    EXPECT_EQ(c.lm.vocab_size, w.vocab) << w.name;
    EXPECT_EQ(c.lm.use_mla, w.use_mla) << w.name;
    EXPECT_EQ(c.lm.bos_token_id, w.bos) << w.name;
    EXPECT_EQ(c.vision.mlp_hidden, 4304) << w.name;
    EXPECT_EQ(c.vision.layers, 27) << w.name;
  }
  char *json = nullptr;
  EXPECT_NE(vlm_mkmodel_shape_config("huge", &json), VLM_OK);
}

// Tiny's vocabulary and special ids, small widths (the golden tiny-mha dimensions).
const char *kSmallConfig = R"({"model_type": "deepseek_vl_v2",
 "vision_config": {"image_size": 384, "patch_size": 14, "width": 64, "layers": 2, "heads": 4, "mlp_ratio": 3.7362},
 "projector_config": {"projector_type": "downsample_mlp_gelu", "input_dim": 64, "n_embed": 64, "depth": 2,
                      "mlp_ratio": 1, "downsample_ratio": 2},
 "language_config": {"vocab_size": 129280, "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
   "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4, "n_shared_experts": 2,
   "n_routed_experts": 8, "num_experts_per_tok": 3, "first_k_dense_replace": 1, "moe_layer_freq": 1,
   "use_mla": false, "topk_method": "greedy", "scoring_func": "softmax", "bos_token_id": 0, "eos_token_id": 1}})";

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/vlm_mkmodel_XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { (void)!system(("rm -rf '" + path + "'").c_str()); }
};

TEST(MkModel, SmallCheckpointLoadsAndRuns) {
  TempDir tmp;
  const std::string cfg = tmp.path + "/in.json", a = tmp.path + "/a", b = tmp.path + "/b";
  std::ofstream(cfg) << kSmallConfig;
  vlm_mkmodel_options o{};
  o.shard_gb = 0.01;  // about 10 MB: several shards
  o.quiet = 1;
  ASSERT_EQ(vlm_mkmodel(cfg.c_str(), a.c_str(), &o), VLM_OK) << vlm_last_error();
  ASSERT_EQ(vlm_mkmodel(cfg.c_str(), b.c_str(), &o), VLM_OK) << vlm_last_error();
  // the same seed writes the same bytes; the shard limit gives several shards
  int shards = 0;
  DIR *d = opendir(a.c_str());
  ASSERT_NE(d, nullptr);
  for (struct dirent *e; (e = readdir(d));) {
    std::string n = e->d_name;
    if (n[0] == '.') continue;
    shards += n.rfind("model-", 0) == 0;
    EXPECT_EQ(read_all(a + "/" + n), read_all(b + "/" + n)) << n;
  }
  closedir(d);
  EXPECT_GE(shards, 2);
  for (const char *f : {"config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
                        "model.safetensors.index.json"})
    EXPECT_EQ(access((a + "/" + f).c_str(), F_OK), 0) << f;

  // weights: uniform with std 1/sqrt(fan_in); norms 1
  vlm_checkpoint *ck;
  ASSERT_EQ(vlm_checkpoint_open(a.c_str(), &ck), VLM_OK) << vlm_last_error();
  float *w = nullptr;
  const int64_t shape[2] = {128, 64};
  ASSERT_EQ(vlm_checkpoint_f32(ck, "language.model.layers.0.mlp.gate_proj.weight", 2, shape, &w), VLM_OK);
  double s = 0, ss = 0, mx = 0;
  for (int i = 0; i < 128 * 64; i++) s += w[i], ss += (double)w[i] * w[i], mx = std::max(mx, (double)std::fabs(w[i]));
  free(w);
  const double mean = s / (128 * 64), sd = std::sqrt(ss / (128 * 64) - mean * mean);
  EXPECT_NEAR(sd, 1 / 8.0, 0.125 * 0.05);
  EXPECT_LE(mx, std::sqrt(3.0) / 8 * 1.01);
  EXPECT_NEAR(mean, 0, 0.01);
  const int64_t n1[1] = {64};
  ASSERT_EQ(vlm_checkpoint_f32(ck, "language.model.norm.weight", 1, n1, &w), VLM_OK);
  for (int i = 0; i < 64; i++) EXPECT_EQ(w[i], 1.0f);
  free(w);
  vlm_checkpoint_close(ck);

  for (const char *q : {"ref", "bf16", "q8", "q4"}) {
    SCOPED_TRACE(q);
    vlm_model_options mo{};
    ASSERT_EQ(vlm_quant_options_parse(q, &mo.quant), VLM_OK);
    vlm_model *m;
    ASSERT_EQ(vlm_model_load(a.c_str(), &mo, &m), VLM_OK) << vlm_last_error();
    const vlm_special_ids *sp = vlm_tokenizer_special(vlm_model_tokenizer(m));
    EXPECT_EQ(sp->bos, 0);
    EXPECT_EQ(sp->eos, 1);
    EXPECT_EQ(sp->image, 128815);
    EXPECT_EQ(vlm_tokenizer_token_to_id(vlm_model_tokenizer(m), "<|Assistant|>"), 128822);
    // every other id outside the byte tokens decodes to a placeholder word, so random answers are text;
    // encoding still gives byte tokens (no merges), and the vocabulary is the config's
    EXPECT_EQ(vlm_tokenizer_vocab_size(vlm_model_tokenizer(m)), 129280);
    {
      const int32_t words[3] = {3, 50000, 129279};
      char *text = nullptr;
      size_t len = 0;
      ASSERT_EQ(vlm_tokenizer_decode(vlm_model_tokenizer(m), words, 3, 1, &text, &len), VLM_OK);
      EXPECT_EQ(std::string(text, len), " w3 w50000 w129279");
      free(text);
      int32_t *ids = nullptr;
      size_t n = 0;
      ASSERT_EQ(vlm_tokenizer_encode(vlm_model_tokenizer(m), " w5", 3, &ids, &n), VLM_OK);
      ASSERT_EQ(n, 3u);  // byte b is id 16 + b
      EXPECT_EQ(ids[0], 16 + ' ');
      EXPECT_EQ(ids[1], 16 + 'w');
      EXPECT_EQ(ids[2], 16 + '5');
      free(ids);
    }
    vlm_image img{};
    img.width = 40, img.height = 30;
    std::vector<uint8_t> px((size_t)40 * 30 * 3, 128);
    img.rgb = px.data();
    vlm_chat_message msgs[2] = {{"user", "<image>\nHi"}, {"assistant", ""}};
    vlm_request req;
    ASSERT_EQ(vlm_model_build_request(m, msgs, 2, &img, 1, &req), VLM_OK) << vlm_last_error();
    EXPECT_EQ(req.ids[0], 0);
    vlm_generate_options go{};
    go.max_new_tokens = 3;
    go.ignore_eos = 1;
    vlm_generation g;
    ASSERT_EQ(vlm_model_generate(m, &req, &go, &g), VLM_OK) << vlm_last_error();
    EXPECT_EQ(g.n_ids, 3);
    for (int i = 0; i < g.n_ids; i++) EXPECT_TRUE(g.ids[i] >= 0 && g.ids[i] < 129280);
    vlm_generation_free(&g);
    vlm_request_free(&req);
    vlm_model_free(m);
  }
}

}  // namespace
