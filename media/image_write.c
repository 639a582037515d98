/* RGB8 -> PNG with libpng's simplified write API (image_write.h). */
#include "media/image_write.h"

#include <errno.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int vlm_image_write_png(const char *path, const vlm_image *img)
{
    void *data;
    size_t size;
    int rc = vlm_image_encode_png(img, &data, &size);
    if (rc) return rc;
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
