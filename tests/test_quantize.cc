// vlm quantize (fusion/quantize.h) and loading its output (core/checkpoint.h): a quantized folder gives
// bit-identical logits to the original folder converted at load with the same --quant, its weights are
// viewed in the mapping byte for byte as the load-time conversion makes them, unconverted tensors are
// copied unchanged, and damaged or mismatched folders are errors naming the tensor.
#include <gtest/gtest.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "golden_util.h"

extern "C" {
#include "core/checkpoint.h"
#include "core/error.h"
#include "fusion/model.h"
#include "fusion/quantize.h"
}

namespace {

std::string slurp(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void spit(const std::string &p, const std::string &data) { std::ofstream(p, std::ios::binary) << data; }

// A fresh folder name under /tmp (not created), removed with its files on scope exit.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string &tag) {
    static int n = 0;
    path = "/tmp/vlm_quantize_test_" + std::to_string(getpid()) + "_" + tag + "_" + std::to_string(n++);
  }
  ~TempDir() {
    if (DIR *d = opendir(path.c_str())) {
      while (dirent *e = readdir(d))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink((path + "/" + e->d_name).c_str());
      closedir(d);
    }
    rmdir(path.c_str());
  }
  std::string file(const std::string &n) const { return path + "/" + n; }
};

int quantize(const std::string &in, const std::string &out, const char *quant, double shard_gb = 0) {
  vlm_quantize_options o{};
  o.quiet = 1;
  o.shard_gb = shard_gb;
  if (vlm_quant_options_parse(quant, &o.quant) != VLM_OK) return -100;
  return vlm_quantize_checkpoint(in.c_str(), out.c_str(), &o);
}

struct ModelRun {
  int rc = -1;
  std::vector<float> prompt_logits, step_logits;
  std::vector<int32_t> ids;
};

// Golden case 1's image and a question: logits at every prompt position and 4 greedy steps.
ModelRun run(const std::string &dir, const char *quant) {
  ModelRun r;
  vlm_model_options mo{};
  if (quant) {
    EXPECT_EQ(vlm_quant_options_parse(quant, &mo.quant), VLM_OK);
  }
  vlm_model *m = nullptr;
  r.rc = vlm_model_load(dir.c_str(), &mo, &m);
  if (r.rc != VLM_OK) return r;
  vlm_image img;
  EXPECT_EQ(vlm_image_decode_file((golden::input_dir("case1_640x480_png") + "/image.png").c_str(), nullptr, &img), VLM_OK);
  vlm_chat_message msgs[2] = {{"user", "<image>\nDescribe this image."}, {"assistant", ""}};
  vlm_request req;
  EXPECT_EQ(vlm_model_build_request(m, msgs, 2, &img, 1, &req), VLM_OK) << vlm_last_error();
  const int64_t V = vlm_model_config(m)->lm.vocab_size;
  r.prompt_logits.resize((size_t)(req.n_ids * V));
  r.step_logits.resize((size_t)(4 * V));
  vlm_generate_options go = {};
  go.max_new_tokens = 4;
  go.ignore_eos = 1;
  go.step_logits = r.step_logits.data();
  go.prompt_logits = r.prompt_logits.data();
  vlm_generation gen;
  r.rc = vlm_model_generate(m, &req, &go, &gen);
  if (r.rc == VLM_OK) r.ids.assign(gen.ids, gen.ids + gen.n_ids);
  vlm_generation_free(&gen);
  vlm_request_free(&req);
  vlm_image_free(&img);
  vlm_model_free(m);
  return r;
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && !a.empty() && memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

cJSON *read_json(const std::string &p) { return cJSON_Parse(slurp(p).c_str()); }

// ---- round trips ----------------------------------------------------------------------------------

struct RoundTrip : ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(RoundTrip, QuantizedFolderGivesBitIdenticalLogits) {
  const std::string model = std::get<0>(GetParam()), quant = std::get<1>(GetParam());
  TempDir out("rt");
  ASSERT_EQ(quantize(golden::model_dir(model), out.path, quant.c_str()), VLM_OK) << vlm_last_error();
  ModelRun a = run(golden::model_dir(model), quant.c_str());
  ModelRun b = run(out.path, quant.c_str());
  ASSERT_EQ(a.rc, VLM_OK) << vlm_last_error();
  ASSERT_EQ(b.rc, VLM_OK) << vlm_last_error();
  EXPECT_TRUE(same_bits(a.prompt_logits, b.prompt_logits)) << "prompt logits differ";
  EXPECT_TRUE(same_bits(a.step_logits, b.step_logits)) << "step logits differ";
  EXPECT_EQ(a.ids, b.ids);
  ASSERT_EQ(a.ids.size(), 4u);

  // Without --quant it runs as if given the --quant it was written with.
  ModelRun c = run(out.path, nullptr);
  EXPECT_EQ(c.rc, VLM_OK) << vlm_last_error();
  EXPECT_TRUE(same_bits(a.step_logits, c.step_logits)) << "step logits differ without --quant";

  // The folder is complete: config, processor config and tokenizer copied byte for byte.
  for (const char *f : {"config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_EQ(slurp(golden::model_dir(model) + "/" + f), slurp(out.file(f))) << f;
}

INSTANTIATE_TEST_SUITE_P(Golden, RoundTrip,
                         ::testing::Combine(::testing::Values("tiny-mha", "tiny-mla"), ::testing::Values("q8", "q4")),
                         [](const auto &i) { return std::get<0>(i.param).substr(5) + "_" + std::get<1>(i.param); });

// Per-component formats and groups, written in several shards.
TEST(Quantize, MixedFormatsInSeveralShardsGiveBitIdenticalLogits) {
  const char *quant = "experts=q4:64,attention=q8,lm_head=q8:64,vision=q4,projector=bf16";
  TempDir out("mixed");
  ASSERT_EQ(quantize(golden::model_dir("tiny-mla"), out.path, quant, 0.0001), VLM_OK) << vlm_last_error();
  cJSON *index = read_json(out.file("model.safetensors.index.json"));
  ASSERT_NE(index, nullptr);
  const cJSON *map = cJSON_GetObjectItem(index, "weight_map");
  std::vector<std::string> shards;
  for (const cJSON *e = map ? map->child : nullptr; e; e = e->next)
    if (std::find(shards.begin(), shards.end(), e->valuestring) == shards.end()) shards.push_back(e->valuestring);
  EXPECT_GE(shards.size(), 3u);
  cJSON_Delete(index);
  ModelRun a = run(golden::model_dir("tiny-mla"), quant);
  ModelRun b = run(out.path, quant);
  ASSERT_EQ(a.rc, VLM_OK) << vlm_last_error();
  ASSERT_EQ(b.rc, VLM_OK) << vlm_last_error();
  EXPECT_TRUE(same_bits(a.prompt_logits, b.prompt_logits));
  EXPECT_TRUE(same_bits(a.step_logits, b.step_logits));
}

// The stored weights are the load-time conversion's bytes, viewed in place; the rest is copied as stored.
TEST(Quantize, StoredWeightsAreTheLoadTimeConversionViewedInPlace) {
  TempDir out("bytes");
  ASSERT_EQ(quantize(golden::model_dir("tiny-mha"), out.path, "q4,lm_head=q8"), VLM_OK) << vlm_last_error();
  vlm_checkpoint *src = nullptr, *q = nullptr;
  ASSERT_EQ(vlm_checkpoint_open(golden::model_dir("tiny-mha").c_str(), &src), VLM_OK);
  ASSERT_EQ(vlm_checkpoint_open(out.path.c_str(), &q), VLM_OK) << vlm_last_error();
  EXPECT_EQ(vlm_checkpoint_n_converted(src), 0);
  EXPECT_GT(vlm_checkpoint_n_converted(q), 50);

  struct W {
    const char *name;
    vlm_wquant fmt;
  } ws[] = {{"language.lm_head.weight", VLM_WQ_Q8},
            {"language.model.layers.1.mlp.experts.3.down_proj.weight", VLM_WQ_Q4},
            {"language.model.layers.0.self_attn.q_proj.weight", VLM_WQ_Q4},
            {"vision.patch_embed.proj.weight", VLM_WQ_Q4}};
  for (const W &w : ws) {
    SCOPED_TRACE(w.name);
    const vlm_tensor_view *sv = vlm_checkpoint_find(src, w.name);
    ASSERT_NE(sv, nullptr);
    const int64_t rows = sv->shape[0], cols = vlm_view_numel(sv) / rows;
    const vlm_quant_spec spec = {w.fmt, 0};
    vlm_weight a, b;
    ASSERT_EQ(vlm_checkpoint_weight_as(src, w.name, sv->ndim, sv->shape, rows, cols, &spec, &a), VLM_OK) << vlm_last_error();
    ASSERT_EQ(vlm_checkpoint_weight_as(q, w.name, sv->ndim, sv->shape, rows, cols, &spec, &b), VLM_OK) << vlm_last_error();
    const vlm_tensor_view *qv = vlm_checkpoint_find(q, w.name);
    ASSERT_NE(qv, nullptr);
    EXPECT_EQ(qv->dtype, w.fmt == VLM_WQ_Q8 ? VLM_DT_I8 : VLM_DT_U8);
    EXPECT_EQ(b.data, qv->data);  // in the mapping, not a copy
    EXPECT_EQ(b.owned, nullptr);
    EXPECT_NE(a.owned, nullptr);
    EXPECT_EQ(b.quant, w.fmt);
    EXPECT_EQ(b.group, 32);
    EXPECT_EQ(b.row_bytes, a.row_bytes);
    EXPECT_EQ((uintptr_t)b.data % (w.fmt == VLM_WQ_Q8 ? 32 : 16), 0u);
    ASSERT_EQ(vlm_weight_bytes(&a), vlm_weight_bytes(&b));
    EXPECT_EQ(memcmp(a.data, b.data, (size_t)(rows * a.row_bytes)), 0);
    const size_t ng = (size_t)((cols + 31) / 32);
    EXPECT_EQ(memcmp(a.scales, b.scales, (size_t)rows * ng * 2), 0);
    vlm_weight_release(&a);
    vlm_weight_release(&b);
  }
  // not converted (embedding, router gate, norms, kv_b of MLA never are): identical bytes and dtype
  for (const char *n : {"language.model.embed_tokens.weight", "language.model.layers.1.mlp.gate.weight",
                        "language.model.norm.weight", "vision.pos_embed", "image_newline"}) {
    const vlm_tensor_view *a = vlm_checkpoint_find(src, n), *b = vlm_checkpoint_find(q, n);
    ASSERT_TRUE(a && b) << n;
    EXPECT_EQ(a->dtype, b->dtype) << n;
    ASSERT_EQ(a->nbytes, b->nbytes) << n;
    EXPECT_EQ(memcmp(a->data, b->data, a->nbytes), 0) << n;
    EXPECT_EQ(vlm_checkpoint_find(q, (std::string(n) + "_scale").c_str()), nullptr) << n;
  }
  vlm_checkpoint_close(src);
  vlm_checkpoint_close(q);
}

// bf16 of an F32 checkpoint is stored converted too (BF16 of the original shape, listed as bf16).
TEST(Quantize, Bf16OfAnF32CheckpointIsStoredAndChecked) {
  TempDir f32("f32"), out("bf16");
  ASSERT_EQ(mkdir(f32.path.c_str(), 0777), 0);
  const std::string src = golden::model_dir("tiny-mha");
  for (const char *f : {"config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json"})
    spit(f32.file(f), slurp(src + "/" + f));
  {
    golden::File in(src + "/model.safetensors");
    ASSERT_NE(in.f, nullptr);
    const int n = vlm_st_count(in.f);
    std::vector<vlm_tensor_view> views((size_t)n);
    std::vector<std::vector<float>> data((size_t)n);
    for (int i = 0; i < n; i++) {
      const vlm_tensor_view *v = vlm_st_at(in.f, i);
      data[(size_t)i].resize((size_t)vlm_view_numel(v));
      vlm_view_read_f32(v, 0, data[(size_t)i].size(), data[(size_t)i].data());
      views[(size_t)i] = *v;
      views[(size_t)i].dtype = VLM_DT_F32;
      views[(size_t)i].data = data[(size_t)i].data();
      views[(size_t)i].nbytes = data[(size_t)i].size() * 4;
    }
    ASSERT_EQ(vlm_st_write(f32.file("model.safetensors").c_str(), views.data(), n), VLM_OK) << vlm_last_error();
  }
  ASSERT_EQ(quantize(f32.path, out.path, "bf16"), VLM_OK) << vlm_last_error();
  vlm_checkpoint *q = nullptr;
  ASSERT_EQ(vlm_checkpoint_open(out.path.c_str(), &q), VLM_OK) << vlm_last_error();
  const vlm_tensor_view *pv = vlm_checkpoint_find(q, "vision.patch_embed.proj.weight");
  ASSERT_NE(pv, nullptr);
  EXPECT_EQ(pv->dtype, VLM_DT_BF16);
  EXPECT_EQ(pv->ndim, 4);
  EXPECT_EQ(vlm_checkpoint_find(q, "language.model.embed_tokens.weight")->dtype, VLM_DT_F32);
  vlm_checkpoint_close(q);
  ModelRun a = run(f32.path, "bf16"), b = run(out.path, "bf16");
  ASSERT_EQ(a.rc, VLM_OK) << vlm_last_error();
  ASSERT_EQ(b.rc, VLM_OK) << vlm_last_error();
  EXPECT_TRUE(same_bits(a.step_logits, b.step_logits));
  EXPECT_TRUE(same_bits(a.prompt_logits, b.prompt_logits));
  // q8 from a BF16 rounding of F32 weights would differ from q8 of the original: refused
  ModelRun c = run(out.path, "q8");
  EXPECT_EQ(c.rc, VLM_ERR_MISMATCH);
  EXPECT_NE(std::string(vlm_last_error()).find("stored as bf16"), std::string::npos) << vlm_last_error();
}

// ---- the CLI ----------------------------------------------------------------------------------------

std::string sh(const std::string &cmd, int *status) {
  std::string out = "/tmp/vlm_quantize_test_" + std::to_string(getpid()) + ".out";
  int st = std::system((cmd + " > " + out + " 2>&1").c_str());
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::string s = slurp(out);
  remove(out.c_str());
  return s;
}

TEST(QuantizeCli, OutputFolderAnswersLikeTheOriginal) {
  TempDir out("cli");
  int st;
  std::string log = sh(golden::vlm_bin() + " quantize " + golden::model_dir("tiny-mla") + " " + out.path + " --quant q4", &st);
  ASSERT_EQ(st, 0) << log;
  EXPECT_NE(log.find("weights converted"), std::string::npos) << log;
  const std::string ask = " --json --temperature 0 --max-tokens 6 --ignore-eos \"What is in the picture?\"";
  std::string a = sh(golden::vlm_bin() + " ask -m " + golden::model_dir("tiny-mla") + " --quant q4" + ask, &st);
  ASSERT_EQ(st, 0) << a;
  std::string b = sh(golden::vlm_bin() + " ask -m " + out.path + " --quant q4" + ask, &st);
  ASSERT_EQ(st, 0) << b;
  auto ids = [](const std::string &s) {
    size_t p = s.find("\"token_ids\":");
    return p == std::string::npos ? std::string() : s.substr(p, s.find(']', p) - p + 1);
  };
  EXPECT_FALSE(ids(a).empty()) << a;
  EXPECT_EQ(ids(a), ids(b));
  std::string c = sh(golden::vlm_bin() + " ask -m " + out.path + ask, &st);  // no --quant: the stored one
  EXPECT_EQ(st, 0) << c;
  EXPECT_EQ(ids(a), ids(c));
  // the programs' default formats (vlm_quant_options_default): the stored ones here, bf16 for the original
  // folder and for one that cannot be opened (its load reports the problem)
  vlm_quant_options q, want;
  ASSERT_EQ(vlm_quant_options_default(out.path.c_str(), &q), VLM_OK) << vlm_last_error();
  ASSERT_EQ(vlm_quant_options_parse("q4", &want), VLM_OK);
  EXPECT_EQ(std::memcmp(&q, &want, sizeof q), 0);
  ASSERT_EQ(vlm_quant_options_default(golden::model_dir("tiny-mla").c_str(), &q), VLM_OK) << vlm_last_error();
  ASSERT_EQ(vlm_quant_options_parse("bf16", &want), VLM_OK);
  EXPECT_EQ(std::memcmp(&q, &want, sizeof q), 0);
  EXPECT_EQ(q.experts.fmt, VLM_WQ_BF16);
  ASSERT_EQ(vlm_quant_options_default("/nonexistent-model", &q), VLM_OK);
  EXPECT_EQ(std::memcmp(&q, &want, sizeof q), 0);
  std::string d = sh(golden::vlm_bin() + " ask -m " + out.path + " --quant q8" + ask, &st);
  EXPECT_EQ(st, 1) << d;
  EXPECT_NE(d.find("is stored as q4:32"), std::string::npos) << d;
  std::string e = sh(golden::vlm_bin() + " quantize " + golden::model_dir("tiny-mla") + " " + out.path, &st);
  EXPECT_EQ(st, 2) << e;
  EXPECT_NE(e.find("--quant is required"), std::string::npos) << e;
}

// ---- refusals and damaged folders --------------------------------------------------------------------

TEST(Quantize, RefusesTheSameFolderANonEmptyOneAndAQuantizedInput) {
  const std::string src = golden::model_dir("tiny-mha");
  EXPECT_EQ(quantize(src, src, "q8"), VLM_ERR_INVALID);
  EXPECT_NE(std::string(vlm_last_error()).find("input folder itself"), std::string::npos) << vlm_last_error();
  EXPECT_EQ(quantize(src, src + "/.", "q8"), VLM_ERR_INVALID);
  struct stat st;
  EXPECT_NE(stat((src + "/vlm_quant.json").c_str(), &st), 0);

  TempDir busy("busy");
  ASSERT_EQ(mkdir(busy.path.c_str(), 0777), 0);
  spit(busy.file("notes.txt"), "keep me");
  EXPECT_EQ(quantize(src, busy.path, "q8"), VLM_ERR_INVALID);
  EXPECT_NE(std::string(vlm_last_error()).find("is not empty"), std::string::npos) << vlm_last_error();
  EXPECT_EQ(slurp(busy.file("notes.txt")), "keep me");

  TempDir q("q"), again("again");
  ASSERT_EQ(quantize(src, q.path, "q8"), VLM_OK) << vlm_last_error();
  EXPECT_EQ(quantize(q.path, again.path, "q4"), VLM_ERR_INVALID);
  EXPECT_NE(std::string(vlm_last_error()).find("already quantized"), std::string::npos) << vlm_last_error();
  EXPECT_NE(stat(again.path.c_str(), &st), 0);  // nothing created

  // a failure part way (bad input) leaves no output folder behind
  TempDir none("none");
  EXPECT_NE(quantize("/nonexistent/model", none.path, "q8"), VLM_OK);
  EXPECT_NE(stat(none.path.c_str(), &st), 0);
}

TEST(Quantize, MismatchedQuantNamesTheTensorAndBothFormats) {
  TempDir out("mm");
  ASSERT_EQ(quantize(golden::model_dir("tiny-mha"), out.path, "experts=q4,lm_head=q8"), VLM_OK) << vlm_last_error();
  struct {
    const char *quant, *tensor, *stored, *asked;
  } cases[] = {
      {"experts=q8,lm_head=q8", "layers.0.mlp.gate_proj.weight", "stored as q4:32", "asks for q8:32"},
      {"experts=q4:64,lm_head=q8", "layers.0.mlp.gate_proj.weight", "stored as q4:32", "asks for q4:64"},
      {"experts=q4,lm_head=bf16", "language.lm_head.weight", "stored as q8:32", "asks for bf16"},
  };
  for (auto &c : cases) {
    ModelRun r = run(out.path, c.quant);
    EXPECT_EQ(r.rc, VLM_ERR_MISMATCH) << c.quant;
    std::string msg = vlm_last_error();
    EXPECT_NE(msg.find(c.tensor), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.stored), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.asked), std::string::npos) << msg;
  }
  // components not stored converted may still be converted at load
  ModelRun ok = run(out.path, "experts=q4,lm_head=q8,attention=q8,vision=bf16");
  EXPECT_EQ(ok.rc, VLM_OK) << vlm_last_error();
  EXPECT_EQ(ok.ids.size(), 4u);
}

// Rewrites a shard's header through f (the data section is kept as it is).
void edit_header(const std::string &path, const std::function<void(cJSON *)> &f) {
  std::string s = slurp(path);
  ASSERT_GE(s.size(), 8u);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | (uint8_t)s[(size_t)i];
  cJSON *h = cJSON_ParseWithLength(s.data() + 8, (size_t)hl);
  ASSERT_NE(h, nullptr);
  f(h);
  char *js = cJSON_PrintUnformatted(h);
  cJSON_Delete(h);
  std::string hdr = js;
  free(js);
  while (hdr.size() % 8) hdr += ' ';
  std::string out(8, '\0');
  for (int i = 0; i < 8; i++) out[(size_t)i] = (char)((uint64_t)hdr.size() >> (8 * i));
  spit(path, out + hdr + s.substr(8 + (size_t)hl));
}

void set_shape(cJSON *h, const char *name, std::vector<double> shape, const char *dtype = nullptr) {
  cJSON *e = cJSON_GetObjectItem(h, name);
  ASSERT_NE(e, nullptr) << name;
  cJSON_ReplaceItemInObject(e, "shape", cJSON_CreateDoubleArray(shape.data(), (int)shape.size()));
  if (dtype) cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString(dtype));
}

void set_end(cJSON *h, const char *name, double delta) {
  cJSON *offs = cJSON_GetObjectItem(cJSON_GetObjectItem(h, name), "data_offsets");
  ASSERT_NE(offs, nullptr) << name;
  cJSON *e = cJSON_GetArrayItem(offs, 1);
  cJSON_SetNumberValue(e, e->valuedouble + delta);
}

TEST(Quantize, DamagedFoldersAreErrorsNamingTheTensor) {
  const std::string shard = "model-00001-of-00001.safetensors";
  const char *W = "language.model.layers.1.mlp.experts.2.up_proj.weight";  // q4 [32, 64]: row_bytes 32, 2 groups
  const std::string S = std::string(W) + "_scale";
  struct Case {
    const char *what;
    std::function<void(const TempDir &)> damage;
    const char *expect;
  } cases[] = {
      {"scale dtype", [&](const TempDir &d) { edit_header(d.file(shard), [&](cJSON *h) { set_shape(h, S.c_str(), {32, 2}, "BF16"); }); },
       S.c_str()},
      {"scale shape", [&](const TempDir &d) { edit_header(d.file(shard), [&](cJSON *h) { set_shape(h, S.c_str(), {2, 32}); }); },
       S.c_str()},
      {"scale missing",
       [&](const TempDir &d) {
         edit_header(d.file(shard), [&](cJSON *h) { cJSON_DeleteItemFromObject(h, S.c_str()); });
         cJSON *j = read_json(d.file("model.safetensors.index.json"));
         cJSON_DeleteItemFromObject(cJSON_GetObjectItem(j, "weight_map"), S.c_str());
         char *t = cJSON_Print(j);
         spit(d.file("model.safetensors.index.json"), t);
         free(t);
         cJSON_Delete(j);
       },
       "are missing"},
      {"data byte size",
       [&](const TempDir &d) {
         edit_header(d.file(shard), [&](cJSON *h) {
           set_shape(h, W, {32, 16});
           set_end(h, W, -512);
         });
       },
       W},
      {"data dtype", [&](const TempDir &d) { edit_header(d.file(shard), [&](cJSON *h) { set_shape(h, W, {32, 32}, "I8"); }); }, W},
      {"group in vlm_quant.json",
       [&](const TempDir &d) {
         cJSON *j = read_json(d.file("vlm_quant.json"));
         cJSON_SetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "tensors"), W), "group"), 64);
         char *s = cJSON_Print(j);
         spit(d.file("vlm_quant.json"), s);
         free(s);
         cJSON_Delete(j);
       },
       S.c_str()},
      {"cols in vlm_quant.json",
       [&](const TempDir &d) {
         cJSON *j = read_json(d.file("vlm_quant.json"));
         cJSON_SetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "tensors"), W), "cols"), 128);
         char *s = cJSON_Print(j);
         spit(d.file("vlm_quant.json"), s);
         free(s);
         cJSON_Delete(j);
       },
       W},
      {"unknown format",
       [&](const TempDir &d) {
         std::string s = slurp(d.file("vlm_quant.json"));
         size_t p = s.find("\"q4\"");
         ASSERT_NE(p, std::string::npos);
         s.replace(p, 4, "\"q3\"");
         spit(d.file("vlm_quant.json"), s);
       },
       "unknown format 'q3'"},
      {"not JSON", [&](const TempDir &d) { spit(d.file("vlm_quant.json"), "{\"version\": 1, \"tensors\": {"); }, "vlm_quant.json"},
      {"truncated shard",
       [&](const TempDir &d) {
         std::string s = slurp(d.file(shard));
         spit(d.file(shard), s.substr(0, s.size() - 1000));
       },
       "truncated"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    TempDir d("dmg");
    ASSERT_EQ(quantize(golden::model_dir("tiny-mha"), d.path, "experts=q4"), VLM_OK) << vlm_last_error();
    c.damage(d);
    ModelRun r = run(d.path, "experts=q4");
    EXPECT_NE(r.rc, VLM_OK);
    EXPECT_NE(std::string(vlm_last_error()).find(c.expect), std::string::npos) << vlm_last_error();
  }
}

}  // namespace
