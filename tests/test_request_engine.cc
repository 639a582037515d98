// The request engine (include/vlm.h: vlm_engine_submit and the jobs): every golden case gives the
// official greedy ids and logits whether it runs alone, in a batch of 8 mixed requests arriving at
// different steps, or after a prefix-cache hit; the batched forward equals one forward per
// sequence; cancel, refusals, bad input and the counters.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "vlm.h"
#include "fusion/model.h"
#include "text/decoder.h"
}
#include "golden_util.h"

namespace {

std::string ReadText(const std::string &path)
{
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<std::string> CaseImages(const std::string &cs)
{
    const std::string dir = golden::input_dir(cs);
    for (const char *ext : {"png", "jpg"})
        if (std::ifstream(dir + "/image." + ext).good()) return {dir + "/image." + ext};
    std::vector<std::string> out;
    for (int k = 1; k < 10; k++)
        for (const char *ext : {"png", "jpg"}) {
            const std::string p = dir + "/image_" + std::to_string(k) + "." + ext;
            if (std::ifstream(p).good()) out.push_back(p);
        }
    return out;
}

// One request's inputs and what came back.
struct Req {
    std::string cs, prompt;
    std::vector<std::string> paths;
    std::vector<vlm_image_input> imgs;
    std::vector<int32_t> ids;
    std::vector<float> logits; // [steps, vocab]
    std::atomic<int> tokens{0};
    vlm_job *job = nullptr;
    int64_t cached = 0;
    // when set: the engine's step count as the first token came (read on the engine thread, in the
    // step that sampled it, before that step is counted)
    vlm_engine *count_steps_of = nullptr;
    std::atomic<int64_t> steps_before_first{-1};

    explicit Req(const std::string &c) : cs(c), prompt(ReadText(golden::input_dir(c) + "/prompt.txt")), paths(CaseImages(c))
    {
        for (auto &p : paths) {
            vlm_image_input in = {};
            in.path = p.c_str();
            imgs.push_back(in);
        }
    }
};

int OnToken(void *user, int32_t id)
{
    Req *r = static_cast<Req *>(user);
    if (r->count_steps_of && r->tokens.load() == 0) {
        vlm_engine_stats st;
        if (vlm_engine_stats_get(r->count_steps_of, &st) == VLM_OK) r->steps_before_first = st.steps;
    }
    r->ids.push_back(id);
    r->tokens++;
    return 0;
}

int OnLogits(void *user, const float *logits, int64_t vocab)
{
    Req *r = static_cast<Req *>(user);
    r->logits.insert(r->logits.end(), logits, logits + vocab);
    return 0;
}

void Submit(vlm_engine *e, Req *r, int max_tokens = 16)
{
    // the prompt text holds the <image> markers, as the golden prompt does
    vlm_message m = {"user", r->prompt.c_str(), r->imgs.data(), (int)r->imgs.size()};
    vlm_request_options o;
    vlm_request_options_default(&o);
    o.gen.max_new_tokens = max_tokens;
    o.gen.ignore_eos = 1;
    o.gen.user = r;
    o.on_token = OnToken;
    o.on_logits = OnLogits;
    ASSERT_EQ(vlm_engine_submit(e, &m, 1, &o, &r->job), VLM_OK) << vlm_last_error();
}

// Waits, checks the job ended by length with golden ids and logits, frees it.
void ExpectGolden(const std::string &model, Req *r, const char *what)
{
    const vlm_result *res = nullptr;
    ASSERT_EQ(vlm_job_wait(r->job, &res), VLM_OK);
    EXPECT_EQ(res->finish, VLM_FINISH_LENGTH) << what << " " << r->cs << ": " << res->error;
    r->cached = res->cached_tokens;
    golden::File gold(golden::model_dir(model) + "/" + r->cs + ".safetensors");
    std::vector<int64_t> want = gold.ints("generated_ids");
    ASSERT_EQ(r->ids.size(), want.size()) << what << " " << model << " " << r->cs;
    for (size_t i = 0; i < want.size(); i++) EXPECT_EQ(r->ids[i], want[i]) << what << " " << model << " " << r->cs << " step " << i;
    std::vector<float> gl = gold.f32("generated_step_logits");
    ASSERT_EQ(r->logits.size(), gl.size());
    EXPECT_LE(golden::max_abs_diff(r->logits.data(), gl.data(), gl.size()), 2e-4) << what << " " << model << " " << r->cs;
    vlm_job_free(r->job);
    r->job = nullptr;
}

void WaitTokens(const Req &r, int n)
{
    for (int i = 0; i < 60000 && r.tokens.load() < n; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

vlm_engine *Open(const std::string &model, vlm_engine_options o = {})
{
    if (!o.quant) o.quant = "ref"; // the exact path the golden tolerances are for
    vlm_engine *e = nullptr;
    EXPECT_EQ(vlm_engine_open(golden::model_dir(model).c_str(), &o, &e), VLM_OK) << vlm_last_error();
    return e;
}

TEST(RequestEngine, GoldenAloneInABatchOf8AndAfterAPrefixHit)
{
    // under the sanitizers (VLM_SANITIZED, ~10x slower) the MLA model alone, to keep the suite fast
    std::vector<std::string> models = golden::models();
    if (std::getenv("VLM_SANITIZED")) models = {"tiny-mla"};
    for (const std::string &model : models) {
        vlm_engine_options o = {};
        o.max_running = 8;
        o.prefill_chunk = 200; // several chunks per prompt, interleaved with the others' decode steps
        vlm_engine *e = Open(model, o);
        ASSERT_NE(e, nullptr);
        // alone
        for (const std::string &cs : golden::cases()) {
            Req r(cs);
            Submit(e, &r);
            ExpectGolden(model, &r, "alone");
        }
        // 8 mixed requests (every case, different lengths), arriving while the others run
        const char *order[8] = {"case1_640x480_png", "case3_200x150_jpg", "case5_three_images", "case2_1000x300_png",
                                "case4_two_images", "case3_200x150_jpg", "case1_640x480_png", "case2_1000x300_png"};
        std::vector<std::unique_ptr<Req>> batch;
        for (const char *cs : order) batch.emplace_back(new Req(cs));
        for (int i = 0; i < 3; i++) Submit(e, batch[i].get());
        WaitTokens(*batch[0], 3);
        for (int i = 3; i < 6; i++) Submit(e, batch[i].get());
        WaitTokens(*batch[3], 1);
        for (int i = 6; i < 8; i++) Submit(e, batch[i].get());
        vlm_engine_stats st;
        ASSERT_EQ(vlm_engine_stats_get(e, &st), VLM_OK);
        for (auto &r : batch) ExpectGolden(model, r.get(), "batch");
        // the batch really ran together: more rows than steps
        ASSERT_EQ(vlm_engine_stats_get(e, &st), VLM_OK);
        EXPECT_GT(st.step_rows, 2 * st.steps) << model;
        // after a prefix-cache hit (the same case again: its prompt and image are cached)
        Req again("case4_two_images");
        Submit(e, &again);
        ExpectGolden(model, &again, "prefix hit");
        // every whole block of 32 but the one holding the last prompt token: 41 * 32 of 1,328
        EXPECT_EQ(again.cached, 1312) << model;
        ASSERT_EQ(vlm_engine_stats_get(e, &st), VLM_OK);
        EXPECT_GT(st.prefix_hits, 0);
        EXPECT_GT(st.image_hits, 0);
        EXPECT_EQ(st.requests_running, 0);
        EXPECT_EQ(st.kv_blocks_used, 0);
        EXPECT_EQ(st.requests_finished[VLM_FINISH_LENGTH], 5 + 8 + 1);
        vlm_engine_close(e);
    }
}

// The batched forward equals one forward per sequence, bit for bit on the reference path.
TEST(RequestEngine, BatchedForwardEqualsSeparateForwards)
{
    for (const std::string &model : golden::models()) {
        vlm_model *m = nullptr;
        ASSERT_EQ(vlm_model_load(golden::model_dir(model).c_str(), nullptr, &m), VLM_OK) << vlm_last_error();
        const vlm_lm *lm = vlm_model_lm(m);
        const int64_t H = vlm_model_config(m)->lm.hidden_size, V = vlm_model_config(m)->lm.vocab_size;
        const int64_t pre[3] = {5, 0, 17}, rows[3] = {1, 9, 3}; // cached tokens before, new rows
        std::vector<float> emb((size_t)(64 * H));
        for (size_t i = 0; i < emb.size(); i++) emb[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        vlm_kv_cache *a[3], *b[3];
        std::vector<float> sep((size_t)(3 * V)), bat((size_t)(3 * V));
        int64_t off = 0;
        std::vector<float> x;
        vlm_lm_seq seqs[3];
        for (int s = 0; s < 3; s++) {
            ASSERT_EQ(vlm_kv_cache_create(lm, 64, &a[s]), VLM_OK);
            ASSERT_EQ(vlm_kv_cache_create(lm, 64, &b[s]), VLM_OK);
            if (pre[s]) {
                ASSERT_EQ(vlm_lm_forward(lm, a[s], emb.data() + 40 * H, pre[s], nullptr, 0, nullptr), VLM_OK);
                ASSERT_EQ(vlm_lm_forward(lm, b[s], emb.data() + 40 * H, pre[s], nullptr, 0, nullptr), VLM_OK);
            }
            ASSERT_EQ(vlm_lm_forward(lm, a[s], emb.data() + off * H, rows[s], sep.data() + s * V, 0, nullptr), VLM_OK);
            x.insert(x.end(), emb.begin() + off * H, emb.begin() + (off + rows[s]) * H);
            seqs[s] = {b[s], rows[s], 1};
            off += rows[s];
        }
        std::vector<int64_t> counts((size_t)(vlm_lm_n_moe_layers(lm) * vlm_model_config(m)->lm.n_routed_experts), 0);
        ASSERT_EQ(vlm_lm_forward_batch(lm, seqs, 3, x.data(), bat.data(), counts.data()), VLM_OK) << vlm_last_error();
        EXPECT_EQ(std::memcmp(sep.data(), bat.data(), sep.size() * sizeof(float)), 0) << model;
        int64_t routed = 0;
        for (int64_t c : counts) routed += c;
        EXPECT_EQ(routed, off * vlm_lm_n_moe_layers(lm) * vlm_model_config(m)->lm.num_experts_per_tok);
        for (int s = 0; s < 3; s++) {
            EXPECT_EQ(vlm_kv_cache_len(b[s]), pre[s] + rows[s]);
            vlm_kv_cache_free(a[s]);
            vlm_kv_cache_free(b[s]);
        }
        // a shared cache and an over-full cache are errors that change nothing
        vlm_kv_cache *c;
        ASSERT_EQ(vlm_kv_cache_create(lm, 4, &c), VLM_OK);
        vlm_lm_seq bad[2] = {{c, 1, 1}, {c, 1, 1}};
        EXPECT_EQ(vlm_lm_forward_batch(lm, bad, 2, x.data(), bat.data(), nullptr), VLM_ERR_INVALID);
        vlm_lm_seq big = {c, 5, 1};
        EXPECT_EQ(vlm_lm_forward_batch(lm, &big, 1, x.data(), bat.data(), nullptr), VLM_ERR_LIMIT);
        EXPECT_EQ(vlm_kv_cache_len(c), 0);
        vlm_kv_cache_free(c);
        vlm_model_free(m);
    }
}

TEST(RequestEngine, CancelBeforeDuringPrefillAndDuringDecodeFreesEverything)
{
    vlm_engine_options o = {};
    o.max_running = 2;
    o.prefill_chunk = 64;
    vlm_engine *e = Open("tiny-mla", o);
    ASSERT_NE(e, nullptr);
    Req a("case5_three_images"), b("case1_640x480_png"), c("case2_1000x300_png");
    Submit(e, &a, 400);
    Submit(e, &b, 400);
    Submit(e, &c, 400); // waits: max_running 2
    vlm_job_cancel(c.job); // before admission
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    vlm_job_cancel(a.job); // during vision or prefill
    WaitTokens(b, 3);
    vlm_job_cancel(b.job); // during decode
    for (Req *r : {&a, &b, &c}) {
        const vlm_result *res;
        ASSERT_EQ(vlm_job_wait(r->job, &res), VLM_OK);
        EXPECT_EQ(res->finish, VLM_FINISH_CANCELLED) << r->cs;
        EXPECT_LT(res->n_token_ids, 400);
        vlm_job_free(r->job);
    }
    EXPECT_GE(b.tokens.load(), 3);
    vlm_engine_stats st;
    ASSERT_EQ(vlm_engine_stats_get(e, &st), VLM_OK);
    EXPECT_EQ(st.requests_running, 0);
    EXPECT_EQ(st.requests_waiting, 0);
    EXPECT_EQ(st.kv_blocks_used, 0);
    EXPECT_EQ(st.requests_finished[VLM_FINISH_CANCELLED], 3);
    // the engine goes on serving
    Req d("case3_200x150_jpg");
    Submit(e, &d);
    ExpectGolden("tiny-mla", &d, "after cancels");
    // a job freed while running is cancelled; closing with a job queued cancels it
    Req f("case1_640x480_png"), g("case2_1000x300_png");
    Submit(e, &f, 400);
    vlm_job_free(f.job);
    Submit(e, &g, 400);
    vlm_engine_close(e);
    const vlm_result *res;
    ASSERT_EQ(vlm_job_poll(g.job, &res), 1);
    EXPECT_EQ(res->finish, VLM_FINISH_CANCELLED);
    vlm_job_free(g.job);
}

// Beside decoding streams a prompt goes in in the fewest steps its cap allows, in chunks that differ by at
// most one token (a short last chunk would cost a whole step for a few tokens), never over the step's room.
extern "C" int64_t vlm_prompt_chunk(int64_t left, int64_t cap, int64_t room);  // fusion/job.h (C11 atomics: not C++)

TEST(RequestEngine, PromptChunksAreEqualAndFewest)
{
    EXPECT_EQ(vlm_prompt_chunk(128, 42, 42), 32);
    EXPECT_EQ(vlm_prompt_chunk(128, 43, 43), 43);
    EXPECT_EQ(vlm_prompt_chunk(85, 41, 41), 29);
    EXPECT_EQ(vlm_prompt_chunk(30, 42, 42), 30);
    EXPECT_EQ(vlm_prompt_chunk(128, 42, 10), 10);  // what room another prompt left in this step
    EXPECT_EQ(vlm_prompt_chunk(0, 42, 42), 0);
    for (int64_t left0 = 1; left0 <= 600; left0++)
        for (int64_t cap = 16; cap <= 96; cap += 5) {
            int64_t left = left0, steps = 0, lo = left0, hi = 0;
            while (left > 0) {
                const int64_t t = vlm_prompt_chunk(left, cap, cap);
                ASSERT_GE(t, 1);
                ASSERT_LE(t, cap);
                lo = t < lo ? t : lo, hi = t > hi ? t : hi;
                left -= t, steps++;
            }
            ASSERT_EQ(steps, (left0 + cap - 1) / cap) << left0 << " tokens, cap " << cap;
            ASSERT_LE(hi - lo, 1) << left0 << " tokens, cap " << cap;
        }
}

// vlm_engine_options.throughput: a prompt arriving while another request decodes goes in whole
// prefill_chunk steps (batch jobs), where by default each step's prompt work is held to about 1.8x a
// decode step (here, with the tiny model's cheap decode steps, the 16-token floor); either way its
// answer is the golden one.
TEST(RequestEngine, ThroughputModeTakesWholePromptChunksWhileOthersDecode)
{
    int64_t steps[2] = {0, 0};
    for (int throughput : {0, 1}) {
        SCOPED_TRACE(testing::Message() << "throughput " << throughput);
        vlm_engine_options o = {};
        o.max_running = 2;
        o.prefill_chunk = 128;
        o.throughput = throughput;
        vlm_engine *e = Open("tiny-mha", o);
        ASSERT_NE(e, nullptr);
        Req a("case1_640x480_png"), b("case5_three_images");
        Submit(e, &a, 3000);
        WaitTokens(a, 5);
        vlm_engine_stats st0;
        b.count_steps_of = e;  // the steps up to the one that samples its first token, whenever this thread wakes
        Submit(e, &b);  // (its images are decoded and tiled here, on this thread, while a decodes)
        ASSERT_EQ(vlm_engine_stats_get(e, &st0), VLM_OK);
        WaitTokens(b, 1);
        ASSERT_LT(a.tokens.load(), 3000) << "the decoding request ended before the prompt was in";
        ASSERT_GE(b.steps_before_first.load(), st0.steps);
        steps[throughput] = b.steps_before_first.load() + 1 - st0.steps;
        const std::string cs = b.cs;
        ExpectGolden("tiny-mha", &b, "beside a decoding request");
        golden::File gold(golden::model_dir("tiny-mha") + "/" + cs + ".safetensors");
        const int64_t prompt = (int64_t)gold.ints("input_ids").size();
        if (throughput) {  // its chunks, one step per image encoded, and one under way
            EXPECT_LE(steps[1], (prompt + 127) / 128 + 3 + 2) << prompt << " prompt tokens";
        }
        vlm_job_cancel(a.job);
        vlm_job_free(a.job);
        vlm_engine_close(e);
    }
    EXPECT_GT(steps[0], 2 * steps[1]) << "throughput mode took as many steps as the default";
    std::printf("[ measured ] steps to prefill a 3-image prompt beside a decoding request: %lld by default, "
                "%lld with throughput\n", (long long)steps[0], (long long)steps[1]);
}

TEST(RequestEngine, RefusalsAreClearErrorsAndHurtNoOtherRequest)
{
    vlm_engine_options o = {};
    o.max_running = 1;
    o.max_waiting = 2;
    o.max_context = 600;
    vlm_engine *e = Open("tiny-mha", o);
    ASSERT_NE(e, nullptr);
    // prompt + images over the context: refused at submit, before any work
    Req big("case1_640x480_png");
    vlm_message m = {"user", big.prompt.c_str(), big.imgs.data(), (int)big.imgs.size()};
    vlm_job *j = nullptr;
    EXPECT_EQ(vlm_engine_submit(e, &m, 1, nullptr, &j), VLM_ERR_LIMIT);
    EXPECT_EQ(j, nullptr);
    EXPECT_NE(std::strstr(vlm_last_error(), "context"), nullptr) << vlm_last_error();
    // bad image bytes, a missing file, marker mismatch, bad role: errors naming the problem
    const char junk[] = "not an image at all";
    vlm_image_input bad = {};
    bad.bytes = junk;
    bad.n_bytes = sizeof junk;
    vlm_message mb = {"user", "What is it?", &bad, 1};
    EXPECT_NE(vlm_engine_submit(e, &mb, 1, nullptr, &j), VLM_OK);
    vlm_image_input missing = {};
    missing.path = "/nonexistent/x.png";
    vlm_message mm = {"user", "What is it?", &missing, 1};
    EXPECT_NE(vlm_engine_submit(e, &mm, 1, nullptr, &j), VLM_OK);
    EXPECT_NE(std::strstr(vlm_last_error(), "/nonexistent/x.png"), nullptr) << vlm_last_error();
    vlm_message mk = {"user", "<image> and <image>", nullptr, 0};
    EXPECT_EQ(vlm_engine_submit(e, &mk, 1, nullptr, &j), VLM_ERR_INVALID);
    vlm_message mr = {"robot", "hi", nullptr, 0};
    EXPECT_EQ(vlm_engine_submit(e, &mr, 1, nullptr, &j), VLM_ERR_INVALID);
    EXPECT_NE(std::strstr(vlm_last_error(), "robot"), nullptr) << vlm_last_error();
    EXPECT_EQ(vlm_engine_submit(nullptr, &mr, 1, nullptr, &j), VLM_ERR_INVALID);
    EXPECT_EQ(vlm_engine_submit(e, &mr, -1, nullptr, &j), VLM_ERR_INVALID);
    EXPECT_EQ(vlm_engine_submit(e, &mr, 1, nullptr, nullptr), VLM_ERR_INVALID);
    // the queue: one running, two waiting, the next refused with VLM_ERR_BUSY
    std::vector<std::unique_ptr<Req>> rs;
    int busy = 0;
    for (int i = 0; i < 6 && !busy; i++) {
        rs.emplace_back(new Req("case3_200x150_jpg"));
        Req *r = rs.back().get();
        vlm_message q = {"user", r->prompt.c_str(), r->imgs.data(), (int)r->imgs.size()};
        vlm_request_options ro;
        vlm_request_options_default(&ro);
        ro.gen.max_new_tokens = 200;
        ro.gen.ignore_eos = 1;
        int rc = vlm_engine_submit(e, &q, 1, &ro, &r->job);
        if (rc == VLM_ERR_BUSY) busy = 1;
        else ASSERT_EQ(rc, VLM_OK) << vlm_last_error();
    }
    EXPECT_TRUE(busy);
    EXPECT_NE(std::strstr(vlm_last_error(), "busy"), nullptr) << vlm_last_error();
    vlm_engine_stats st;
    ASSERT_EQ(vlm_engine_stats_get(e, &st), VLM_OK);
    EXPECT_EQ(st.requests_refused, 1);
    for (auto &r : rs) vlm_job_free(r->job);
    // and it still answers
    Req ok("case3_200x150_jpg");
    Submit(e, &ok);
    ExpectGolden("tiny-mha", &ok, "after refusals");
    vlm_engine_close(e);
}

TEST(RequestEngine, SubmitsFromManyThreadsAndStreamsText)
{
    vlm_engine *e = Open("tiny-mha");
    ASSERT_NE(e, nullptr);
    std::vector<std::string> texts(4);
    std::vector<std::thread> th;
    for (int t = 0; t < 4; t++)
        th.emplace_back([&, t] {
            Req r("case3_200x150_jpg");
            std::string streamed;
            vlm_message m = {"user", r.prompt.c_str(), r.imgs.data(), (int)r.imgs.size()};
            vlm_request_options o;
            vlm_request_options_default(&o);
            o.gen.max_new_tokens = 16;
            o.gen.ignore_eos = 1;
            o.gen.user = &streamed;
            o.gen.on_text = [](void *u, const char *s, size_t n) {
                static_cast<std::string *>(u)->append(s, n);
                return 0;
            };
            vlm_job *j;
            ASSERT_EQ(vlm_engine_submit(e, &m, 1, &o, &j), VLM_OK);
            const vlm_result *res;
            vlm_job_wait(j, &res);
            EXPECT_EQ(streamed, res->text);
            texts[t] = res->text;
            vlm_job_free(j);
        });
    for (auto &x : th) x.join();
    for (int t = 1; t < 4; t++) EXPECT_EQ(texts[t], texts[0]);
    std::vector<int64_t> counts(4096);
    vlm_engine_stats st;
    ASSERT_EQ(vlm_engine_stats_get(e, &st), VLM_OK);
    const int64_t n = vlm_engine_expert_counts(e, counts.data(), (int64_t)counts.size());
    ASSERT_EQ(n, (int64_t)st.n_moe_layers * st.n_experts);
    int64_t sum = 0;
    for (int64_t i = 0; i < n; i++) sum += counts[i];
    // every row of every step went through top-k experts in every MoE layer
    const int k = 3; // tiny-mha: num_experts_per_tok
    EXPECT_EQ(sum % (st.n_moe_layers * k), 0);
    EXPECT_EQ(sum / (st.n_moe_layers * k), st.step_rows);
    vlm_engine_close(e);
}

} // namespace

extern "C" {
#include "media/resolve.h"
}

namespace {

std::vector<int32_t> Ids(vlm_engine *e, const vlm_message *m, int n)
{
    vlm_request_options o;
    vlm_request_options_default(&o);
    o.gen.max_new_tokens = 6;
    o.gen.ignore_eos = 1;
    vlm_job *j = nullptr;
    EXPECT_EQ(vlm_engine_submit(e, m, n, &o, &j), VLM_OK) << vlm_last_error();
    if (!j) return {};
    const vlm_result *r;
    vlm_job_wait(j, &r);
    EXPECT_EQ(r->finish, VLM_FINISH_LENGTH) << r->error;
    std::vector<int32_t> ids(r->token_ids, r->token_ids + r->n_token_ids);
    vlm_job_free(j);
    return ids;
}

// A video input gives its sampled frames, each placed as "Frame N at T s: <image>": the same ids as
// those frames given as pictures with that text written out.
TEST(RequestEngine, VideoInputsGiveTheirFramesWithTimes)
{
    const std::string clip = golden::data_dir() + "/media/caption_demo.mp4";
    vlm_engine_options o = {};
    o.quant = "ref";
    o.video_frames = "n=3";
    vlm_engine *e = nullptr;
    ASSERT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), &o, &e), VLM_OK) << vlm_last_error();
    vlm_image_input video = {};
    video.path = clip.c_str();
    vlm_message m = {"user", "What happens?", &video, 1};
    const std::vector<int32_t> from_video = Ids(e, &m, 1);
    ASSERT_EQ(from_video.size(), 6u);

    vlm_resolve_options ro;
    vlm_resolve_options_default(&ro);
    ro.sampling = "n=3";
    vlm_resolved r;
    ASSERT_EQ(vlm_media_resolve(clip.c_str(), &ro, &r), VLM_OK) << vlm_last_error();
    ASSERT_EQ(r.n, 3);
    std::vector<vlm_image_input> frames(3);
    std::string text;
    char line[96];
    for (int i = 0; i < 3; i++) {
        frames[i].rgb = r.items[i].image.rgb;
        frames[i].width = r.items[i].image.width;
        frames[i].height = r.items[i].image.height;
        snprintf(line, sizeof line, "Frame %d at %.1f s: <image>\n", i + 1, r.items[i].pts);
        text += line;
    }
    text += "What happens?";
    vlm_message written = {"user", text.c_str(), frames.data(), 3};
    EXPECT_EQ(Ids(e, &written, 1), from_video);
    // the same frames flagged as video frames, without markers: placed the same way
    for (int i = 0; i < 3; i++) frames[i].video_frame = 1, frames[i].time_s = r.items[i].pts;
    vlm_message flagged = {"user", "What happens?", frames.data(), 3};
    EXPECT_EQ(Ids(e, &flagged, 1), from_video);
    // one marker for the one video input stands for all its frames
    vlm_message marked = {"user", "<image>\nWhat happens?", &video, 1};
    EXPECT_EQ(Ids(e, &marked, 1), from_video);
    vlm_resolved_free(&r);
    vlm_engine_close(e);
    // a plan over max_video_frames is an error, not a silent cut
    o.video_frames = "fps=5";
    o.max_video_frames = 2;
    ASSERT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), &o, &e), VLM_OK) << vlm_last_error();
    vlm_job *j = nullptr;
    EXPECT_EQ(vlm_engine_submit(e, &m, 1, nullptr, &j), VLM_ERR_LIMIT);
    EXPECT_NE(std::strstr(vlm_last_error(), "plans"), nullptr) << vlm_last_error();
    vlm_engine_close(e);
    // a bad sampling rule is refused at open
    o.video_frames = "sometimes";
    EXPECT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), &o, &e), VLM_ERR_INVALID);
}

} // namespace

namespace {

// Every public entry point answers NULL handles, NULL outputs and negative sizes with an error code.
TEST(RequestEngine, PublicApiChecksItsArguments)
{
    vlm_engine *e = nullptr;
    EXPECT_EQ(vlm_engine_open(nullptr, nullptr, &e), VLM_ERR_INVALID);
    EXPECT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), nullptr, nullptr), VLM_ERR_INVALID);
    vlm_engine_options bad = {};
    bad.max_running = -1;
    EXPECT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), &bad, &e), VLM_ERR_INVALID);
    EXPECT_EQ(e, nullptr);
    char *answer = reinterpret_cast<char *>(1);
    EXPECT_EQ(vlm_engine_ask(nullptr, "q", nullptr, 0, nullptr, &answer), VLM_ERR_INVALID);
    EXPECT_EQ(answer, nullptr);
    EXPECT_EQ(vlm_engine_ask(nullptr, "q", nullptr, 0, nullptr, nullptr), VLM_ERR_INVALID);
    vlm_job *j = nullptr;
    EXPECT_EQ(vlm_engine_submit(nullptr, nullptr, 0, nullptr, &j), VLM_ERR_INVALID);
    EXPECT_EQ(vlm_job_wait(nullptr, nullptr), VLM_ERR_INVALID);
    EXPECT_LT(vlm_job_poll(nullptr, nullptr), 0);
    vlm_job_cancel(nullptr);
    vlm_job_free(nullptr);
    vlm_engine_close(nullptr);
    vlm_ask_options_default(nullptr);
    vlm_request_options_default(nullptr);
    EXPECT_EQ(vlm_engine_device_note(nullptr), nullptr);
    EXPECT_EQ(vlm_engine_has_tokenizer(nullptr), 0);
    vlm_engine_stats st;
    EXPECT_EQ(vlm_engine_stats_get(nullptr, &st), VLM_ERR_INVALID);
    EXPECT_LT(vlm_engine_expert_counts(nullptr, nullptr, 0), 0);
    EXPECT_STREQ(vlm_finish_reason_name((vlm_finish_reason)99), "");

    ASSERT_EQ(vlm_engine_open(golden::model_dir("tiny-mha").c_str(), nullptr, &e), VLM_OK) << vlm_last_error();
    EXPECT_EQ(vlm_engine_stats_get(e, nullptr), VLM_ERR_INVALID);
    EXPECT_LT(vlm_engine_expert_counts(e, nullptr, 5), 0);
    EXPECT_EQ(vlm_engine_ask(e, "q", nullptr, -1, nullptr, &answer), VLM_ERR_INVALID);
    EXPECT_EQ(vlm_engine_ask(e, "q", nullptr, 1, nullptr, &answer), VLM_ERR_INVALID);
    vlm_message m = {"user", "hi", nullptr, -2};
    EXPECT_EQ(vlm_engine_submit(e, &m, 1, nullptr, &j), VLM_ERR_LIMIT);
    vlm_message none = {"user", "hi", nullptr, 1};
    EXPECT_NE(vlm_engine_submit(e, &none, 1, nullptr, &j), VLM_OK);
    vlm_request_options ro;
    vlm_request_options_default(&ro);
    ro.gen.max_new_tokens = -5;
    vlm_message ok = {"user", "hi", nullptr, 0};
    EXPECT_EQ(vlm_engine_submit(e, &ok, 1, &ro, &j), VLM_ERR_INVALID);
    vlm_request_options_default(&ro);
    ro.gen.n_stop = -1;
    EXPECT_EQ(vlm_engine_submit(e, &ok, 1, &ro, &j), VLM_ERR_INVALID);
    vlm_request_options_default(&ro);
    ro.prompt_ids = reinterpret_cast<const int32_t *>(&ro);
    ro.n_prompt_ids = -3;
    EXPECT_EQ(vlm_engine_submit(e, nullptr, 0, &ro, &j), VLM_ERR_INVALID);
    vlm_image_input two = {};
    two.path = "x.png";
    two.rgb = reinterpret_cast<const uint8_t *>("abc");
    vlm_message both = {"user", "hi", &two, 1};
    EXPECT_EQ(vlm_engine_submit(e, &both, 1, nullptr, &j), VLM_ERR_INVALID);
    EXPECT_EQ(j, nullptr);
    vlm_engine_close(e);
}

} // namespace
