/* PIL's Image.resize(size, Image.BICUBIC) for RGB8, bit-exact with
 * libImaging/Resample.c of Pillow 9.4.0 (what the official DeepSeek-VL2
 * processor used through ImageOps.pad). */
#ifndef VLM_VISION_RESAMPLE_H
#define VLM_VISION_RESAMPLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* src: sw x sh RGB8 row-major; dst: dw x dh RGB8 (caller's buffer, must not
 * overlap src).  Returns VLM_OK, VLM_ERR_INVALID (a size < 1) or VLM_ERR_NOMEM. */
int vlm_resample_bicubic_rgb8(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);

#ifdef __cplusplus
}
#endif
#endif
