// Text decoder (DeepSeek-V2 MoE LM of DeepSeek-VL2): golden tensors of the official
// PyTorch model (tests/data/golden/{tiny-mha,tiny-mla}), plus unit tests of RoPE, MoE
// routing, MLA absorbed vs expanded, the KV cache, and a q_lora MLA model checked
// against an independent double-precision transcription written here.
#include <gtest/gtest.h>

#include <cjson/cJSON.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/checkpoint.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/safetensors.h"
#include "text/decoder.h"
#include "text/moe_router.h"
#include "text/sampler.h"

namespace {

const std::string kGolden = std::string(VLM_TEST_DATA) + "/golden";

// ---- helpers ------------------------------------------------------------------------------

bool ReadText(const std::string &path, std::string *out)
{
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    std::stringstream ss;
    ss << f.rdbuf();
    *out = ss.str();
    return true;
}

int JInt(const cJSON *o, const char *k, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : def;
}
double JNum(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}
bool JBool(const cJSON *o, const char *k, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}
std::string JStr(const cJSON *o, const char *k, const char *def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : def;
}

// language_config of a DeepSeek-VL2 config.json, with the DeepseekV2Config class defaults.
bool LoadLmConfig(const std::string &dir, vlm_lm_config *c)
{
    std::string text;
    if (!ReadText(dir + "/config.json", &text)) return false;
    cJSON *root = cJSON_Parse(text.c_str());
    if (!root) return false;
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(root, "language_config");
    if (!l) l = root;
    *c = vlm_lm_config{};
    c->vocab_size = JInt(l, "vocab_size", 102400);
    c->hidden_size = JInt(l, "hidden_size", 4096);
    c->intermediate_size = JInt(l, "intermediate_size", 11008);
    c->moe_intermediate_size = JInt(l, "moe_intermediate_size", 1407);
    c->num_hidden_layers = JInt(l, "num_hidden_layers", 30);
    c->num_attention_heads = JInt(l, "num_attention_heads", 32);
    c->num_key_value_heads = JInt(l, "num_key_value_heads", c->num_attention_heads);
    c->n_shared_experts = JInt(l, "n_shared_experts", 0);
    c->n_routed_experts = JInt(l, "n_routed_experts", 0);
    c->num_experts_per_tok = JInt(l, "num_experts_per_tok", 0);
    c->first_k_dense_replace = JInt(l, "first_k_dense_replace", 0);
    c->moe_layer_freq = JInt(l, "moe_layer_freq", 1);
    c->n_group = JInt(l, "n_group", 1);
    c->topk_group = JInt(l, "topk_group", 1);
    std::string tm = JStr(l, "topk_method", "greedy");
    c->topk_method = tm == "noaux_tc" ? VLM_TOPK_NOAUX_TC
                     : tm == "group_limited_greedy" ? VLM_TOPK_GROUP_LIMITED_GREEDY
                                                    : VLM_TOPK_GREEDY;
    c->scoring_func = JStr(l, "scoring_func", "softmax") == "sigmoid" ? VLM_SCORE_SIGMOID : VLM_SCORE_SOFTMAX;
    c->norm_topk_prob = JBool(l, "norm_topk_prob", false);
    c->routed_scaling_factor = (float)JNum(l, "routed_scaling_factor", 1.0);
    c->use_mla = JBool(l, "use_mla", true);
    c->q_lora_rank = JInt(l, "q_lora_rank", 0);
    c->kv_lora_rank = JInt(l, "kv_lora_rank", 0);
    c->qk_nope_head_dim = JInt(l, "qk_nope_head_dim", 128);
    c->qk_rope_head_dim = JInt(l, "qk_rope_head_dim", 64);
    c->v_head_dim = JInt(l, "v_head_dim", 128);
    c->max_position_embeddings = JInt(l, "max_position_embeddings", 2048);
    c->rms_norm_eps = (float)JNum(l, "rms_norm_eps", 1e-6);
    c->rope_theta = (float)JNum(l, "rope_theta", 10000.0);
    c->bos_token_id = JInt(l, "bos_token_id", 0);
    c->eos_token_id = JInt(l, "eos_token_id", 1);
    cJSON_Delete(root);
    return true;
}

struct CkDel { void operator()(vlm_checkpoint *c) const { vlm_checkpoint_close(c); } };
struct LmDel { void operator()(vlm_lm *m) const { vlm_lm_free(m); } };
struct CacheDel { void operator()(vlm_kv_cache *c) const { vlm_kv_cache_free(c); } };
struct StDel { void operator()(vlm_st_file *f) const { vlm_st_close(f); } };
struct SamplerDel { void operator()(vlm_sampler *s) const { vlm_sampler_free(s); } };
using CkPtr = std::unique_ptr<vlm_checkpoint, CkDel>;
using LmPtr = std::unique_ptr<vlm_lm, LmDel>;
using CachePtr = std::unique_ptr<vlm_kv_cache, CacheDel>;
using StPtr = std::unique_ptr<vlm_st_file, StDel>;
using SamplerPtr = std::unique_ptr<vlm_sampler, SamplerDel>;

struct Model {
    vlm_lm_config cfg{};
    CkPtr ck;
    LmPtr lm;
};

// Loads tests/data/golden/<name>; ASSERT-style failures are reported through gtest.
void LoadModel(const std::string &name, Model *m)
{
    const std::string dir = kGolden + "/" + name;
    ASSERT_TRUE(LoadLmConfig(dir, &m->cfg)) << dir;
    vlm_checkpoint *ck = nullptr;
    ASSERT_EQ(vlm_checkpoint_open(dir.c_str(), &ck), VLM_OK) << vlm_last_error();
    m->ck.reset(ck);
    vlm_lm *lm = nullptr;
    ASSERT_EQ(vlm_lm_load(ck, "language.", &m->cfg, &lm), VLM_OK) << vlm_last_error();
    m->lm.reset(lm);
}

CachePtr NewCache(const vlm_lm *lm, int64_t cap)
{
    vlm_kv_cache *c = nullptr;
    EXPECT_EQ(vlm_kv_cache_create(lm, cap, &c), VLM_OK) << vlm_last_error();
    return CachePtr(c);
}

std::vector<float> F32(const vlm_st_file *f, const char *name)
{
    const vlm_tensor_view *v = vlm_st_find(f, name);
    if (!v) return {};
    std::vector<float> out((size_t)vlm_view_numel(v));
    vlm_view_read_f32(v, 0, out.size(), out.data());
    return out;
}

template <typename T> std::vector<T> Raw(const vlm_st_file *f, const char *name)
{
    const vlm_tensor_view *v = vlm_st_find(f, name);
    if (!v) return {};
    std::vector<T> out(v->nbytes / sizeof(T));
    std::memcpy(out.data(), v->data, v->nbytes);
    return out;
}

float MaxAbsDiff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

int32_t Argmax(const float *x, int n)
{
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

// ---- golden cases ---------------------------------------------------------------------------

struct GoldenParam {
    const char *model;
    const char *golden_case;
};

class DecoderGolden : public ::testing::TestWithParam<GoldenParam> {};

struct PrefillOut {
    std::vector<float> logits, hidden;
    std::vector<int32_t> idx;
    std::vector<float> w, gap;
};

void Prefill(const vlm_lm *lm, const std::vector<float> &emb, int64_t T, bool full, const std::vector<int32_t> *force,
             const std::vector<uint8_t> *mask, PrefillOut *o, CachePtr *cache_out)
{
    const vlm_lm_config *c = vlm_lm_get_config(lm);
    const int nm = vlm_lm_n_moe_layers(lm), K = c->num_experts_per_tok, V = c->vocab_size, H = c->hidden_size;
    CachePtr cache = NewCache(lm, T + 32);
    ASSERT_TRUE(cache);
    o->logits.assign((size_t)(full ? T : 1) * V, 0.f);
    o->hidden.assign(full ? (size_t)(c->num_hidden_layers + 1) * T * H : 0, 0.f);
    o->idx.assign((size_t)nm * T * K, -1);
    o->w.assign((size_t)nm * T * K, 0.f);
    o->gap.assign((size_t)nm * T, 0.f);
    vlm_lm_trace tr{};
    tr.hidden_states = full ? o->hidden.data() : nullptr;
    tr.routing_idx = o->idx.data();
    tr.routing_weight = o->w.data();
    tr.routing_gap = o->gap.data();
    if (force) {
        tr.force_idx = force->data();
        tr.force_mask = mask->data();
    }
    ASSERT_EQ(vlm_lm_forward(lm, cache.get(), emb.data(), T, o->logits.data(), full ? 1 : 0, &tr), VLM_OK)
        << vlm_last_error();
    ASSERT_EQ(vlm_kv_cache_len(cache.get()), T);
    *cache_out = std::move(cache);
}

TEST_P(DecoderGolden, MatchesOfficialModel)
{
    const GoldenParam p = GetParam();
    Model m;
    LoadModel(p.model, &m);
    if (HasFatalFailure()) return;
    const std::string path = kGolden + "/" + p.model + "/" + p.golden_case + ".safetensors";
    vlm_st_file *gf = nullptr;
    ASSERT_EQ(vlm_st_open(path.c_str(), &gf), VLM_OK) << vlm_last_error();
    StPtr g(gf);
    const vlm_lm *lm = m.lm.get();
    const vlm_lm_config &c = m.cfg;
    const int V = c.vocab_size, H = c.hidden_size, K = c.num_experts_per_tok, NL = c.num_hidden_layers;
    const int nm = vlm_lm_n_moe_layers(lm);

    std::vector<float> emb = F32(gf, "inputs_embeds");
    const int64_t T = (int64_t)emb.size() / H;
    ASSERT_GT(T, 0);
    const bool full = vlm_st_find(gf, "hidden_states") != nullptr;
    std::vector<float> g_last = F32(gf, "last_logits");
    std::vector<int32_t> g_idx = Raw<int32_t>(gf, "routing_topk_idx");
    std::vector<float> g_w = F32(gf, "routing_topk_weight"), g_gap = F32(gf, "routing_gap");
    ASSERT_EQ(g_idx.size(), (size_t)nm * T * K);

    PrefillOut o;
    CachePtr cache;
    Prefill(lm, emb, T, full, nullptr, nullptr, &o, &cache);
    if (HasFatalFailure()) return;

    // Routing: exact except near ties; a flip at a near tie is confirmed by forcing the golden choice.
    std::vector<uint8_t> flip((size_t)nm * T, 0);
    int n_flips = 0, n_hard = 0;
    float wdiff = 0, gapdiff = 0;
    for (int64_t i = 0; i < (int64_t)nm * T; i++) {
        bool same = std::equal(o.idx.begin() + i * K, o.idx.begin() + (i + 1) * K, g_idx.begin() + i * K);
        if (!same) {
            flip[i] = 1;
            n_flips++;
            if (g_gap[i] >= 1e-5f) n_hard++;
            continue;
        }
        wdiff = std::max(wdiff, MaxAbsDiff(&o.w[i * K], &g_w[i * K], K));
        gapdiff = std::max(gapdiff, std::fabs(o.gap[i] - g_gap[i]));
    }
    EXPECT_EQ(n_hard, 0) << "routing differs at tokens whose golden routing_gap >= 1e-5";
    EXPECT_LE(wdiff, 1e-4f);
    EXPECT_LE(gapdiff, 1e-4f) << "routing_gap definition differs";
    if (n_flips > 0) {
        std::vector<int32_t> force = g_idx;
        Prefill(lm, emb, T, full, &force, &flip, &o, &cache);
        if (HasFatalFailure()) return;
        for (int64_t i = 0; i < (int64_t)nm * T; i++)
            ASSERT_TRUE(std::equal(o.idx.begin() + i * K, o.idx.begin() + (i + 1) * K, g_idx.begin() + i * K));
    }

    const float *last = full ? &o.logits[(size_t)(T - 1) * V] : o.logits.data();
    const float d_last = MaxAbsDiff(last, g_last.data(), V);
    EXPECT_LE(d_last, 2e-4f);
    float d_hidden = 0, d_logits = 0;
    if (full) {
        std::vector<float> g_hs = F32(gf, "hidden_states"), g_logits = F32(gf, "logits");
        ASSERT_EQ(g_hs.size(), (size_t)(NL + 1) * T * H);
        ASSERT_EQ(g_logits.size(), (size_t)T * V);
        for (int l = 0; l <= NL; l++) {
            float d = MaxAbsDiff(&o.hidden[(size_t)l * T * H], &g_hs[(size_t)l * T * H], (size_t)T * H);
            EXPECT_LE(d, 1e-4f) << "hidden_states[" << l << "]";
            d_hidden = std::max(d_hidden, d);
        }
        d_logits = MaxAbsDiff(o.logits.data(), g_logits.data(), g_logits.size());
        EXPECT_LE(d_logits, 2e-4f);
    }

    // Greedy continuation with the KV cache: each step embeds the previous id.
    std::vector<int64_t> g_ids = Raw<int64_t>(gf, "generated_ids");
    std::vector<float> g_step = F32(gf, "generated_step_logits");
    ASSERT_EQ(g_step.size(), g_ids.size() * V);
    vlm_sampler_params sp{};
    vlm_sampler *smp = nullptr;
    ASSERT_EQ(vlm_sampler_create(&sp, V, &smp), VLM_OK);
    SamplerPtr sampler(smp);
    std::vector<float> step(last, last + V), e(H);
    float d_step = 0;
    for (size_t i = 0; i < g_ids.size(); i++) {
        if (i > 0) {
            int32_t prev = (int32_t)g_ids[i - 1];
            ASSERT_EQ(vlm_lm_embed(lm, &prev, 1, e.data()), VLM_OK);
            ASSERT_EQ(vlm_lm_forward(lm, cache.get(), e.data(), 1, step.data(), 0, nullptr), VLM_OK) << vlm_last_error();
        }
        d_step = std::max(d_step, MaxAbsDiff(step.data(), &g_step[i * V], V));
        std::vector<float> tmp = step;
        int32_t id = vlm_sampler_sample(sampler.get(), tmp.data(), nullptr, 0);
        ASSERT_EQ(id, g_ids[i]) << "generated token " << i;
    }
    EXPECT_LE(d_step, 2e-4f);
    EXPECT_EQ(vlm_kv_cache_len(cache.get()), T + (int64_t)g_ids.size() - 1);
    std::printf("[ measured ] %s %s T=%lld last_logits %.2e step_logits %.2e routing_w %.2e gap %.2e flips %d "
                "(near-tie) hidden %.2e logits %.2e\n",
                p.model, p.golden_case, (long long)T, d_last, d_step, wdiff, gapdiff, n_flips, d_hidden, d_logits);
}

const GoldenParam kGoldenCases[] = {
    {"tiny-mha", "case1_640x480_png"}, {"tiny-mha", "case2_1000x300_png"}, {"tiny-mha", "case3_200x150_jpg"},
    {"tiny-mha", "case4_two_images"},  {"tiny-mha", "case5_three_images"}, {"tiny-mla", "case1_640x480_png"},
    {"tiny-mla", "case2_1000x300_png"}, {"tiny-mla", "case3_200x150_jpg"}, {"tiny-mla", "case4_two_images"},
    {"tiny-mla", "case5_three_images"},
};

INSTANTIATE_TEST_SUITE_P(AllCases, DecoderGolden, ::testing::ValuesIn(kGoldenCases),
                         [](const ::testing::TestParamInfo<GoldenParam> &i) {
                             std::string s = std::string(i.param.model) + "_" + i.param.golden_case;
                             for (char &ch : s)
                                 if (!isalnum((unsigned char)ch)) ch = '_';
                             return s;
                         });

// ---- RoPE -------------------------------------------------------------------------------------

// The same fp32 angle as PyTorch (inv_freq and pos * inv_freq in fp32), then cos/sin in double.
void RefAngle(int64_t pos, int dim, float theta, int i, double *c, double *s)
{
    float inv = 1.0f / std::pow(theta, (float)(2 * i) / (float)dim);
    float ang = (float)pos * inv;
    *c = std::cos((double)ang);
    *s = std::sin((double)ang);
}

TEST(DecoderRope, NeoxMatchesRotateHalfFormula)
{
    const int dim = 16, heads = 3;
    for (int64_t pos : {0, 1, 7, 448, 4095}) {
        std::vector<float> x(heads * dim), cs(dim / 2), sn(dim / 2);
        for (size_t i = 0; i < x.size(); i++) x[i] = std::sin(0.37f * (float)i + 0.1f * (float)pos) * 1.5f;
        std::vector<float> y = x;
        vlm_rope_angles(cs.data(), sn.data(), pos, dim, 10000.0f);
        vlm_op_rope_neox(y.data(), heads, dim, dim, cs.data(), sn.data());
        // x*cos + rotate_half(x)*sin with cos = cat(freqs, freqs), rotate_half(x) = cat(-x2, x1)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < dim; i++) {
                int k = i % (dim / 2);
                double c, s;
                RefAngle(pos, dim, 10000.0f, k, &c, &s);
                const float *xh = &x[h * dim];
                double rot = i < dim / 2 ? -xh[i + dim / 2] : xh[i - dim / 2];
                EXPECT_NEAR(y[h * dim + i], xh[i] * c + rot * s, 2e-6) << "pos " << pos << " i " << i;
            }
    }
}

TEST(DecoderRope, InterleavedMatchesOfficialDeinterleaveThenRotateHalf)
{
    const int dim = 8, heads = 2;
    for (int64_t pos : {0, 3, 1000, 4095}) {
        std::vector<float> x(heads * dim), cs(dim / 2), sn(dim / 2);
        for (size_t i = 0; i < x.size(); i++) x[i] = std::cos(0.91f * (float)i - 0.05f * (float)pos);
        std::vector<float> y = x;
        vlm_rope_angles(cs.data(), sn.data(), pos, dim, 10000.0f);
        vlm_op_rope_interleaved(y.data(), heads, dim, dim, cs.data(), sn.data());
        for (int h = 0; h < heads; h++) {
            // official: view(d/2, 2).transpose -> [x0, x2, ..., x1, x3, ...], then x*cos + rotate_half(x)*sin
            double q[dim];
            for (int i = 0; i < dim / 2; i++) {
                q[i] = x[h * dim + 2 * i];
                q[i + dim / 2] = x[h * dim + 2 * i + 1];
            }
            for (int i = 0; i < dim; i++) {
                double c, s;
                RefAngle(pos, dim, 10000.0f, i % (dim / 2), &c, &s);
                double rot = i < dim / 2 ? -q[i + dim / 2] : q[i - dim / 2];
                EXPECT_NEAR(y[h * dim + i], q[i] * c + rot * s, 2e-6) << "pos " << pos << " i " << i;
            }
        }
    }
}

TEST(DecoderRope, ScoresDependOnlyOnRelativePosition)
{
    const int dim = 8;
    float q0[dim], k0[dim];
    for (int i = 0; i < dim; i++) {
        q0[i] = 0.3f * (float)i - 1.0f;
        k0[i] = std::sin((float)i);
    }
    auto score = [&](int64_t pq, int64_t pk, bool inter) {
        float q[dim], k[dim], cs[dim / 2], sn[dim / 2];
        std::memcpy(q, q0, sizeof q);
        std::memcpy(k, k0, sizeof k);
        vlm_rope_angles(cs, sn, pq, dim, 10000.0f);
        inter ? vlm_op_rope_interleaved(q, 1, dim, dim, cs, sn) : vlm_op_rope_neox(q, 1, dim, dim, cs, sn);
        vlm_rope_angles(cs, sn, pk, dim, 10000.0f);
        inter ? vlm_op_rope_interleaved(k, 1, dim, dim, cs, sn) : vlm_op_rope_neox(k, 1, dim, dim, cs, sn);
        double d = 0;
        for (int i = 0; i < dim; i++) d += (double)q[i] * k[i];
        return d;
    };
    for (bool inter : {false, true}) {
        EXPECT_NEAR(score(10, 7, inter), score(3, 0, inter), 1e-5);
        EXPECT_NEAR(score(25, 5, inter), score(120, 100, inter), 1e-4);
    }
}

// ---- MoE routing (expected values worked out by hand from the official MoEGate code) -----------

vlm_moe_router Router(int E, int K, vlm_topk_method m, vlm_scoring_func s, int ng, int tg, int norm, float scale,
                      const float *bias)
{
    vlm_moe_router r{};
    r.n_experts = E;
    r.top_k = K;
    r.method = m;
    r.scoring = s;
    r.n_group = ng;
    r.topk_group = tg;
    r.norm_topk_prob = norm;
    r.scaling = scale;
    r.bias = bias;
    return r;
}

TEST(DecoderMoeRoute, GreedySoftmaxTiesPickLowestIndex)
{
    // scores = softmax([1, 2, 2, 2]); the three equal scores tie: experts 1 and 2 win, gap 0.
    const float logits[4] = {1, 2, 2, 2};
    vlm_moe_router r = Router(4, 2, VLM_TOPK_GREEDY, VLM_SCORE_SOFTMAX, 1, 1, 0, 1.0f, nullptr);
    int32_t idx[2];
    float w[2], gap = -1;
    ASSERT_EQ(vlm_moe_route(&r, logits, nullptr, idx, w, &gap), VLM_OK);
    EXPECT_EQ(idx[0], 1);
    EXPECT_EQ(idx[1], 2);
    const double e = std::exp(1.0), e2 = std::exp(2.0), Z = e + 3 * e2;
    EXPECT_NEAR(w[0], e2 / Z, 1e-6);
    EXPECT_NEAR(w[1], e2 / Z, 1e-6);
    EXPECT_EQ(gap, 0.0f);
    // the winner among more experts with a strict order: [0.5, 3, -1, 2.5] -> {1, 3}, sorted ascending
    const float l2[4] = {0.5f, 3.0f, -1.0f, 2.5f};
    ASSERT_EQ(vlm_moe_route(&r, l2, nullptr, idx, w, &gap), VLM_OK);
    EXPECT_EQ(idx[0], 1);
    EXPECT_EQ(idx[1], 3);
    const double Z2 = std::exp(0.5) + std::exp(3.0) + std::exp(-1.0) + std::exp(2.5);
    EXPECT_NEAR(w[0], std::exp(3.0) / Z2, 1e-6);
    EXPECT_NEAR(w[1], std::exp(2.5) / Z2, 1e-6);
    EXPECT_NEAR(gap, (std::exp(2.5) - std::exp(0.5)) / Z2, 1e-6);
}

TEST(DecoderMoeRoute, GroupLimitedGreedy)
{
    // softmax(log p) = p: p = [.05 .30 | .10 .10 | .20 .02 | .03 .20], 4 groups of 2, keep 2 groups.
    // group max: .30, .10, .20, .20 -> group 0 and (tie of groups 2 and 3 -> lower) group 2.
    // choice = [.05 .30 0 0 .20 .02 0 0] -> top-3 = 1, 4, 0; gap = .05 - .02.
    // (plain greedy would take 1, then 4 and 7 tied at .20.)
    const double p[8] = {.05, .30, .10, .10, .20, .02, .03, .20};
    float logits[8];
    for (int i = 0; i < 8; i++) logits[i] = (float)std::log(p[i]);
    int32_t idx[3];
    float w[3], gap;
    vlm_moe_router r = Router(8, 3, VLM_TOPK_GROUP_LIMITED_GREEDY, VLM_SCORE_SOFTMAX, 4, 2, 0, 1.0f, nullptr);
    ASSERT_EQ(vlm_moe_route(&r, logits, nullptr, idx, w, &gap), VLM_OK);
    EXPECT_EQ(std::vector<int32_t>(idx, idx + 3), (std::vector<int32_t>{0, 1, 4}));
    EXPECT_NEAR(w[0], .05, 1e-6);
    EXPECT_NEAR(w[1], .30, 1e-6);
    EXPECT_NEAR(w[2], .20, 1e-6);
    EXPECT_NEAR(gap, .03, 1e-6);
    // with norm_topk_prob and scaling 2: w / (.55) * 2
    r.norm_topk_prob = 1;
    r.scaling = 2.0f;
    ASSERT_EQ(vlm_moe_route(&r, logits, nullptr, idx, w, &gap), VLM_OK);
    EXPECT_NEAR(w[0], .05 / .55 * 2, 1e-6);
    EXPECT_NEAR(w[1], .30 / .55 * 2, 1e-6);
    EXPECT_NEAR(w[2], .20 / .55 * 2, 1e-6);
    // plain greedy on the same scores: 1, then 4 and 7 (tie .20) -> {1, 4, 7}
    vlm_moe_router g = Router(8, 3, VLM_TOPK_GREEDY, VLM_SCORE_SOFTMAX, 1, 1, 0, 1.0f, nullptr);
    ASSERT_EQ(vlm_moe_route(&g, logits, nullptr, idx, w, &gap), VLM_OK);
    EXPECT_EQ(std::vector<int32_t>(idx, idx + 3), (std::vector<int32_t>{1, 4, 7}));
    // a forced choice in a masked group gets the masked (0) weight, as the official gather of tmp_scores
    r.norm_topk_prob = 0;
    r.scaling = 1.0f;
    const int32_t force[3] = {7, 1, 2};
    ASSERT_EQ(vlm_moe_route(&r, logits, force, idx, w, &gap), VLM_OK);
    EXPECT_EQ(std::vector<int32_t>(idx, idx + 3), (std::vector<int32_t>{1, 2, 7}));
    EXPECT_NEAR(w[0], .30, 1e-6);
    EXPECT_EQ(w[1], 0.0f);
    EXPECT_EQ(w[2], 0.0f);
}

TEST(DecoderMoeRoute, NoauxTcBiasChoosesUnbiasedScoresWeigh)
{
    // n_group 1: sigmoid scores of logits [2, 1, 0, -1]; the bias lifts expert 3 over expert 1:
    // c = s + [0, 0, 0, 0.9] -> top-2 = {0, 3}; weights = s[0], s[3] normalised, times 2.
    const float logits[4] = {2, 1, 0, -1}, bias[4] = {0, 0, 0, 0.9f};
    vlm_moe_router r = Router(4, 2, VLM_TOPK_NOAUX_TC, VLM_SCORE_SIGMOID, 1, 1, 1, 2.0f, bias);
    int32_t idx[2];
    float w[2], gap;
    ASSERT_EQ(vlm_moe_route(&r, logits, nullptr, idx, w, &gap), VLM_OK);
    auto sig = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
    EXPECT_EQ(idx[0], 0);
    EXPECT_EQ(idx[1], 3);
    const double s0 = sig(2), s3 = sig(-1);
    EXPECT_NEAR(w[0], s0 / (s0 + s3) * 2, 1e-6);
    EXPECT_NEAR(w[1], s3 / (s0 + s3) * 2, 1e-6);
    EXPECT_NEAR(gap, s0 - sig(1), 1e-6); // 2nd best c (s0) minus 3rd (s1)
}

TEST(DecoderMoeRoute, NoauxTcGroupsMaskToZeroLikeOfficial)
{
    // all logits 0 -> s = .5; bias [.4 -.7 | -.2 -.2] -> c = [.9 -.2 | .3 .3].
    // group score = top-2 sum: group 0 = .7, group 1 = .6 -> keep group 0 only.
    // masked_fill(0.0): choice = [.9 -.2 0 0]; top-2 = 0 and (0.0 beats -.2; tie 2/3 -> 2) = {0, 2}.
    // weights: s = .5 each, normalised and scaled by 2 -> 1, 1; gap = 0 - 0.
    const float logits[4] = {0, 0, 0, 0}, bias[4] = {.4f, -.7f, -.2f, -.2f};
    vlm_moe_router r = Router(4, 2, VLM_TOPK_NOAUX_TC, VLM_SCORE_SIGMOID, 2, 1, 1, 2.0f, bias);
    int32_t idx[2];
    float w[2], gap = -1;
    ASSERT_EQ(vlm_moe_route(&r, logits, nullptr, idx, w, &gap), VLM_OK);
    EXPECT_EQ(idx[0], 0);
    EXPECT_EQ(idx[1], 2);
    EXPECT_NEAR(w[0], 1.0, 1e-6);
    EXPECT_NEAR(w[1], 1.0, 1e-6);
    EXPECT_EQ(gap, 0.0f);
    // now bias [.4 -.7 | .3 .1]: group 1 = .8 + .6 = 1.4 > group 0 .7 -> keep group 1: {2, 3};
    // without norm: weights = s = .5 * scaling 2 = 1
    const float bias2[4] = {.4f, -.7f, .3f, .1f};
    r.bias = bias2;
    r.norm_topk_prob = 0;
    ASSERT_EQ(vlm_moe_route(&r, logits, nullptr, idx, w, &gap), VLM_OK);
    EXPECT_EQ(idx[0], 2);
    EXPECT_EQ(idx[1], 3);
    EXPECT_NEAR(w[0], 1.0, 1e-6);
    EXPECT_NEAR(w[1], 1.0, 1e-6);
    EXPECT_NEAR(gap, 0.6 - 0.0, 1e-6);
}

TEST(DecoderMoeRoute, RejectsInconsistentRouters)
{
    const float logits[6] = {0};
    int32_t idx[6];
    vlm_moe_router r = Router(6, 2, VLM_TOPK_GROUP_LIMITED_GREEDY, VLM_SCORE_SOFTMAX, 4, 1, 0, 1.0f, nullptr);
    EXPECT_EQ(vlm_moe_route(&r, logits, nullptr, idx, nullptr, nullptr), VLM_ERR_INVALID);
    EXPECT_NE(std::string(vlm_last_error()).find("n_group"), std::string::npos) << vlm_last_error();
    r = Router(6, 7, VLM_TOPK_GREEDY, VLM_SCORE_SOFTMAX, 1, 1, 0, 1.0f, nullptr);
    EXPECT_EQ(vlm_moe_route(&r, logits, nullptr, idx, nullptr, nullptr), VLM_ERR_INVALID);
    r = Router(6, 2, VLM_TOPK_NOAUX_TC, VLM_SCORE_SIGMOID, 1, 1, 0, 1.0f, nullptr); // no bias
    EXPECT_EQ(vlm_moe_route(&r, logits, nullptr, idx, nullptr, nullptr), VLM_ERR_INVALID);
    r = Router(6, 2, VLM_TOPK_GREEDY, VLM_SCORE_SOFTMAX, 1, 1, 0, 1.0f, nullptr);
    const int32_t bad[2] = {0, 6};
    EXPECT_EQ(vlm_moe_route(&r, logits, bad, idx, nullptr, nullptr), VLM_ERR_INVALID);
}

// ---- MLA forms, KV cache, errors ------------------------------------------------------------

std::vector<float> GoldenEmbeds(const char *model, int64_t T)
{
    vlm_st_file *f = nullptr;
    std::string path = kGolden + "/" + model + "/case3_200x150_jpg.safetensors";
    if (vlm_st_open(path.c_str(), &f) != VLM_OK) return {};
    StPtr g(f);
    std::vector<float> e = F32(f, "inputs_embeds");
    e.resize((size_t)T * 64);
    return e;
}

TEST(DecoderMla, AbsorbedEqualsExpanded)
{
    Model m;
    LoadModel("tiny-mla", &m);
    if (HasFatalFailure()) return;
    const int64_t T = 256, V = m.cfg.vocab_size, H = m.cfg.hidden_size;
    std::vector<float> emb = GoldenEmbeds("tiny-mla", T);
    ASSERT_EQ(emb.size(), (size_t)T * H);
    std::vector<float> la(T * V), lb(T * V), sa(V), sb(V), e(H);
    CachePtr ca = NewCache(m.lm.get(), T + 4), cb = NewCache(m.lm.get(), T + 4);
    vlm_lm_set_mla_absorbed(m.lm.get(), 1);
    ASSERT_EQ(vlm_lm_forward(m.lm.get(), ca.get(), emb.data(), T, la.data(), 1, nullptr), VLM_OK);
    vlm_lm_set_mla_absorbed(m.lm.get(), 0);
    ASSERT_EQ(vlm_lm_forward(m.lm.get(), cb.get(), emb.data(), T, lb.data(), 1, nullptr), VLM_OK);
    float d = MaxAbsDiff(la.data(), lb.data(), la.size());
    EXPECT_LE(d, 1e-5f);
    // decode steps over the cache in both forms
    for (int32_t id : {236, 68, 396}) {
        ASSERT_EQ(vlm_lm_embed(m.lm.get(), &id, 1, e.data()), VLM_OK);
        vlm_lm_set_mla_absorbed(m.lm.get(), 1);
        ASSERT_EQ(vlm_lm_forward(m.lm.get(), ca.get(), e.data(), 1, sa.data(), 0, nullptr), VLM_OK);
        vlm_lm_set_mla_absorbed(m.lm.get(), 0);
        ASSERT_EQ(vlm_lm_forward(m.lm.get(), cb.get(), e.data(), 1, sb.data(), 0, nullptr), VLM_OK);
        float ds = MaxAbsDiff(sa.data(), sb.data(), V);
        EXPECT_LE(ds, 1e-5f);
        d = std::max(d, ds);
    }
    std::printf("[ measured ] MLA absorbed vs expanded: max |logit diff| %.2e\n", d);
}

void CheckChunking(const char *model)
{
    Model m;
    LoadModel(model, &m);
    if (::testing::Test::HasFatalFailure()) return;
    const int64_t T = 40, V = m.cfg.vocab_size, H = m.cfg.hidden_size;
    std::vector<float> emb = GoldenEmbeds(model, T);
    ASSERT_EQ(emb.size(), (size_t)T * H);
    std::vector<float> whole(T * V), chunks(T * V), single(T * V);
    CachePtr c1 = NewCache(m.lm.get(), T), c2 = NewCache(m.lm.get(), T), c3 = NewCache(m.lm.get(), T);
    ASSERT_EQ(vlm_lm_forward(m.lm.get(), c1.get(), emb.data(), T, whole.data(), 1, nullptr), VLM_OK);
    ASSERT_EQ(vlm_lm_forward(m.lm.get(), c2.get(), emb.data(), 17, chunks.data(), 1, nullptr), VLM_OK);
    ASSERT_EQ(vlm_lm_forward(m.lm.get(), c2.get(), emb.data() + 17 * H, T - 17, chunks.data() + 17 * V, 1, nullptr),
              VLM_OK);
    for (int64_t t = 0; t < T; t++)
        ASSERT_EQ(vlm_lm_forward(m.lm.get(), c3.get(), emb.data() + t * H, 1, single.data() + t * V, 0, nullptr), VLM_OK);
    const float dc = MaxAbsDiff(whole.data(), chunks.data(), whole.size());
    const float ds = MaxAbsDiff(whole.data(), single.data(), whole.size());
    EXPECT_LE(dc, 1e-5f);
    EXPECT_LE(ds, 1e-5f);
    std::printf("[ measured ] %s whole vs 2 chunks %.2e, vs token by token %.2e\n", model, dc, ds);
    EXPECT_EQ(vlm_kv_cache_len(c3.get()), T);
    // the last-row-only output equals the last row of all_logits
    vlm_kv_cache_reset(c1.get());
    std::vector<float> last(V);
    ASSERT_EQ(vlm_lm_forward(m.lm.get(), c1.get(), emb.data(), T, last.data(), 0, nullptr), VLM_OK);
    EXPECT_LE(MaxAbsDiff(last.data(), &whole[(T - 1) * V], V), 1e-6f);
    // truncate + re-feed the tail reproduces it as well
    ASSERT_EQ(vlm_kv_cache_truncate(c1.get(), 30), VLM_OK);
    std::vector<float> tail((T - 30) * V);
    ASSERT_EQ(vlm_lm_forward(m.lm.get(), c1.get(), emb.data() + 30 * H, T - 30, tail.data(), 1, nullptr), VLM_OK);
    EXPECT_LE(MaxAbsDiff(tail.data(), &whole[30 * V], tail.size()), 1e-5f);
}

TEST(DecoderKvCache, ChunkedPrefillEqualsWholeMha) { CheckChunking("tiny-mha"); }
TEST(DecoderKvCache, ChunkedPrefillEqualsWholeMla) { CheckChunking("tiny-mla"); }

TEST(DecoderMoe, ForceIdxOverridesRouting)
{
    Model m;
    LoadModel("tiny-mha", &m);
    if (HasFatalFailure()) return;
    const int64_t T = 20, H = m.cfg.hidden_size, V = m.cfg.vocab_size, L = m.cfg.num_hidden_layers;
    const int K = m.cfg.num_experts_per_tok, nm = vlm_lm_n_moe_layers(m.lm.get());
    ASSERT_EQ(nm, 3);
    std::vector<float> emb = GoldenEmbeds("tiny-mha", T);
    auto run = [&](const std::vector<int32_t> *force, const std::vector<uint8_t> *mask, std::vector<float> *hs,
                   std::vector<int32_t> *idx, std::vector<float> *w, std::vector<float> *lg) {
        CachePtr c = NewCache(m.lm.get(), T);
        hs->assign((L + 1) * T * H, 0);
        idx->assign(nm * T * K, 0);
        w->assign(nm * T * K, 0);
        lg->assign(T * V, 0);
        vlm_lm_trace tr{};
        tr.hidden_states = hs->data();
        tr.routing_idx = idx->data();
        tr.routing_weight = w->data();
        if (force) {
            tr.force_idx = force->data();
            tr.force_mask = mask->data();
        }
        ASSERT_EQ(vlm_lm_forward(m.lm.get(), c.get(), emb.data(), T, lg->data(), 1, &tr), VLM_OK) << vlm_last_error();
    };
    std::vector<float> hs0, w0, lg0, hs1, w1, lg1;
    std::vector<int32_t> idx0, idx1;
    run(nullptr, nullptr, &hs0, &idx0, &w0, &lg0);
    // forcing the routing it chose anyway, everywhere, changes nothing
    std::vector<uint8_t> all(nm * T, 1);
    run(&idx0, &all, &hs1, &idx1, &w1, &lg1);
    EXPECT_EQ(idx0, idx1);
    EXPECT_EQ(MaxAbsDiff(lg0.data(), lg1.data(), lg0.size()), 0.0f);
    // force another expert set at token 5 of the first MoE layer (model layer 1)
    std::vector<int32_t> force = idx0;
    std::vector<uint8_t> one(nm * T, 0);
    one[5] = 1;
    int32_t alt[3], n = 0;
    for (int32_t e = 0; e < 8 && n < 3; e++)
        if (std::find(&idx0[5 * K], &idx0[5 * K] + K, e) == &idx0[5 * K] + K) alt[n++] = e;
    ASSERT_EQ(n, 3);
    std::copy(alt, alt + 3, &force[5 * K]);
    run(&force, &one, &hs1, &idx1, &w1, &lg1);
    EXPECT_EQ(std::vector<int32_t>(&idx1[5 * K], &idx1[5 * K] + K), std::vector<int32_t>(alt, alt + 3));
    EXPECT_NE(w1[5 * K], w0[5 * K]);
    // layer 1's output moves at token 5 only; later layers see it through attention at tokens >= 5
    const float *a = &hs0[2 * T * H], *b = &hs1[2 * T * H];
    EXPECT_EQ(MaxAbsDiff(a, b, 5 * H), 0.0f);
    EXPECT_GT(MaxAbsDiff(a + 5 * H, b + 5 * H, H), 1e-3f);
    EXPECT_EQ(MaxAbsDiff(a + 6 * H, b + 6 * H, (T - 6) * H), 0.0f);
    EXPECT_GT(MaxAbsDiff(&lg0[19 * V], &lg1[19 * V], V), 0.0f);
}

TEST(DecoderKvCache, OverflowIsAClearErrorAndKeepsTheCache)
{
    Model m;
    LoadModel("tiny-mha", &m);
    if (HasFatalFailure()) return;
    std::vector<float> emb = GoldenEmbeds("tiny-mha", 12), logits(m.cfg.vocab_size);
    CachePtr c = NewCache(m.lm.get(), 8);
    ASSERT_EQ(vlm_lm_forward(m.lm.get(), c.get(), emb.data(), 5, logits.data(), 0, nullptr), VLM_OK);
    EXPECT_EQ(vlm_lm_forward(m.lm.get(), c.get(), emb.data() + 5 * 64, 4, logits.data(), 0, nullptr), VLM_ERR_LIMIT);
    EXPECT_NE(std::string(vlm_last_error()).find("capacity of 8"), std::string::npos) << vlm_last_error();
    EXPECT_EQ(vlm_kv_cache_len(c.get()), 5);
    EXPECT_EQ(vlm_lm_forward(m.lm.get(), c.get(), emb.data() + 5 * 64, 3, logits.data(), 0, nullptr), VLM_OK);
    EXPECT_EQ(vlm_kv_cache_len(c.get()), 8);
    EXPECT_EQ(vlm_kv_cache_truncate(c.get(), 9), VLM_ERR_INVALID);
    vlm_kv_cache *bad = nullptr;
    EXPECT_EQ(vlm_kv_cache_create(m.lm.get(), 0, &bad), VLM_ERR_INVALID);
    EXPECT_EQ(bad, nullptr);
    // a cache of another model is refused
    Model m2;
    LoadModel("tiny-mla", &m2);
    if (HasFatalFailure()) return;
    CachePtr c2 = NewCache(m2.lm.get(), 8);
    EXPECT_EQ(vlm_lm_forward(m.lm.get(), c2.get(), emb.data(), 1, logits.data(), 0, nullptr), VLM_ERR_INVALID);
}

TEST(DecoderLoad, EmbedMatchesTableAndRejectsBadIds)
{
    Model m;
    LoadModel("tiny-mha", &m);
    if (HasFatalFailure()) return;
    const vlm_tensor_view *v = vlm_checkpoint_find(m.ck.get(), "language.model.embed_tokens.weight");
    ASSERT_NE(v, nullptr);
    int32_t ids[2] = {0, 511};
    std::vector<float> e(128), ref(64);
    ASSERT_EQ(vlm_lm_embed(m.lm.get(), ids, 2, e.data()), VLM_OK);
    vlm_view_read_f32(v, 511 * 64, 64, ref.data());
    EXPECT_EQ(MaxAbsDiff(e.data() + 64, ref.data(), 64), 0.0f);
    int32_t bad[2] = {3, 512};
    EXPECT_EQ(vlm_lm_embed(m.lm.get(), bad, 2, e.data()), VLM_ERR_INVALID);
    EXPECT_NE(std::string(vlm_last_error()).find("512"), std::string::npos);
}

TEST(DecoderLoad, ShapeMismatchNamesTensorAndShapes)
{
    vlm_lm_config c;
    ASSERT_TRUE(LoadLmConfig(kGolden + "/tiny-mha", &c));
    vlm_checkpoint *ck = nullptr;
    ASSERT_EQ(vlm_checkpoint_open((kGolden + "/tiny-mha").c_str(), &ck), VLM_OK);
    CkPtr ckp(ck);
    vlm_lm *lm = nullptr;
    c.intermediate_size = 100;
    EXPECT_EQ(vlm_lm_load(ck, "language.", &c, &lm), VLM_ERR_MISMATCH);
    EXPECT_EQ(lm, nullptr);
    std::string err = vlm_last_error();
    EXPECT_NE(err.find("language.model.layers.0.mlp.gate_proj.weight"), std::string::npos) << err;
    EXPECT_NE(err.find("[128, 64]"), std::string::npos) << err;
    EXPECT_NE(err.find("[100, 64]"), std::string::npos) << err;
    // an MLA config on the MHA checkpoint: q_proj has the MHA shape
    ASSERT_TRUE(LoadLmConfig(kGolden + "/tiny-mla", &c));
    EXPECT_EQ(vlm_lm_load(ck, "language.", &c, &lm), VLM_ERR_MISMATCH);
    err = vlm_last_error();
    EXPECT_NE(err.find("language.model.layers.0.self_attn.q_proj.weight"), std::string::npos) << err;
    EXPECT_NE(err.find("[96, 64]"), std::string::npos) << err;
    // a missing tensor is named
    c.q_lora_rank = 16;
    EXPECT_EQ(vlm_lm_load(ck, "language.", &c, &lm), VLM_ERR_MISMATCH);
    EXPECT_NE(std::string(vlm_last_error()).find("self_attn.q_a_proj.weight"), std::string::npos) << vlm_last_error();
    // inconsistent config values are refused before any tensor is read
    ASSERT_TRUE(LoadLmConfig(kGolden + "/tiny-mha", &c));
    c.n_group = 3;
    c.topk_method = VLM_TOPK_GROUP_LIMITED_GREEDY;
    EXPECT_EQ(vlm_lm_load(ck, "language.", &c, &lm), VLM_ERR_INVALID);
}

// ---- a synthetic q_lora MLA + MoE model against a plain double-precision transcription ------

struct Rng {
    uint64_t s;
    float Next() // uniform in [-1, 1)
    {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return (float)((double)(s >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    }
};

struct SynthModel {
    vlm_lm_config cfg{};
    std::vector<std::string> names;
    std::vector<std::vector<int64_t>> shapes;
    std::vector<std::vector<float>> data;
    const std::vector<float> &Get(const std::string &n) const
    {
        for (size_t i = 0; i < names.size(); i++)
            if (names[i] == n) return data[i];
        static std::vector<float> none;
        ADD_FAILURE() << "no " << n;
        return none;
    }
    void Add(Rng &r, const std::string &n, std::vector<int64_t> shape, float scale, float offset = 0)
    {
        size_t k = 1;
        for (int64_t d : shape) k *= (size_t)d;
        std::vector<float> v(k);
        for (float &x : v) x = offset + scale * r.Next();
        names.push_back(n);
        shapes.push_back(shape);
        data.push_back(v);
    }
};

void BuildSynth(SynthModel *m)
{
    vlm_lm_config &c = m->cfg;
    c = vlm_lm_config{};
    c.vocab_size = 40;
    c.hidden_size = 32;
    c.intermediate_size = 24;
    c.moe_intermediate_size = 8;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 2;
    c.n_shared_experts = 1;
    c.n_routed_experts = 4;
    c.num_experts_per_tok = 2;
    c.first_k_dense_replace = 1;
    c.moe_layer_freq = 1;
    c.n_group = 2;
    c.topk_group = 1;
    c.topk_method = VLM_TOPK_GROUP_LIMITED_GREEDY;
    c.scoring_func = VLM_SCORE_SOFTMAX;
    c.norm_topk_prob = 1;
    c.routed_scaling_factor = 1.5f;
    c.use_mla = 1;
    c.q_lora_rank = 12;
    c.kv_lora_rank = 10;
    c.qk_nope_head_dim = 6;
    c.qk_rope_head_dim = 4;
    c.v_head_dim = 5;
    c.max_position_embeddings = 64;
    c.rms_norm_eps = 1e-6f;
    c.rope_theta = 10000.0f;
    Rng r{42};
    const int64_t H = c.hidden_size, nh = c.num_attention_heads, qhd = c.qk_nope_head_dim + c.qk_rope_head_dim;
    m->Add(r, "model.embed_tokens.weight", {c.vocab_size, H}, 1.0f);
    m->Add(r, "lm_head.weight", {c.vocab_size, H}, 0.3f);
    m->Add(r, "model.norm.weight", {H}, 0.2f, 1.0f);
    for (int l = 0; l < 2; l++) {
        std::string p = "model.layers." + std::to_string(l) + ".";
        m->Add(r, p + "input_layernorm.weight", {H}, 0.2f, 1.0f);
        m->Add(r, p + "post_attention_layernorm.weight", {H}, 0.2f, 1.0f);
        m->Add(r, p + "self_attn.q_a_proj.weight", {c.q_lora_rank, H}, 0.3f);
        m->Add(r, p + "self_attn.q_a_layernorm.weight", {c.q_lora_rank}, 0.2f, 1.0f);
        m->Add(r, p + "self_attn.q_b_proj.weight", {nh * qhd, c.q_lora_rank}, 0.4f);
        m->Add(r, p + "self_attn.kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, H}, 0.3f);
        m->Add(r, p + "self_attn.kv_a_layernorm.weight", {c.kv_lora_rank}, 0.2f, 1.0f);
        m->Add(r, p + "self_attn.kv_b_proj.weight", {nh * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}, 0.4f);
        m->Add(r, p + "self_attn.o_proj.weight", {H, nh * c.v_head_dim}, 0.3f);
        auto mlp = [&](const std::string &q, int64_t I) {
            m->Add(r, q + "gate_proj.weight", {I, H}, 0.3f);
            m->Add(r, q + "up_proj.weight", {I, H}, 0.3f);
            m->Add(r, q + "down_proj.weight", {H, I}, 0.3f);
        };
        if (l == 0) {
            mlp(p + "mlp.", c.intermediate_size);
        } else {
            m->Add(r, p + "mlp.gate.weight", {c.n_routed_experts, H}, 0.5f);
            for (int e = 0; e < c.n_routed_experts; e++) mlp(p + "mlp.experts." + std::to_string(e) + ".", 8);
            mlp(p + "mlp.shared_experts.", 8);
        }
    }
}

using Vec = std::vector<double>;

Vec RefLinear(const Vec &x, const std::vector<float> &W, int64_t out, int64_t in)
{
    Vec y(out, 0.0);
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) y[o] += (double)W[o * in + i] * x[i];
    return y;
}
Vec RefRms(const Vec &x, const std::vector<float> &g, double eps)
{
    double ss = 0;
    for (double v : x) ss += v * v;
    double r = 1.0 / std::sqrt(ss / (double)x.size() + eps);
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); i++) y[i] = x[i] * r * g[i];
    return y;
}
Vec RefMlp(const SynthModel &m, const std::string &p, const Vec &x, int64_t I)
{
    const int64_t H = m.cfg.hidden_size;
    Vec g = RefLinear(x, m.Get(p + "gate_proj.weight"), I, H), u = RefLinear(x, m.Get(p + "up_proj.weight"), I, H);
    for (int64_t i = 0; i < I; i++) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
    return RefLinear(g, m.Get(p + "down_proj.weight"), H, I);
}
// RoPE on interleaved pairs (2i, 2i+1) in their original order (the C code stores them
// de-interleaved; dot products are the same).
void RefRope(double *v, int d, int64_t pos, double theta)
{
    for (int i = 0; i < d / 2; i++) {
        double a = (double)pos * std::pow(theta, -2.0 * i / d), c = std::cos(a), s = std::sin(a);
        double x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c - x1 * s;
        v[2 * i + 1] = x1 * c + x0 * s;
    }
}

// Plain, non-absorbed MLA + dense / MoE forward over the whole sequence, in double.
std::vector<Vec> RefForward(const SynthModel &m, const std::vector<int32_t> &ids)
{
    const vlm_lm_config &c = m.cfg;
    const int64_t H = c.hidden_size, nh = c.num_attention_heads, nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim,
                  vd = c.v_head_dim, r = c.kv_lora_rank, ql = c.q_lora_rank, qhd = nope + rope;
    const size_t T = ids.size();
    std::vector<Vec> x(T, Vec(H));
    const std::vector<float> &E = m.Get("model.embed_tokens.weight");
    for (size_t t = 0; t < T; t++)
        for (int64_t i = 0; i < H; i++) x[t][i] = E[ids[t] * H + i];
    for (int l = 0; l < c.num_hidden_layers; l++) {
        std::string p = "model.layers." + std::to_string(l) + ".";
        std::vector<Vec> q(T), k(T), v(T);
        for (size_t t = 0; t < T; t++) {
            Vec xn = RefRms(x[t], m.Get(p + "input_layernorm.weight"), c.rms_norm_eps);
            Vec qa = RefRms(RefLinear(xn, m.Get(p + "self_attn.q_a_proj.weight"), ql, H),
                            m.Get(p + "self_attn.q_a_layernorm.weight"), 1e-6);
            q[t] = RefLinear(qa, m.Get(p + "self_attn.q_b_proj.weight"), nh * qhd, ql);
            Vec kva = RefLinear(xn, m.Get(p + "self_attn.kv_a_proj_with_mqa.weight"), r + rope, H);
            Vec ckv = RefRms(Vec(kva.begin(), kva.begin() + r), m.Get(p + "self_attn.kv_a_layernorm.weight"), 1e-6);
            Vec kpe(kva.begin() + r, kva.end());
            RefRope(kpe.data(), (int)rope, (int64_t)t, c.rope_theta);
            Vec kvb = RefLinear(ckv, m.Get(p + "self_attn.kv_b_proj.weight"), nh * (nope + vd), r);
            k[t].assign(nh * qhd, 0);
            v[t].assign(nh * vd, 0);
            for (int64_t h = 0; h < nh; h++) {
                RefRope(&q[t][h * qhd + nope], (int)rope, (int64_t)t, c.rope_theta);
                for (int64_t d = 0; d < nope; d++) k[t][h * qhd + d] = kvb[h * (nope + vd) + d];
                for (int64_t d = 0; d < rope; d++) k[t][h * qhd + nope + d] = kpe[d];
                for (int64_t d = 0; d < vd; d++) v[t][h * vd + d] = kvb[h * (nope + vd) + nope + d];
            }
        }
        for (size_t t = 0; t < T; t++) {
            Vec o(nh * vd, 0.0);
            for (int64_t h = 0; h < nh; h++) {
                Vec s(t + 1);
                double mx = -1e300, sum = 0;
                for (size_t j = 0; j <= t; j++) {
                    double d = 0;
                    for (int64_t i = 0; i < qhd; i++) d += q[t][h * qhd + i] * k[j][h * qhd + i];
                    s[j] = d / std::sqrt((double)qhd);
                    mx = std::max(mx, s[j]);
                }
                for (size_t j = 0; j <= t; j++) sum += s[j] = std::exp(s[j] - mx);
                for (size_t j = 0; j <= t; j++)
                    for (int64_t d = 0; d < vd; d++) o[h * vd + d] += s[j] / sum * v[j][h * vd + d];
            }
            Vec a = RefLinear(o, m.Get(p + "self_attn.o_proj.weight"), H, nh * vd);
            for (int64_t i = 0; i < H; i++) x[t][i] += a[i];
        }
        for (size_t t = 0; t < T; t++) {
            Vec xn = RefRms(x[t], m.Get(p + "post_attention_layernorm.weight"), c.rms_norm_eps);
            Vec y;
            if (l == 0) {
                y = RefMlp(m, p + "mlp.", xn, c.intermediate_size);
            } else {
                // softmax gate; group_limited_greedy, 2 groups of 2, keep 1; top-2; norm, x1.5
                Vec lg = RefLinear(xn, m.Get(p + "mlp.gate.weight"), 4, H), s(4);
                double mx = *std::max_element(lg.begin(), lg.end()), sum = 0;
                for (int e = 0; e < 4; e++) sum += s[e] = std::exp(lg[e] - mx);
                for (double &z : s) z /= sum;
                int keep = std::max(s[0], s[1]) >= std::max(s[2], s[3]) ? 0 : 1;
                int a = 2 * keep, b = 2 * keep + 1;
                double den = s[a] + s[b];
                y = RefMlp(m, p + "mlp.shared_experts.", xn, 8);
                for (int e : {a, b}) {
                    Vec ye = RefMlp(m, p + "mlp.experts." + std::to_string(e) + ".", xn, 8);
                    for (int64_t i = 0; i < H; i++) y[i] += s[e] / den * 1.5 * ye[i];
                }
            }
            for (int64_t i = 0; i < H; i++) x[t][i] += y[i];
        }
    }
    std::vector<Vec> logits(T);
    for (size_t t = 0; t < T; t++)
        logits[t] = RefLinear(RefRms(x[t], m.Get("model.norm.weight"), c.rms_norm_eps), m.Get("lm_head.weight"),
                              c.vocab_size, H);
    return logits;
}

TEST(DecoderSynthetic, QLoraMlaGroupedMoeMatchesDoubleReference)
{
    SynthModel sm;
    BuildSynth(&sm);
    const std::string dir = ::testing::TempDir() + "/vlm_decoder_synth";
    std::string cmd = "mkdir -p '" + dir + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::vector<vlm_tensor_view> views(sm.names.size());
    for (size_t i = 0; i < views.size(); i++) {
        vlm_tensor_view &v = views[i];
        v = vlm_tensor_view{};
        v.name = sm.names[i].c_str();
        v.dtype = VLM_DT_F32;
        v.ndim = (int)sm.shapes[i].size();
        for (int d = 0; d < v.ndim; d++) v.shape[d] = sm.shapes[i][d];
        v.data = sm.data[i].data();
        v.nbytes = sm.data[i].size() * sizeof(float);
    }
    ASSERT_EQ(vlm_st_write((dir + "/model.safetensors").c_str(), views.data(), (int)views.size()), VLM_OK)
        << vlm_last_error();
    vlm_checkpoint *ck = nullptr;
    ASSERT_EQ(vlm_checkpoint_open(dir.c_str(), &ck), VLM_OK) << vlm_last_error();
    CkPtr ckp(ck);
    vlm_lm *lmp = nullptr;
    ASSERT_EQ(vlm_lm_load(ck, "", &sm.cfg, &lmp), VLM_OK) << vlm_last_error();
    LmPtr lm(lmp);

    const std::vector<int32_t> ids = {1, 7, 33, 2, 2, 19, 38, 0, 25, 11, 4, 30};
    const int64_t T = (int64_t)ids.size(), V = sm.cfg.vocab_size, H = sm.cfg.hidden_size;
    std::vector<Vec> ref = RefForward(sm, ids);
    std::vector<float> emb(T * H);
    ASSERT_EQ(vlm_lm_embed(lm.get(), ids.data(), T, emb.data()), VLM_OK);
    for (int absorbed : {1, 0}) {
        vlm_lm_set_mla_absorbed(lm.get(), absorbed);
        CachePtr cache = NewCache(lm.get(), T);
        std::vector<float> lg(T * V);
        // prefill 7 tokens, then one at a time
        ASSERT_EQ(vlm_lm_forward(lm.get(), cache.get(), emb.data(), 7, lg.data(), 1, nullptr), VLM_OK)
            << vlm_last_error();
        for (int64_t t = 7; t < T; t++)
            ASSERT_EQ(vlm_lm_forward(lm.get(), cache.get(), emb.data() + t * H, 1, lg.data() + t * V, 0, nullptr),
                      VLM_OK);
        double md = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < V; i++) md = std::max(md, std::fabs(lg[t * V + i] - ref[t][i]));
        EXPECT_LE(md, 2e-5) << "absorbed=" << absorbed;
        std::printf("[ measured ] synthetic q_lora MLA model (absorbed=%d) vs double reference: %.2e\n", absorbed, md);
    }
}

// ---- sampler ---------------------------------------------------------------------------------

SamplerPtr MakeSampler(float temp, int top_k, float top_p, float rep, uint64_t seed, int vocab)
{
    vlm_sampler_params p{temp, top_k, top_p, rep, seed};
    vlm_sampler *s = nullptr;
    EXPECT_EQ(vlm_sampler_create(&p, vocab, &s), VLM_OK) << vlm_last_error();
    return SamplerPtr(s);
}

TEST(DecoderSampler, GreedyIsArgmaxLowestIndexOnTies)
{
    SamplerPtr s = MakeSampler(0, 0, 0, 0, 1, 6);
    std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, NAN};
    EXPECT_EQ(vlm_sampler_pick(s.get(), l.data(), nullptr, 0), 1);  // (vlm_sampler_sample refuses any NaN)
    std::vector<float> n = {NAN, NAN, NAN, NAN, NAN, NAN};
    EXPECT_LT(vlm_sampler_pick(s.get(), n.data(), nullptr, 0), 0);
}

TEST(DecoderSampler, TopK1EqualsGreedy)
{
    Rng r{7};
    for (uint64_t seed = 0; seed < 20; seed++) {
        SamplerPtr s = MakeSampler(0.8f, 1, 0.9f, 0, seed, 50);
        std::vector<float> l(50);
        for (float &x : l) x = 3 * r.Next();
        int32_t expect = Argmax(l.data(), 50);
        EXPECT_EQ(vlm_sampler_sample(s.get(), l.data(), nullptr, 0), expect);
    }
}

TEST(DecoderSampler, SameSeedSameTokens)
{
    std::vector<float> base(100);
    Rng r{3};
    for (float &x : base) x = r.Next();
    auto run = [&](uint64_t seed) {
        SamplerPtr s = MakeSampler(1.0f, 0, 0, 0, seed, 100);
        std::vector<int32_t> out;
        for (int i = 0; i < 64; i++) {
            std::vector<float> l = base;
            out.push_back(vlm_sampler_sample(s.get(), l.data(), nullptr, 0));
        }
        return out;
    };
    EXPECT_EQ(run(1234), run(1234));
    EXPECT_NE(run(1234), run(1235));
}

// A vocabulary of real size with ties: top-k and top-p order only the candidates they need
// (quickselect of a growing prefix), so each draw must land in the set a full sort gives; every
// member of a small nucleus must come up, and a large nucleus must be drawn from beyond its head.
TEST(DecoderSampler, LargeVocabularyDrawsStayInTheFullSortNucleus)
{
    const int V = 129280;
    for (int peaked : {1, 0}) {
        Rng r{11};
        std::vector<float> base(V);
        for (int i = 0; i < V; i++) base[i] = float(int((r.Next() + 1) * 2000)) / 200.0f;  // many equal logits
        if (peaked) base[77] = 40.0f, base[1234] = 39.5f, base[99999] = 39.5f;
        std::vector<int> order(V), rank(V);
        for (int i = 0; i < V; i++) order[i] = i;
        std::sort(order.begin(), order.end(),
                  [&](int a, int b) { return base[a] != base[b] ? base[a] > base[b] : a < b; });
        for (int j = 0; j < V; j++) rank[order[j]] = j;
        const double mx = base[order[0]];
        for (int top_k : {0, 3, 5000})
            for (float top_p : {0.0f, 0.5f, 0.999f}) {
                SCOPED_TRACE(testing::Message() << "peaked " << peaked << " top_k " << top_k << " top_p " << top_p);
                int n = V;
                if (top_k > 0) {  // ties with the k-th stay
                    n = top_k;
                    while (n < V && base[order[n]] == base[order[top_k - 1]]) n++;
                }
                if (top_p > 0) {
                    double sum = 0, before = 0;
                    for (int j = 0; j < n; j++) sum += std::exp(base[order[j]] - mx);
                    int keep = 0;
                    while (keep < n && (keep == 0 || before < top_p * sum)) before += std::exp(base[order[keep++]] - mx);
                    n = keep;
                }
                SamplerPtr s = MakeSampler(1.0f, top_k, top_p, 0, 5, V);
                std::vector<char> seen(V, 0);
                int beyond_head = 0;
                for (int t = 0; t < 60; t++) {
                    std::vector<float> l = base;
                    const int32_t id = vlm_sampler_pick(s.get(), l.data(), nullptr, 0);
                    ASSERT_TRUE(id >= 0 && id < V && rank[id] < n) << "drew " << id << " outside the " << n << " kept";
                    seen[id] = 1;
                    beyond_head += rank[id] >= 64;
                }
                if (n <= 3) {
                    for (int j = 0; j < n; j++) EXPECT_TRUE(seen[order[j]]) << "never drew " << order[j];
                }
                if (!peaked && n > 6400) {
                    EXPECT_GT(beyond_head, 30) << n << " kept";
                }
            }
    }
}

TEST(DecoderSampler, TopPAndTopKRestrictSupport)
{
    // probabilities .5 .3 .15 .05: top_p .7 keeps {0, 1} (mass before token 2 is .8 >= .7),
    // sampled in ratio .5 : .3.
    const float lp[4] = {std::log(.5f), std::log(.3f), std::log(.15f), std::log(.05f)};
    SamplerPtr s = MakeSampler(1.0f, 0, 0.7f, 0, 99, 4);
    int count[4] = {0};
    const int N = 4000;
    for (int i = 0; i < N; i++) {
        std::vector<float> l(lp, lp + 4);
        int32_t id = vlm_sampler_sample(s.get(), l.data(), nullptr, 0);
        ASSERT_GE(id, 0);
        count[id]++;
    }
    EXPECT_EQ(count[2] + count[3], 0);
    EXPECT_NEAR((double)count[0] / N, 0.625, 0.03);
    // top_p .5 keeps only token 0 (mass before token 1 is .5)
    SamplerPtr s1 = MakeSampler(1.0f, 0, 0.5f, 0, 5, 4);
    for (int i = 0; i < 50; i++) {
        std::vector<float> l(lp, lp + 4);
        EXPECT_EQ(vlm_sampler_sample(s1.get(), l.data(), nullptr, 0), 0);
    }
    // top_k 3 never gives token 3; without limits every token shows up
    SamplerPtr s2 = MakeSampler(1.0f, 3, 0, 0, 6, 4), s3 = MakeSampler(1.0f, 0, 0, 0, 6, 4);
    int c2[4] = {0}, c3[4] = {0};
    for (int i = 0; i < N; i++) {
        std::vector<float> a(lp, lp + 4), b(lp, lp + 4);
        c2[vlm_sampler_sample(s2.get(), a.data(), nullptr, 0)]++;
        c3[vlm_sampler_sample(s3.get(), b.data(), nullptr, 0)]++;
    }
    EXPECT_EQ(c2[3], 0);
    EXPECT_NEAR((double)c2[0] / N, .5 / .95, 0.03);
    EXPECT_GT(c3[3], 0);
    EXPECT_NEAR((double)c3[3] / N, .05, 0.015);
}

TEST(DecoderSampler, TemperatureSharpens)
{
    // logits [0, ln 3]: T=1 -> p(1) = .75; T=.5 -> 9/10
    const float l0[2] = {0.f, std::log(3.f)};
    SamplerPtr s = MakeSampler(0.5f, 0, 0, 0, 11, 2);
    int ones = 0;
    const int N = 4000;
    for (int i = 0; i < N; i++) {
        std::vector<float> l(l0, l0 + 2);
        ones += vlm_sampler_sample(s.get(), l.data(), nullptr, 0);
    }
    EXPECT_NEAR((double)ones / N, 0.9, 0.02);
}

TEST(DecoderSampler, RepetitionPenaltyHfSemantics)
{
    // seen ids 0, 1 (twice), 3: positive logits are divided, negative multiplied, each id once.
    SamplerPtr s = MakeSampler(0, 0, 0, 2.0f, 0, 5);
    std::vector<float> l = {2.0f, -1.0f, 0.5f, 3.0f, 1.4f};
    const int32_t hist[4] = {0, 1, 1, 3};
    int32_t id = vlm_sampler_sample(s.get(), l.data(), hist, 4);
    EXPECT_EQ(l[0], 1.0f);
    EXPECT_EQ(l[1], -2.0f);
    EXPECT_EQ(l[2], 0.5f);
    EXPECT_EQ(l[3], 1.5f);
    EXPECT_EQ(l[4], 1.4f);
    EXPECT_EQ(id, 3);
    // 3 / 2 = 1.5 now loses to 1.6 -> the unseen token wins
    std::vector<float> l2 = {2.0f, -1.0f, 0.5f, 3.0f, 1.6f};
    EXPECT_EQ(vlm_sampler_sample(s.get(), l2.data(), hist, 4), 4);
}

TEST(DecoderSampler, RejectsBadParameters)
{
    vlm_sampler *s = nullptr;
    vlm_sampler_params p{-1.0f, 0, 0, 0, 0};
    EXPECT_EQ(vlm_sampler_create(&p, 10, &s), VLM_ERR_INVALID);
    p = {1.0f, -2, 0, 0, 0};
    EXPECT_EQ(vlm_sampler_create(&p, 10, &s), VLM_ERR_INVALID);
    p = {1.0f, 0, 1.5f, 0, 0};
    EXPECT_EQ(vlm_sampler_create(&p, 10, &s), VLM_ERR_INVALID);
    p = {1.0f, 0, 0, -1.0f, 0};
    EXPECT_EQ(vlm_sampler_create(&p, 10, &s), VLM_ERR_INVALID);
    p = {1.0f, 0, 0, 0, 0};
    EXPECT_EQ(vlm_sampler_create(&p, 0, &s), VLM_ERR_INVALID);
    EXPECT_EQ(s, nullptr);
}

} // namespace
