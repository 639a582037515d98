#include "vision/preprocess.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "vision/resample.h"

void vlm_preprocess_config_default(vlm_preprocess_config *c)
{
    memset(c, 0, sizeof *c);
    c->tile_size = VLM_TILING_DEFAULT_TILE;
    c->n_candidates = vlm_tiling_default_candidates(&c->candidates);
    for (int i = 0; i < 3; i++) {
        c->mean[i] = 0.5f;
        c->std[i] = 0.5f;
        /* The processor pads with tuple(int(x * 255) for x in image_mean). */
        c->pad_color[i] = (uint8_t)(int)(c->mean[i] * 255.0);
    }
}

void vlm_image_tiles_free(vlm_image_tiles *t)
{
    if (!t) return;
    free(t->tiles);
    memset(t, 0, sizeof *t);
}

/* Python 3 round() of a double to an integer: half to even. */
static int64_t round_half_even(double x)
{
    double f = floor(x), d = x - f;
    int64_t r = (int64_t)f;
    if (d > 0.5 || (d == 0.5 && (r & 1))) r++;
    return r;
}

int vlm_preprocess_pad(const vlm_image *img, int tw, int th, const uint8_t color[3], uint8_t *dst)
{
    const int w = img->width, h = img->height;
    if (w < 1 || h < 1 || tw < 1 || th < 1 || !img->rgb)
        return vlm_errorf(VLM_ERR_INVALID, "preprocess: invalid sizes %dx%d -> %dx%d", w, h, tw, th);
    /* ImageOps.contain: compare the aspect ratios as Python floats. */
    int nw = tw, nh = th;
    double im_ratio = (double)w / (double)h, dest_ratio = (double)tw / (double)th;
    if (im_ratio != dest_ratio) {
        if (im_ratio > dest_ratio) {
            int64_t r = round_half_even((double)h / (double)w * tw);
            nh = r < 1 ? 1 : (int)r; /* PIL would raise on 0 */
        } else {
            int64_t r = round_half_even((double)w / (double)h * th);
            nw = r < 1 ? 1 : (int)r;
        }
    }
    if (nw == tw && nh == th) return vlm_resample_bicubic_rgb8(img->rgb, w, h, dst, tw, th);

    uint8_t *tmp = (uint8_t *)malloc((size_t)nw * nh * 3);
    if (!tmp) return vlm_errorf(VLM_ERR_NOMEM, "preprocess: out of memory");
    int rc = vlm_resample_bicubic_rgb8(img->rgb, w, h, tmp, nw, nh);
    if (rc) {
        free(tmp);
        return rc;
    }
    for (size_t i = 0; i < (size_t)tw * th; i++) memcpy(dst + 3 * i, color, 3);
    /* ImageOps.pad: offset round((size - new) * 0.5) along the padded axis. */
    int x0 = 0, y0 = 0;
    if (nw != tw)
        x0 = (int)round_half_even((tw - nw) * 0.5);
    else
        y0 = (int)round_half_even((th - nh) * 0.5);
    for (int y = 0; y < nh; y++)
        memcpy(dst + ((size_t)(y0 + y) * tw + x0) * 3, tmp + (size_t)y * nw * 3, (size_t)nw * 3);
    free(tmp);
    return VLM_OK;
}

/* Copies the T x T window at (x0, y0) of an RGB8 image of width w into CHW. */
static void to_chw(const uint8_t *rgb, int w, int x0, int y0, int t, uint8_t *chw)
{
    const size_t plane = (size_t)t * t;
    for (int y = 0; y < t; y++) {
        const uint8_t *row = rgb + ((size_t)(y0 + y) * w + x0) * 3;
        for (int x = 0; x < t; x++) {
            size_t o = (size_t)y * t + x;
            chw[o] = row[3 * x];
            chw[plane + o] = row[3 * x + 1];
            chw[2 * plane + o] = row[3 * x + 2];
        }
    }
}

int vlm_preprocess_image(const vlm_preprocess_config *c, const vlm_image *img, int cropping,
                         vlm_image_tiles *out)
{
    memset(out, 0, sizeof *out);
    if (!c || !img || !img->rgb || img->width < 1 || img->height < 1)
        return vlm_errorf(VLM_ERR_INVALID, "preprocess: no image");
    const int t = c->tile_size;
    if (t < 1) return vlm_errorf(VLM_ERR_INVALID, "preprocess: invalid tile size %d", t);
    vlm_resolution target;
    int rc = vlm_tiling_target(img->width, img->height, cropping, t, c->candidates,
                               c->n_candidates, &target);
    if (rc) return rc;
    if (target.width < t || target.height < t || target.width % t || target.height % t)
        return vlm_errorf(VLM_ERR_INVALID,
                          "preprocess: candidate resolution %dx%d is not a multiple of the tile %d",
                          target.width, target.height, t);
    const int nw = target.width / t, nh = target.height / t;
    const size_t tile_bytes = (size_t)3 * t * t;
    uint8_t *tiles = (uint8_t *)malloc(tile_bytes * (1 + (size_t)nw * nh));
    uint8_t *view = (uint8_t *)malloc((size_t)target.width * target.height * 3);
    if (!tiles || !view) {
        free(tiles);
        free(view);
        return vlm_errorf(VLM_ERR_NOMEM, "preprocess: out of memory");
    }
    /* Global view. */
    rc = vlm_preprocess_pad(img, t, t, c->pad_color, view);
    if (!rc) {
        to_chw(view, t, 0, 0, t, tiles);
        /* Local view: without cropping it is the same pad, so reuse it. */
        if (nw != 1 || nh != 1) rc = vlm_preprocess_pad(img, target.width, target.height,
                                                         c->pad_color, view);
    }
    if (!rc) {
        for (int ty = 0; ty < nh; ty++)
            for (int tx = 0; tx < nw; tx++)
                to_chw(view, target.width, tx * t, ty * t, t,
                       tiles + tile_bytes * (1 + (size_t)ty * nw + tx));
    }
    free(view);
    if (rc) {
        free(tiles);
        return rc;
    }
    out->n_tiles = 1 + nw * nh;
    out->nw = nw;
    out->nh = nh;
    out->tiles = tiles;
    return VLM_OK;
}

void vlm_tiles_normalize(const vlm_preprocess_config *c, const uint8_t *chw_u8, size_t n_tiles,
                         float *out)
{
    const size_t plane = (size_t)c->tile_size * c->tile_size;
    for (size_t tile = 0; tile < n_tiles; tile++)
        for (int ch = 0; ch < 3; ch++) {
            const float mean = c->mean[ch], std = c->std[ch];
            const size_t base = (tile * 3 + ch) * plane;
            for (size_t i = 0; i < plane; i++)
                out[base + i] = ((float)chw_u8[base + i] / 255.0f - mean) / std;
        }
}
