/* Stop strings for streamed answers: the text of each new token goes in as it
 * comes (from a vlm_detok_stream, so in whole UTF-8 characters); what comes
 * out is the part that is safe to show now.
 *
 * Generation should stop as soon as the text contains one of the stop
 * strings, and the stop string itself is not part of the answer. So text that
 * could be the beginning of a stop string (a suffix of the text equal to a
 * prefix of a stop string) is held back until the next piece settles it.
 *
 * Stop strings are matched against the text the user sees: the visible
 * pieces, joined. Pieces pushed with visible = 0 (special tokens the user
 * does not see, e.g. "<|ref|>") are kept for the full text but never come out
 * of push/finish, never match a stop string ("<|/det|>" as a stop string stops
 * only where that text is visible), and do not split one either: visible
 * "Hel", hidden "<|ref|>", visible "lo" stop at "Hello". The full text is cut
 * before the stop string's first visible byte (hidden pieces before it stay). */
#ifndef VLM_TEXT_STOP_TEXT_H
#define VLM_TEXT_STOP_TEXT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_stop_text vlm_stop_text;

/* stops: n_stops non-empty NUL-terminated strings (copied); none is fine. */
int vlm_stop_text_new(const char *const *stops, int n_stops, vlm_stop_text **out);
void vlm_stop_text_free(vlm_stop_text *s);
/* Empties the text for the next answer (same stop strings). */
void vlm_stop_text_reset(vlm_stop_text *s);

/* Adds text[0..len). *show / *show_len: the visible text that became safe to
 * print (valid until the next call on s). Returns 1 when the text now
 * contains a stop string (the text is cut where it starts; later pushes are
 * ignored), 0 when not, or a negative VLM_ERR_NOMEM. */
int vlm_stop_text_push(vlm_stop_text *s, const char *text, size_t len, int visible, const char **show,
                       size_t *show_len);
/* End of the answer: releases what was held back. */
void vlm_stop_text_finish(vlm_stop_text *s, const char **show, size_t *show_len);

/* Non-zero once a stop string was found. */
int vlm_stop_text_stopped(const vlm_stop_text *s);
/* The answer so far (cut before the stop string): all of it with the hidden
 * pieces (visible_only 0) or only the visible pieces (1), the text stop strings
 * are matched in. NUL-terminated, valid until the next push/finish/reset. */
const char *vlm_stop_text_get(vlm_stop_text *s, int visible_only, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
