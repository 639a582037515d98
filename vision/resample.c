/* Bit-exact re-implementation of Pillow 9.4.0's BICUBIC resize on 8-bit RGB.
 *
 * What has to match PIL to the last bit:
 *  - Separable convolution, horizontal pass first, then vertical; a pass is
 *    skipped when that dimension does not change (and with both unchanged PIL
 *    returns a copy).  The horizontal pass only produces the source rows the
 *    vertical pass will read (bounds of its first and last output row).
 *  - Filter: Keys cubic, a = -0.5, support 2; when downscaling (scale > 1) the
 *    support and the filter argument are scaled by `scale`, so it antialiases.
 *  - Per output pixel xx: center = (xx + 0.5) * scale, taps from
 *    xmin = (int)(center - support + 0.5) (clamped to 0) to
 *    (int)(center + support + 0.5) (clamped to the input size), weights
 *    filter((x + xmin - center + 0.5) / filterscale) normalised by their sum,
 *    all in double, then rounded half away from zero to 22-bit fixed point.
 *  - Accumulate in int32 starting at 1 << 21 (rounding), shift right by 22,
 *    clip to 0..255 after each pass.
 * The double arithmetic is written in the same order as PIL; do not let the
 * compiler contract it into FMAs (ISO C mode, the default here, does not). */
#include "vision/resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define PRECISION_BITS (32 - 8 - 2)

static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct {
    int ksize;     /* coefficients per output pixel (row stride of k) */
    int *bounds;   /* per output pixel: first input index, number of taps */
    int32_t *k;    /* fixed-point coefficients, out_size * ksize */
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->bounds);
    free(c->k);
    c->bounds = NULL;
    c->k = NULL;
}

/* PIL's precompute_coeffs + normalize_coeffs_8bpc for the box [0, in_size). */
static int coeffs_make(int in_size, int out_size, coeffs *c)
{
    const double support_base = 2.0; /* BICUBIC */
    /* PIL passes the box as floats: in1 - in0 is computed in float, then widened. */
    float in0 = 0.0f, in1 = (float)in_size;
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = support_base * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;

    c->ksize = ksize;
    c->bounds = (int *)malloc(sizeof(int) * 2 * (size_t)out_size);
    c->k = (int32_t *)calloc((size_t)out_size * ksize, sizeof(int32_t));
    double *w = (double *)malloc(sizeof(double) * (size_t)ksize);
    if (!c->bounds || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return vlm_errorf(VLM_ERR_NOMEM, "resample: out of memory");
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax > ksize) xmax = ksize; /* cannot happen; keeps the writes in bounds */
        for (int x = 0; x < xmax; x++) {
            double v = bicubic((x + xmin - center + 0.5) * ss);
            w[x] = v;
            ww += v;
        }
        int32_t *k = c->k + (size_t)xx * ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(w);
    return VLM_OK;
}

/* clip8 of PIL: value >> 22, clipped to 0..255 (its lookup table covers -640..639). */
static inline uint8_t clip8(int32_t v)
{
    if (v < 0) return 0;
    v >>= PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* Horizontal pass over rows [y0, y0 + rows) of src (width sw) into dst (width dw). */
static void pass_horizontal(const uint8_t *src, int sw, int y0, int rows, uint8_t *dst, int dw,
                            const coeffs *c)
{
    for (int yy = 0; yy < rows; yy++) {
        const uint8_t *in = src + (size_t)(y0 + yy) * sw * 3;
        uint8_t *out = dst + (size_t)yy * dw * 3;
        for (int xx = 0; xx < dw; xx++) {
            int xmin = c->bounds[2 * xx], n = c->bounds[2 * xx + 1];
            const int32_t *k = c->k + (size_t)xx * c->ksize;
            const uint8_t *p = in + (size_t)xmin * 3;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < n; x++) {
                s0 += p[3 * x] * k[x];
                s1 += p[3 * x + 1] * k[x];
                s2 += p[3 * x + 2] * k[x];
            }
            out[3 * xx] = clip8(s0);
            out[3 * xx + 1] = clip8(s1);
            out[3 * xx + 2] = clip8(s2);
        }
    }
}

/* Vertical pass: src rows are indexed relative to the bounds (already shifted).
 * Row by row into an int32 accumulator (same sums as PIL, cache-friendly order). */
static int pass_vertical(const uint8_t *src, int w, uint8_t *dst, int dh, const coeffs *c)
{
    const size_t stride = (size_t)w * 3;
    int32_t *acc = (int32_t *)malloc(sizeof(int32_t) * stride);
    if (!acc) return vlm_errorf(VLM_ERR_NOMEM, "resample: out of memory");
    for (int yy = 0; yy < dh; yy++) {
        int ymin = c->bounds[2 * yy], n = c->bounds[2 * yy + 1];
        const int32_t *k = c->k + (size_t)yy * c->ksize;
        for (size_t i = 0; i < stride; i++) acc[i] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < n; y++) {
            const uint8_t *row = src + (size_t)(ymin + y) * stride;
            const int32_t ky = k[y];
            for (size_t i = 0; i < stride; i++) acc[i] += row[i] * ky;
        }
        uint8_t *out = dst + (size_t)yy * stride;
        for (size_t i = 0; i < stride; i++) out[i] = clip8(acc[i]);
    }
    free(acc);
    return VLM_OK;
}

int vlm_resample_bicubic_rgb8(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh)
{
    if (sw < 1 || sh < 1 || dw < 1 || dh < 1)
        return vlm_errorf(VLM_ERR_INVALID, "resample: invalid size %dx%d -> %dx%d", sw, sh, dw, dh);
    int need_h = dw != sw, need_v = dh != sh;
    if (!need_h && !need_v) {
        memcpy(dst, src, (size_t)sw * sh * 3);
        return VLM_OK;
    }
    /* PIL computes the vertical coefficients first, even when that pass is
     * skipped, to know which source rows the horizontal pass must produce. */
    coeffs cv = {0}, ch = {0};
    int rc = coeffs_make(sh, dh, &cv);
    if (rc) return rc;
    int y_first = cv.bounds[0];
    int y_last = cv.bounds[2 * dh - 2] + cv.bounds[2 * dh - 1];

    if (!need_v) {
        /* Only the horizontal pass, over every row (bounds span 0..sh here). */
        rc = coeffs_make(sw, dw, &ch);
        if (!rc) pass_horizontal(src, sw, 0, sh, dst, dw, &ch);
        coeffs_free(&ch);
        coeffs_free(&cv);
        return rc;
    }
    if (!need_h) {
        rc = pass_vertical(src, sw, dst, dh, &cv);
        coeffs_free(&cv);
        return rc;
    }
    rc = coeffs_make(sw, dw, &ch);
    uint8_t *tmp = rc ? NULL : (uint8_t *)malloc((size_t)dw * (y_last - y_first) * 3);
    if (!rc && !tmp) rc = vlm_errorf(VLM_ERR_NOMEM, "resample: out of memory");
    if (!rc) {
        pass_horizontal(src, sw, y_first, y_last - y_first, tmp, dw, &ch);
        for (int i = 0; i < dh; i++) cv.bounds[2 * i] -= y_first;
        rc = pass_vertical(tmp, dw, dst, dh, &cv);
    }
    free(tmp);
    coeffs_free(&ch);
    coeffs_free(&cv);
    return rc;
}
