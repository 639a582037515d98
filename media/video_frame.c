/* Decoded video frames to upright RGB, and the scene-change score. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libswscale/swscale.h>

#include "core/error.h"
#include "media/video_internal.h"

/* Rotates src (w x h RGB) clockwise by rot degrees into dst. */
static void rotate_rgb(const uint8_t *src, int w, int h, int rot, uint8_t *dst)
{
    if (rot == 180) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                memcpy(dst + ((size_t)(h - 1 - y) * w + (w - 1 - x)) * 3, src + ((size_t)y * w + x) * 3, 3);
        return;
    }
    /* 90 / 270: the output is h wide and w high. */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int ox = rot == 90 ? h - 1 - y : y;
            int oy = rot == 90 ? x : w - 1 - x;
            memcpy(dst + ((size_t)oy * h + ox) * 3, src + ((size_t)y * w + x) * 3, 3);
        }
}

int vlm_video_frame_rgb(vlm_video *v, const AVFrame *f, vlm_image *img)
{
    memset(img, 0, sizeof *img);
    size_t n = (size_t)f->width * f->height * 3;
    uint8_t *rgb = (uint8_t *)malloc(n + VLM_AV_SWS_SLACK);
    if (!rgb) return vlm_errorf(VLM_ERR_NOMEM, "video: out of memory for a %dx%d frame", f->width, f->height);
    int rc = vlm_av_sws_rgb(&v->rgb_sws, f, rgb, f->width * 3, 0);
    if (rc) {
        free(rgb);
        return vlm_error_prefix(rc, "video");
    }
    int rot = v->info.rotation;
    if (rot == 0) {
        img->width = f->width;
        img->height = f->height;
        img->rgb = rgb;
        return VLM_OK;
    }
    uint8_t *out = (uint8_t *)malloc(n);
    if (!out) {
        free(rgb);
        return vlm_errorf(VLM_ERR_NOMEM, "video: out of memory for a %dx%d frame", f->width, f->height);
    }
    rotate_rgb(rgb, f->width, f->height, rot, out);
    free(rgb);
    img->width = rot == 180 ? f->width : f->height;
    img->height = rot == 180 ? f->height : f->width;
    img->rgb = out;
    return VLM_OK;
}

/* A small grey thumbnail per frame; the score is FFmpeg's "scene" idea: the mean
 * absolute difference to the previous frame (0..1), less its change from the
 * previous difference, so steady motion scores low and a cut scores high. */
#define THUMB_W 64
#define THUMB_H 36

int vlm_video_scene_score(vlm_video *v, const AVFrame *f, double *score)
{
    *score = 0;
    if (!v->thumb_prev) {
        v->thumb_prev = (uint8_t *)malloc(THUMB_W * THUMB_H + VLM_AV_SWS_SLACK);
        v->thumb_cur = (uint8_t *)malloc(THUMB_W * THUMB_H + VLM_AV_SWS_SLACK);
        if (!v->thumb_prev || !v->thumb_cur) return vlm_errorf(VLM_ERR_NOMEM, "video: out of memory");
    }
    struct SwsContext *c = sws_getCachedContext(v->thumb_sws, f->width, f->height,
                                                (enum AVPixelFormat)f->format, THUMB_W, THUMB_H,
                                                AV_PIX_FMT_GRAY8, SWS_AREA, NULL, NULL, NULL);
    if (!c) {
        v->thumb_sws = NULL;
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "video: cannot make thumbnails of this pixel format");
    }
    v->thumb_sws = c;
    uint8_t *dst[4] = {v->thumb_cur, NULL, NULL, NULL};
    int stride[4] = {THUMB_W, 0, 0, 0};
    sws_scale(c, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, stride);
    if (v->have_thumb) {
        uint64_t sad = 0;
        for (int i = 0; i < THUMB_W * THUMB_H; i++) sad += (uint64_t)abs(v->thumb_cur[i] - v->thumb_prev[i]);
        double mafd = (double)sad / (THUMB_W * THUMB_H * 255.0);
        double diff = fabs(mafd - v->prev_mafd);
        *score = mafd < diff ? mafd : diff;
        v->prev_mafd = mafd;
    }
    uint8_t *t = v->thumb_prev;
    v->thumb_prev = v->thumb_cur;
    v->thumb_cur = t;
    v->have_thumb = 1;
    return VLM_OK;
}
