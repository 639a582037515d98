// `vlm ask` as a chat (no question: questions and /commands on stdin, through a
// pipe as a script would) and its --system, --stop, --json boxes and --draw
// options, on the tiny-mha golden checkpoint. The expected answers come from
// the library run on the same conversation (the chat template with earlier
// turns and eos, greedy decoding), independently of the program.
#include <cjson/cJSON.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "golden_util.h"

extern "C" {
#include "fusion/model.h"
#include "text/detok_stream.h"
}

namespace {

struct Result {
    int status;
    std::string out, err;
};

std::string slurp(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

std::string tmp(const std::string &name) { return "/tmp/vlm_chat_" + std::to_string(getpid()) + "_" + name; }

// Runs `vlm ask <args>` with `input` on stdin (a file, so not a terminal); stdout and stderr apart.
Result ask(const std::string &args, const std::string &input = "")
{
    std::string in = tmp("in"), out = tmp("out"), err = tmp("err");
    std::ofstream(in, std::ios::binary) << input;
    std::string cmd = golden::vlm_bin() + " ask -m " + golden::model_dir("tiny-mha") + " " + args + " < " + in + " > " +
                      out + " 2> " + err;
    int st = std::system(cmd.c_str());
    Result r{WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(out), slurp(err)};
    remove(in.c_str());
    remove(out.c_str());
    remove(err.c_str());
    return r;
}

std::vector<std::string> lines(const std::string &s)
{
    std::vector<std::string> v;
    std::stringstream ss(s);
    for (std::string l; std::getline(ss, l);) v.push_back(l);
    return v;
}

struct Answer {
    std::vector<int32_t> ids;
    std::string text, stop_reason;
    int64_t prompt_tokens = -1, image_tokens = -1;
    bool has_boxes = false;
};

Answer parse_json(const std::string &line)
{
    Answer a;
    cJSON *j = cJSON_Parse(line.c_str());
    EXPECT_TRUE(j) << line;
    if (!j) return a;
    const cJSON *ids = cJSON_GetObjectItem(j, "token_ids"), *text = cJSON_GetObjectItem(j, "text"),
                *reason = cJSON_GetObjectItem(j, "stop_reason"), *t = cJSON_GetObjectItem(j, "timings"),
                *boxes = cJSON_GetObjectItem(j, "boxes");
    for (const cJSON *e = ids ? ids->child : nullptr; e; e = e->next) a.ids.push_back((int32_t)e->valuedouble);
    if (cJSON_IsString(text)) a.text = text->valuestring;
    if (cJSON_IsString(reason)) a.stop_reason = reason->valuestring;
    if (t) {
        a.prompt_tokens = (int64_t)cJSON_GetObjectItem(t, "prompt_tokens")->valuedouble;
        a.image_tokens = (int64_t)cJSON_GetObjectItem(t, "image_tokens")->valuedouble;
    }
    a.has_boxes = cJSON_IsArray(boxes) && cJSON_GetArraySize(boxes) == 0;
    cJSON_Delete(j);
    return a;
}

// ---- the library side

vlm_model *model()
{
    static vlm_model *m = [] {
        vlm_model *p = nullptr;
        EXPECT_EQ(vlm_model_load(golden::model_dir("tiny-mha").c_str(), nullptr, &p), VLM_OK) << vlm_last_error();
        return p;
    }();
    return m;
}

std::string image_path() { return golden::input_dir("case3_200x150_jpg") + "/image.jpg"; }

struct Turn {
    std::vector<int32_t> ids;
    int64_t prompt_tokens;
};

// Greedy answer of the library to a conversation (role, content) ending with an empty assistant message.
Turn library(const std::vector<std::pair<std::string, std::string>> &conv, int n_images, int max_tokens,
             int ignore_eos = 0)
{
    std::vector<vlm_chat_message> msgs;
    for (auto &m : conv) msgs.push_back({m.first.c_str(), m.second.c_str()});
    std::vector<vlm_image> imgs((size_t)n_images);
    for (auto &im : imgs) EXPECT_EQ(vlm_image_decode_file(image_path().c_str(), nullptr, &im), VLM_OK);
    vlm_request req;
    Turn t{{}, -1};
    EXPECT_EQ(vlm_model_build_request(model(), msgs.data(), (int)msgs.size(), imgs.data(), n_images, &req), VLM_OK)
        << vlm_last_error();
    vlm_generate_options go = {};
    go.max_new_tokens = max_tokens;
    go.ignore_eos = ignore_eos;
    vlm_generation g;
    EXPECT_EQ(vlm_model_generate(model(), &req, &go, &g), VLM_OK) << vlm_last_error();
    t.ids.assign(g.ids, g.ids + g.n_ids);
    t.prompt_tokens = req.n_ids;
    vlm_generation_free(&g);
    vlm_request_free(&req);
    for (auto &im : imgs) vlm_image_free(&im);
    return t;
}

// What the detokenizer makes of ids (an eos at the end is not part of the answer): with the special
// tokens, as the conversation keeps the answer, or without, as it is shown.
std::string detok(const std::vector<int32_t> &ids, int print_special)
{
    const vlm_tokenizer *tok = vlm_model_tokenizer(model());
    vlm_detok_stream *s;
    EXPECT_EQ(vlm_detok_stream_new(tok, print_special, &s), VLM_OK);
    std::string out;
    const char *p;
    size_t n;
    for (size_t i = 0; i < ids.size(); i++) {
        if (i + 1 == ids.size() && ids[i] == vlm_tokenizer_special(tok)->eos) break;
        EXPECT_EQ(vlm_detok_stream_push(s, ids[i], &p, &n), VLM_OK);
        out.append(p, n);
    }
    vlm_detok_stream_flush(s, &p, &n);
    out.append(p, n);
    vlm_detok_stream_free(s);
    return out;
}

const std::string kQ1 = "Describe this image.", kQ2 = "What else is there?";

// The first answer about the image.
Turn first_turn() { return library({{"user", "<image>\n" + kQ1}, {"assistant", ""}}, 1, 6); }

}  // namespace

TEST(ChatCli, PipedConversationMatchesTheLibrary)
{
    // -i gives the first question its image; the second question sees the first with its answer;
    // /reset forgets both, and /image attaches the image to the next question again, so the third
    // answer is the first one over again.
    Result r = ask("--json --max-tokens 6 -i " + image_path(),
                   kQ1 + "\n" + kQ2 + "\n/reset\n/image " + image_path() + "\n" + kQ1 + "\n");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");  // stdin is not a terminal: no prompts, no notices
    std::vector<std::string> ls = lines(r.out);
    ASSERT_EQ(ls.size(), 3u) << r.out;
    Answer a1 = parse_json(ls[0]), a2 = parse_json(ls[1]), a3 = parse_json(ls[2]);
    const Turn t1 = first_turn();
    EXPECT_EQ(a1.ids, t1.ids);
    EXPECT_EQ(a1.prompt_tokens, t1.prompt_tokens);
    EXPECT_EQ(a1.image_tokens, 421);  // 200x150: global view + one tile
    // Turn 2 sees turn 1 with its answer (special tokens kept, eos after it) and the same image.
    Turn t2 = library({{"user", "<image>\n" + kQ1}, {"assistant", detok(t1.ids, 1)}, {"user", kQ2}, {"assistant", ""}}, 1, 6);
    EXPECT_EQ(a2.ids, t2.ids);
    EXPECT_EQ(a2.prompt_tokens, t2.prompt_tokens);
    EXPECT_GT(a2.prompt_tokens, a1.prompt_tokens + (int64_t)t1.ids.size());
    EXPECT_EQ(a2.image_tokens, 421);
    EXPECT_EQ(a3.ids, a1.ids);
    EXPECT_EQ(a3.prompt_tokens, a1.prompt_tokens);
}

TEST(ChatCli, CommandErrorsContinueAndQuitStops)
{
    Result r = ask("--json --max-tokens 4", "/bogus\n/image /nonexistent.png\n/image\n   \nHi\n/quit\nHello\n");
    EXPECT_EQ(r.status, 1);  // something failed along the way
    std::vector<std::string> ls = lines(r.out);
    ASSERT_EQ(ls.size(), 1u) << r.out;  // "Hello" after /quit is not read
    EXPECT_EQ(parse_json(ls[0]).ids, library({{"user", "Hi"}, {"assistant", ""}}, 0, 4).ids);
    std::vector<std::string> errs = lines(r.err);
    ASSERT_EQ(errs.size(), 3u) << r.err;
    EXPECT_NE(errs[0].find("vlm ask: unknown command '/bogus'"), std::string::npos) << errs[0];
    EXPECT_NE(errs[1].find("/nonexistent.png"), std::string::npos) << errs[1];
    EXPECT_NE(errs[2].find("/image needs a file name"), std::string::npos) << errs[2];
}

TEST(ChatCli, EndOfInputEndsQuietly)
{
    for (const char *in : {"", "\n\n   \n"}) {
        Result r = ask("--json", in);
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_EQ(r.out, "");
        EXPECT_EQ(r.err, "");
    }
}

TEST(ChatCli, PlainTextIsOneLinePerAnswer)
{
    Result r = ask("--max-tokens 8", "Hi\nWhat is this?\n");
    ASSERT_EQ(r.status, 0) << r.err;
    Turn t1 = library({{"user", "Hi"}, {"assistant", ""}}, 0, 8);
    Turn t2 = library({{"user", "Hi"}, {"assistant", detok(t1.ids, 1)}, {"user", "What is this?"}, {"assistant", ""}}, 0, 8);
    EXPECT_EQ(r.out, detok(t1.ids, 0) + "\n" + detok(t2.ids, 0) + "\n");
}

TEST(Ask, SystemPromptGoesFirst)
{
    Result r = ask("--json --max-tokens 6 --system 'You are terse.' 'Hi'");
    ASSERT_EQ(r.status, 0) << r.err;
    Answer a = parse_json(r.out);
    Turn want = library({{"system", "You are terse."}, {"user", "Hi"}, {"assistant", ""}}, 0, 6);
    Turn plain = library({{"user", "Hi"}, {"assistant", ""}}, 0, 6);
    EXPECT_EQ(a.ids, want.ids);
    EXPECT_EQ(a.prompt_tokens, want.prompt_tokens);
    EXPECT_GT(want.prompt_tokens, plain.prompt_tokens);
    EXPECT_TRUE(a.has_boxes);  // "boxes": [] when the answer has no grounding
}

TEST(Ask, StopStringsCutTheAnswer)
{
    const std::string q = " --max-tokens 12 --ignore-eos 'What is this?'";
    Turn base = library({{"user", "What is this?"}, {"assistant", ""}}, 0, 12, 1);
    ASSERT_EQ(base.ids.size(), 12u);
    const vlm_tokenizer *tok = vlm_model_tokenizer(model());
    // Stop strings match the text the user sees. The expected cut: the fewest tokens whose visible text
    // (special tokens left out) holds the stop string.
    auto cut = [&](const std::string &stop) {
        for (size_t k = 1; k <= base.ids.size(); k++) {
            std::vector<int32_t> pre(base.ids.begin(), base.ids.begin() + (long)k);
            if (detok(pre, 0).find(stop) != std::string::npos) return pre;
        }
        return base.ids;
    };
    auto plain_ascii = [](char ch) { return ch >= ' ' && ch < 0x7f && ch != '\'' && ch != '\\'; };
    // An ASCII character of the answer, a special token's text, and two visible characters with hidden
    // special tokens between them, all picked from the answer itself.
    std::string visible = detok(base.ids, 0), stop1, stop2, stop3;
    for (char ch : visible)
        if (plain_ascii(ch)) {
            stop1 = std::string(1, ch);
            break;
        }
    ASSERT_FALSE(stop1.empty()) << visible;
    for (size_t i = 1; i < base.ids.size() && stop2.empty(); i++)
        if (vlm_tokenizer_is_special(tok, base.ids[i])) stop2 = vlm_tokenizer_id_to_token(tok, base.ids[i]);
    ASSERT_FALSE(stop2.empty());
    for (size_t i = 1; i < base.ids.size() && stop3.empty(); i++) {
        if (!vlm_tokenizer_is_special(tok, base.ids[i])) continue;
        const std::string before = detok(std::vector<int32_t>(base.ids.begin(), base.ids.begin() + (long)i), 0);
        if (before.empty() || before.size() >= visible.size()) continue;
        const std::string s3 = before.substr(before.size() - 1) + visible[before.size()];
        if (plain_ascii(s3[0]) && plain_ascii(s3[1]) && visible.find(s3) == before.size() - 1) stop3 = s3;
    }
    ASSERT_FALSE(stop3.empty()) << "no visible pair split by a special token in: " << detok(base.ids, 1);
    // shown text: up to the character; the whole answer (a hidden token's text is no stop); up to the pair
    std::vector<std::pair<std::string, std::string>> cases = {{stop1, visible.substr(0, visible.find(stop1))},
                                                             {stop2, visible},
                                                             {stop3, visible.substr(0, visible.find(stop3))}};
    for (auto &c : cases) {
        const std::string &stop = c.first;
        Result r = ask("--json --stop '" + stop + "'" + q);
        ASSERT_EQ(r.status, 0) << r.err;
        Answer a = parse_json(r.out);
        std::vector<int32_t> want = cut(stop);
        EXPECT_EQ(a.ids, want) << stop;
        EXPECT_EQ(a.stop_reason, stop == stop2 ? "length" : "stop_string") << stop;
        if (stop != stop2) {
            EXPECT_LT(want.size(), base.ids.size()) << stop;
        }
        EXPECT_EQ(a.text, c.second) << stop;
        // streaming prints the same text, then a newline
        Result plain = ask("--stop '" + stop + "'" + q);
        EXPECT_EQ(plain.out, c.second + "\n") << stop;
    }
    // A stop string that never comes: the whole answer.
    Result r = ask("--json --stop zzz --stop '<|nope|>'" + q);
    Answer a = parse_json(r.out);
    EXPECT_EQ(a.ids, base.ids);
    EXPECT_EQ(a.stop_reason, "length");
    EXPECT_EQ(a.text, visible);
}

TEST(Ask, DrawWithoutGroundingWritesTheImageUnchanged)
{
    std::string png = tmp("draw.png");
    Result r = ask("--max-tokens 2 --draw " + png + " -i " + image_path() + " 'Describe this image.'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("no grounding boxes"), std::string::npos) << r.err;
    vlm_image want, got;
    ASSERT_EQ(vlm_image_decode_file(image_path().c_str(), nullptr, &want), VLM_OK);
    ASSERT_EQ(vlm_image_decode_file(png.c_str(), nullptr, &got), VLM_OK) << vlm_last_error();
    ASSERT_EQ(got.width, want.width);
    ASSERT_EQ(got.height, want.height);
    EXPECT_EQ(memcmp(got.rgb, want.rgb, (size_t)want.width * want.height * 3), 0);
    vlm_image_free(&want);
    vlm_image_free(&got);
    remove(png.c_str());
}

TEST(Ask, OptionErrors)
{
    Result r = ask("--max-tokens 2 --draw " + tmp("x.png") + " 'Hi'");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("--draw"), std::string::npos) << r.err;
    r = ask("--stop '' 'Hi'");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--stop needs a non-empty string"), std::string::npos) << r.err;
    r = ask("--system hi --ids 0,1");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--system"), std::string::npos) << r.err;
}
