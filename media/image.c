/* Format detection, file reading and the pixel budget shared by the decoders. */
#include "media/image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "media/image_codecs.h"

void vlm_image_limits_default(vlm_image_limits *l)
{
    l->max_pixels = VLM_IMAGE_DEFAULT_MAX_PIXELS;
}

void vlm_image_free(vlm_image *img)
{
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

int vlm_image_check_limits(const char *fmt, int64_t width, int64_t height,
                           const vlm_image_limits *lim)
{
    if (width <= 0 || height <= 0)
        return vlm_errorf(VLM_ERR_FORMAT, "%s: invalid image size %lldx%lld", fmt,
                          (long long)width, (long long)height);
    if (width > INT32_MAX || height > INT32_MAX)
        return vlm_errorf(VLM_ERR_FORMAT, "%s: invalid image size %lldx%lld (over 2^31-1)", fmt,
                          (long long)width, (long long)height);
    /* Both factors are below 2^31 here, so the product cannot overflow. */
    int64_t pixels = width * height;
    if (pixels > lim->max_pixels)
        return vlm_errorf(VLM_ERR_LIMIT,
                          "%s: image is %lldx%lld = %lld pixels, more than the limit of %lld pixels",
                          fmt, (long long)width, (long long)height, (long long)pixels,
                          (long long)lim->max_pixels);
    /* The RGB buffer size must fit size_t (only matters for a raised limit). */
    if ((uint64_t)pixels > (uint64_t)(SIZE_MAX / 4))
        return vlm_errorf(VLM_ERR_LIMIT, "%s: image is %lldx%lld, too large for this machine",
                          fmt, (long long)width, (long long)height);
    return VLM_OK;
}

static const uint8_t k_png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

int vlm_image_decode_memory(const void *data, size_t size, const vlm_image_limits *lim,
                            vlm_image *out)
{
    vlm_image_limits def;
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "image: no output given");
    memset(out, 0, sizeof *out);
    if (!lim) {
        vlm_image_limits_default(&def);
        lim = &def;
    }
    if (!data && size) return vlm_errorf(VLM_ERR_INVALID, "image: no data given");
    if (size == 0) return vlm_errorf(VLM_ERR_FORMAT, "image: empty input (0 bytes)");
    const uint8_t *p = (const uint8_t *)data;
    if (size >= 8 && memcmp(p, k_png_magic, 8) == 0)
        return vlm_image_decode_png(p, size, lim, out);
    if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return vlm_image_decode_jpeg(p, size, lim, out);
    return vlm_errorf(VLM_ERR_UNSUPPORTED,
                      "unsupported image format (not PNG or JPEG; first bytes %02x %02x %02x %02x)",
                      p[0], size > 1 ? p[1] : 0, size > 2 ? p[2] : 0, size > 3 ? p[3] : 0);
}

/* Reads the whole file; *buf is malloc'd (NULL for an empty file). */
static int read_all(const char *path, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 0, n = 0;
    uint8_t *b = NULL;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            if (ncap < cap) {
                free(b);
                fclose(f);
                return vlm_errorf(VLM_ERR_NOMEM, "'%s' is too large", path);
            }
            uint8_t *nb = (uint8_t *)realloc(b, ncap);
            if (!nb) {
                free(b);
                fclose(f);
                return vlm_errorf(VLM_ERR_NOMEM, "out of memory reading '%s'", path);
            }
            b = nb;
            cap = ncap;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return vlm_errorf(VLM_ERR_IO, "read error on '%s'", path);
    }
    if (n == 0) {
        free(b);
        b = NULL;
    }
    *buf = b;
    *len = n;
    return VLM_OK;
}

int vlm_image_decode_file(const char *path, const vlm_image_limits *lim, vlm_image *out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "image: no output given");
    memset(out, 0, sizeof *out);
    if (!path) return vlm_errorf(VLM_ERR_INVALID, "image: no path given");
    uint8_t *buf;
    size_t len;
    int rc = read_all(path, &buf, &len);
    if (rc) return rc;
    if (len == 0) return vlm_errorf(VLM_ERR_FORMAT, "'%s': empty file (0 bytes)", path);
    rc = vlm_image_decode_memory(buf, len, lim, out);
    free(buf);
    if (rc) return vlm_error_prefix(rc, "'%s'", path);
    return VLM_OK;
}
