/* The EXIF orientation tag (0x0112) of a JPEG (its first APP1 "Exif" segment) or a TIFF file (its first
 * IFD), read from the bytes alone: every offset is checked against the size given, nothing is allocated.
 *
 * vlm reports it (`vlm media`, the resolver) but does not apply it: the model sees the pixels as stored,
 * as the official DeepSeek-VL2 pipeline does (PIL's Image.open without ImageOps.exif_transpose). */
#ifndef VLM_MEDIA_EXIF_H
#define VLM_MEDIA_EXIF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1..8 (1 = stored upright), or 0 when the bytes are not a JPEG or TIFF, carry no orientation, or hold
 * an unreadable or out-of-range one. */
int vlm_exif_orientation(const void *data, size_t size);
/* What a viewer does to show the stored pixels upright: "normal", "rotate 90 clockwise", ...;
 * "none" for 0. */
const char *vlm_exif_orientation_name(int orientation);

#ifdef __cplusplus
}
#endif
#endif
