/* Format detection, file reading, probing and the budgets shared by the decoders. */
#include "media/image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "media/image_codecs.h"

void vlm_image_limits_default(vlm_image_limits *l)
{
    l->max_pixels = VLM_IMAGE_DEFAULT_MAX_PIXELS;
    l->max_decoded_bytes = VLM_IMAGE_DEFAULT_MAX_DECODED_BYTES;
}

int64_t vlm_image_max_bytes(const vlm_image_limits *lim)
{
    return lim->max_decoded_bytes > 0 ? lim->max_decoded_bytes : VLM_IMAGE_DEFAULT_MAX_DECODED_BYTES;
}

int vlm_image_check_bytes(const char *fmt, int64_t bytes, const vlm_image_limits *lim)
{
    int64_t max = vlm_image_max_bytes(lim);
    if (bytes < 0 || bytes > max)
        return vlm_errorf(VLM_ERR_LIMIT,
                          "%s: decoding needs %lld bytes, more than the decoded-bytes limit of %lld",
                          fmt, (long long)bytes, (long long)max);
    return VLM_OK;
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
    if (pixels > INT64_MAX / 3) /* only with a limit raised past any real image */
        return vlm_errorf(VLM_ERR_LIMIT, "%s: image is %lldx%lld, too large", fmt,
                          (long long)width, (long long)height);
    return vlm_image_check_bytes(fmt, pixels * 3, lim);
}

static const uint8_t k_png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* ISO-BMFF 'ftyp' box listing brand b (major or compatible). */
static int ftyp_has_brand(const uint8_t *p, size_t size, const char *b)
{
    if (size < 16 || memcmp(p + 4, "ftyp", 4) != 0) return 0;
    size_t box = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
    if (box < 16) return 0;
    if (box > size) box = size;
    if (!memcmp(p + 8, b, 4)) return 1;
    for (size_t o = 16; o + 4 <= box; o += 4)
        if (!memcmp(p + o, b, 4)) return 1;
    return 0;
}

vlm_image_format vlm_image_detect(const void *data, size_t size)
{
    const uint8_t *p = (const uint8_t *)data;
    if (!p) return VLM_IMAGE_UNKNOWN;
    if (size >= 8 && memcmp(p, k_png_magic, 8) == 0) return VLM_IMAGE_PNG;
    if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return VLM_IMAGE_JPEG;
    if (size >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6))) return VLM_IMAGE_GIF;
    if (size >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return VLM_IMAGE_WEBP;
    if (size >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4))) return VLM_IMAGE_TIFF;
    if (size >= 18 && p[0] == 'B' && p[1] == 'M') {
        /* "BM" alone is too weak: the DIB header size must be one that exists. */
        uint32_t h = p[14] | ((uint32_t)p[15] << 8) | ((uint32_t)p[16] << 16) | ((uint32_t)p[17] << 24);
        if (h == 12 || h == 40 || h == 52 || h == 56 || h == 64 || h == 108 || h == 124)
            return VLM_IMAGE_BMP;
    }
    if (ftyp_has_brand(p, size, "avif") || ftyp_has_brand(p, size, "avis")) return VLM_IMAGE_AVIF;
    return VLM_IMAGE_UNKNOWN;
}

const char *vlm_image_format_name(vlm_image_format f)
{
    switch (f) {
    case VLM_IMAGE_PNG: return "png";
    case VLM_IMAGE_JPEG: return "jpeg";
    case VLM_IMAGE_GIF: return "gif";
    case VLM_IMAGE_WEBP: return "webp";
    case VLM_IMAGE_BMP: return "bmp";
    case VLM_IMAGE_TIFF: return "tiff";
    case VLM_IMAGE_AVIF: return "avif";
    default: return "unknown";
    }
}

const char *vlm_image_format_mime(vlm_image_format f)
{
    switch (f) {
    case VLM_IMAGE_PNG: return "image/png";
    case VLM_IMAGE_JPEG: return "image/jpeg";
    case VLM_IMAGE_GIF: return "image/gif";
    case VLM_IMAGE_WEBP: return "image/webp";
    case VLM_IMAGE_BMP: return "image/bmp";
    case VLM_IMAGE_TIFF: return "image/tiff";
    case VLM_IMAGE_AVIF: return "image/avif";
    default: return NULL;
    }
}

static int unsupported(const uint8_t *p, size_t size)
{
    if (ftyp_has_brand(p, size, "heic") || ftyp_has_brand(p, size, "heix") ||
        ftyp_has_brand(p, size, "mif1") || ftyp_has_brand(p, size, "msf1"))
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "unsupported image format (HEIC/HEIF)");
    if (size >= 12 && !memcmp(p, "\0\0\0\x0cJXL ", 8))
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "unsupported image format (JPEG XL)");
    if (size >= 4 && (!memcmp(p, "II+\0", 4) || !memcmp(p, "MM\0+", 4)))
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "unsupported image format (BigTIFF)");
    return vlm_errorf(VLM_ERR_UNSUPPORTED,
                      "unsupported image format (not PNG, JPEG, GIF, WebP, BMP, TIFF or AVIF; "
                      "first bytes %02x %02x %02x %02x)",
                      p[0], size > 1 ? p[1] : 0, size > 2 ? p[2] : 0, size > 3 ? p[3] : 0);
}

int vlm_image_probe_memory(const void *data, size_t size, vlm_image_info *info)
{
    if (!info) return vlm_errorf(VLM_ERR_INVALID, "image: no output given");
    memset(info, 0, sizeof *info);
    if (!data || size == 0) return vlm_errorf(VLM_ERR_FORMAT, "image: empty input (0 bytes)");
    const uint8_t *p = (const uint8_t *)data;
    vlm_image_format f = vlm_image_detect(p, size);
    int rc = VLM_OK, w = 0, h = 0, bits;
    uint64_t need;
    info->frames = 1;
    switch (f) {
    case VLM_IMAGE_PNG: rc = vlm_png_parse(p, size, &w, &h); break;
    case VLM_IMAGE_JPEG: rc = vlm_jpeg_parse(p, size, &w, &h); break;
    case VLM_IMAGE_BMP: rc = vlm_bmp_parse(p, size, &w, &h, &bits, &need); break;
    case VLM_IMAGE_GIF: {
        vlm_gif_header g;
        rc = vlm_gif_parse(p, size, &g);
        /* Pillow grows the canvas when frame 0 reaches past the logical screen. */
        w = g.x + g.w > g.screen_w ? g.x + g.w : g.screen_w;
        h = g.y + g.h > g.screen_h ? g.y + g.h : g.screen_h;
        info->frames = g.frames;
        break;
    }
    case VLM_IMAGE_WEBP: {
        vlm_webp_header wp;
        rc = vlm_webp_parse(p, size, &wp);
        w = wp.width;
        h = wp.height;
        info->frames = wp.frames;
        break;
    }
    case VLM_IMAGE_TIFF: {
        vlm_tiff_header t;
        rc = vlm_tiff_parse(p, size, &t);
        w = t.width;
        h = t.height;
        break;
    }
    case VLM_IMAGE_AVIF: rc = vlm_avif_parse(p, size, &w, &h); break;
    default: return unsupported(p, size);
    }
    if (rc == VLM_OK && (w <= 0 || h <= 0))
        rc = vlm_errorf(VLM_ERR_FORMAT, "%s: invalid image size %dx%d", vlm_image_format_name(f), w, h);
    if (rc) {
        memset(info, 0, sizeof *info);
        return rc;
    }
    info->format = f;
    info->width = w;
    info->height = h;
    return VLM_OK;
}

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
    vlm_image_format f = vlm_image_detect(p, size);
    switch (f) {
    case VLM_IMAGE_PNG: return vlm_image_decode_png(p, size, lim, out);
    case VLM_IMAGE_JPEG: return vlm_image_decode_jpeg(p, size, lim, out);
    case VLM_IMAGE_UNKNOWN: return unsupported(p, size);
    default: return vlm_image_decode_av(f, p, size, lim, out);
    }
}

int vlm_image_decode_file(const char *path, const vlm_image_limits *lim, vlm_image *out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "image: no output given");
    memset(out, 0, sizeof *out);
    if (!path) return vlm_errorf(VLM_ERR_INVALID, "image: no path given");
    uint8_t *buf;
    size_t len;
    vlm_image_limits def;
    if (!lim) {
        vlm_image_limits_default(&def);
        lim = &def;
    }
    /* at most the decoded-bytes limit is read (a compressed picture is never larger than what it
     * decodes to, plus headers); directories and devices such as /dev/zero are refused unread */
    int rc = vlm_read_bytes(path, (size_t)vlm_image_max_bytes(lim), &buf, &len);
    if (rc) return rc;
    if (len == 0) return vlm_errorf(VLM_ERR_FORMAT, "'%s': empty file (0 bytes)", path);
    rc = vlm_image_decode_memory(buf, len, lim, out);
    free(buf);
    if (rc) return vlm_error_prefix(rc, "'%s'", path);
    return VLM_OK;
}
