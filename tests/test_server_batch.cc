// `vlm batch`: OpenAI Batch input lines answered through the server's request parser and the engine; output in
// OpenAI's batch output format; a rerun skips the custom_ids already answered.
#include <gtest/gtest.h>

#include <cjson/cJSON.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "golden_util.h"

namespace {

std::string Tmp(const std::string &name) { return "/tmp/vlm_batch_" + std::to_string(getpid()) + "_" + name; }

std::vector<std::string> Lines(const std::string &path)
{
    std::ifstream f(path);
    std::vector<std::string> v;
    for (std::string l; std::getline(f, l);) v.push_back(l);
    return v;
}

std::string AskText()
{
    std::string out;
    golden::run(golden::vlm_bin() + " ask -m " + golden::model_dir("tiny-mha") + " -i " +
                    golden::input_dir("case1_640x480_png") + "/image.png --max-tokens 16 --ignore-eos --json \"Describe this image.\" 2>/dev/null",
                &out);
    cJSON *j = cJSON_Parse(out.c_str());
    std::string t = cJSON_IsString(cJSON_GetObjectItem(j, "text")) ? cJSON_GetObjectItem(j, "text")->valuestring : "";
    cJSON_Delete(j);
    return t;
}

TEST(ServerBatch, AnswersWritesErrorsAndResumes)
{
    const std::string in = Tmp("in.jsonl"), out = Tmp("out.jsonl"), media = golden::input_dir("case1_640x480_png");
    remove(out.c_str());
    {
        std::ofstream f(in);
        for (int i = 0; i < 3; i++)
            f << "{\"custom_id\":\"req-" << i << "\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"tiny-mha\","
              << "\"max_tokens\":16,\"ignore_eos\":true,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
              << "{\"url\":\"file://" << media << "/image.png\"}},{\"type\":\"text\",\"text\":\"Describe this image.\"}]}]}}\n";
        f << "{\"custom_id\":\"bad-n\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}}\n";
        f << "{\"custom_id\":\"bad-url\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{}}\n";
        f << "{\"custom_id\":\"req-0\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"messages\":[]}}\n";
        f << "not json\n\n";
    }
    const std::string cmd = golden::vlm_bin() + " batch -m " + golden::model_dir("tiny-mha") + " --media-dir " + media + " " + in + " -o " + out;
    std::string log;
    ASSERT_EQ(golden::run(cmd, &log), 0) << log;
    std::vector<std::string> lines = Lines(out);
    ASSERT_EQ(lines.size(), 7u) << log;
    const std::string want = AskText();
    ASSERT_FALSE(want.empty());
    std::map<std::string, int> status;
    int line_errors = 0;
    for (const auto &l : lines) {
        SCOPED_TRACE(l);
        cJSON *j = cJSON_Parse(l.c_str());
        ASSERT_TRUE(j);
        EXPECT_EQ(std::string(cJSON_GetObjectItem(j, "id")->valuestring).rfind("batch_req_", 0), 0u);
        const cJSON *cid = cJSON_GetObjectItem(j, "custom_id"), *resp = cJSON_GetObjectItem(j, "response");
        if (cJSON_IsNull(resp)) {
            line_errors++;
            EXPECT_TRUE(cJSON_IsString(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "message")));
        } else {
            const int st = (int)cJSON_GetObjectItem(resp, "status_code")->valuedouble;
            if (cJSON_IsString(cid)) status[cid->valuestring] = st;
            EXPECT_TRUE(cJSON_IsNull(cJSON_GetObjectItem(j, "error")));
            const cJSON *body = cJSON_GetObjectItem(resp, "body");
            if (st == 200) {
                EXPECT_STREQ(cJSON_GetObjectItem(body, "object")->valuestring, "chat.completion");
                EXPECT_STREQ(cJSON_GetObjectItem(resp, "request_id")->valuestring, cJSON_GetObjectItem(body, "id")->valuestring);
                const cJSON *msg = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(body, "choices"), 0), "message");
                EXPECT_EQ(std::string(cJSON_GetObjectItem(msg, "content")->valuestring), want);
            } else {
                EXPECT_TRUE(cJSON_IsObject(cJSON_GetObjectItem(body, "error")));
            }
        }
        cJSON_Delete(j);
    }
    EXPECT_EQ(status["req-0"], 200);
    EXPECT_EQ(status["req-1"], 200);
    EXPECT_EQ(status["req-2"], 200);
    EXPECT_EQ(status["bad-n"], 400);
    EXPECT_EQ(line_errors, 3); // wrong url, repeated custom_id, not JSON

    // a rerun answers nothing again; with req-1's line gone it answers only req-1
    ASSERT_EQ(golden::run(cmd, &log), 0) << log;
    lines = Lines(out);
    EXPECT_EQ(lines.size(), 8u) << log; // only the line without a custom_id is reported again
    {
        std::ofstream f(out);
        for (const auto &l : lines)
            if (l.find("\"custom_id\":\"req-1\"") == std::string::npos) f << l << "\n";
    }
    ASSERT_EQ(golden::run(cmd, &log), 0) << log;
    EXPECT_NE(log.find("1 answered"), std::string::npos) << log;
    int req1 = 0;
    for (const auto &l : Lines(out)) req1 += l.find("\"custom_id\":\"req-1\"") != std::string::npos;
    EXPECT_EQ(req1, 1);
    remove(in.c_str());
    remove(out.c_str());
}

}  // namespace
