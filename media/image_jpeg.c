/* JPEG -> RGB8 with libjpeg-turbo, reproducing Pillow 9.4.0's open().convert("RGB").
 *
 * PIL decodes with libjpeg's defaults (islow IDCT, fancy upsampling, no scaling)
 * and only picks the output colour space from the component count:
 *   1 component  -> JCS_GRAYSCALE, replicated to RGB
 *   3 components -> JCS_RGB (libjpeg converts YCbCr, or passes Adobe RGB)
 *   4 components -> JCS_CMYK (libjpeg converts YCCK), read as Adobe-inverted CMYK
 *                   ("CMYK;I") and converted with PIL's cmyk2rgb.
 * PIL refuses other component counts and non-8-bit precision; so do we.
 *
 * Truncation: with an in-memory source libjpeg only *warns* (JWRN_JPEG_EOF) and
 * pads with a fake EOI, which would give grey rows silently.  PIL raises
 * "image file is truncated" instead (even when only the EOI marker is missing),
 * so that warning is an error here, and jpeg_finish_decompress is called so that
 * a missing EOI is caught too.  Other warnings ("corrupt JPEG data: ...") are
 * ignored, as PIL ignores them.
 * Errors longjmp back from the error manager; pointers live across the jump are
 * volatile and freed on that path. */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "core/error.h"
#include "media/image_codecs.h"

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg hands back a pointer to this */
    jmp_buf jb;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void on_jpeg_error_exit(j_common_ptr c)
{
    jpeg_err *e = (jpeg_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void on_jpeg_message(j_common_ptr c, int level)
{
    jpeg_err *e = (jpeg_err *)c->err;
    if (level >= 0) return; /* trace messages */
    if (c->err->msg_code == JWRN_JPEG_EOF) {
        e->truncated = 1;
        longjmp(e->jb, 1);
    }
    c->err->num_warnings++; /* corrupt-data warnings: tolerated like PIL */
}

/* PIL's MULDIV255: a*b/255 rounded, in integers. */
static inline int muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

int vlm_image_decode_jpeg(const uint8_t *data, size_t size, const vlm_image_limits *lim,
                          vlm_image *out)
{
    memset(out, 0, sizeof *out);
    /* Heap-allocated: libjpeg changes both between setjmp and longjmp. */
    struct jpeg_decompress_struct *cinfo = calloc(1, sizeof *cinfo);
    jpeg_err *err = calloc(1, sizeof *err);
    if (!cinfo || !err) {
        free(cinfo);
        free(err);
        return vlm_errorf(VLM_ERR_NOMEM, "jpeg: out of memory");
    }
    uint8_t *volatile rgb = NULL;
    uint8_t *volatile row = NULL;
    volatile int status = VLM_OK;
    volatile int created = 0;

    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = on_jpeg_error_exit;
    err->pub.emit_message = on_jpeg_message;
    if (setjmp(err->jb)) {
        if (status == VLM_OK) {
            if (err->truncated)
                status = vlm_errorf(VLM_ERR_FORMAT, "jpeg: file is truncated");
            else
                status = vlm_errorf(VLM_ERR_FORMAT, "jpeg: corrupt file (%s)", err->msg);
        }
        goto done;
    }
    jpeg_create_decompress(cinfo);
    created = 1;
    /* jpeg_mem_src takes a non-const pointer in older headers but never writes. */
    jpeg_mem_src(cinfo, (unsigned char *)(uintptr_t)data, (unsigned long)size);
    jpeg_read_header(cinfo, TRUE);

    int w = (int)cinfo->image_width, h = (int)cinfo->image_height;
    if ((status = vlm_image_check_limits("jpeg", cinfo->image_width, cinfo->image_height, lim)))
        goto done;
    if (cinfo->data_precision != 8) {
        status = vlm_errorf(VLM_ERR_UNSUPPORTED, "jpeg: %d-bit samples are not supported",
                            cinfo->data_precision);
        goto done;
    }
    int nc = cinfo->num_components;
    if (nc == 1)
        cinfo->out_color_space = JCS_GRAYSCALE;
    else if (nc == 3)
        cinfo->out_color_space = JCS_RGB;
    else if (nc == 4)
        cinfo->out_color_space = JCS_CMYK;
    else {
        status = vlm_errorf(VLM_ERR_UNSUPPORTED, "jpeg: %d-component images are not supported", nc);
        goto done;
    }
    /* The library defaults are what PIL uses; set them anyway so a changed
     * default cannot drift us away from the reference. */
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    cinfo->scale_num = cinfo->scale_denom = 1;

    rgb = (uint8_t *)malloc((size_t)w * h * 3);
    if (nc != 3) row = (uint8_t *)malloc((size_t)w * nc);
    if (!rgb || (nc != 3 && !row)) {
        status = vlm_errorf(VLM_ERR_NOMEM, "jpeg: out of memory for %dx%d image", w, h);
        goto done;
    }
    jpeg_start_decompress(cinfo);
    if ((int)cinfo->output_width != w || (int)cinfo->output_height != h ||
        cinfo->output_components != nc) {
        status = vlm_errorf(VLM_ERR_FORMAT, "jpeg: unexpected output geometry");
        goto done;
    }
    while ((int)cinfo->output_scanline < h) {
        int y = (int)cinfo->output_scanline;
        uint8_t *dst = rgb + (size_t)y * w * 3;
        JSAMPROW r = nc == 3 ? dst : row;
        if (jpeg_read_scanlines(cinfo, &r, 1) != 1) {
            /* Cannot happen with a memory source (it never suspends). */
            status = vlm_errorf(VLM_ERR_FORMAT, "jpeg: file is truncated");
            goto done;
        }
        if (nc == 1) {
            for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else if (nc == 4) {
            for (int x = 0; x < w; x++) {
                /* "CMYK;I": the stored values are inverted (Adobe convention). */
                int c = 255 - row[4 * x], m = 255 - row[4 * x + 1];
                int yy = 255 - row[4 * x + 2], k = 255 - row[4 * x + 3];
                int nk = 255 - k;
                /* nk - muldiv255(v, nk) is always within 0..nk, no clipping needed. */
                dst[3 * x] = (uint8_t)(nk - muldiv255(c, nk));
                dst[3 * x + 1] = (uint8_t)(nk - muldiv255(m, nk));
                dst[3 * x + 2] = (uint8_t)(nk - muldiv255(yy, nk));
            }
        }
    }
    jpeg_finish_decompress(cinfo); /* reads up to EOI: a missing EOI is "truncated" */
    out->width = w;
    out->height = h;
    out->rgb = rgb;
    rgb = NULL;

done:
    if (created) jpeg_destroy_decompress(cinfo);
    free(row);
    free(rgb);
    free(cinfo);
    free(err);
    return status;
}
