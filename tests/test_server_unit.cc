// The server's pure parts (server/): request JSON -> engine messages and validation, OpenAI-shaped JSON
// out, SSE framing, Prometheus text, API keys, the block list, the audit log, SHA-256.
#include <gtest/gtest.h>

#include <cjson/cJSON.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "video_util.h"

extern "C" {
#include "server/chat_request.h"
#include "server/chat_response.h"
#include "server/metrics.h"
#include "server/policy.h"
#include "server/sha256.h"
}

namespace {

struct Parsed {
    srv_chat *c = nullptr;
    srv_error e{};
    int rc = -1;
    explicit Parsed(const std::string &body)
    {
        rc = srv_chat_parse(body.data(), body.size(), nullptr, &c, &e);
        if (rc == 0) rc = srv_chat_build(c, &e);
    }
    ~Parsed() { srv_chat_free(c); }
};

std::string Msgs(const std::string &messages, const std::string &more = "")
{
    return "{\"model\":\"m\"," + more + "\"messages\":" + messages + "}";
}

TEST(ServerChatRequest, OneImageThenTextIsWhatVlmAskBuilds)
{
    Parsed p(Msgs("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}},"
                  "{\"type\":\"text\",\"text\":\"Describe this image.\"}]}]"));
    ASSERT_EQ(p.rc, 0) << p.e.message;
    ASSERT_EQ(p.c->n_vmsgs, 1);
    EXPECT_STREQ(p.c->vmsgs[0].role, "user");
    // the engine's own rule for a message without markers puts "<image>\n" in front: the same prompt
    EXPECT_STREQ(p.c->vmsgs[0].content, "<image>\nDescribe this image.");
    ASSERT_EQ(p.c->vmsgs[0].n_images, 1);
    EXPECT_STREQ(p.c->vmsgs[0].images[0].path, "data:image/png;base64,AAAA"); // not fetched: given as the URL
    EXPECT_STREQ(p.c->model, "m");
}

TEST(ServerChatRequest, PartsKeepTheirOrderAndMarkersTakeImagesInOrder)
{
    const std::string img = "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\",\"detail\":\"high\"}}";
    Parsed p(Msgs("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"First\"}," + img + ",{\"type\":\"text\",\"text\":\"then\"}," +
                  img + "]}]"));
    ASSERT_EQ(p.rc, 0) << p.e.message;
    EXPECT_STREQ(p.c->vmsgs[0].content, "First\n<image>\nthen\n<image>");
    EXPECT_EQ(p.c->vmsgs[0].n_images, 2);

    Parsed q(Msgs("[{\"role\":\"user\",\"content\":[" + img + ",{\"type\":\"text\",\"text\":\"This is <image>. What?\"}]}]"));
    ASSERT_EQ(q.rc, 0) << q.e.message;
    EXPECT_STREQ(q.c->vmsgs[0].content, "This is <image>. What?"); // the user's marker, not another
    Parsed r(Msgs("[{\"role\":\"user\",\"content\":[" + img + "," + img + ",{\"type\":\"text\",\"text\":\"only <image>\"}]}]"));
    EXPECT_EQ(r.rc, -1);
    EXPECT_EQ(r.e.status, 400);
    EXPECT_NE(std::strstr(r.e.message, "markers"), nullptr) << r.e.message;
}

TEST(ServerChatRequest, SystemMessagesMergeAndConversationsPassThrough)
{
    Parsed p(Msgs("[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"developer\",\"content\":\"Be kind.\"},"
                  "{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hello\"},"
                  "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}]"));
    ASSERT_EQ(p.rc, 0) << p.e.message;
    ASSERT_EQ(p.c->n_vmsgs, 4);
    EXPECT_STREQ(p.c->vmsgs[0].role, "system");
    EXPECT_STREQ(p.c->vmsgs[0].content, "Be brief.\nBe kind.");
    EXPECT_STREQ(p.c->vmsgs[1].content, "Hi");
    EXPECT_STREQ(p.c->vmsgs[2].role, "assistant");
    EXPECT_STREQ(p.c->vmsgs[3].content, "a\nb");
    EXPECT_STREQ(srv_chat_text(p.c, 0), "Be brief.");
    EXPECT_STREQ(srv_chat_text(p.c, 5), "b");
    EXPECT_EQ(srv_chat_text(p.c, 6), nullptr);
}

TEST(ServerChatRequest, ParametersMapToGenerationOptions)
{
    Parsed p(Msgs("[{\"role\":\"user\",\"content\":\"x\"}]",
                  "\"max_tokens\":7,\"max_completion_tokens\":9,\"temperature\":0.5,\"top_p\":0.9,\"seed\":42,"
                  "\"stop\":[\"END\",\"\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1,"
                  "\"frequency_penalty\":0,\"presence_penalty\":null,\"top_k\":5,\"repetition_penalty\":1.1,\"ignore_eos\":true,"
                  "\"unknown_field\":{\"x\":[1,2]},"));
    ASSERT_EQ(p.rc, 0) << p.e.message;
    vlm_ask_options o;
    vlm_ask_options_default(&o);
    srv_chat_gen(p.c, 512, &o);
    EXPECT_EQ(o.max_new_tokens, 9); // max_completion_tokens wins
    EXPECT_FLOAT_EQ(o.temperature, 0.5f);
    EXPECT_FLOAT_EQ(o.top_p, 0.9f);
    EXPECT_EQ(o.top_k, 5);
    EXPECT_FLOAT_EQ(o.repetition_penalty, 1.1f);
    EXPECT_EQ(o.seed, 42u);
    EXPECT_EQ(o.ignore_eos, 1);
    ASSERT_EQ(o.n_stop, 1); // the empty stop string stops nothing
    EXPECT_STREQ(o.stop[0], "END");
    EXPECT_TRUE(p.c->stream);
    EXPECT_TRUE(p.c->include_usage);

    Parsed d(Msgs("[{\"role\":\"user\",\"content\":\"x\"}]", "\"stop\":\"S\",\"top_p\":0,"));
    ASSERT_EQ(d.rc, 0) << d.e.message;
    vlm_ask_options_default(&o);
    o.temperature = 1;
    srv_chat_gen(d.c, 100, &o);
    EXPECT_EQ(o.max_new_tokens, 100);
    EXPECT_EQ(o.temperature, 0.0f); // top_p 0: only the most likely token
    EXPECT_EQ(o.n_stop, 1);
}

TEST(ServerChatRequest, RefusalsAre400WithTheParameter)
{
    const std::string ok = "[{\"role\":\"user\",\"content\":\"x\"}]";
    const struct {
        std::string body, param, code;
    } cases[] = {
        {"{", "", "invalid_json"},
        {"[]", "", "invalid_value"},
        {"{\"model\":\"m\"}", "messages", "missing_required_parameter"},
        {Msgs("[]"), "messages", "invalid_value"},
        {Msgs("{}"), "messages", "invalid_type"},
        {Msgs("[{\"role\":\"tool\",\"content\":\"x\"}]"), "messages[0].role", "invalid_value"},
        {Msgs("[{\"content\":\"x\"}]"), "messages[0].role", "invalid_type"},
        {Msgs("[{\"role\":\"user\"}]"), "messages[0].content", "missing_required_parameter"},
        {Msgs("[{\"role\":\"user\",\"content\":5}]"), "messages[0].content", "invalid_type"},
        {Msgs("[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"system\",\"content\":\"b\"}]"), "messages[1].role", "invalid_value"},
        {Msgs("[{\"role\":\"system\",\"content\":\"b\"}]"), "messages", "invalid_value"},
        {Msgs("[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]"), "messages[0].content[0]", "invalid_value"},
        {Msgs("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]"), "messages[0].content[0]", "invalid_type"},
        {Msgs("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"/etc/passwd\"}}]}]"),
         "messages[0].content[0]", "invalid_value"},
        {Msgs("[{\"role\":\"assistant\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]},"
              "{\"role\":\"user\",\"content\":\"x\"}]"),
         "messages[0].content[0]", "invalid_value"},
        {Msgs(ok, "\"n\":2,"), "n", "invalid_value"},
        {Msgs(ok, "\"max_tokens\":0,"), "max_tokens", "invalid_value"},
        {Msgs(ok, "\"max_tokens\":1.5,"), "max_tokens", "invalid_type"},
        {Msgs(ok, "\"temperature\":\"hot\","), "temperature", "invalid_type"},
        {Msgs(ok, "\"temperature\":2.5,"), "temperature", "invalid_value"},
        {Msgs(ok, "\"top_p\":1.5,"), "top_p", "invalid_value"},
        {Msgs(ok, "\"stop\":[1],"), "stop", "invalid_type"},
        {Msgs(ok, "\"stream\":\"yes\","), "stream", "invalid_type"},
        {Msgs(ok, "\"stream_options\":{\"include_usage\":true},"), "stream_options", "invalid_value"},
        {Msgs(ok, "\"frequency_penalty\":0.5,"), "frequency_penalty", "invalid_value"},
        {Msgs(ok, "\"logprobs\":true,"), "logprobs", "invalid_value"},
        {Msgs(ok, "\"tools\":[{\"type\":\"function\"}],"), "tools", "invalid_value"},
        {Msgs(ok, "\"response_format\":{\"type\":\"json_object\"},"), "response_format", "invalid_value"},
        {"{\"model\":5,\"messages\":" + ok + "}", "model", "invalid_type"},
    };
    for (const auto &c : cases) {
        SCOPED_TRACE(c.body);
        Parsed p(c.body);
        EXPECT_EQ(p.rc, -1);
        EXPECT_EQ(p.e.status, 400);
        EXPECT_EQ(std::string(p.e.param), c.param) << p.e.message;
        EXPECT_EQ(std::string(p.e.code), c.code) << p.e.message;
        EXPECT_STREQ(p.e.type, "invalid_request_error");
        EXPECT_GT(std::strlen(p.e.message), 5u);
    }
}

TEST(ServerChatRequest, MediaLimitAndFetchErrors)
{
    std::string parts;
    for (int i = 0; i < 17; i++) parts += std::string(i ? "," : "") + "{\"type\":\"image_url\",\"image_url\":\"data:image/png;base64,AAAA\"}";
    Parsed p(Msgs("[{\"role\":\"user\",\"content\":[" + parts + "]}]"));
    EXPECT_EQ(p.rc, -1);
    EXPECT_NE(std::strstr(p.e.message, "at most 16"), nullptr) << p.e.message;

    srv_media_options mo = {};
    vlm_url_policy_default(&mo.url);
    const struct {
        const char *url, *code;
    } bad[] = {{"data:image/png;base64,@@@@", "invalid_value"},
               {"data:image/png;base64,aGVsbG8gd29ybGQh", "invalid_value"},
               {"http://127.0.0.1:9/x.png", "image_url_refused"},
               {"http://169.254.169.254/latest", "image_url_refused"},
               {"file:///etc/passwd", "image_url_refused"}};
    for (const auto &b : bad) {
        SCOPED_TRACE(b.url);
        const std::string body = Msgs(std::string("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"") + b.url +
                                      "\"}}]}]");
        srv_chat *c = nullptr;
        srv_error e{};
        ASSERT_EQ(srv_chat_parse(body.data(), body.size(), nullptr, &c, &e), 0) << e.message;
        EXPECT_EQ(srv_chat_fetch(c, &mo, &e), -1);
        EXPECT_EQ(e.status, 400) << e.message;
        EXPECT_STREQ(e.code, b.code) << e.message;
        srv_chat_free(c);
    }
}

TEST(ServerChatRequest, FetchedImageIsHashedAndSized)
{
    const std::string path = std::string(VLM_TEST_DATA) + "/golden/inputs/case1_640x480_png/image.png";
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string bytes = ss.str();
    ASSERT_FALSE(bytes.empty());
    char want[65];
    srv_sha256_hex(bytes.data(), bytes.size(), want);
    srv_media_options mo = {};
    vlm_url_policy_default(&mo.url);
    mo.url.media_dir = VLM_TEST_DATA;
    const std::string body = Msgs("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"file://" + path +
                                  "\"}},{\"type\":\"text\",\"text\":\"Q\"}]}]");
    srv_chat *c = nullptr;
    srv_error e{};
    ASSERT_EQ(srv_chat_parse(body.data(), body.size(), nullptr, &c, &e), 0) << e.message;
    ASSERT_EQ(srv_chat_fetch(c, &mo, &e), 0) << e.message;
    ASSERT_EQ(srv_chat_build(c, &e), 0) << e.message;
    EXPECT_STREQ(c->media[0].sha256, want);
    EXPECT_EQ(c->media[0].width, 640);
    EXPECT_EQ(c->media[0].height, 480);
    EXPECT_EQ(c->vmsgs[0].images[0].n_bytes, bytes.size());
    EXPECT_EQ(c->vmsgs[0].images[0].path, nullptr);
    srv_chat_free(c);

    mo.max_pixels = 1000; // 640 x 480 is more
    ASSERT_EQ(srv_chat_parse(body.data(), body.size(), nullptr, &c, &e), 0);
    EXPECT_EQ(srv_chat_fetch(c, &mo, &e), -1);
    EXPECT_STREQ(e.code, "image_too_large");
    srv_chat_free(c);
}

TEST(ServerChatRequest, VideoUrlGivesEvenlySampledFrames)
{
    videotest::VideoSpec spec; // 30 frames of 64 x 48, 3 s
    const std::string path = videotest::WriteVideo(spec, "srv.mp4");
    ASSERT_FALSE(path.empty());
    srv_media_options mo = {};
    vlm_url_policy_default(&mo.url);
    mo.url.media_dir = "/tmp";
    mo.video_frames = 4;
    const std::string body = Msgs("[{\"role\":\"user\",\"content\":[{\"type\":\"video_url\",\"video_url\":{\"url\":\"file://" + path +
                                  "\"}},{\"type\":\"text\",\"text\":\"What happens?\"}]}]");
    srv_chat *c = nullptr;
    srv_error e{};
    ASSERT_EQ(srv_chat_parse(body.data(), body.size(), nullptr, &c, &e), 0) << e.message;
    ASSERT_EQ(srv_chat_fetch(c, &mo, &e), 0) << e.message;
    ASSERT_EQ(srv_chat_build(c, &e), 0) << e.message;
    EXPECT_EQ(c->media[0].n_frames, 4);
    EXPECT_STREQ(c->vmsgs[0].content, "<image>\n<image>\n<image>\n<image>\nWhat happens?");
    ASSERT_EQ(c->vmsgs[0].n_images, 4);
    for (int i = 0; i < 4; i++) {
        EXPECT_NE(c->vmsgs[0].images[i].rgb, nullptr);
        EXPECT_EQ(c->vmsgs[0].images[i].width, 64);
        EXPECT_EQ(c->vmsgs[0].images[i].height, 48);
    }
    // four different frames in time order: each frame is a flat grey that brightens with its index
    for (int i = 1; i < 4; i++) EXPECT_GT(c->vmsgs[0].images[i].rgb[0], c->vmsgs[0].images[i - 1].rgb[0] + 10) << i;
    srv_chat_free(c);
    unlink(path.c_str());
}

TEST(ServerResponse, ErrorAndCompletionShapes)
{
    srv_error e;
    srv_error_set(&e, 400, nullptr, nullptr, "n", "only %d", 1);
    char *s = srv_error_json(&e);
    EXPECT_STREQ(s, "{\"error\":{\"message\":\"only 1\",\"type\":\"invalid_request_error\",\"param\":\"n\",\"code\":null}}");
    free(s);
    EXPECT_EQ(srv_error_from_vlm(&e, VLM_ERR_BUSY, nullptr, "full"), -1);
    EXPECT_EQ(e.status, 429);
    srv_error_from_vlm(&e, VLM_ERR_LIMIT, nullptr, "too long");
    EXPECT_EQ(e.status, 400);
    srv_error_from_vlm(&e, VLM_ERR_IO, nullptr, "disk");
    EXPECT_EQ(e.status, 500);

    srv_resp_info info = {"chatcmpl-1", 1700000000, "tiny"};
    srv_usage u = {10, 3, 4};
    s = srv_completion_json(&info, "hi \"there\"", "stop", &u, nullptr);
    cJSON *j = cJSON_Parse(s);
    ASSERT_TRUE(j) << s;
    EXPECT_STREQ(cJSON_GetObjectItem(j, "object")->valuestring, "chat.completion");
    EXPECT_EQ(cJSON_GetObjectItem(j, "created")->valuedouble, 1700000000);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    EXPECT_STREQ(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content")->valuestring, "hi \"there\"");
    EXPECT_STREQ(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "stop");
    const cJSON *us = cJSON_GetObjectItem(j, "usage");
    EXPECT_EQ(cJSON_GetObjectItem(us, "total_tokens")->valuedouble, 13);
    EXPECT_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(us, "prompt_tokens_details"), "cached_tokens")->valuedouble, 4);
    cJSON_Delete(j);
    free(s);

    EXPECT_STREQ(srv_finish_name(VLM_FINISH_STOP, 0), "stop");
    EXPECT_STREQ(srv_finish_name(VLM_FINISH_LENGTH, 0), "length");
    EXPECT_STREQ(srv_finish_name(VLM_FINISH_CANCELLED, 1), "content_filter");
    EXPECT_EQ(srv_finish_name(VLM_FINISH_ERROR, 0), nullptr);
}

TEST(ServerResponse, ChunksAndSseFraming)
{
    srv_resp_info info = {"chatcmpl-2", 1, "tiny"};
    srv_buf b = {};
    char *c1 = srv_chunk_json(&info, "assistant", "", 0, nullptr, 0, nullptr, nullptr);
    char *c2 = srv_chunk_json(&info, nullptr, "abcdef", 3, nullptr, 1, nullptr, nullptr);
    srv_usage u = {5, 2, 0};
    char *c3 = srv_chunk_json(&info, nullptr, nullptr, 0, nullptr, 2, &u, nullptr);
    ASSERT_EQ(srv_sse_data(&b, c1), 0);
    ASSERT_EQ(srv_sse_data(&b, c2), 0);
    ASSERT_EQ(srv_sse_data(&b, c3), 0);
    const std::string sse(b.p, b.n);
    EXPECT_EQ(sse.rfind("data: {", 0), 0u);
    EXPECT_NE(sse.find("\"delta\":{\"role\":\"assistant\",\"content\":\"\"}"), std::string::npos) << sse;
    EXPECT_NE(sse.find("\"delta\":{\"content\":\"abc\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"),
              std::string::npos)
        << sse;
    EXPECT_NE(sse.find("\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7"), std::string::npos)
        << sse;
    EXPECT_EQ(std::string(c1).find("usage"), std::string::npos); // without include_usage: no usage member
    free(c1);
    free(c2);
    free(c3);
    srv_buf_free(&b);
}

TEST(ServerResponse, GroundingBoxesInPixels)
{
    const char *text = "<|ref|>cat<|/ref|><|det|>[[0,0,999,499]]<|/det|>";
    cJSON *boxes = (cJSON *)srv_boxes(text, 0, 640, 480);
    ASSERT_TRUE(boxes);
    char *s = cJSON_PrintUnformatted(boxes);
    EXPECT_STREQ(s, "[{\"label\":\"cat\",\"grid\":[0,0,999,499],\"image\":0,\"box\":[0,0,640,239]}]");
    free(s);
    cJSON_Delete(boxes);
    EXPECT_EQ(srv_boxes("no boxes here", 0, 640, 480), nullptr);
}

TEST(ServerMetrics, PrometheusTextExposition)
{
    srv_metrics m;
    srv_metrics_init(&m);
    srv_metrics_request(&m, "/v1/chat/completions", 200);
    srv_metrics_request(&m, "/v1/chat/completions", 200);
    srv_metrics_request(&m, "/v1/chat/completions", 429);
    srv_metrics_observe(&m, SRV_HIST_TTFT, 0.3);
    srv_metrics_observe(&m, SRV_HIST_TTFT, 1000);
    vlm_engine_stats st = {};
    st.requests_running = 2;
    st.kv_blocks_total = 10;
    st.kv_blocks_used = 5;
    st.image_hits = 1;
    st.image_misses = 3;
    st.n_moe_layers = 2;
    st.n_experts = 2;
    const int64_t experts[4] = {1, 2, 3, 4};
    srv_metrics_extra x = {&st, experts, 12345, 0, 1, 1};
    char *text = srv_metrics_render(&m, &x);
    const std::string t = text;
    free(text);
    EXPECT_NE(t.find("vlm_http_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 2\n"), std::string::npos);
    EXPECT_NE(t.find("vlm_http_requests_total{endpoint=\"/v1/chat/completions\",status=\"429\"} 1\n"), std::string::npos);
    EXPECT_NE(t.find("# TYPE vlm_time_to_first_token_seconds histogram\n"), std::string::npos);
    EXPECT_NE(t.find("vlm_time_to_first_token_seconds_bucket{le=\"0.25\"} 0\n"), std::string::npos);
    EXPECT_NE(t.find("vlm_time_to_first_token_seconds_bucket{le=\"0.5\"} 1\n"), std::string::npos);
    EXPECT_NE(t.find("vlm_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos);
    EXPECT_NE(t.find("vlm_time_to_first_token_seconds_count 2\n"), std::string::npos);
    EXPECT_NE(t.find("vlm_kv_cache_usage_ratio 0.5\n"), std::string::npos);
    EXPECT_NE(t.find("vlm_image_cache_hit_ratio 0.25\n"), std::string::npos);
    EXPECT_NE(t.find("vlm_requests_running 2\n"), std::string::npos);
    EXPECT_NE(t.find("process_resident_memory_bytes 12345\n"), std::string::npos);
    EXPECT_NE(t.find("vlm_expert_routed_tokens_total{layer=\"1\",expert=\"0\"} 3\n"), std::string::npos);
    // every line: a comment or "name[{labels}] value"
    std::istringstream lines(t);
    for (std::string l; std::getline(lines, l);) {
        if (l[0] == '#') continue;
        EXPECT_NE(l.find(' '), std::string::npos) << l;
        EXPECT_TRUE(isalpha((unsigned char)l[0])) << l;
    }
    srv_metrics_destroy(&m);
    EXPECT_GT(srv_rss_bytes(), 0);
}

TEST(ServerPolicy, ApiKeys)
{
    srv_keys k = {};
    const char *id = nullptr;
    EXPECT_EQ(srv_keys_check(&k, nullptr, &id), 1); // no keys: open
    ASSERT_EQ(srv_keys_add(&k, "sk-abc"), VLM_OK);
    ASSERT_EQ(srv_keys_add(&k, "sk-second"), VLM_OK);
    EXPECT_EQ(srv_keys_check(&k, nullptr, &id), 0);
    EXPECT_EQ(srv_keys_check(&k, "Bearer sk-ab", &id), 0);
    EXPECT_EQ(srv_keys_check(&k, "Bearer sk-abcd", &id), 0);
    EXPECT_EQ(srv_keys_check(&k, "Basic sk-abc", &id), 0);
    EXPECT_EQ(srv_keys_check(&k, "sk-abc", &id), 0);
    ASSERT_EQ(srv_keys_check(&k, "Bearer sk-second", &id), 1);
    char hex[65];
    srv_sha256_hex("sk-second", 9, hex);
    EXPECT_EQ(std::string(id), std::string(hex, 16)); // a hash prefix, never the key
    EXPECT_EQ(srv_keys_check(&k, "bearer  sk-abc ", &id), 1);
    srv_keys_free(&k);

    const std::string path = "/tmp/vlm_keys_" + std::to_string(getpid());
    std::ofstream(path) << "# keys\n\n  sk-one  \nsk-two\n";
    ASSERT_EQ(srv_keys_load_file(&k, path.c_str()), VLM_OK);
    EXPECT_EQ(k.n, 2);
    EXPECT_EQ(srv_keys_check(&k, "Bearer sk-one", &id), 1);
    srv_keys_free(&k);
    std::ofstream(path) << "# none\n";
    EXPECT_EQ(srv_keys_load_file(&k, path.c_str()), VLM_ERR_INVALID);
    srv_keys_free(&k);
    remove(path.c_str());
}

TEST(ServerPolicy, BlockList)
{
    const std::string path = "/tmp/vlm_block_" + std::to_string(getpid());
    std::ofstream(path) << "# words\n(?i)forbidden\\s+fruit\n\nsecret-[0-9]+\n";
    srv_blocklist b = {};
    ASSERT_EQ(srv_blocklist_load(&b, path.c_str()), VLM_OK) << vlm_last_error();
    EXPECT_EQ(b.n, 2);
    EXPECT_EQ(srv_blocklist_match(&b, "the FORBIDDEN  fruit", 20), 0);
    EXPECT_EQ(srv_blocklist_match(&b, "a secret-42 here", 16), 1);
    EXPECT_EQ(srv_blocklist_match(&b, "secret-x", 8), -1);
    EXPECT_EQ(srv_blocklist_match(&b, "\xff\xfe invalid utf-8 secret-1", 26), 1);
    // catastrophic backtracking hits PCRE2's limit and counts as a match (fail closed)
    ASSERT_EQ(srv_blocklist_add(&b, "(a+)+$"), VLM_OK);
    const std::string evil = std::string(40, 'a') + "!";
    EXPECT_EQ(srv_blocklist_match(&b, evil.data(), evil.size()), 2);
    srv_blocklist_free(&b);
    std::ofstream(path) << "ok\n(unclosed\n";
    EXPECT_EQ(srv_blocklist_load(&b, path.c_str()), VLM_ERR_INVALID);
    EXPECT_NE(std::strstr(vlm_last_error(), "line 2"), nullptr) << vlm_last_error();
    srv_blocklist_free(&b);
    remove(path.c_str());
}

TEST(ServerPolicy, AuditLogLines)
{
    const std::string path = "/tmp/vlm_audit_" + std::to_string(getpid());
    remove(path.c_str());
    for (int content = 0; content < 2; content++) {
        srv_audit *a = nullptr;
        ASSERT_EQ(srv_audit_open(path.c_str(), content, &a), VLM_OK);
        const char *hashes[] = {"ab12"};
        const char *roles[] = {"user"}, *texts[] = {"what is it?"};
        srv_audit_record r = {};
        r.time = 1700000000.5;
        r.request_id = "chatcmpl-x";
        r.key_id = "0123456789abcdef";
        r.client = "127.0.0.1";
        r.endpoint = "/v1/chat/completions";
        r.status = 200;
        r.n_images = 1;
        r.image_sha256 = hashes;
        r.n_hashes = 1;
        r.prompt_tokens = 10;
        r.completion_tokens = 2;
        r.finish = "stop";
        r.latency_ms = 12.5;
        r.ttft_ms = -1;
        r.roles = roles;
        r.texts = texts;
        r.n_texts = 1;
        r.answer = "a cat";
        srv_audit_write(a, &r);
        srv_audit_close(a);
    }
    std::ifstream f(path);
    std::string l1, l2;
    std::getline(f, l1);
    std::getline(f, l2);
    EXPECT_NE(l1.find("\"time\":\"2023-11-14T22:13:20.500Z\""), std::string::npos) << l1;
    EXPECT_NE(l1.find("\"key_id\":\"0123456789abcdef\""), std::string::npos) << l1;
    EXPECT_NE(l1.find("\"image_sha256\":[\"ab12\"]"), std::string::npos) << l1;
    EXPECT_NE(l1.find("\"ttft_ms\":null"), std::string::npos) << l1;
    EXPECT_EQ(l1.find("what is it"), std::string::npos) << l1; // no content without --audit-content
    EXPECT_EQ(l1.find("a cat"), std::string::npos) << l1;
    EXPECT_NE(l2.find("\"messages\":[{\"role\":\"user\",\"content\":\"what is it?\"}]"), std::string::npos) << l2;
    EXPECT_NE(l2.find("\"answer\":\"a cat\""), std::string::npos) << l2;
    remove(path.c_str());
}

TEST(ServerPolicy, Sha256Vectors)
{
    char h[65];
    srv_sha256_hex("", 0, h);
    EXPECT_STREQ(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    srv_sha256_hex("abc", 3, h);
    EXPECT_STREQ(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const std::string m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    srv_sha256_hex(m.data(), m.size(), h);
    EXPECT_STREQ(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const std::string a(1000000, 'a');
    srv_sha256_hex(a.data(), a.size(), h);
    EXPECT_STREQ(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
