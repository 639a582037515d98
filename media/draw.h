/* Drawing on RGB8 images: rectangle outlines, filled rectangles and text in a
 * small built-in 5x7 bitmap font (printable ASCII; any other character is
 * drawn as a hollow box). Everything is clipped to the image, so coordinates
 * may lie anywhere. Used by `vlm ask --draw` for grounding boxes. */
#ifndef VLM_MEDIA_DRAW_H
#define VLM_MEDIA_DRAW_H

#include <stdint.h>

#include "media/image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint8_t r, g, b;
} vlm_rgb;

/* The font: glyphs are 5 x 7 pixels; text advances 6 pixels per character
 * (times the scale). */
#define VLM_FONT_W 5
#define VLM_FONT_H 7
#define VLM_FONT_ADVANCE 6

/* The glyph of code point cp: 7 rows, top first, each in the low 5 bits with
 * bit 4 the leftmost pixel. Printable ASCII (0x20..0x7e) has its own glyph,
 * everything else the hollow box. */
const uint8_t *vlm_font_glyph(uint32_t cp);

/* Outline of the rectangle whose corners (x1, y1) and (x2, y2) are both inside
 * it (either order), `width` pixels thick, drawn inward from the edges like
 * PIL's ImageDraw.rectangle(outline=..., width=...). */
void vlm_draw_rect(vlm_image *img, int x1, int y1, int x2, int y2, int width, vlm_rgb color);
/* The rectangle filled, corners inclusive. */
void vlm_draw_fill(vlm_image *img, int x1, int y1, int x2, int y2, vlm_rgb color);

/* Size of UTF-8 text (one glyph per character; an invalid byte is one glyph)
 * at an integer scale in 1..4096 (larger counts as 4096, smaller draws
 * nothing): width n*6*scale - scale (0 for ""), height 7*scale. */
int vlm_draw_text_width(const char *utf8, int scale);
int vlm_draw_text_height(int scale);
/* Draws the text with its top-left corner at (x, y); only the glyph pixels
 * are painted. */
void vlm_draw_text(vlm_image *img, int x, int y, const char *utf8, int scale, vlm_rgb color);

/* Colour i of an 8-colour palette for telling boxes apart (any i >= 0). */
vlm_rgb vlm_draw_palette(int i);

/* A labelled box: the outline (thickness and font scale grow with the image:
 * thickness max(3, m / 160) like the official 3 px on small images, font
 * scale max(1, m / 240), m = min(width, height)), and unless
 * label is NULL or "", the label in black or white on a tag of the box colour
 * just above the top-left corner (inside the box when there is no room above). */
void vlm_draw_labeled_box(vlm_image *img, int x1, int y1, int x2, int y2, const char *label, vlm_rgb color);

#ifdef __cplusplus
}
#endif
#endif
