// `vlm serve` end to end: the real program on the golden tiny-mha checkpoint, on a free loopback port, driven
// by real clients (tests/server/client_checks.py: the official openai package, urllib, prometheus_client's
// parser) and curl for the raw SSE framing. Greedy answers must equal the golden ids' text and `vlm ask`'s.
#include <gtest/gtest.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "golden_util.h"

namespace {

const char *kCase = "case1_640x480_png";

std::string Image() { return golden::input_dir(kCase) + "/image.png"; }
std::string Script() { return golden::data_dir() + "/../server/client_checks.py"; }
std::string Tmp(const std::string &name) { return "/tmp/vlm_srv_" + std::to_string(getpid()) + "_" + name; }

std::string Slurp(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// A `vlm serve` child process on a free port (--port 0; the port is read from its "listening on" line).
struct Server {
    pid_t pid = -1;
    int port = 0;
    int out_fd = -1;
    std::string err_path;

    bool Start(const std::vector<std::string> &extra, std::string *why)
    {
        err_path = Tmp("serve_err_" + std::to_string(reinterpret_cast<uintptr_t>(this)));
        std::vector<std::string> args = {golden::vlm_bin(), "serve", "-m", golden::model_dir("tiny-mha"), "--port", "0"};
        args.insert(args.end(), extra.begin(), extra.end());
        int p[2];
        if (pipe(p)) return false;
        pid = fork();
        if (pid == 0) {
            dup2(p[1], 1);
            int e = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (e >= 0) dup2(e, 2);
            close(p[0]);
            std::vector<char *> av;
            for (auto &a : args) av.push_back(const_cast<char *>(a.c_str()));
            av.push_back(nullptr);
            execv(av[0], av.data());
            _exit(127);
        }
        close(p[1]);
        out_fd = p[0];
        std::string line;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
        while (std::chrono::steady_clock::now() < deadline) {
            struct pollfd pf = {out_fd, POLLIN, 0};
            if (poll(&pf, 1, 200) <= 0) continue;
            char c;
            if (read(out_fd, &c, 1) != 1) break;
            if (c != '\n') {
                line += c;
                continue;
            }
            size_t at = line.rfind(':');
            if (line.rfind("listening on http://", 0) == 0 && at != std::string::npos) {
                port = std::atoi(line.c_str() + at + 1);
                return port > 0;
            }
            line.clear();
        }
        *why = "no 'listening on' line; stderr: " + Slurp(err_path);
        return false;
    }
    std::string Base() const { return "http://127.0.0.1:" + std::to_string(port); }
    // Sends sig and returns the exit status (-1 if it did not exit within the timeout, then killed).
    int Stop(int sig = SIGTERM, int timeout_s = 60)
    {
        if (pid <= 0) return -1;
        kill(pid, sig);
        int st = 0;
        for (int i = 0; i < timeout_s * 20; i++) {
            if (waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                close(out_fd);
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
            usleep(50000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        pid = -1;
        close(out_fd);
        return -1;
    }
    ~Server()
    {
        if (pid > 0) Stop(SIGKILL, 5);
        if (!err_path.empty()) remove(err_path.c_str());
    }
};

bool HavePythonClients()
{
    std::string out;
    return golden::run("python3 -c 'import openai, prometheus_client'", &out) == 0;
}

// `vlm ask`'s greedy answer to case 1 (16 tokens), the text every server answer is compared with.
std::string AskText()
{
    std::string out;
    const std::string cmd = golden::vlm_bin() + " ask -m " + golden::model_dir("tiny-mha") + " -i " + Image() +
                            " --max-tokens 16 --ignore-eos --json \"Describe this image.\" 2>/dev/null";
    EXPECT_EQ(golden::run(cmd, &out), 0) << out;
    cJSON *j = cJSON_Parse(out.c_str());
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
    std::string text = cJSON_IsString(t) ? t->valuestring : "";
    cJSON_Delete(j);
    return text;
}

class ServerE2E : public ::testing::Test {
  protected:
    static Server *server_;
    static std::string expect_path_;
    static const char *kKey;

    static void SetUpTestSuite()
    {
        expect_path_ = Tmp("expect");
        std::ofstream(expect_path_, std::ios::binary) << AskText();
        server_ = new Server;
        std::string why;
        if (!server_->Start({"--api-key", kKey, "--max-body-mb", "2"}, &why)) {
            ADD_FAILURE() << why;
            delete server_;
            server_ = nullptr;
        }
    }
    static void TearDownTestSuite()
    {
        if (server_) {
            EXPECT_EQ(server_->Stop(), 0);
        }
        delete server_;
        server_ = nullptr;
        remove(expect_path_.c_str());
    }
    void SetUp() override
    {
        if (!HavePythonClients()) GTEST_SKIP() << "python3 with openai and prometheus_client is missing (make deps installs them)";
        ASSERT_NE(server_, nullptr);
    }
    // Runs one check of client_checks.py against a server; the script's output is the failure message.
    static void Check(const std::string &check, const Server &s, const std::string &key = kKey, const std::string &more = "")
    {
        std::string out;
        const std::string cmd = "python3 " + Script() + " " + check + " --base " + s.Base() + " --model tiny-mha --image " + Image() +
                                " --expect " + expect_path_ + (key.empty() ? "" : " --key " + key) + " " + more;
        EXPECT_EQ(golden::run(cmd, &out), 0) << cmd << "\n" << out << "\nserver stderr:\n" << Slurp(s.err_path);
    }
};
Server *ServerE2E::server_ = nullptr;
std::string ServerE2E::expect_path_;
const char *ServerE2E::kKey = "sk-test-0123456789";

TEST_F(ServerE2E, AskTextIsTheGoldenGreedyAnswer)
{
    // the reference every server answer is held to: `vlm ask` equals the official model's greedy ids
    golden::File gold(golden::model_dir("tiny-mha") + "/" + kCase + ".safetensors");
    EXPECT_EQ(gold.ints("generated_ids").size(), 16u);
    EXPECT_FALSE(Slurp(expect_path_).empty());
}

TEST_F(ServerE2E, ModelsListsTheServedModel) { Check("models", *server_); }
TEST_F(ServerE2E, NonStreamedAnswerEqualsGreedyGolden) { Check("chat", *server_); }
TEST_F(ServerE2E, StreamedAnswerEqualsGreedyGolden) { Check("stream", *server_); }
TEST_F(ServerE2E, MultiTurnReusesThePrefix) { Check("multiturn", *server_); }
TEST_F(ServerE2E, BadKeyIs401) { Check("bad_key", *server_); }
TEST_F(ServerE2E, ErrorsHaveOpenAIShapeAndStatus) { Check("errors", *server_, kKey, "--max-body-mb 2"); }
TEST_F(ServerE2E, PrivateUrlRefusedWithoutAllowPrivate) { Check("http_refused", *server_); }
TEST_F(ServerE2E, MetricsParseWithPrometheusClient) { Check("metrics", *server_); }

TEST_F(ServerE2E, HttpImageUrlWithAllowPrivate)
{
    Server s;
    std::string why;
    ASSERT_TRUE(s.Start({"--allow-private"}, &why)) << why;
    Check("http_image", s, "");
    EXPECT_EQ(s.Stop(), 0);
}

TEST_F(ServerE2E, QueueFullIs429WithRetryAfter)
{
    Server s;
    std::string why;
    ASSERT_TRUE(s.Start({"--max-running", "1", "--max-waiting", "1"}, &why)) << why;
    Check("busy", s, "");
    EXPECT_EQ(s.Stop(), 0);
}

// Raw SSE through curl: "data: {json}\n\n" events, chunk objects, deltas adding up to the golden text,
// then "data: [DONE]\n\n" last.
std::string CurlBody(bool stream, const std::string &extra = "")
{
    const std::string img = Slurp(Image());
    static const char *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string enc;
    size_t i = 0;
    for (; i + 2 < img.size(); i += 3) {
        unsigned v = (unsigned char)img[i] << 16 | (unsigned char)img[i + 1] << 8 | (unsigned char)img[i + 2];
        enc += b64[v >> 18];
        enc += b64[(v >> 12) & 63];
        enc += b64[(v >> 6) & 63];
        enc += b64[v & 63];
    }
    if (i < img.size()) {
        unsigned v = (unsigned char)img[i] << 16 | (i + 1 < img.size() ? (unsigned char)img[i + 1] << 8 : 0);
        enc += b64[v >> 18];
        enc += b64[(v >> 12) & 63];
        enc += i + 1 < img.size() ? b64[(v >> 6) & 63] : '=';
        enc += '=';
    }
    return std::string("{\"model\":\"tiny-mha\",\"max_tokens\":16,\"ignore_eos\":true,") + (stream ? "\"stream\":true," : "") + extra +
           "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64," + enc +
           "\"}},{\"type\":\"text\",\"text\":\"Describe this image.\"}]}]}";
}

struct Sse {
    std::vector<std::string> events; // the data of each event, in order
    bool framed = true;              // every event "data: ...\n\n", nothing else
};

Sse ParseSse(const std::string &body)
{
    Sse s;
    size_t at = 0;
    while (at < body.size()) {
        size_t end = body.find("\n\n", at);
        if (end != std::string::npos && body[at] == ':') { // a comment (keep-alive)
            at = end + 2;
            continue;
        }
        if (end == std::string::npos || body.compare(at, 6, "data: ") != 0) {
            s.framed = false;
            break;
        }
        s.events.push_back(body.substr(at + 6, end - at - 6));
        at = end + 2;
    }
    return s;
}

TEST_F(ServerE2E, CurlSeeRawSseFraming)
{
    const std::string body_path = Tmp("body.json"), out_path = Tmp("sse.txt");
    std::ofstream(body_path, std::ios::binary) << CurlBody(true, "\"stream_options\":{\"include_usage\":true},");
    std::string out;
    const std::string cmd = "curl -sS -N -D " + Tmp("hdr") + " -o " + out_path + " -H 'Authorization: Bearer " + kKey +
                            "' -H 'Content-Type: application/json' --data-binary @" + body_path + " " + server_->Base() +
                            "/v1/chat/completions";
    ASSERT_EQ(golden::run(cmd, &out), 0) << out;
    const std::string headers = Slurp(Tmp("hdr"));
    EXPECT_NE(headers.find("HTTP/1.1 200"), std::string::npos) << headers;
    EXPECT_NE(headers.find("Content-Type: text/event-stream"), std::string::npos) << headers;
    const Sse s = ParseSse(Slurp(out_path));
    EXPECT_TRUE(s.framed) << Slurp(out_path);
    ASSERT_GE(s.events.size(), 4u);
    EXPECT_EQ(s.events.back(), "[DONE]");
    std::string text, finish, id;
    int usage_chunks = 0;
    for (size_t i = 0; i + 1 < s.events.size(); i++) {
        cJSON *j = cJSON_Parse(s.events[i].c_str());
        ASSERT_TRUE(j) << s.events[i];
        EXPECT_STREQ(cJSON_GetObjectItem(j, "object")->valuestring, "chat.completion.chunk");
        const std::string this_id = cJSON_GetObjectItem(j, "id")->valuestring;
        if (id.empty()) id = this_id;
        EXPECT_EQ(this_id, id); // one id for the whole stream
        const cJSON *ch = cJSON_GetObjectItem(j, "choices");
        if (cJSON_GetArraySize(ch) == 0) {
            usage_chunks++;
            EXPECT_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "completion_tokens")->valuedouble, 16);
        } else {
            const cJSON *c0 = cJSON_GetArrayItem(ch, 0);
            const cJSON *content = cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "delta"), "content");
            if (cJSON_IsString(content)) text += content->valuestring;
            const cJSON *fr = cJSON_GetObjectItem(c0, "finish_reason");
            if (cJSON_IsString(fr)) finish = fr->valuestring;
            if (i == 0) {
                EXPECT_STREQ(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "delta"), "role")->valuestring, "assistant");
            }
        }
        cJSON_Delete(j);
    }
    EXPECT_EQ(text, Slurp(expect_path_));
    EXPECT_EQ(finish, "length");
    EXPECT_EQ(usage_chunks, 1);
    remove(body_path.c_str());
    remove(out_path.c_str());
    remove(Tmp("hdr").c_str());
}

// SIGTERM while a stream runs: /health turns 503 or the port closes, the stream still ends normally, exit 0.
TEST_F(ServerE2E, SigtermDrainsRunningStreamsAndExitsZero)
{
    Server s;
    std::string why;
    ASSERT_TRUE(s.Start({"--drain-seconds", "60"}, &why)) << why;
    const std::string body_path = Tmp("drain.json"), out_path = Tmp("drain.txt");
    std::string body = CurlBody(true);
    body.replace(body.find("\"max_tokens\":16"), 15, "\"max_tokens\":400");
    std::ofstream(body_path, std::ios::binary) << body;
    const std::string cmd = "curl -sS -N -o " + out_path + " --data-binary @" + body_path + " " + s.Base() + "/v1/chat/completions";
    std::string curl_out;
    std::thread client([&] { golden::run(cmd, &curl_out); });
    // wait until the answer is streaming
    for (int i = 0; i < 600 && Slurp(out_path).find("\"content\":\"+") == std::string::npos &&
                    Slurp(out_path).find("[DONE]") == std::string::npos;
         i++)
        usleep(20000);
    kill(s.pid, SIGTERM);
    usleep(200000);
    std::string health;
    golden::run("curl -s -o /dev/null -w '%{http_code}' " + s.Base() + "/health", &health);
    EXPECT_TRUE(health == "503" || health == "000") << health; // draining, or no longer listening
    client.join();
    const Sse sse = ParseSse(Slurp(out_path));
    ASSERT_FALSE(sse.events.empty());
    EXPECT_EQ(sse.events.back(), "[DONE]");
    EXPECT_NE(Slurp(out_path).find("\"finish_reason\":\"length\""), std::string::npos) << Slurp(out_path);
    EXPECT_EQ(s.Stop(SIGTERM), 0) << Slurp(s.err_path);
    EXPECT_NE(Slurp(s.err_path).find("draining"), std::string::npos);
    remove(body_path.c_str());
    remove(out_path.c_str());
}

// A stream that waits in the queue longer than --idle-timeout still gets its answer: SSE keep-alive comments
// keep the connection from counting as idle.
TEST_F(ServerE2E, QueuedStreamOutlivesTheIdleTimeout)
{
    Server s;
    std::string why;
    ASSERT_TRUE(s.Start({"--idle-timeout", "1", "--max-running", "1"}, &why)) << why;
    const std::string body = "{\"max_tokens\":300,\"ignore_eos\":true,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Count.\"}]}";
    const std::string a = Tmp("idle_a.txt"), b = Tmp("idle_b.txt");
    const std::string curl = "curl -sS -N " + s.Base() + "/v1/chat/completions -d '" + body + "' -o ";
    std::string out_a, out_b;
    std::thread first([&] { golden::run(curl + a, &out_a); });
    usleep(300000);
    golden::run(curl + b, &out_b); // waits for the first one (one running sequence), then streams
    first.join();
    for (const auto &p : {a, b}) {
        const std::string got = Slurp(p);
        EXPECT_NE(got.find("\"finish_reason\":\"length\""), std::string::npos) << got.substr(0, 600);
        const Sse sse = ParseSse(got);
        EXPECT_TRUE(sse.framed);
        ASSERT_FALSE(sse.events.empty());
        EXPECT_EQ(sse.events.back(), "[DONE]");
        remove(p.c_str());
    }
    EXPECT_EQ(s.Stop(), 0);
}

// --drain-seconds 0: what still runs is cancelled; the stream ends with an error event and [DONE]; exit 0.
TEST_F(ServerE2E, DrainDeadlineCancelsWhatIsLeft)
{
    Server s;
    std::string why;
    ASSERT_TRUE(s.Start({"--drain-seconds", "0"}, &why)) << why;
    const std::string body_path = Tmp("cancel.json"), out_path = Tmp("cancel.txt");
    std::string body = CurlBody(true);
    body.replace(body.find("\"max_tokens\":16"), 15, "\"max_tokens\":3000");
    std::ofstream(body_path, std::ios::binary) << body;
    const std::string cmd = "curl -sS -N -o " + out_path + " --data-binary @" + body_path + " " + s.Base() + "/v1/chat/completions";
    std::string curl_out;
    std::thread client([&] { golden::run(cmd, &curl_out); });
    for (int i = 0; i < 600 && Slurp(out_path).find("\"content\":\"+") == std::string::npos; i++) usleep(20000);
    kill(s.pid, SIGTERM);
    client.join();
    const std::string got = Slurp(out_path);
    EXPECT_NE(got.find("shutting_down"), std::string::npos) << got;
    EXPECT_EQ(ParseSse(got).events.back(), "[DONE]");
    EXPECT_EQ(s.Stop(SIGTERM), 0) << Slurp(s.err_path);
    remove(body_path.c_str());
    remove(out_path.c_str());
}

}  // namespace

namespace {

std::string Sha256Hex(const std::string &s)
{
    std::string out;
    golden::run("printf %s '" + s + "' | sha256sum | cut -c1-64", &out);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
}

// --block-list on the prompt (400) and on the answer (finish_reason content_filter, streamed or not), and the
// --audit-log lines of those requests (key id a hash, image hashes, tokens, finish; text with --audit-content).
TEST_F(ServerE2E, BlockListAndAuditLog)
{
    const std::string block = Tmp("block.txt"), audit = Tmp("audit.jsonl"), keys = Tmp("keys.txt");
    // the tiny model's greedy answer to case 1 is "+++++": three of them in a row are blocked
    std::ofstream(block) << "# test patterns\n(?i)forbidden\\s+word\n\\+\\+\\+\n";
    std::ofstream(keys) << "sk-audit-one\nsk-audit-two\n";
    remove(audit.c_str());
    Server s;
    std::string why;
    ASSERT_TRUE(s.Start({"--block-list", block, "--audit-log", audit, "--audit-content", "--api-key-file", keys}, &why)) << why;
    const std::string auth = " -H 'Authorization: Bearer sk-audit-two' ";
    std::string out;
    golden::run("curl -sS -w ' %{http_code}'" + auth + s.Base() +
                    "/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"say the FORBIDDEN word\"}]}'",
                &out);
    EXPECT_NE(out.find("\"code\":\"content_filter\""), std::string::npos) << out;
    EXPECT_NE(out.find(" 400"), std::string::npos) << out;

    const std::string body_path = Tmp("block.json");
    std::ofstream(body_path, std::ios::binary) << CurlBody(false);
    golden::run("curl -sS" + auth + "--data-binary @" + body_path + " " + s.Base() + "/v1/chat/completions", &out);
    cJSON *j = cJSON_Parse(out.c_str());
    ASSERT_TRUE(j) << out;
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    EXPECT_STREQ(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "content_filter") << out;
    const std::string content = cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content")->valuestring;
    EXPECT_EQ(content.find("+++"), std::string::npos) << content; // the answer stops before the match
    cJSON_Delete(j);

    std::ofstream(body_path, std::ios::binary) << CurlBody(true);
    golden::run("curl -sS -N" + auth + "--data-binary @" + body_path + " " + s.Base() + "/v1/chat/completions", &out);
    EXPECT_NE(out.find("\"finish_reason\":\"content_filter\""), std::string::npos) << out;
    EXPECT_EQ(ParseSse(out).events.back(), "[DONE]");
    EXPECT_EQ(s.Stop(), 0);

    // the audit log: one line per chat request
    std::ifstream f(audit);
    std::vector<std::string> lines;
    for (std::string l; std::getline(f, l);) lines.push_back(l);
    ASSERT_EQ(lines.size(), 3u) << Slurp(audit);
    const std::string key_id = Sha256Hex("sk-audit-two").substr(0, 16);
    std::string img_hash;
    golden::run("sha256sum " + Image() + " | cut -c1-64", &img_hash);
    img_hash.resize(64);
    for (size_t i = 0; i < lines.size(); i++) {
        SCOPED_TRACE(lines[i]);
        EXPECT_EQ(lines[i].find("sk-audit"), std::string::npos); // never the key itself
        cJSON *a = cJSON_Parse(lines[i].c_str());
        ASSERT_TRUE(a);
        EXPECT_STREQ(cJSON_GetObjectItem(a, "key_id")->valuestring, key_id.c_str());
        EXPECT_STREQ(cJSON_GetObjectItem(a, "client")->valuestring, "127.0.0.1");
        EXPECT_TRUE(cJSON_IsString(cJSON_GetObjectItem(a, "request_id")));
        EXPECT_TRUE(cJSON_IsNumber(cJSON_GetObjectItem(a, "latency_ms")));
        EXPECT_TRUE(cJSON_IsArray(cJSON_GetObjectItem(a, "messages")));
        if (i == 0) {
            EXPECT_EQ(cJSON_GetObjectItem(a, "status")->valuedouble, 400);
            EXPECT_EQ(cJSON_GetObjectItem(a, "images")->valuedouble, 0);
        } else {
            EXPECT_EQ(cJSON_GetObjectItem(a, "status")->valuedouble, 200);
            EXPECT_EQ(cJSON_GetObjectItem(a, "images")->valuedouble, 1);
            EXPECT_STREQ(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "image_sha256"), 0)->valuestring, img_hash.c_str());
            EXPECT_STREQ(cJSON_GetObjectItem(a, "finish_reason")->valuestring, "content_filter");
            EXPECT_GT(cJSON_GetObjectItem(a, "prompt_tokens")->valuedouble, 1000);
            EXPECT_TRUE(cJSON_IsString(cJSON_GetObjectItem(a, "answer")));
        }
        cJSON_Delete(a);
    }
    for (const auto &p : {block, audit, keys, body_path}) remove(p.c_str());
}

}  // namespace

namespace {

// A short version of bench/soak_server.py: 8 clients for 15 s, valid requests mixed with hostile ones
// (malformed JSON, 50 MB bodies, bad base64, pixel bombs, refused URLs, mid-stream disconnects, slow readers).
// No valid request fails, the server stays up, the running count is back to 0, SIGTERM exits 0.
TEST(ServerSoak, ShortMixedLoad)
{
    std::string out;
    const std::string cmd = "python3 " + golden::data_dir() + "/../../bench/soak_server.py --spawn " + golden::vlm_bin() +
                            " --model-dir " + golden::model_dir("tiny-mha") + " --image " + golden::input_dir("case1_640x480_png") +
                            "/image.png --clients 8 --duration 15 --warmup 5 --max-tokens 16 --slow-bytes 5";
    EXPECT_EQ(golden::run(cmd, &out), 0) << out;
    EXPECT_NE(out.find("\"valid_failed\": 0"), std::string::npos) << out;
    EXPECT_NE(out.find("server exit status after SIGTERM: 0"), std::string::npos) << out;
}

}  // namespace
