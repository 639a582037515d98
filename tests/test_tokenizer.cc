// Tokenizer tests: exact ids against Hugging Face `tokenizers` on a 5000+ line
// corpus for five byte-level BPE tokenizers (reference data made by
// tests/tools/make_tokenizer_reference.py), round trips, invalid UTF-8,
// hand-checked BPE behaviour, special ids, errors, streaming detokenization.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/tok_test_util.h"
#include "text/detok_stream.h"

using toktest::decode;
using toktest::encode;

namespace {

struct TokDeleter {
    void operator()(vlm_tokenizer *t) const { vlm_tokenizer_free(t); }
};
using TokPtr = std::unique_ptr<vlm_tokenizer, TokDeleter>;

const vlm_tokenizer *shared(const std::string &name)
{
    const vlm_tokenizer *t = toktest::shared(name);
    EXPECT_TRUE(t) << name << ": " << vlm_last_error();
    return t;
}

TokPtr load_json(const std::string &json, int *rc = nullptr)
{
    vlm_tokenizer *t = nullptr;
    int r = vlm_tokenizer_load_json_opts(json.data(), json.size(), nullptr, &t);
    if (rc) *rc = r;
    return TokPtr(t);
}

std::string hex(const std::string &s)
{
    static const char *d = "0123456789abcdef";
    std::string o;
    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7f) o += (char)c;
        else o += std::string("\\x") + d[c >> 4] + d[c & 15];
    }
    return o;
}

// Every corpus line must encode to the reference ids; `roundtrip` also asks
// decode(encode(x)) == x (not for tokenizers that strip or remove text).
void check_corpus(const std::string &name, bool roundtrip)
{
    std::vector<std::string> lines;
    std::vector<std::vector<int32_t>> want;
    ASSERT_TRUE(toktest::read_records(toktest::data_path("tokenizers/corpus.bin.gz"), &lines));
    ASSERT_TRUE(toktest::read_ids(toktest::data_path("tokenizers/" + name + ".ids.gz"), &want));
    ASSERT_EQ(lines.size(), want.size());
    ASSERT_GE(lines.size(), 5000u);
    const vlm_tokenizer *t = shared(name);
    ASSERT_TRUE(t);
    // Under the sanitizers every 7th line keeps the run short.
    size_t step = toktest::sanitized() ? 7 : 1, bad = 0, checked = 0;
    for (size_t i = 0; i < lines.size(); i += step) {
        int rc;
        std::vector<int32_t> got = encode(t, lines[i], &rc);
        ASSERT_EQ(rc, VLM_OK) << vlm_last_error();
        checked++;
        if (got != want[i]) {
            if (++bad <= 5) ADD_FAILURE() << name << " line " << i << " '" << hex(lines[i]).substr(0, 200) << "'";
            continue;
        }
        if (roundtrip) {
            EXPECT_EQ(decode(t, got), lines[i]) << name << " line " << i;
        }
    }
    EXPECT_EQ(bad, 0u) << name << ": " << bad << " of " << checked << " lines differ";
}

}  // namespace

TEST(TokenizerCorpus, DeepSeekV3MatchesHF) { check_corpus("deepseek-v3", true); }
// AI2's dolma2 (cl100k_base vocabulary): one Split regex with (?i:...), Removed + invert.
TEST(TokenizerCorpus, Dolma2MatchesHF) { check_corpus("dolma2", true); }
TEST(TokenizerCorpus, DeepSeekLLMPipelineMatchesHF) { check_corpus("mini-dsllm", false); }
TEST(TokenizerCorpus, Gpt2ByteLevelRegexMatchesHF) { check_corpus("mini-gpt2", false); }
TEST(TokenizerCorpus, SplitBehaviorsMatchHF) { check_corpus("mini-behaviors", false); }
// DeepSeek-V3's pre-tokenizer, small vocabulary, added tokens with single_word / normalized (the
// encode fuzz target's tokenizer).
TEST(TokenizerCorpus, SmallDeepSeekV3MatchesHF) { check_corpus("mini-dsv3", true); }

// ---------------------------------------------------------------- hand-made BPE

namespace {

// Vocabulary and merges small enough to work out by hand (and checked once
// against tokenizers). `merges` is spliced in as the JSON list.
std::string tiny_json(const std::string &merges, const std::string &pre = "", const std::string &extra_vocab = "")
{
    std::string p = pre.empty() ? R"({"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false})"
                                : pre;
    return R"({"version":"1.0","added_tokens":[{"id":10,"content":"<s>","single_word":false,"lstrip":false,)"
           R"("rstrip":false,"normalized":false,"special":true}],"normalizer":null,"pre_tokenizer":)" + p +
           R"(,"post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,)"
           R"("use_regex":true},"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,)"
           R"("end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"vocab":{"a":0,"b":1,"c":2,"ab":3,)"
           R"("bc":4,"abc":5,"\u0120":6,"d":7,"aa":8,"aaa":9)" + extra_vocab + R"(},"merges":)" + merges + "}}";
}

const char *kStringMerges = R"(["b c","a b","a bc","a a","aa a"])";
const char *kPairMerges = R"([["b","c"],["a","b"],["a","bc"],["a","a"],["aa","a"]])";

}  // namespace

TEST(TokenizerBpe, MergesByRankThenLeftmost)
{
    for (const char *merges : {kStringMerges, kPairMerges}) {
        int rc;
        TokPtr t = load_json(tiny_json(merges), &rc);
        ASSERT_EQ(rc, VLM_OK) << vlm_last_error();
        // "b c" (rank 0) beats "a b" (rank 1): a|bc, then "a bc" -> abc.
        EXPECT_EQ(encode(t.get(), "abc"), (std::vector<int32_t>{5}));
        EXPECT_EQ(encode(t.get(), "abab"), (std::vector<int32_t>{3, 3}));
        // Equal ranks go leftmost first: aa|a|a, then the (a,a) pair at 2 (rank 3)
        // before (aa,a) at 0 (rank 4): aa|aa.
        EXPECT_EQ(encode(t.get(), "aaaa"), (std::vector<int32_t>{8, 8}));
        EXPECT_EQ(encode(t.get(), "aaa"), (std::vector<int32_t>{9}));
        EXPECT_EQ(encode(t.get(), "ab c"), (std::vector<int32_t>{3, 6, 2}));  // space is U+0120
        // A byte without a token is dropped (no unk_token), as tokenizers does; a and b then merge.
        EXPECT_EQ(encode(t.get(), "axb"), (std::vector<int32_t>{3}));
        EXPECT_EQ(encode(t.get(), "<s>ab<s>"), (std::vector<int32_t>{10, 3, 10}));
        EXPECT_TRUE(encode(t.get(), "").empty());
        EXPECT_EQ(decode(t.get(), {3, 6, 2, 10, 5}), "ab c<s>abc");
        EXPECT_EQ(decode(t.get(), {3, 10, 5}, 1), "ababc");
        EXPECT_EQ(vlm_tokenizer_token_to_id(t.get(), "abc"), 5);
        EXPECT_EQ(vlm_tokenizer_token_to_id(t.get(), "<s>"), 10);
        EXPECT_EQ(vlm_tokenizer_token_to_id(t.get(), "zz"), -1);
        EXPECT_STREQ(vlm_tokenizer_id_to_token(t.get(), 6), "\xc4\xa0");
        EXPECT_EQ(vlm_tokenizer_id_to_token(t.get(), -1), nullptr);
        EXPECT_EQ(vlm_tokenizer_id_to_token(t.get(), 11), nullptr);
        EXPECT_EQ(vlm_tokenizer_vocab_size(t.get()), 11);
        EXPECT_TRUE(vlm_tokenizer_is_special(t.get(), 10));
        EXPECT_FALSE(vlm_tokenizer_is_special(t.get(), 3));
    }
}

// A word made only of bytes without a token encodes to nothing (found by the loader fuzz target:
// caching that empty result read from a NULL id buffer).
TEST(TokenizerBpe, WordOfUnknownBytesEncodesToNothing)
{
    int rc;
    TokPtr t = load_json(tiny_json(kStringMerges), &rc);
    ASSERT_EQ(rc, VLM_OK) << vlm_last_error();
    EXPECT_TRUE(encode(t.get(), "xx", &rc).empty());
    EXPECT_EQ(rc, VLM_OK);
    EXPECT_EQ(encode(t.get(), "xx xxab"), (std::vector<int32_t>{6, 3}));  // U+0120 for the space, then "ab"
}

TEST(TokenizerBpe, LongWordsBeyondTheCache)
{
    int rc;
    TokPtr t = load_json(tiny_json(kStringMerges), &rc);
    ASSERT_EQ(rc, VLM_OK) << vlm_last_error();
    // 1001 a's: (a,a) pairs merge left to right into 500 aa's and one a; then
    // only (aa,a) at the end still has a merge: ... aa aaa.
    std::vector<int32_t> want(499, 8);
    want.push_back(9);
    EXPECT_EQ(encode(t.get(), std::string(1001, 'a')), want);
}

TEST(TokenizerLoad, MalformedInputIsAnErrorNotACrash)
{
    int rc;
    std::string good = tiny_json(kStringMerges);
    // Every truncation of a valid file fails cleanly.
    for (size_t cut = 0; cut < good.size(); cut += 7) {
        TokPtr t = load_json(good.substr(0, cut), &rc);
        EXPECT_EQ(rc, VLM_ERR_FORMAT) << cut;
        EXPECT_FALSE(t);
    }
    TokPtr t = load_json("[1,2]", &rc);
    EXPECT_EQ(rc, VLM_ERR_FORMAT);
    t = load_json(tiny_json(kStringMerges, R"({"type":"Metaspace","replacement":"_"})"), &rc);
    EXPECT_EQ(rc, VLM_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(vlm_last_error()).find("Metaspace"), std::string::npos) << vlm_last_error();
    t = load_json(tiny_json(R"(["a q"])"), &rc);  // q is not in the vocabulary
    EXPECT_EQ(rc, VLM_ERR_FORMAT);
    t = load_json(tiny_json(R"(["ab"])"), &rc);  // no space
    EXPECT_EQ(rc, VLM_ERR_FORMAT);
    t = load_json(tiny_json(R"([["a"]])"), &rc);
    EXPECT_EQ(rc, VLM_ERR_FORMAT);
    t = load_json(tiny_json(R"([["a","c"]])"), &rc);  // "ac" is not in the vocabulary
    EXPECT_EQ(rc, VLM_ERR_FORMAT);
    t = load_json(tiny_json(kStringMerges, R"({"type":"Split","pattern":{"Regex":"(a"},"behavior":"Isolated"})"), &rc);
    EXPECT_EQ(rc, VLM_ERR_FORMAT);
    t = load_json(tiny_json(kStringMerges, R"({"type":"Split","pattern":{"Regex":"a"},"behavior":"Sideways"})"), &rc);
    EXPECT_EQ(rc, VLM_ERR_UNSUPPORTED);
    t = load_json(tiny_json(kStringMerges, "", R"(,"big":99999999)"), &rc);
    EXPECT_EQ(rc, VLM_ERR_FORMAT);
    t = load_json(tiny_json(kStringMerges, "", R"(,"neg":-1)"), &rc);
    EXPECT_EQ(rc, VLM_ERR_FORMAT);

    vlm_tokenizer *raw = nullptr;
    EXPECT_EQ(vlm_tokenizer_load("/nonexistent/model", &raw), VLM_ERR_IO);
    EXPECT_EQ(raw, nullptr);
}

TEST(TokenizerDecode, UnknownIdIsAnError)
{
    int rc;
    TokPtr t = load_json(tiny_json(kStringMerges), &rc);
    ASSERT_EQ(rc, VLM_OK);
    decode(t.get(), {3, 11}, 0, &rc);
    EXPECT_EQ(rc, VLM_ERR_INVALID);
    decode(t.get(), {-5}, 0, &rc);
    EXPECT_EQ(rc, VLM_ERR_INVALID);
    EXPECT_EQ(decode(t.get(), {}, 0, &rc), "");
    EXPECT_EQ(rc, VLM_OK);
}

// ---------------------------------------------------------------- real vocabularies

TEST(TokenizerDeepSeekV3, SpecialIdsAsInTheSpec)
{
    const vlm_tokenizer *t = shared("deepseek-v3");
    ASSERT_TRUE(t);
    // Spec section 3, Tiny/Base column: the VL2 tokens appended after id 128814.
    const vlm_special_ids *s = vlm_tokenizer_special(t);
    EXPECT_EQ(s->bos, 0);
    EXPECT_EQ(s->eos, 1);
    EXPECT_EQ(s->pad, 2);
    EXPECT_EQ(s->image, 128815);
    EXPECT_EQ(s->ref_open, 128816);
    EXPECT_EQ(s->ref_close, 128817);
    EXPECT_EQ(s->det_open, 128818);
    EXPECT_EQ(s->det_close, 128819);
    EXPECT_EQ(s->grounding, 128820);
    EXPECT_EQ(s->user, 128821);
    EXPECT_EQ(s->assistant, 128822);
    EXPECT_EQ(vlm_tokenizer_vocab_size(t), 128823);
    EXPECT_STREQ(vlm_tokenizer_id_to_token(t, 128822), "<|Assistant|>");
    EXPECT_TRUE(vlm_tokenizer_is_special(t, 128815));
    // Without the VL2 additions the file has 128815 ids and no <image>.
    std::string json;
    ASSERT_TRUE(toktest::read_maybe_gz(toktest::data_path("tokenizers/deepseek-v3/tokenizer.json.gz"), &json));
    TokPtr plain = load_json(json);
    ASSERT_TRUE(plain);
    EXPECT_EQ(vlm_tokenizer_vocab_size(plain.get()), 128815);
    EXPECT_EQ(vlm_tokenizer_special(plain.get())->image, -1);
    EXPECT_EQ(vlm_tokenizer_special(plain.get())->bos, 0);
}

TEST(TokenizerDeepSeekV3, SkipSpecialOnDecode)
{
    const vlm_tokenizer *t = shared("deepseek-v3");
    ASSERT_TRUE(t);
    std::vector<int32_t> ids = encode(t, "<|ref|>cat<|/ref|><｜end▁of▁sentence｜>");
    ASSERT_GE(ids.size(), 4u);
    EXPECT_EQ(ids.front(), 128816);
    EXPECT_EQ(ids.back(), 1);
    EXPECT_EQ(decode(t, ids, 1), "cat");
    EXPECT_EQ(decode(t, ids, 0), "<|ref|>cat<|/ref|><｜end▁of▁sentence｜>");
}

TEST(TokenizerInvalidUtf8, RoundTripsAndKeepsBytesApart)
{
    std::vector<std::string> lines;
    ASSERT_TRUE(toktest::read_records(toktest::data_path("tokenizers/invalid.bin.gz"), &lines));
    ASSERT_GE(lines.size(), 10u);
    for (const char *name : {"deepseek-v3", "dolma2"}) {
        const vlm_tokenizer *t = shared(name);
        ASSERT_TRUE(t);
        for (const std::string &l : lines) {
            int rc;
            std::vector<int32_t> ids = encode(t, l, &rc);
            ASSERT_EQ(rc, VLM_OK) << vlm_last_error();
            EXPECT_EQ(decode(t, ids), l) << name << " '" << hex(l) << "'";
        }
        // An invalid byte never joins a regex match: it is its own piece, in
        // between the encodings of the valid text around it.
        std::vector<int32_t> want = encode(t, "abc"), ff = encode(t, "\xff"), def = encode(t, "def");
        ASSERT_EQ(ff.size(), 1u);
        want.insert(want.end(), ff.begin(), ff.end());
        want.insert(want.end(), def.begin(), def.end());
        EXPECT_EQ(encode(t, "abc\xff" "def"), want) << name;
        // Byte 0xff maps to U+00FF 'ÿ' in the byte alphabet.
        EXPECT_EQ(ff[0], vlm_tokenizer_token_to_id(t, "\xc3\xbf")) << name;
    }
}

// ---------------------------------------------------------------- streaming detokenizer

namespace {

bool valid_utf8(const std::string &s)
{
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = (unsigned char)s[i];
        int len = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3
                : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
        if (len == 0 || i + (size_t)len > s.size()) return false;
        uint32_t cp = len == 1 ? c : c & (0x7f >> len);
        for (int k = 1; k < len; k++) {
            unsigned char d = (unsigned char)s[i + (size_t)k];
            if ((d & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3f);
        }
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += (size_t)len;
    }
    return true;
}

struct StreamDeleter {
    void operator()(vlm_detok_stream *s) const { vlm_detok_stream_free(s); }
};
using StreamPtr = std::unique_ptr<vlm_detok_stream, StreamDeleter>;

StreamPtr new_stream(const vlm_tokenizer *t, int print_special)
{
    vlm_detok_stream *s = nullptr;
    EXPECT_EQ(vlm_detok_stream_new(t, print_special, &s), VLM_OK);
    return StreamPtr(s);
}

// Pushes ids one by one; every chunk must be whole UTF-8. Returns the text
// and the number of pushes that produced nothing (held-back partial chars).
std::string stream_all(vlm_detok_stream *s, const std::vector<int32_t> &ids, size_t *held = nullptr)
{
    std::string out;
    size_t empty = 0;
    for (int32_t id : ids) {
        const char *p;
        size_t n;
        EXPECT_EQ(vlm_detok_stream_push(s, id, &p, &n), VLM_OK) << vlm_last_error();
        std::string chunk(p, n);
        EXPECT_TRUE(valid_utf8(chunk)) << hex(chunk);
        empty += n == 0;
        out += chunk;
    }
    const char *p;
    size_t n;
    EXPECT_EQ(vlm_detok_stream_flush(s, &p, &n), VLM_OK);
    out.append(p, n);
    if (held) *held = empty;
    return out;
}

}  // namespace

TEST(DetokStream, WholeCharactersOnlyAndSameTextAsDecode)
{
    const vlm_tokenizer *t = shared("deepseek-v3");
    ASSERT_TRUE(t);
    std::vector<std::string> lines;
    ASSERT_TRUE(toktest::read_records(toktest::data_path("tokenizers/corpus.bin.gz"), &lines));
    StreamPtr all = new_stream(t, 1), plain = new_stream(t, 0);
    size_t held_total = 0, step = toktest::sanitized() ? 23 : 3;
    for (size_t i = 0; i < lines.size(); i += step) {
        std::vector<int32_t> ids = encode(t, lines[i]);
        size_t held;
        EXPECT_EQ(stream_all(all.get(), ids, &held), lines[i]) << i;
        held_total += held;
        EXPECT_EQ(stream_all(plain.get(), ids), decode(t, ids, 1)) << i;
    }
    EXPECT_GT(held_total, 100u);  // CJK and emoji split over byte tokens were held back
}

TEST(DetokStream, HoldsBackPartialCharacters)
{
    const vlm_tokenizer *t = shared("deepseek-v3");
    ASSERT_TRUE(t);
    // Single byte tokens: byte b is the token of its alphabet char.
    auto byte_id = [&](unsigned char b) {
        std::string s(1, (char)b);
        std::vector<int32_t> ids = encode(t, s);
        return ids.size() == 1 ? ids[0] : -1;
    };
    int32_t e4 = byte_id(0xe4), b8 = byte_id(0xb8), ad = byte_id(0xad), A = byte_id('A');
    ASSERT_GE(e4, 0);
    StreamPtr s = new_stream(t, 0);
    const char *p;
    size_t n;
    ASSERT_EQ(vlm_detok_stream_push(s.get(), e4, &p, &n), VLM_OK);
    EXPECT_EQ(n, 0u);
    ASSERT_EQ(vlm_detok_stream_push(s.get(), b8, &p, &n), VLM_OK);
    EXPECT_EQ(n, 0u);
    // An unknown id is refused and does not disturb what is held back.
    EXPECT_EQ(vlm_detok_stream_push(s.get(), 99999999, &p, &n), VLM_ERR_INVALID);
    ASSERT_EQ(vlm_detok_stream_push(s.get(), ad, &p, &n), VLM_OK);
    EXPECT_EQ(std::string(p, n), "\xe4\xb8\xad");  // 中
    // A sequence that cannot complete becomes U+FFFD (one per maximal invalid
    // subpart, like tokenizers' lossy decode), then the next char follows.
    ASSERT_EQ(vlm_detok_stream_push(s.get(), e4, &p, &n), VLM_OK);
    ASSERT_EQ(vlm_detok_stream_push(s.get(), b8, &p, &n), VLM_OK);
    ASSERT_EQ(vlm_detok_stream_push(s.get(), A, &p, &n), VLM_OK);
    EXPECT_EQ(std::string(p, n), "\xef\xbf\xbd" "A");
    ASSERT_EQ(vlm_detok_stream_push(s.get(), byte_id(0xff), &p, &n), VLM_OK);
    EXPECT_EQ(std::string(p, n), "\xef\xbf\xbd");
    // An incomplete char at the end comes out as U+FFFD on flush.
    ASSERT_EQ(vlm_detok_stream_push(s.get(), e4, &p, &n), VLM_OK);
    EXPECT_EQ(n, 0u);
    ASSERT_EQ(vlm_detok_stream_flush(s.get(), &p, &n), VLM_OK);
    EXPECT_EQ(std::string(p, n), "\xef\xbf\xbd");
    ASSERT_EQ(vlm_detok_stream_flush(s.get(), &p, &n), VLM_OK);
    EXPECT_EQ(n, 0u);
}

TEST(DetokStream, SpecialTokensOnlyWhenAsked)
{
    const vlm_tokenizer *t = shared("deepseek-v3");
    ASSERT_TRUE(t);
    const vlm_special_ids *sp = vlm_tokenizer_special(t);
    std::vector<int32_t> ids = {sp->det_open};
    for (int32_t id : encode(t, "[[1, 2, 3, 4]]")) ids.push_back(id);
    ids.push_back(sp->det_close);
    ids.push_back(sp->eos);
    StreamPtr quiet = new_stream(t, 0), loud = new_stream(t, 1);
    EXPECT_EQ(stream_all(quiet.get(), ids), "[[1, 2, 3, 4]]");
    EXPECT_EQ(stream_all(loud.get(), ids), "<|det|>[[1, 2, 3, 4]]<|/det|><｜end▁of▁sentence｜>");
}

// ---------------------------------------------------------------- robustness

TEST(TokenizerRobustness, MutatedJsonNeverCrashes)
{
    // Deterministic byte mutations of a valid file: each either loads or
    // fails with a message (the sanitizer build checks for memory errors).
    std::string good = tiny_json(kPairMerges, R"({"type":"Sequence","pretokenizers":[{"type":"Split",)"
                                              R"("pattern":{"Regex":"\\s+|\\p{N}"},"behavior":"Isolated","invert":false},)"
                                              R"({"type":"ByteLevel","add_prefix_space":true,"use_regex":true}]})");
    uint32_t seed = 12345;
    auto rnd = [&]() { return seed = seed * 1664525u + 1013904223u, seed >> 8; };
    const char alphabet[] = "{}[]\":,0123456789-truefalsnl \\u";
    int loaded = 0;
    for (int iter = 0; iter < 400; iter++) {
        std::string s = good;
        for (int k = 0, m = 1 + (int)(rnd() % 3); k < m; k++) s[rnd() % s.size()] = alphabet[rnd() % (sizeof alphabet - 1)];
        int rc;
        TokPtr t = load_json(s, &rc);
        if (rc != VLM_OK) {
            EXPECT_FALSE(t);
            EXPECT_STRNE(vlm_last_error(), "");
            continue;
        }
        loaded++;
        std::vector<int32_t> ids = encode(t.get(), "ab c 12 aaa\xff<s>", &rc);
        EXPECT_EQ(rc, VLM_OK);
        decode(t.get(), ids, 0, &rc);
    }
    EXPECT_GT(loaded, 0);
}

TEST(TokenizerRobustness, RandomBytesRoundTrip)
{
    const vlm_tokenizer *t = shared("deepseek-v3");
    ASSERT_TRUE(t);
    uint32_t seed = 777;
    auto rnd = [&]() { return seed = seed * 1664525u + 1013904223u, seed >> 8; };
    const char *pieces[] = {"a", " ", "\n", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xff", "\xc3", "\x80", "1",
                            "<image>", "<|User|>", "'s", "\t", "\xe2\x80", "Z"};
    for (int iter = 0; iter < (toktest::sanitized() ? 100 : 1000); iter++) {
        std::string s;
        for (int k = 0, m = (int)(rnd() % 24); k < m; k++) s += pieces[rnd() % (sizeof pieces / sizeof *pieces)];
        int rc;
        std::vector<int32_t> ids = encode(t, s, &rc);
        ASSERT_EQ(rc, VLM_OK);
        EXPECT_EQ(decode(t, ids), s) << hex(s);
    }
}

// Characters that Unicode 15 / 16 assigned (Oniguruma in tokenizers knows them; PCRE2 10.42's tables,
// Unicode 14, do not): a new emoji must still be a symbol (" ?[\p{P}\p{S}]+" keeps the space with it),
// new digits numbers, new letters letters. Ids from Hugging Face tokenizers 0.23.3; U+1FAEA is still
// unassigned in Unicode 16.
TEST(TokenizerUnicode, CharactersNewerThanPcre2MatchHF)
{
    struct Case {
        const char *name, *text;
        std::vector<int32_t> ids;
    };
    std::vector<Case> cases = {
        {"deepseek-v3", "I love you \U0001FA77!", {43, 3518, 440, 7351, 105, 118, 3}},
        {"deepseek-v3", "so shaky \U0001FAE8\U0001FAE8", {821, 101808, 7351, 107, 104, 3574, 107, 104}},
        {"deepseek-v3", "Kawi 12\U00011F50\U00011F51\U00011F52\U00011F53 x",
         {45, 37026, 223, 736, 175, 242, 124, 241, 175, 242, 124, 242, 175, 242, 124, 243, 175, 242, 124, 244, 1527}},
        {"deepseek-v3", "Garay \U00010D50\U00010D70\U00010D71 word",
         {64865, 386, 86387, 241, 116, 241, 120577, 116, 111, 120577, 116, 112, 2004}},
        {"deepseek-v3", "\U0001FAEA not yet \U0001FAEA", {3574, 107, 106, 554, 4671, 223, 3574, 107, 106}},
        {"dolma2", "I love you \U0001FA77!", {40, 3021, 499, 11410, 102, 115, 0}},
        {"dolma2", "so shaky \U0001FAE8\U0001FAE8", {708, 84513, 11410, 104, 101, 9468, 104, 101}},
        {"dolma2", "Kawi 12\U00011F50\U00011F51\U00011F52\U00011F53 x",
         {42, 41978, 220, 717, 172, 239, 121, 238, 172, 239, 121, 239, 172, 239, 121, 240, 172, 239, 121, 241, 865}},
        {"dolma2", "Garay \U00010D50\U00010D70\U00010D71 word",
         {45030, 352, 220, 172, 238, 113, 238, 172, 238, 113, 108, 172, 238, 113, 109, 3492}},
        {"dolma2", "\U0001FAEA not yet \U0001FAEA", {9468, 104, 103, 539, 3686, 11410, 104, 103}},
    };
    for (const Case &c : cases) {
        const vlm_tokenizer *t = shared(c.name);
        ASSERT_TRUE(t);
        EXPECT_EQ(encode(t, c.text), c.ids) << c.name << " '" << c.text << "'";
        EXPECT_EQ(decode(t, c.ids), c.text) << c.name;
    }
}
