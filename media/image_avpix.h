/* Internal to media/: libavcodec frames to RGB8 by Pillow's rules (image_avpix.c). */
#ifndef VLM_MEDIA_IMAGE_AVPIX_H
#define VLM_MEDIA_IMAGE_AVPIX_H

#include <stdint.h>

#include <libavutil/frame.h>

typedef struct {
    int webp_yuv;    /* YUV 4:2:0 is VP8 (WebP): libwebp's upsampler and matrix */
    int assoc_alpha; /* packed RGBA is premultiplied (TIFF ExtraSamples = 1) */
    int gray16_clip; /* 16-bit grey clips to 0..255 (PIL's I;16) instead of >> 8 */
    int libyuv;      /* 8-bit YUV as libavif converts it with libyuv (AVIF in Pillow 11+) */
    int colorspace;  /* container's matrix (AVCOL_SPC_*), used when set; else the frame's */
} vlm_pil_rules;

/* rgb: f->width * f->height * 3 + VLM_AV_SWS_SLACK bytes (media/av_util.h). */
int vlm_av_frame_to_rgb(const AVFrame *f, const vlm_pil_rules *rules, uint8_t *rgb);

#endif
