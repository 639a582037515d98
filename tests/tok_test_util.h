// Helpers shared by the tokenizer tests: reading the gzip'd reference data
// written by tests/tools/make_tokenizer_reference.py.
#ifndef VLM_TESTS_TOK_TEST_UTIL_H
#define VLM_TESTS_TOK_TEST_UTIL_H

#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "text/tokenizer.h"

namespace toktest {

inline std::string data_path(const std::string &rel) { return std::string(VLM_TEST_DATA) + "/" + rel; }

// Whole file, gunzipped when it is gzip (gzread passes plain files through).
inline bool read_maybe_gz(const std::string &path, std::string *out)
{
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) return false;
    out->clear();
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0) out->append(buf, (size_t)n);
    bool ok = n == 0;
    gzclose(f);
    return ok;
}

inline uint32_t rd32(const std::string &s, size_t *pos)
{
    uint32_t v = 0;
    if (*pos + 4 <= s.size()) memcpy(&v, s.data() + *pos, 4);
    *pos += 4;
    return v;
}

// corpus / invalid: "VTKC", count, (len, bytes)*
inline bool read_records(const std::string &path, std::vector<std::string> *out)
{
    std::string s;
    if (!read_maybe_gz(path, &s) || s.size() < 8 || s.compare(0, 4, "VTKC") != 0) return false;
    size_t pos = 4;
    uint32_t n = rd32(s, &pos);
    out->clear();
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = rd32(s, &pos);
        if (pos + len > s.size()) return false;
        out->push_back(s.substr(pos, len));
        pos += len;
    }
    return pos == s.size();
}

// ids: "VTKI", count, (n, ids)*
inline bool read_ids(const std::string &path, std::vector<std::vector<int32_t>> *out)
{
    std::string s;
    if (!read_maybe_gz(path, &s) || s.size() < 8 || s.compare(0, 4, "VTKI") != 0) return false;
    size_t pos = 4;
    uint32_t n = rd32(s, &pos);
    out->clear();
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = rd32(s, &pos);
        if (pos + 4ull * k > s.size()) return false;
        std::vector<int32_t> v(k);
        if (k) memcpy(v.data(), s.data() + pos, 4ull * k);
        pos += 4ull * k;
        out->push_back(std::move(v));
    }
    return pos == s.size();
}

// Loads tests/data/tokenizers/<name>/tokenizer.json[.gz] with the defaults.
inline vlm_tokenizer *load_named(const std::string &name)
{
    std::string json;
    std::string base = data_path("tokenizers/" + name + "/tokenizer.json");
    if (!read_maybe_gz(base + ".gz", &json) && !read_maybe_gz(base, &json)) return nullptr;
    vlm_tokenizer *t = nullptr;
    if (vlm_tokenizer_load_json(json.data(), json.size(), &t) != VLM_OK) return nullptr;
    return t;
}

// One tokenizer per name for the whole test process (loading a real one takes
// a noticeable time, more so under the sanitizers).
inline const vlm_tokenizer *shared(const std::string &name)
{
    struct Entry {
        std::string name;
        vlm_tokenizer *t;
        ~Entry() { vlm_tokenizer_free(t); }
    };
    static std::vector<std::unique_ptr<Entry>> cache;
    for (auto &e : cache)
        if (e->name == name) return e->t;
    vlm_tokenizer *t = load_named(name);
    if (!t) return nullptr;
    cache.push_back(std::unique_ptr<Entry>(new Entry{name, t}));
    return t;
}

inline std::vector<int32_t> encode(const vlm_tokenizer *t, const std::string &s, int *rc_out = nullptr)
{
    int32_t *ids = nullptr;
    size_t n = 0;
    int rc = vlm_tokenizer_encode(t, s.data(), s.size(), &ids, &n);
    if (rc_out) *rc_out = rc;
    std::vector<int32_t> v(ids, ids + (rc == VLM_OK ? n : 0));
    free(ids);
    return v;
}

inline std::string decode(const vlm_tokenizer *t, const std::vector<int32_t> &ids, int skip_special = 0,
                          int *rc_out = nullptr)
{
    char *text = nullptr;
    size_t len = 0;
    int rc = vlm_tokenizer_decode(t, ids.data(), ids.size(), skip_special, &text, &len);
    if (rc_out) *rc_out = rc;
    std::string s = rc == VLM_OK ? std::string(text, len) : std::string();
    free(text);
    return s;
}

inline bool sanitized() { return getenv("VLM_SANITIZED") != nullptr; }

}  // namespace toktest

#endif
