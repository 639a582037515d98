/* Streaming detokenization: ids go in one at a time as the model makes them;
 * what comes out is always whole UTF-8 characters, never half of one (the
 * bytes of a character split over several byte tokens are held back until
 * it is complete). Byte sequences that can never become valid UTF-8 come out
 * as U+FFFD, one per maximal invalid subpart, as tokenizers' decode (Rust's
 * from_utf8_lossy) does; so the concatenated output equals
 * tokenizers.decode(ids) of everything pushed. Special tokens are printed
 * only when asked. */
#ifndef VLM_TEXT_DETOK_STREAM_H
#define VLM_TEXT_DETOK_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_detok_stream vlm_detok_stream;

/* print_special: non-zero prints special tokens' text, zero skips them. The
 * tokenizer must outlive the stream. */
int vlm_detok_stream_new(const vlm_tokenizer *t, int print_special, vlm_detok_stream **out);
void vlm_detok_stream_free(vlm_detok_stream *s);

/* Feeds one id. *text / *len receive the bytes that became complete (possibly
 * none); they stay valid until the next call on s. An unknown id is an error
 * and leaves the stream as it was. */
int vlm_detok_stream_push(vlm_detok_stream *s, int32_t id, const char **text, size_t *len);
/* End of the stream: a held-back incomplete character comes out as U+FFFD.
 * The stream is then empty and can be reused. */
int vlm_detok_stream_flush(vlm_detok_stream *s, const char **text, size_t *len);
/* Drops anything held back and starts over. */
void vlm_detok_stream_reset(vlm_detok_stream *s);

#ifdef __cplusplus
}
#endif
#endif
