/* PNG -> RGB8 with libpng, reproducing Pillow 9.4.0's open().convert("RGB").
 *
 * libpng is asked for raw samples only (png_set_packing for <8-bit depths, no
 * expand/strip/gamma transforms) and the conversion to RGB is done here, so each
 * colour type follows PIL's unpackers exactly:
 *   grey 1/2/4/8 bit   v*255 / v*85 / v*17 / v           (PIL "1", "L;2", "L;4", "L")
 *   grey 16 bit        min(v, 255)                        (PIL mode "I", then i2rgb clips)
 *   grey+alpha, RGB(A) 8 bit as is, 16 bit high byte      (PIL "LA;16B", "RGB;16B", "RGBA;16B")
 *   palette            PLTE lookup; indexes past PLTE are (i, i, i) (PIL's default palette)
 * tRNS, gAMA, iCCP, sRGB and alpha do not change the RGB bytes (PIL ignores them here).
 * Errors: libpng's error callback longjmps back to decode_png; every pointer that
 * may be live at that moment is volatile and freed on that path. */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "media/image_codecs.h"

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    int truncated;
    char msg[200];
} png_src;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_src *s = (png_src *)png_get_error_ptr(png);
    if (s && !s->truncated) {
        strncpy(s->msg, msg ? msg : "unknown error", sizeof s->msg - 1);
        s->msg[sizeof s->msg - 1] = '\0';
    }
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* benign (bad ancillary chunk, sRGB profile notes, ...): PIL ignores them too */
}

static void on_png_read(png_structp png, png_bytep dst, png_size_t n)
{
    png_src *s = (png_src *)png_get_io_ptr(png);
    if (n > s->size - s->pos) {
        s->truncated = 1;
        png_error(png, "truncated");
    }
    memcpy(dst, s->data + s->pos, n);
    s->pos += n;
}

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* One row of raw samples (after png_set_packing: one byte per sample for depths < 8)
 * to RGB8. */
static void row_to_rgb(const uint8_t *in, uint8_t *out, int width, int color_type, int depth,
                       const uint8_t pal[256][3])
{
    int x;
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
        for (x = 0; x < width; x++) {
            unsigned v;
            switch (depth) {
            case 1: v = in[x] ? 255u : 0u; break;
            case 2: v = in[x] * 85u; break;
            case 4: v = in[x] * 17u; break;
            case 8: v = in[x]; break;
            default: /* 16 */
                v = ((unsigned)in[2 * x] << 8) | in[2 * x + 1];
                if (v > 255) v = 255;
                break;
            }
            out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = (uint8_t)v;
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
        int step = depth == 16 ? 4 : 2;
        for (x = 0; x < width; x++) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[step * x];
        break;
    }
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA: {
        int ch = color_type == PNG_COLOR_TYPE_RGB ? 3 : 4;
        int bps = depth == 16 ? 2 : 1; /* bytes per sample: keep the high (first) byte */
        for (x = 0; x < width; x++) {
            const uint8_t *p = in + (size_t)x * ch * bps;
            out[3 * x] = p[0];
            out[3 * x + 1] = p[bps];
            out[3 * x + 2] = p[2 * bps];
        }
        break;
    }
    default: /* palette */
        for (x = 0; x < width; x++) memcpy(out + 3 * x, pal[in[x]], 3);
        break;
    }
}

int vlm_image_decode_png(const uint8_t *data, size_t size, const vlm_image_limits *lim,
                         vlm_image *out)
{
    memset(out, 0, sizeof *out);
    /* Check the budget from IHDR before libpng sees the file (a file cut right
     * after IHDR must still get the limit error, not a truncation error). */
    if (size < 33) return vlm_errorf(VLM_ERR_FORMAT, "png: file is truncated (%zu bytes)", size);
    if (memcmp(data + 12, "IHDR", 4) != 0)
        return vlm_errorf(VLM_ERR_FORMAT, "png: corrupt file (first chunk is not IHDR)");
    int rc = vlm_image_check_limits("png", be32(data + 16), be32(data + 20), lim);
    if (rc) return rc;

    /* On the heap: the callbacks change it between setjmp and longjmp, and an
     * automatic non-volatile object would be indeterminate after the jump. */
    png_src *src = (png_src *)calloc(1, sizeof *src);
    if (!src) return vlm_errorf(VLM_ERR_NOMEM, "png: out of memory");
    src->data = data;
    src->size = size;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, src, on_png_error,
                                             on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        if (png) png_destroy_read_struct(&png, NULL, NULL);
        free(src);
        return vlm_errorf(VLM_ERR_NOMEM, "png: out of memory");
    }
    uint8_t *volatile rgb = NULL;
    uint8_t *volatile raw = NULL;      /* one row, or the whole image when interlaced */
    png_bytep *volatile rows = NULL;   /* row pointers into raw (interlaced only) */
    volatile int status = VLM_OK;

    if (setjmp(png_jmpbuf(png))) {
        if (status == VLM_OK) {
            if (src->truncated)
                status = vlm_errorf(VLM_ERR_FORMAT, "png: file is truncated");
            else
                status = vlm_errorf(VLM_ERR_FORMAT, "png: corrupt file (%s)", src->msg);
        }
        goto done;
    }
    png_set_read_fn(png, src, on_png_read);
    /* Our own pixel budget is the limit; libpng's default 1e6 x 1e6 cap would
     * otherwise reject long thin images the budget allows. */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);

    png_uint_32 w, h;
    int depth, color_type, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &color_type, &interlace, NULL, NULL);
    if ((status = vlm_image_check_limits("png", w, h, lim)) != VLM_OK) goto done;

    uint8_t pal[256][3];
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int n = 0;
        for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
        if (png_get_PLTE(png, info, &plte, &n) == 0 || !plte) {
            status = vlm_errorf(VLM_ERR_FORMAT, "png: palette image without PLTE chunk");
            goto done;
        }
        for (int i = 0; i < n && i < 256; i++) {
            pal[i][0] = plte[i].red;
            pal[i][1] = plte[i].green;
            pal[i][2] = plte[i].blue;
        }
    }
    if (depth < 8) png_set_packing(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    size_t need = (size_t)w * (depth == 16 ? 8 : 4);
    if (rowbytes == 0 || rowbytes > need) {
        status = vlm_errorf(VLM_ERR_FORMAT, "png: unexpected row size %zu", rowbytes);
        goto done;
    }
    rgb = (uint8_t *)malloc((size_t)w * h * 3);
    if (!rgb) {
        status = vlm_errorf(VLM_ERR_NOMEM, "png: out of memory for %ux%u image", w, h);
        goto done;
    }
    if (passes > 1) {
        /* Adam7: libpng needs the whole raw image to combine the passes. */
        raw = (uint8_t *)malloc(rowbytes * h);
        rows = (png_bytep *)malloc(sizeof(png_bytep) * h);
        if (!raw || !rows) {
            status = vlm_errorf(VLM_ERR_NOMEM, "png: out of memory for %ux%u image", w, h);
            goto done;
        }
        for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + rowbytes * y;
        png_read_image(png, rows);
        for (png_uint_32 y = 0; y < h; y++)
            row_to_rgb(rows[y], rgb + (size_t)y * w * 3, (int)w, color_type, depth,
                       (const uint8_t(*)[3])pal);
    } else {
        raw = (uint8_t *)malloc(rowbytes);
        if (!raw) {
            status = vlm_errorf(VLM_ERR_NOMEM, "png: out of memory");
            goto done;
        }
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(png, raw, NULL);
            row_to_rgb(raw, rgb + (size_t)y * w * 3, (int)w, color_type, depth,
                       (const uint8_t(*)[3])pal);
        }
    }
    /* The chunks after the image data (and IEND) are not read: PIL does not
     * require them either. */
    out->width = (int)w;
    out->height = (int)h;
    out->rgb = rgb;
    rgb = NULL;

done:
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(raw);
    free(rgb);
    free(src);
    return status;
}
