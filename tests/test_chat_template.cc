// Chat template tests: the golden input_ids of every golden case (official
// DeepseekVLV2Processor with the stand-in tokenizer), the real DeepSeek-V3
// vocabulary against prompts built with Hugging Face `tokenizers` the way the
// processor does (tests/data/tokenizers/deepseek-v3.chat.json), rendering
// rules, and errors.
#include <cjson/cJSON.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/file.h"
#include "core/safetensors.h"
#include "tests/golden_util.h"
#include "tests/tok_test_util.h"
#include "text/chat_template.h"

namespace {

struct TokDeleter {
    void operator()(vlm_tokenizer *t) const { vlm_tokenizer_free(t); }
};
using TokPtr = std::unique_ptr<vlm_tokenizer, TokDeleter>;

std::vector<int32_t> chat(const vlm_tokenizer *t, const std::vector<vlm_chat_message> &m, const std::vector<int> &counts,
                          int *rc_out = nullptr)
{
    int32_t *ids = nullptr;
    size_t n = 0;
    int rc = vlm_chat_encode(t, m.data(), (int)m.size(), counts.data(), (int)counts.size(), &ids, &n);
    if (rc_out) *rc_out = rc;
    EXPECT_TRUE(rc_out || rc == VLM_OK) << vlm_last_error();
    std::vector<int32_t> v(ids, ids + (rc == VLM_OK ? n : 0));
    free(ids);
    return v;
}

std::string render(const std::vector<vlm_chat_message> &m)
{
    char *text = nullptr;
    size_t len = 0;
    EXPECT_EQ(vlm_chat_render(m.data(), (int)m.size(), &text, &len), VLM_OK) << vlm_last_error();
    std::string s(text ? text : "", len);
    free(text);
    return s;
}

const char *kCases[] = {"case1_640x480_png", "case2_1000x300_png", "case3_200x150_jpg", "case4_two_images",
                        "case5_three_images"};

}  // namespace

// Requirement 1: prompt.txt + image token counts -> golden input_ids, exactly.
TEST(ChatTemplateGolden, InputIdsMatchOfficialProcessor)
{
    for (const char *model : {"tiny-mha", "tiny-mla"}) {
        vlm_tokenizer *raw = nullptr;
        ASSERT_EQ(vlm_tokenizer_load(toktest::data_path(std::string("golden/") + model).c_str(), &raw), VLM_OK)
            << vlm_last_error();
        TokPtr t(raw);
        const vlm_special_ids *sp = vlm_tokenizer_special(t.get());
        EXPECT_EQ(sp->bos, 0);
        EXPECT_EQ(sp->eos, 1);
        EXPECT_EQ(sp->pad, 2);
        EXPECT_EQ(sp->image, 3);
        EXPECT_EQ(sp->ref_open, 4);
        EXPECT_EQ(sp->grounding, 8);
        EXPECT_EQ(sp->user, 9);
        EXPECT_EQ(sp->assistant, 10);
        EXPECT_EQ(vlm_tokenizer_vocab_size(t.get()), 512);
        for (const char *c : kCases) {
            std::string dir = toktest::data_path(std::string("golden/inputs/") + c);
            char *prompt = nullptr;
            size_t plen = 0;
            ASSERT_EQ(vlm_read_file((dir + "/prompt.txt").c_str(), 1 << 20, &prompt, &plen), VLM_OK);
            std::string text(prompt, plen);
            free(prompt);
            vlm_st_file *f = nullptr;
            ASSERT_EQ(vlm_st_open((dir + "/preprocess.safetensors").c_str(), &f), VLM_OK) << vlm_last_error();
            const vlm_tensor_view *ids_v = vlm_st_find(f, "input_ids");
            const vlm_tensor_view *mask_v = vlm_st_find(f, "images_seq_mask");
            ASSERT_TRUE(ids_v && mask_v);
            ASSERT_EQ(ids_v->dtype, VLM_DT_I64);
            size_t n = (size_t)vlm_view_numel(ids_v);
            std::vector<int64_t> gold(n);  // copied: the tensor data need not be 8-byte aligned
            memcpy(gold.data(), ids_v->data, n * sizeof(int64_t));
            const uint8_t *mask = (const uint8_t *)mask_v->data;
            // One image per run of image positions.
            std::vector<int> counts;
            for (size_t i = 0; i < n; i++)
                if (mask[i]) {
                    if (i == 0 || !mask[i - 1]) counts.push_back(0);
                    counts.back()++;
                }
            std::vector<vlm_chat_message> m = {{"user", text.c_str()}, {"assistant", ""}};
            EXPECT_EQ(vlm_chat_count_images(m.data(), 2), (int)counts.size()) << c;
            std::vector<int32_t> got = chat(t.get(), m, counts);
            std::vector<int32_t> want(gold.begin(), gold.end());
            EXPECT_EQ(got, want) << model << " " << c;
            vlm_st_close(f);
        }
    }
}

// The real DeepSeek-V3 vocabulary with VL2's appended tokens, against the
// processor's recipe run on Hugging Face tokenizers.
TEST(ChatTemplateDeepSeekV3, MatchesProcessorRecipe)
{
    const vlm_tokenizer *t = toktest::shared("deepseek-v3");
    ASSERT_TRUE(t) << vlm_last_error();
    char *json = nullptr;
    size_t len = 0;
    ASSERT_EQ(vlm_read_file(toktest::data_path("tokenizers/deepseek-v3.chat.json").c_str(), 1 << 24, &json, &len),
              VLM_OK);
    cJSON *root = cJSON_ParseWithLength(json, len);
    free(json);
    ASSERT_TRUE(cJSON_IsArray(root));
    int n_cases = 0;
    for (cJSON *c = root->child; c; c = c->next, n_cases++) {
        std::vector<vlm_chat_message> m;
        for (cJSON *e = cJSON_GetObjectItem(c, "messages")->child; e; e = e->next)
            m.push_back({cJSON_GetObjectItem(e, "role")->valuestring, cJSON_GetObjectItem(e, "content")->valuestring});
        std::vector<int> counts;
        for (cJSON *e = cJSON_GetObjectItem(c, "image_token_counts")->child; e; e = e->next)
            counts.push_back(e->valueint);
        std::vector<int32_t> want;
        for (cJSON *e = cJSON_GetObjectItem(c, "ids")->child; e; e = e->next) want.push_back(e->valueint);
        EXPECT_EQ(render(m), cJSON_GetObjectItem(c, "text")->valuestring) << "case " << n_cases;
        EXPECT_EQ(chat(t, m, counts), want) << "case " << n_cases;
    }
    cJSON_Delete(root);
    EXPECT_GE(n_cases, 8);
}

TEST(ChatTemplate, RendersOfficialLayout)
{
    // get_prompt(): "role: content" + sep, sep2 = eos text after answers,
    // empty final assistant -> "<|Assistant|>:", contents and the whole prompt stripped.
    EXPECT_EQ(render({{"user", " \t<image>\nHi \n"}, {"assistant", ""}}),
              "<|User|>: <image>\nHi\n\n<|Assistant|>:");
    EXPECT_EQ(render({{"system", "Be brief."}, {"user", "a"}, {"assistant", " b "}, {"user", "c"}, {"assistant", ""}}),
              "Be brief.\n\n<|User|>: a\n\n<|Assistant|>: b<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence"
              "\xef\xbd\x9c><|User|>: c\n\n<|Assistant|>:");
    // Python's strip() also drops U+3000 and \x1c..\x1f, not U+200B.
    EXPECT_EQ(render({{"user", "\xe3\x80\x80x\x1c"}, {"assistant", ""}}), "<|User|>: x\n\n<|Assistant|>:");
    EXPECT_EQ(render({{"user", "\xe2\x80\x8bx"}, {"assistant", ""}}),
              "<|User|>: \xe2\x80\x8bx\n\n<|Assistant|>:");
}

TEST(ChatTemplate, PiecesAreEncodedSeparately)
{
    const vlm_tokenizer *t = toktest::shared("deepseek-v3");
    ASSERT_TRUE(t);
    const vlm_special_ids *sp = vlm_tokenizer_special(t);
    // Text on both sides of <image> is encoded on its own: no merge crosses it.
    std::vector<int32_t> got = chat(t, {{"user", "ab<image>cd"}, {"assistant", ""}}, {2});
    std::vector<int32_t> want = {sp->bos};
    for (int32_t id : toktest::encode(t, "<|User|>: ab")) want.push_back(id);
    want.push_back(sp->image);
    want.push_back(sp->image);
    for (int32_t id : toktest::encode(t, "cd\n\n<|Assistant|>:")) want.push_back(id);
    EXPECT_EQ(got, want);
    EXPECT_EQ(got[1], sp->user);
    EXPECT_EQ(got.back(), toktest::encode(t, ":")[0]);
    // A past answer ends with eos; the generation prompt does not.
    got = chat(t, {{"user", "q"}, {"assistant", "a"}, {"user", "r"}, {"assistant", ""}}, {});
    size_t eos_count = 0;
    for (int32_t id : got) eos_count += id == sp->eos;
    EXPECT_EQ(eos_count, 1u);
    EXPECT_NE(got.back(), sp->eos);
}

TEST(ChatTemplate, Errors)
{
    const vlm_tokenizer *t = toktest::shared("deepseek-v3");
    ASSERT_TRUE(t);
    int rc;
    chat(t, {{"user", "<image> x"}, {"assistant", ""}}, {}, &rc);
    EXPECT_EQ(rc, VLM_ERR_INVALID);
    chat(t, {{"user", "x"}, {"assistant", ""}}, {5}, &rc);
    EXPECT_EQ(rc, VLM_ERR_INVALID);
    chat(t, {{"assistant", "x"}}, {}, &rc);
    EXPECT_EQ(rc, VLM_ERR_INVALID);
    chat(t, {{"user", "x"}, {"user", "y"}}, {}, &rc);
    EXPECT_EQ(rc, VLM_ERR_INVALID);
    chat(t, {{"user", "<image>"}, {"assistant", ""}}, {-1}, &rc);
    EXPECT_EQ(rc, VLM_ERR_INVALID);
}

// The `vlm tokenize` / `vlm detokenize` commands on the stand-in vocabulary,
// where every id is known by hand: byte b is id 16 + b, <|User|> is 9.
TEST(TokenizeCli, TokenizeAndDetokenize)
{
    std::string model = toktest::data_path("golden/tiny-mha"), out;
    std::string bin = golden::vlm_bin();
    ASSERT_EQ(golden::run(bin + " tokenize -m " + model + " --json '<|User|>: hi'", &out), 0) << out;
    EXPECT_EQ(out, "{\"ids\":[9,74,48,120,121],\"pieces\":[\"<|User|>\",\":\",\"\xc4\xa0\",\"h\",\"i\"]}\n");
    ASSERT_EQ(golden::run(bin + " tokenize -m " + model + " 'a b'", &out), 0) << out;
    EXPECT_EQ(out, "113 48 114\n");
    ASSERT_EQ(golden::run(bin + " detokenize -m " + model + " --json 9 74 48 120 121", &out), 0) << out;
    EXPECT_EQ(out, "{\"text\":\"<|User|>: hi\"}\n");
    ASSERT_EQ(golden::run(bin + " detokenize -m " + model + " 9 74 48 120 121 --skip-special", &out), 0) << out;
    EXPECT_EQ(out, ": hi\n");
    // Byte 0xe4 alone is not UTF-8: JSON gets U+FFFD.
    ASSERT_EQ(golden::run(bin + " detokenize -m " + model + " --json 244", &out), 0) << out;
    EXPECT_EQ(out, "{\"text\":\"\xef\xbf\xbd\"}\n");
    EXPECT_EQ(golden::run(bin + " detokenize -m " + model + " 600", &out), 1);
    EXPECT_NE(out.find("600"), std::string::npos) << out;
    EXPECT_EQ(golden::run(bin + " tokenize 'x'", &out), 2);
}

TEST(ChatPlaceImages, MarkersStayOtherwiseImagesGoFirst) {
  char *s = vlm_chat_place_images("What is this?", 2);
  ASSERT_NE(s, nullptr);
  EXPECT_STREQ(s, "<image>\n<image>\nWhat is this?");
  free(s);
  s = vlm_chat_place_images("A: <image> B: <image>", 2);
  EXPECT_STREQ(s, "A: <image> B: <image>");
  free(s);
  s = vlm_chat_place_images("no images", 0);
  EXPECT_STREQ(s, "no images");
  free(s);
}
