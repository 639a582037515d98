/* vlm media: what vlm sees in an image, a video or an image URL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "media/image.h"
#include "media/image_write.h"
#include "media/url.h"
#include "media/video.h"
#include "samples/cli.h"

#define MAX_LIST 32

static void usage(FILE *f)
{
    fputs("usage: vlm media [options] <file or URL>\n"
          "\n"
          "Prints the format and size of an image (PNG, JPEG, GIF, WebP, BMP, TIFF, AVIF) or a\n"
          "video (codec, duration, frame rate, frame count, rotation); URLs may be data:, http(s)://\n"
          "or file:// and are fetched under the same policy the server applies.\n"
          "\n"
          "options:\n"
          "  --frames <spec>     video: list the timestamps sampled by fps=F, every=S, n=N or scene[=T]\n"
          "  --dump <out.png>    write the decoded RGB as PNG (video: the first sampled frame)\n"
          "  --max-pixels <n>    pixel budget per image or frame (default 50000000)\n"
          "  --max-frames <n>    video: sample at most n frames (default 256)\n"
          "  --allow-private     URLs may reach loopback, private, link-local and other special addresses\n"
          "  --allow-addr <ip>   admit this address or CIDR range although special (repeatable)\n"
          "  --allow-domain <d>  fetch only from d and its subdomains (repeatable)\n"
          "  --media-dir <dir>   allow file:// URLs for files below dir\n"
          "  --max-bytes <n>     size cap for URLs (default 33554432)\n"
          "  --timeout <ms>      whole-fetch time limit for http(s) (default 30000)\n",
          f);
}

typedef struct {
    const char *input, *frames, *dump;
    long long max_pixels, max_frames, max_bytes, timeout;
    int allow_private;
    const char *addrs[MAX_LIST], *domains[MAX_LIST];
    size_t n_addrs, n_domains;
    const char *media_dir;
} media_args;

/* 0 ok, 1 exit 0 (help), 2 usage error (printed). */
static int parse_args(int argc, char **argv, media_args *a)
{
    memset(a, 0, sizeof *a);
    a->max_pixels = VLM_IMAGE_DEFAULT_MAX_PIXELS;
    a->max_frames = VLM_VIDEO_DEFAULT_MAX_FRAMES;
    a->max_bytes = VLM_URL_DEFAULT_MAX_BYTES;
    a->timeout = 30000;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(o, "--allow-private")) {
            a->allow_private = 1;
            continue;
        }
        if (o[0] != '-' || !o[1]) {
            if (a->input) {
                fprintf(stderr, "vlm media: only one file or URL, got '%s' and '%s'\n", a->input, o);
                return 2;
            }
            a->input = o;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "vlm media: %s needs a value\n", o);
            return 2;
        }
        const char *val = argv[++i];
        int bad = 0;
        if (!strcmp(o, "--frames"))
            a->frames = val;
        else if (!strcmp(o, "--dump"))
            a->dump = val;
        else if (!strcmp(o, "--media-dir"))
            a->media_dir = val;
        else if (!strcmp(o, "--max-pixels"))
            bad = cli_int("media", o, val, 1, (long long)1 << 40, &a->max_pixels);
        else if (!strcmp(o, "--max-frames"))
            bad = cli_int("media", o, val, 1, 1000000, &a->max_frames);
        else if (!strcmp(o, "--max-bytes"))
            bad = cli_int("media", o, val, 1, (long long)1 << 40, &a->max_bytes);
        else if (!strcmp(o, "--timeout"))
            bad = cli_int("media", o, val, 1, 3600000, &a->timeout);
        else if (!strcmp(o, "--allow-addr") || !strcmp(o, "--allow-domain")) {
            int dom = o[8] == 'd';
            size_t *n = dom ? &a->n_domains : &a->n_addrs;
            if (*n >= MAX_LIST) {
                fprintf(stderr, "vlm media: at most %d %s options\n", MAX_LIST, o);
                return 2;
            }
            (dom ? a->domains : a->addrs)[(*n)++] = val;
        } else {
            fprintf(stderr, "vlm media: unknown option '%s' (see vlm media --help)\n", o);
            return 2;
        }
        if (bad) return 2;
    }
    if (!a->input) {
        usage(stderr);
        return 2;
    }
    return 0;
}

static int fail(void)
{
    return cli_fail("media");
}

/* mime: the type the URL declared ("" or NULL for none). */
static int show_image(const media_args *a, const char *name, const char *mime, const uint8_t *data, size_t size)
{
    if (a->frames) {
        fprintf(stderr, "vlm media: --frames needs a video; '%s' is an image\n", name);
        return 1;
    }
    vlm_image_info info;
    if (vlm_image_probe_memory(data, size, &info)) return fail();
    vlm_image_limits lim;
    vlm_image_limits_default(&lim);
    lim.max_pixels = a->max_pixels;
    vlm_image img;
    if (vlm_image_decode_memory(data, size, &lim, &img)) return fail();
    if (mime && mime[0]) printf("type: %s\n", mime);
    printf("kind: image\nformat: %s\nsize: %dx%d\n", vlm_image_format_name(info.format), img.width, img.height);
    if (info.frames > 1) printf("frames: animated (only the first frame is used)\n");
    int rc = 0;
    if (a->dump) {
        if (vlm_image_write_png(a->dump, &img))
            rc = fail();
        else
            printf("dumped: %s\n", a->dump);
    }
    vlm_image_free(&img);
    return rc;
}

static int show_video(const media_args *a, const char *mime, vlm_video *v)
{
    const vlm_video_info *in = vlm_video_get_info(v);
    /* Fill in what the container left out (frame count, length) from the packets. */
    if (in->frames < 0 || in->frames_estimated || in->duration < 0) {
        if (vlm_video_scan(v)) return fail();
    }
    if (mime && mime[0]) printf("type: %s\n", mime);
    printf("kind: video\ncontainer: %s\ncodec: %s\n", in->container, in->codec);
    if (in->rotation)
        printf("size: %dx%d (coded %dx%d, rotated %d degrees clockwise)\n", in->width, in->height,
               in->coded_width, in->coded_height, in->rotation);
    else
        printf("size: %dx%d\n", in->width, in->height);
    if (in->duration >= 0)
        printf("duration: %.3f s\n", in->duration);
    else
        printf("duration: unknown\n");
    if (in->fps > 0)
        printf("frame rate: %.3f fps\n", in->fps);
    else
        printf("frame rate: unknown\n");
    if (in->frames >= 0)
        printf("frames: %lld%s\n", (long long)in->frames, in->frames_estimated ? " (estimated)" : "");
    else
        printf("frames: unknown\n");
    printf("rotation: %d\n", in->rotation);
    if (!a->frames && !a->dump) return 0;
    vlm_video_sampling s;
    if (vlm_video_sampling_parse(a->frames ? a->frames : "n=1", &s)) return fail();
    if (!a->frames) { /* --dump alone: the first frame */
        s.mode = VLM_VIDEO_EVERY;
        s.value = 1e6;
    }
    if (vlm_video_start(v, &s)) return fail();
    if (a->frames) printf("sampling: %s\n", a->frames);
    int n = 0, r, rc = 0;
    double pts, first = 0;
    vlm_image img;
    while ((r = vlm_video_next(v, a->dump && n == 0 ? &img : NULL, &pts)) == 1) {
        if (a->frames) printf("  %.3f\n", pts);
        if (n == 0) first = pts;
        if (a->dump && n == 0) {
            if (vlm_image_write_png(a->dump, &img)) rc = fail();
            vlm_image_free(&img);
            if (rc) return rc;
        }
        n++;
    }
    if (r < 0) return fail();
    if (a->frames) printf("sampled: %d frames\n", n);
    if (a->dump) {
        if (n == 0) {
            fprintf(stderr, "vlm media: no frame to dump\n");
            return 1;
        }
        printf("dumped: %s (frame at %.3f s)\n", a->dump, first);
    }
    return 0;
}

static int read_file(const char *path, uint8_t **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return vlm_errorf(VLM_ERR_IO, "cannot open '%s'", path);
    size_t cap = 0, n = 0;
    uint8_t *b = NULL;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            if (nc > ((size_t)1 << 30)) { /* images bigger than 1 GiB are not plausible */
                free(b);
                fclose(f);
                return vlm_errorf(VLM_ERR_LIMIT, "'%s' is larger than 1 GiB", path);
            }
            uint8_t *nb = (uint8_t *)realloc(b, nc);
            if (!nb) {
                free(b);
                fclose(f);
                return vlm_errorf(VLM_ERR_NOMEM, "out of memory reading '%s'", path);
            }
            b = nb;
            cap = nc;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        if (!got) break;
        n += got;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return vlm_errorf(VLM_ERR_IO, "read error on '%s'", path);
    }
    *data = b;
    *size = n;
    return VLM_OK;
}

int vlm_cmd_media(int argc, char **argv)
{
    media_args a;
    int pr = parse_args(argc, argv, &a);
    if (pr) return pr == 1 ? 0 : 2;
    vlm_video_limits vlim = {a.max_pixels, (int)a.max_frames, 0};
    int rc;
    if (vlm_url_is_url(a.input)) {
        vlm_url_policy pol;
        vlm_url_policy_default(&pol);
        pol.max_bytes = (size_t)a.max_bytes;
        pol.timeout_ms = (long)a.timeout;
        pol.allow_private = a.allow_private;
        pol.allow_addrs = a.addrs;
        pol.n_allow_addrs = a.n_addrs;
        pol.allow_domains = a.domains;
        pol.n_allow_domains = a.n_domains;
        pol.media_dir = a.media_dir;
        pol.accept = VLM_URL_ACCEPT_IMAGE | VLM_URL_ACCEPT_VIDEO;
        vlm_url_blob b;
        if (vlm_url_fetch(a.input, &pol, &b)) return fail();
        if (b.kind == VLM_MEDIA_IMAGE) {
            rc = show_image(&a, a.input, b.mime, b.data, b.size);
        } else {
            vlm_video *v;
            if (vlm_video_open_memory(b.data, b.size, &vlim, &v)) {
                vlm_url_blob_free(&b);
                return fail();
            }
            rc = show_video(&a, b.mime, v);
            vlm_video_close(v);
        }
        vlm_url_blob_free(&b);
        return rc;
    }
    /* A local file: images are read whole, videos are streamed. */
    uint8_t head[64];
    size_t hn = 0;
    FILE *f = fopen(a.input, "rb");
    if (f) {
        hn = fread(head, 1, sizeof head, f);
        fclose(f);
    }
    if (f && hn == 0) {
        fprintf(stderr, "vlm media: '%s' is empty (0 bytes)\n", a.input);
        return 1;
    }
    if (f && vlm_image_detect(head, hn) != VLM_IMAGE_UNKNOWN) {
        uint8_t *data;
        size_t size;
        if (read_file(a.input, &data, &size)) return fail();
        rc = show_image(&a, a.input, NULL, data, size);
        free(data);
        return rc;
    }
    vlm_video *v;
    if (vlm_video_open_file(a.input, &vlim, &v)) {
        if (f && vlm_media_sniff(head, hn, NULL) == VLM_MEDIA_UNKNOWN)
            fprintf(stderr, "vlm media: '%s' is not a supported image or video (%s)\n", a.input, vlm_last_error());
        else
            return fail();
        return 1;
    }
    rc = show_video(&a, NULL, v);
    vlm_video_close(v);
    return rc;
}
