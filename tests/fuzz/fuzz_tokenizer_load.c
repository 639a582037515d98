/* Fuzz target: the tokenizer.json loader. The input is the file; when it loads,
 * a fixed text is encoded and decoded with it, and every id must be one the
 * tokenizer knows. Seeds: small tokenizer.json files using each supported
 * model / pre-tokenizer / decoder / added-token feature. */
#include "core/error.h"
#include "text/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char text[] = "Hello, world! 12345 it's <image> \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\t\n  x\xff"
                               "<|User|>ab<s>aaa";
    /* the first byte picks the options, so both load paths get fuzzed */
    vlm_tokenizer_opts opts = {0};
    opts.add_vl2_tokens = size > 0 && (data[0] & 1);
    vlm_tokenizer *t = NULL;
    int rc = vlm_tokenizer_load_json_opts((const char *)data, size, &opts, &t);
    if (rc != VLM_OK) {
        if (t || !vlm_last_error()[0]) abort(); /* a failure leaves nothing behind and says why */
        return 0;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (vlm_tokenizer_encode(t, text, sizeof text - 1, &ids, &n) == VLM_OK) {
        int32_t vocab = vlm_tokenizer_vocab_size(t);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= vocab || !vlm_tokenizer_id_to_token(t, ids[i])) abort();
        char *out = NULL;
        size_t len = 0;
        if (vlm_tokenizer_decode(t, ids, n, 0, &out, &len) != VLM_OK) abort(); /* known ids always decode */
        free(out);
    }
    free(ids);
    vlm_tokenizer_free(t);
    return 0;
}
