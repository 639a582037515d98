/* RGB8 -> PNG with libpng's simplified write API, -> JPEG with libjpeg-turbo (image_write.h). */
#include "media/image_write.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jpeglib.h>

#include "core/error.h"

int vlm_image_encode_png(const vlm_image *img, void **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return vlm_errorf(VLM_ERR_INVALID, "png: no image to write");
    /* the compressed-size bound below must not overflow */
    if ((uint64_t)img->width * (uint64_t)img->height > ((uint64_t)1 << 36) / 3)
        return vlm_errorf(VLM_ERR_INVALID, "png: image %dx%d is too large to write", img->width, img->height);
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = (png_uint_32)img->width;
    pi.height = (png_uint_32)img->height;
    pi.format = PNG_FORMAT_RGB;
    pi.flags = 0; /* the pixels are taken as sRGB: libpng writes an sRGB chunk */
    /* A buffer of the worst-case size, so one pass suffices; shrunk afterwards. */
    png_alloc_size_t cap = PNG_IMAGE_PNG_SIZE_MAX(pi);
    void *buf = malloc(cap);
    if (!buf) return vlm_errorf(VLM_ERR_NOMEM, "png: out of memory for a %dx%d image", img->width, img->height);
    png_alloc_size_t n = cap;
    if (!png_image_write_to_memory(&pi, buf, &n, 0, img->rgb, 0, NULL)) {
        free(buf);
        int rc = vlm_errorf(VLM_ERR_INVALID, "png: cannot encode the image: %s", pi.message);
        png_image_free(&pi);
        return rc;
    }
    void *shrunk = realloc(buf, n ? n : 1);
    *data = shrunk ? shrunk : buf;
    *size = n;
    return VLM_OK;
}

/* Writes data[0..size) to path (data freed here); a partly written file is removed. */
static int write_bytes(const char *path, void *data, size_t size)
{
    int rc;
    FILE *f = fopen(path, "wb");
    if (!f) {
        rc = vlm_errorf(VLM_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        free(data);
        return rc;
    }
    size_t w = fwrite(data, 1, size, f);
    int err = w != size ? errno : 0;
    if (fclose(f) != 0 && !err) err = errno ? errno : EIO;
    if (w != size && !err) err = EIO;
    free(data);
    if (err) {
        remove(path);
        return vlm_errorf(VLM_ERR_IO, "cannot write '%s': %s", path, strerror(err));
    }
    return VLM_OK;
}

int vlm_image_write_png(const char *path, const vlm_image *img)
{
    void *data;
    size_t size;
    int rc = vlm_image_encode_png(img, &data, &size);
    return rc ? rc : write_bytes(path, data, size);
}

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg hands back a pointer to this */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    unsigned char *out; /* jpeg_mem_dest's buffer (malloc'd by libjpeg-turbo; ours to free) */
    unsigned long n;
} jpeg_write_err;

static void on_jpeg_write_error(j_common_ptr c)
{
    jpeg_write_err *e = (jpeg_write_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

int vlm_image_encode_jpeg(const vlm_image *img, int quality, void **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return vlm_errorf(VLM_ERR_INVALID, "jpeg: no image to write");
    if (img->width > JPEG_MAX_DIMENSION || img->height > JPEG_MAX_DIMENSION)
        return vlm_errorf(VLM_ERR_INVALID, "jpeg: image %dx%d is too large for JPEG (at most %d a side)", img->width,
                          img->height, (int)JPEG_MAX_DIMENSION);
    if (quality < 0 || quality > 100) return vlm_errorf(VLM_ERR_INVALID, "jpeg: quality %d is not in 1..100", quality);
    struct jpeg_compress_struct c;
    jpeg_write_err err; /* libjpeg updates out and n through their addresses: they live in memory */
    err.out = NULL;
    err.n = 0;
    c.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_jpeg_write_error;
    if (setjmp(err.jb)) {
        jpeg_destroy_compress(&c);
        free(err.out);
        return vlm_errorf(VLM_ERR_INVALID, "jpeg: cannot encode the image: %s", err.msg);
    }
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &err.out, &err.n);
    c.image_width = (JDIMENSION)img->width;
    c.image_height = (JDIMENSION)img->height;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality ? quality : 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = img->rgb + (size_t)c.next_scanline * (size_t)img->width * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *data = err.out;
    *size = (size_t)err.n;
    return VLM_OK;
}

int vlm_image_write_jpeg(const char *path, const vlm_image *img, int quality)
{
    void *data;
    size_t size;
    int rc = vlm_image_encode_jpeg(img, quality, &data, &size);
    return rc ? rc : write_bytes(path, data, size);
}

vlm_image_format vlm_image_format_for_path(const char *path)
{
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot || strchr(dot, '/')) return VLM_IMAGE_UNKNOWN;
    if (!strcasecmp(dot, ".png")) return VLM_IMAGE_PNG;
    if (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")) return VLM_IMAGE_JPEG;
    return VLM_IMAGE_UNKNOWN;
}

int vlm_image_write(const char *path, const vlm_image *img)
{
    switch (vlm_image_format_for_path(path)) {
    case VLM_IMAGE_PNG: return vlm_image_write_png(path, img);
    case VLM_IMAGE_JPEG: return vlm_image_write_jpeg(path, img, 95);
    default:
        return vlm_errorf(VLM_ERR_INVALID, "'%s': the extension names no format vlm writes (use .png, .jpg or .jpeg)",
                          path ? path : "");
    }
}

int vlm_image_path_pattern(const char *pattern, int *n_conversions)
{
    *n_conversions = 0;
    if (!pattern || !*pattern) return vlm_errorf(VLM_ERR_INVALID, "no output name given");
    int n = 0;
    for (const char *p = pattern; *p; p++) {
        if (*p != '%') continue;
        if (p[1] == '%') {
            p++;
            continue;
        }
        const char *q = p + 1;
        while (*q && strchr("0-+ #", *q)) q++;
        int digits = 0;
        while (*q >= '0' && *q <= '9') q++, digits++;
        if (digits > 3 || !*q || !strchr("diu", *q))
            return vlm_errorf(VLM_ERR_INVALID,
                              "'%s': %% must start one integer conversion such as %%04d (or be written %%%%)", pattern);
        if (++n > 1) return vlm_errorf(VLM_ERR_INVALID, "'%s' has more than one %% conversion (one frame number only)",
                                       pattern);
        p = q;
    }
    *n_conversions = n;
    return VLM_OK;
}

int vlm_image_path_format(const char *pattern, int i, char *out, size_t cap)
{
    int n;
    int rc = vlm_image_path_pattern(pattern, &n);
    if (rc) return rc;
    int len;
    if (n) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        len = snprintf(out, cap, pattern, i); /* checked above: one integer conversion */
#pragma GCC diagnostic pop
    } else {
        len = snprintf(out, cap, "%s", pattern);
    }
    if (len < 0 || (size_t)len >= cap) return vlm_errorf(VLM_ERR_INVALID, "'%s': the name is too long", pattern);
    return VLM_OK;
}
