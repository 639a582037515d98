/* Media inputs to decoded images (resolve.h). */
#include "media/resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/file.h"
#include "media/exif.h"
#include "media/video.h"

void vlm_resolve_options_default(vlm_resolve_options *o)
{
    memset(o, 0, sizeof *o);
    o->sampling = VLM_RESOLVE_DEFAULT_SAMPLING;
    o->allow_paths = 1;
}

void vlm_resolved_free(vlm_resolved *r)
{
    if (!r) return;
    for (int i = 0; i < r->n; i++) vlm_image_free(&r->items[i].image);
    free(r->items);
    memset(r, 0, sizeof *r);
}

/* How messages name an input: itself, or for a long one (a data: URL) its start and length. */
static void describe(const char *input, char *buf, size_t cap)
{
    const size_t n = strlen(input);
    if (n <= 96)
        snprintf(buf, cap, "'%s'", input);
    else
        snprintf(buf, cap, "'%.64s...' (%zu characters)", input, n);
}

/* The current error, prefixed with the input's name unless the message already names it. */
static int named(int rc, const char *name, const char *raw)
{
    if (rc >= 0) return rc;
    const char *msg = vlm_last_error();
    if ((raw && *raw && strstr(msg, raw)) || strstr(msg, name)) return rc;
    return vlm_error_prefix(rc, "%s", name);
}

typedef struct {
    vlm_image_limits lim;
    int64_t max_total;
    size_t max_file;
    int max_frames;
    const char *sampling;
} budget;

static void make_budget(const vlm_resolve_options *o, budget *b)
{
    if (o->image)
        b->lim = *o->image;
    else
        vlm_image_limits_default(&b->lim);
    if (b->lim.max_decoded_bytes <= 0) b->lim.max_decoded_bytes = VLM_IMAGE_DEFAULT_MAX_DECODED_BYTES;
    if (b->lim.max_pixels <= 0) b->lim.max_pixels = VLM_IMAGE_DEFAULT_MAX_PIXELS;
    b->max_total = o->max_total_bytes > 0 ? o->max_total_bytes : b->lim.max_decoded_bytes;
    b->max_file = o->max_file_bytes ? o->max_file_bytes : (size_t)b->lim.max_decoded_bytes;
    b->max_frames = o->max_frames > 0 ? o->max_frames : VLM_VIDEO_DEFAULT_MAX_FRAMES;
    b->sampling = o->sampling && *o->sampling ? o->sampling : VLM_RESOLVE_DEFAULT_SAMPLING;
}

/* Appends one picture (taken over: img is zeroed) to out. */
static int push(vlm_resolved *out, vlm_image *img, double pts, int from_video, int orientation, const budget *b,
                int64_t *total)
{
    const int64_t bytes = (int64_t)img->width * img->height * 3;
    if (*total + bytes > b->max_total) {
        int rc = vlm_errorf(VLM_ERR_LIMIT,
                            "%d pictures of %dx%d need more than the limit of %lld bytes of RGB (sample fewer frames)",
                            out->n + 1, img->width, img->height, (long long)b->max_total);
        vlm_image_free(img);
        return rc;
    }
    vlm_resolved_image *items = realloc(out->items, (size_t)(out->n + 1) * sizeof *items);
    if (!items) {
        vlm_image_free(img);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    out->items = items;
    items[out->n] = (vlm_resolved_image){*img, pts, from_video, orientation};
    out->n++;
    *total += bytes;
    memset(img, 0, sizeof *img);
    return VLM_OK;
}

static int image_from_bytes(const void *data, size_t size, vlm_image_format fmt, const budget *b, vlm_resolved *out)
{
    vlm_image img;
    int rc = vlm_image_decode_memory(data, size, &b->lim, &img);
    if (rc) return rc;
    out->kind = VLM_MEDIA_IMAGE;
    snprintf(out->format, sizeof out->format, "%s", vlm_image_format_name(fmt));
    int64_t total = 0;
    const int orientation = fmt == VLM_IMAGE_JPEG || fmt == VLM_IMAGE_TIFF ? vlm_exif_orientation(data, size) : 0;
    return push(out, &img, -1.0, 0, orientation, b, &total);
}

/* The sampled frames of an open video. */
static int frames_of(vlm_video *v, const budget *b, vlm_resolved *out)
{
    vlm_video_sampling s;
    int rc = vlm_video_sampling_parse(b->sampling, &s);
    if (rc) return rc;
    const vlm_video_info *in = vlm_video_get_info(v);
    /* fps / every over a length the container does not give: read it from the packets, so that the
       plan's size is known */
    if ((s.mode == VLM_VIDEO_FPS || s.mode == VLM_VIDEO_EVERY) && !(in->duration > 0) && (rc = vlm_video_scan(v)))
        return rc;
    if ((rc = vlm_video_start(v, &s))) return rc;
    out->kind = VLM_MEDIA_VIDEO;
    snprintf(out->format, sizeof out->format, "%s", in->codec);
    snprintf(out->sampling, sizeof out->sampling, "%s", b->sampling);
    int64_t total = 0;
    vlm_image img;
    double pts;
    int r;
    while ((r = vlm_video_next(v, &img, &pts)) == 1)
        if ((rc = push(out, &img, pts, 1, 0, b, &total))) return rc;
    if (r < 0) return r;
    if (out->n == 0) return vlm_errorf(VLM_ERR_FORMAT, "the video gave no frame to sample");
    vlm_video_plan plan;
    vlm_video_get_plan(v, &plan);
    out->planned = plan.planned;
    out->cut = plan.cut;
    out->duration = vlm_video_get_info(v)->duration;
    return VLM_OK;
}

static void video_limits(const budget *b, const vlm_resolve_options *o, vlm_video_limits *vl)
{
    vl->max_pixels = b->lim.max_pixels;
    vl->max_frames = b->max_frames;
    vl->threads = o->video_threads;
}

/* Bytes in memory: an image, else a video, else neither. */
static int from_bytes(const void *data, size_t size, const vlm_resolve_options *o, const budget *b, vlm_resolved *out)
{
    if (!data || size == 0) return vlm_errorf(VLM_ERR_FORMAT, "empty (0 bytes)");
    vlm_image_format fmt;
    const vlm_media_kind kind = vlm_media_sniff(data, size, &fmt);
    if (kind == VLM_MEDIA_IMAGE) return image_from_bytes(data, size, fmt, b, out);
    vlm_video_limits vl;
    video_limits(b, o, &vl);
    vlm_video *v;
    int rc = vlm_video_open_memory(data, size, &vl, &v);
    if (rc) {
        if (kind == VLM_MEDIA_UNKNOWN)
            return vlm_errorf(VLM_ERR_UNSUPPORTED, "not a supported image or video (%s)", vlm_last_error());
        return rc;
    }
    rc = frames_of(v, b, out);
    vlm_video_close(v);
    return rc;
}

int vlm_media_resolve_memory(const void *data, size_t size, const char *name, const vlm_resolve_options *o,
                             vlm_resolved *out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "resolve: no output given");
    memset(out, 0, sizeof *out);
    vlm_resolve_options def;
    if (!o) {
        vlm_resolve_options_default(&def);
        o = &def;
    }
    budget b;
    make_budget(o, &b);
    char label[160];
    snprintf(label, sizeof label, "%s", name && *name ? name : "the media");
    int rc = from_bytes(data, size, o, &b, out);
    if (rc) vlm_resolved_free(out);
    return named(rc, label, name);
}

/* A local file: a still image is read whole (capped), a video is streamed from the file. */
static int from_path(const char *path, const vlm_resolve_options *o, const budget *b, vlm_resolved *out)
{
    if (!o->allow_paths)
        return vlm_errorf(VLM_ERR_INVALID,
                          "local paths are not accepted here (a data:, http(s):// or file:// URL is)");
    const char *problem = vlm_file_kind_problem(path);
    if (problem) return vlm_errorf(VLM_ERR_INVALID, "'%s' %s", path, problem);
    struct stat st;
    if (stat(path, &st) != 0) return vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) { /* a pipe cannot be read twice: take it whole, within the cap */
        unsigned char *data;
        size_t size;
        int rc = vlm_read_bytes(path, b->max_file, &data, &size);
        if (rc) return rc;
        rc = from_bytes(data, size, o, b, out);
        free(data);
        return rc;
    }
    unsigned char head[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    ssize_t hn;
    do hn = read(fd, head, sizeof head);
    while (hn < 0 && errno == EINTR);
    const int e = errno;
    close(fd);
    if (hn < 0) return vlm_errorf(VLM_ERR_IO, "cannot read '%s': %s", path, strerror(e));
    if (hn == 0) return vlm_errorf(VLM_ERR_FORMAT, "'%s' is empty (0 bytes)", path);
    vlm_image_format fmt;
    const vlm_media_kind kind = vlm_media_sniff(head, (size_t)hn, &fmt);
    if (kind == VLM_MEDIA_IMAGE) {
        unsigned char *data;
        size_t size;
        int rc = vlm_read_bytes(path, b->max_file, &data, &size);
        if (rc) return rc;
        rc = image_from_bytes(data, size, vlm_image_detect(data, size), b, out);
        free(data);
        return rc;
    }
    vlm_video_limits vl;
    video_limits(b, o, &vl);
    vlm_video *v;
    int rc = vlm_video_open_file(path, &vl, &v);
    if (rc) {
        if (kind == VLM_MEDIA_UNKNOWN)
            return vlm_errorf(VLM_ERR_UNSUPPORTED, "'%s' is not a supported image or video (%s)", path,
                              vlm_last_error());
        return rc;
    }
    rc = frames_of(v, b, out);
    vlm_video_close(v);
    return rc;
}

int vlm_media_resolve(const char *input, const vlm_resolve_options *o, vlm_resolved *out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "resolve: no output given");
    memset(out, 0, sizeof *out);
    if (!input || !*input) return vlm_errorf(VLM_ERR_INVALID, "no media input given (an empty name)");
    vlm_resolve_options def;
    if (!o) {
        vlm_resolve_options_default(&def);
        o = &def;
    }
    budget b;
    make_budget(o, &b);
    char label[160];
    describe(input, label, sizeof label);
    int rc;
    if (vlm_url_is_url(input)) {
        vlm_url_policy pol;
        if (o->url) {
            pol = *o->url;
        } else {
            vlm_url_policy_default(&pol);
            pol.accept = VLM_URL_ACCEPT_IMAGE | VLM_URL_ACCEPT_VIDEO;
        }
        vlm_url_blob blob;
        rc = vlm_url_fetch(input, &pol, &blob);
        if (rc == VLM_OK) {
            rc = from_bytes(blob.data, blob.size, o, &b, out);
            vlm_url_blob_free(&blob);
        }
    } else {
        rc = from_path(input, o, &b, out);
    }
    if (rc) vlm_resolved_free(out);
    return named(rc, label, strlen(input) <= 96 ? input : NULL);
}
