/* Fuzz target: encoding arbitrary bytes with a real tokenizer (DeepSeek-V3's
 * pre-tokenizer regexes, BPE merges, added tokens with single_word /
 * normalized / special; tests/data/tokenizers/mini-dsv3, loaded once) must
 * give known ids that decode back to exactly the input, and streaming the
 * ids through the detokenizer must give the input too when it is valid UTF-8.
 * VLM_FUZZ_TOKENIZER may name another tokenizer.json that round-trips. */
#include "core/error.h"
#include "text/detok_stream.h"
#include "text/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vlm_tokenizer *load_once(void)
{
    static vlm_tokenizer *t;
    if (t) return t;
    const char *path = getenv("VLM_FUZZ_TOKENIZER");
    if (!path) path = "tests/data/tokenizers/mini-dsv3/tokenizer.json"; /* from the repository root */
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_tokenizer_encode: cannot open %s (run from the repository root)\n", path);
        abort();
    }
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (len == cap && !(buf = realloc(buf, cap = cap ? 2 * cap : 1 << 16))) abort();
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got);
    fclose(f);
    if (vlm_tokenizer_load_json(buf, len, &t) != VLM_OK) {
        fprintf(stderr, "fuzz_tokenizer_encode: %s\n", vlm_last_error());
        abort();
    }
    free(buf);
    return t;
}

static int valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
        if (!len || i + len > n) return 0;
        uint32_t cp = len == 1 ? c : c & (0x7fu >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const vlm_tokenizer *t = load_once();
    int32_t *ids = NULL;
    size_t n = 0;
    if (vlm_tokenizer_encode(t, (const char *)data, size, &ids, &n) != VLM_OK) abort();
    char *text = NULL;
    size_t len = 0;
    if (vlm_tokenizer_decode(t, ids, n, 0, &text, &len) != VLM_OK) abort();
    if (len != size || (size && memcmp(text, data, size) != 0)) abort(); /* decode(encode(x)) == x */
    free(text);
    if (valid_utf8(data, size)) {
        vlm_detok_stream *s;
        if (vlm_detok_stream_new(t, 1, &s) != VLM_OK) abort();
        size_t pos = 0;
        const char *piece;
        size_t plen;
        for (size_t i = 0; i <= n; i++) {
            int rc = i < n ? vlm_detok_stream_push(s, ids[i], &piece, &plen) : vlm_detok_stream_flush(s, &piece, &plen);
            if (rc != VLM_OK || pos + plen > size || memcmp(piece, data + pos, plen) != 0) abort();
            pos += plen;
        }
        if (pos != size) abort();
        vlm_detok_stream_free(s);
    }
    free(ids);
    return 0;
}
