/* Grounding output of DeepSeek-VL2: boxes the model writes into its answer as
 *
 *     <|ref|>label<|/ref|><|det|>[[x1,y1,x2,y2],[x1,y1,x2,y2],...]<|/det|>
 *
 * with coordinates on a 0..999 grid over the image. The text must be decoded
 * with the special tokens kept (they are how the tags appear).
 *
 * Parsing follows the official parse_ref_bbox (deepseek_vl2/serve/app_modules/
 * utils.py) where it is defined, and is more lenient where that one gives up:
 *   - every <|det|>...<|/det|> block gives its boxes, each "[a, b, c, d]" of
 *     four numbers inside it (innermost brackets), in order;
 *   - a block's label is the text of the last <|ref|>...<|/ref|> since the
 *     previous <|det|> block, or "" when there is none (the official code pairs
 *     the n-th ref with the n-th det and draws nothing when the counts differ);
 *   - a bracket that does not hold exactly four numbers is skipped; numbers
 *     are decimal, optionally signed and with a fraction (the official code
 *     eval()s them); an unterminated tag ends the parse.
 * Pure functions: no I/O, no model. */
#ifndef VLM_TEXT_GROUNDING_H
#define VLM_TEXT_GROUNDING_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char *label;    /* UTF-8, NUL-terminated, "" when no <|ref|> named it */
    double grid[4]; /* x1, y1, x2, y2 as written (0..999 grid) */
} vlm_ground_box;

typedef struct {
    vlm_ground_box *boxes;
    int n_boxes;
} vlm_grounding;

/* Finds the boxes in text[0..len). out is set even when no box is found
 * (n_boxes 0); free it with vlm_grounding_free. Errors: VLM_ERR_NOMEM, or
 * VLM_ERR_LIMIT past 100000 boxes. */
int vlm_grounding_parse(const char *text, size_t len, vlm_grounding *out);
void vlm_grounding_free(vlm_grounding *g);

/* Grid coordinates -> pixels of a width x height image, as the official code:
 * int(v / 999 * width) for x and int(v / 999 * height) for y, so truncation
 * toward zero (999 maps to width/height itself, one past the last pixel).
 * Not clamped to the image; results beyond +-2^30 are saturated. */
void vlm_grounding_to_pixels(const double grid[4], int width, int height, int px[4]);

#ifdef __cplusplus
}
#endif
#endif
