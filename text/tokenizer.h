/* Byte-level BPE tokenizer compatible with Hugging Face `tokenizers`
 * (tokenizer.json), as used by DeepSeek-VL2 and other byte-level BPE models.
 *
 * Encoding follows tokenizers' encode(text, add_special_tokens=False):
 *   1. added tokens (special or not) are cut out of the text, leftmost-longest,
 *      honouring lstrip / rstrip / single_word / normalized;
 *   2. the rest goes through the normalizer and the pre-tokenizers
 *      (Sequence, Split with a regex or a string and any split behaviour,
 *      ByteLevel with or without its GPT-2 regex and prefix space, Digits);
 *   3. every piece is BPE-merged by merge rank.
 * Regexes run on PCRE2 (UTF + UCP, Oniguruma/Ruby anchors). Input need not be
 * valid UTF-8: an invalid byte never matches a regex item or a word/space
 * class, it simply stays in the gaps between matches (an inverted Split that
 * removes the gaps keeps their invalid bytes) and is encoded as its byte
 * token, so decode(encode(x)) == x for any bytes x.
 *
 * A loaded tokenizer is immutable: every function taking a const pointer may
 * be called from several threads at once. */
#ifndef VLM_TEXT_TOKENIZER_H
#define VLM_TEXT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_tokenizer vlm_tokenizer;

/* Ids of the tokens DeepSeek-VL2 uses, -1 where the tokenizer has none. */
typedef struct {
    int32_t bos, eos, pad, image;
    int32_t ref_open, ref_close, det_open, det_close, grounding;
    int32_t user, assistant;
} vlm_special_ids;

typedef struct {
    /* Names of bos / eos / pad; NULL means the DeepSeek defaults
     * <｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>, <｜▁pad▁｜>. */
    const char *bos_token, *eos_token, *pad_token;
    /* Non-zero: like DeepseekVLV2Processor, append pad, <image>, the five
     * grounding tokens, <|User|> and <|Assistant|> as special added tokens
     * when the tokenizer lacks them (ids after the last existing id). */
    int add_vl2_tokens;
} vlm_tokenizer_opts;

/* model_dir/tokenizer.json, plus model_dir/tokenizer_config.json (optional)
 * for the bos/eos/pad names; VL2 tokens are appended when missing. */
int vlm_tokenizer_load(const char *model_dir, vlm_tokenizer **out);
/* A tokenizer.json held in memory (need not be NUL-terminated); DeepSeek
 * default names, VL2 tokens appended when missing. */
int vlm_tokenizer_load_json(const char *json, size_t len, vlm_tokenizer **out);
/* Same with explicit options (opts NULL: defaults and no appended tokens). */
int vlm_tokenizer_load_json_opts(const char *json, size_t len, const vlm_tokenizer_opts *opts,
                                 vlm_tokenizer **out);
void vlm_tokenizer_free(vlm_tokenizer *t);

/* encode(text, add_special_tokens=False). *ids is malloc'd (free() it); it is
 * non-NULL even when *n_ids is 0. */
int vlm_tokenizer_encode(const vlm_tokenizer *t, const char *text, size_t len, int32_t **ids,
                         size_t *n_ids);
/* Concatenated decoded bytes of ids (ByteLevel decoder). skip_special drops
 * added tokens marked special. Unlike tokenizers, invalid UTF-8 in the result
 * is returned as is (not replaced by U+FFFD), so decode(encode(x)) == x; an id
 * the tokenizer does not know is an error. *text is malloc'd and
 * NUL-terminated (*len excludes the NUL). */
int vlm_tokenizer_decode(const vlm_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                         char **text, size_t *len);
int32_t vlm_tokenizer_token_to_id(const vlm_tokenizer *t, const char *token); /* -1 if absent */
const char *vlm_tokenizer_id_to_token(const vlm_tokenizer *t, int32_t id);   /* NULL if none */
/* One more than the largest id (model vocabulary and added tokens). */
int32_t vlm_tokenizer_vocab_size(const vlm_tokenizer *t);
int vlm_tokenizer_is_special(const vlm_tokenizer *t, int32_t id);
const vlm_special_ids *vlm_tokenizer_special(const vlm_tokenizer *t);

/* Bytes that id decodes to on its own (ByteLevel: the byte of each char; a
 * token with a char outside the byte alphabet: its UTF-8 as is). Writes at
 * most cap bytes to buf and returns the full length, or a negative
 * VLM_ERR_INVALID for an unknown id. With no decoder in tokenizer.json tokens
 * are joined by spaces; *sep_before is then set to 1 (else 0). */
int vlm_tokenizer_token_bytes(const vlm_tokenizer *t, int32_t id, char *buf, size_t cap,
                              int *sep_before);

#ifdef __cplusplus
}
#endif
#endif
