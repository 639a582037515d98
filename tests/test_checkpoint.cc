// Checkpoint folders (single file and sharded), tensor checks, and config.json parsing.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "golden_util.h"

extern "C" {
#include "core/checkpoint.h"
#include "fusion/config.h"
}

namespace {

std::string make_tmp_dir() {
  char dir[] = "/tmp/vlm_ck_XXXXXX";
  return mkdtemp(dir);
}

void copy_file(const std::string &from, const std::string &to) {
  FILE *a = fopen(from.c_str(), "rb"), *b = fopen(to.c_str(), "wb");
  ASSERT_TRUE(a && b);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
  fclose(a);
  fclose(b);
}

void write_text(const std::string &path, const std::string &text) {
  FILE *f = fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  fwrite(text.data(), 1, text.size(), f);
  fclose(f);
}

// Splits the golden tiny-mha checkpoint into 3 shards with an index, as HF publishes big models.
std::string make_sharded_copy() {
  std::string dir = make_tmp_dir();
  vlm_st_file *f;
  EXPECT_EQ(vlm_st_open((golden::model_dir("tiny-mha") + "/model.safetensors").c_str(), &f), VLM_OK);
  int n = vlm_st_count(f);
  std::vector<vlm_tensor_view> parts[3];
  for (int i = 0; i < n; i++) parts[i % 3].push_back(*vlm_st_at(f, i));
  std::string index = "{\"metadata\": {}, \"weight_map\": {";
  for (int s = 0; s < 3; s++) {
    char name[64];
    snprintf(name, sizeof name, "model-%05d-of-00003.safetensors", s + 1);
    EXPECT_EQ(vlm_st_write((dir + "/" + name).c_str(), parts[s].data(), (int)parts[s].size()), VLM_OK);
    for (auto &v : parts[s]) index += std::string(index.back() == '{' ? "" : ",") + "\"" + v.name + "\": \"" + name + "\"";
  }
  index += "}}";
  write_text(dir + "/model.safetensors.index.json", index);
  vlm_st_close(f);
  for (const char *cfg : {"config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json"})
    copy_file(golden::model_dir("tiny-mha") + "/" + cfg, dir + "/" + cfg);
  return dir;
}

TEST(Checkpoint, ShardedFolderHoldsTheSameTensors) {
  std::string dir = make_sharded_copy();
  vlm_checkpoint *single, *sharded;
  ASSERT_EQ(vlm_checkpoint_open(golden::model_dir("tiny-mha").c_str(), &single), VLM_OK) << vlm_last_error();
  ASSERT_EQ(vlm_checkpoint_open(dir.c_str(), &sharded), VLM_OK) << vlm_last_error();
  EXPECT_EQ(vlm_checkpoint_bytes(single), vlm_checkpoint_bytes(sharded));
  for (const char *name : {"vision.pos_embed", "language.lm_head.weight", "language.model.layers.3.mlp.experts.7.up_proj.weight",
                           "image_newline"}) {
    const vlm_tensor_view *a = vlm_checkpoint_find(single, name), *b = vlm_checkpoint_find(sharded, name);
    ASSERT_TRUE(a && b) << name;
    ASSERT_EQ(a->nbytes, b->nbytes);
    EXPECT_EQ(0, memcmp(a->data, b->data, a->nbytes)) << name;
  }
  vlm_checkpoint_close(single);
  vlm_checkpoint_close(sharded);
}

TEST(Checkpoint, IndexNamingAMissingShardIsAnError) {
  std::string dir = make_sharded_copy();
  std::remove((dir + "/model-00002-of-00003.safetensors").c_str());
  vlm_checkpoint *c;
  EXPECT_EQ(vlm_checkpoint_open(dir.c_str(), &c), VLM_ERR_IO);
  EXPECT_NE(std::string(vlm_last_error()).find("model-00002-of-00003.safetensors"), std::string::npos) << vlm_last_error();
  write_text(dir + "/model.safetensors.index.json", "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}");
  EXPECT_EQ(vlm_checkpoint_open(dir.c_str(), &c), VLM_ERR_FORMAT);
  write_text(dir + "/model.safetensors.index.json", "{\"weight_map\": ");
  EXPECT_EQ(vlm_checkpoint_open(dir.c_str(), &c), VLM_ERR_FORMAT);
}

TEST(Checkpoint, NotACheckpointFolder) {
  vlm_checkpoint *c;
  EXPECT_EQ(vlm_checkpoint_open("/nonexistent-folder", &c), VLM_ERR_IO);
  EXPECT_NE(std::string(vlm_last_error()).find("does not exist"), std::string::npos);
  std::string empty = make_tmp_dir();
  EXPECT_EQ(vlm_checkpoint_open(empty.c_str(), &c), VLM_ERR_IO);
  EXPECT_NE(std::string(vlm_last_error()).find("not a checkpoint folder"), std::string::npos) << vlm_last_error();
}

TEST(Checkpoint, ShapeMismatchNamesTensorAndShapes) {
  vlm_checkpoint *c;
  ASSERT_EQ(vlm_checkpoint_open(golden::model_dir("tiny-mha").c_str(), &c), VLM_OK);
  vlm_weight w;
  EXPECT_EQ(vlm_checkpoint_weight(c, "language.lm_head.weight", 512, 64, &w), VLM_OK);
  EXPECT_EQ(w.dtype, VLM_DT_BF16);
  EXPECT_EQ(vlm_checkpoint_weight(c, "language.lm_head.weight", 1024, 64, &w), VLM_ERR_MISMATCH);
  EXPECT_STREQ(vlm_last_error(), "tensor 'language.lm_head.weight' has shape [512, 64]; the config implies [1024, 64]");
  EXPECT_EQ(vlm_checkpoint_weight(c, "language.model.layers.9.mlp.gate.weight", 8, 64, &w), VLM_ERR_MISMATCH);
  EXPECT_NE(std::string(vlm_last_error()).find("has no tensor 'language.model.layers.9.mlp.gate.weight'"), std::string::npos);
  float *v = nullptr;
  ASSERT_EQ(vlm_checkpoint_vector(c, "image_newline", 64, &v), VLM_OK);
  free(v);
  vlm_checkpoint_close(c);
}

TEST(Config, GoldenConfigsParse) {
  vlm_vl2_config c;
  ASSERT_EQ(vlm_vl2_config_load(golden::model_dir("tiny-mha").c_str(), &c), VLM_OK) << vlm_last_error();
  EXPECT_EQ(c.vision.width, 64);
  EXPECT_EQ(c.vision.layers, 2);
  EXPECT_EQ(c.vision.heads, 4);
  EXPECT_EQ(c.vision.mlp_hidden, 239);  // int(64 * 3.7362)
  EXPECT_EQ(c.vision.patch_size, 14);
  EXPECT_EQ(c.projector.n_embed, 64);
  EXPECT_EQ(c.lm.use_mla, 0);
  EXPECT_EQ(c.lm.q_lora_rank, 0);
  EXPECT_EQ(c.lm.num_experts_per_tok, 3);
  EXPECT_EQ(c.lm.topk_method, VLM_TOPK_GREEDY);
  EXPECT_EQ(c.lm.scoring_func, VLM_SCORE_SOFTMAX);
  EXPECT_EQ(c.n_candidates, 23);
  EXPECT_EQ(c.candidates[22].width, 1152);
  EXPECT_EQ(c.candidates[1].width, 384);
  EXPECT_EQ(c.candidates[1].height, 768);
  ASSERT_EQ(vlm_vl2_config_load(golden::model_dir("tiny-mla").c_str(), &c), VLM_OK) << vlm_last_error();
  EXPECT_EQ(c.lm.use_mla, 1);
  EXPECT_EQ(c.lm.kv_lora_rank, 32);
  EXPECT_EQ(c.lm.qk_rope_head_dim, 8);
  EXPECT_EQ(c.lm.topk_method, VLM_TOPK_NOAUX_TC);
  EXPECT_EQ(c.lm.scoring_func, VLM_SCORE_SIGMOID);
  EXPECT_EQ(c.lm.norm_topk_prob, 1);
  EXPECT_FLOAT_EQ(c.lm.routed_scaling_factor, 2.0f);
}

TEST(Config, AbsentFieldsTakeTheClassDefaults) {
  const char *json = R"({"model_type": "deepseek_vl_v2",
    "vision_config": {"width": 1152, "layers": 27, "heads": 16, "mlp_ratio": 3.7362, "patch_size": 14},
    "projector_config": {"projector_type": "downsample_mlp_gelu", "input_dim": 1152, "n_embed": 4096},
    "language_config": {"n_routed_experts": 72, "num_experts_per_tok": 6, "q_lora_rank": null}})";
  vlm_vl2_config c;
  ASSERT_EQ(vlm_vl2_config_parse(json, strlen(json), &c), VLM_OK) << vlm_last_error();
  EXPECT_EQ(c.vision.mlp_hidden, 4304);
  EXPECT_EQ(c.vision.image_size, 384);
  EXPECT_EQ(c.projector.depth, 2);
  EXPECT_EQ(c.projector.downsample_ratio, 2);
  // DeepseekV2Config defaults
  EXPECT_EQ(c.lm.vocab_size, 102400);
  EXPECT_EQ(c.lm.hidden_size, 4096);
  EXPECT_EQ(c.lm.num_hidden_layers, 30);
  EXPECT_EQ(c.lm.num_attention_heads, 32);
  EXPECT_EQ(c.lm.kv_lora_rank, 512);
  EXPECT_EQ(c.lm.q_lora_rank, 0);  // explicit null
  EXPECT_EQ(c.lm.qk_nope_head_dim, 128);
  EXPECT_EQ(c.lm.qk_rope_head_dim, 64);
  EXPECT_EQ(c.lm.v_head_dim, 128);
  EXPECT_EQ(c.lm.use_mla, 1);
  EXPECT_EQ(c.lm.first_k_dense_replace, 0);
  EXPECT_EQ(c.lm.max_position_embeddings, 2048);
  EXPECT_EQ(c.lm.bos_token_id, 100000);
  EXPECT_EQ(c.lm.eos_token_id, 100001);
  EXPECT_FLOAT_EQ(c.lm.rope_theta, 10000.0f);
  EXPECT_EQ(c.n_candidates, 1);
}

TEST(Config, BadConfigsAreErrors) {
  vlm_vl2_config c;
  const char *cases[][2] = {
      {"{", "not a valid JSON"},
      {R"({"model_type": "llava"})", "model_type 'llava'"},
      {R"({"projector_config": {"projector_type": "linear"}})", "projector_type 'linear'"},
      {R"({"projector_config": {"projector_type": "downsample_mlp_gelu"}, "language_config": {"hidden_size": "big"}})",
       "hidden_size is not a number"},
      {R"({"projector_config": {"projector_type": "downsample_mlp_gelu"}, "language_config": {"topk_method": "magic"}})",
       "topk_method 'magic'"},
      {R"({"projector_config": {"projector_type": "downsample_mlp_gelu"}, "language_config": {"n_routed_experts": 8, "num_experts_per_tok": 9}})",
       "MoE settings are inconsistent"},
      {R"({"vision_config": {"width": 1152, "heads": 7}})", "vision_config is inconsistent"},
      {R"({"vision_config": {"width": 1152, "heads": 16, "patch_size": 14}, "projector_config": {"projector_type": "downsample_mlp_gelu", "input_dim": 1152, "n_embed": 4096}, "candidate_resolutions": [[384]]})",
       "candidate_resolutions entry 0"},
  };
  for (auto &cs : cases) {
    EXPECT_NE(vlm_vl2_config_parse(cs[0], strlen(cs[0]), &c), VLM_OK) << cs[0];
    EXPECT_NE(std::string(vlm_last_error()).find(cs[1]), std::string::npos) << vlm_last_error();
  }
}

}  // namespace
