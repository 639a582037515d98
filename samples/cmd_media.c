/* vlm media: what vlm sees in an image, a video or an image URL. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/file.h"
#include "media/exif.h"
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
          "or file:// and are fetched under the same policy the server applies. What the input is\n"
          "comes from its bytes, not its name. A JPEG's or TIFF's EXIF orientation is reported but\n"
          "not applied: the model sees the pixels as stored, as the official pipeline does.\n"
          "\n"
          "options:\n"
          "  --frames <spec>     video: list the timestamps sampled by fps=F, every=S, n=N or scene[=T]\n"
          "  --dump <out>        write the decoded RGB as PNG (.png) or JPEG (.jpg, .jpeg); a video: the\n"
          "                      first sampled frame, or every one with a pattern such as frames_%04d.png\n"
          "                      (one integer conversion, numbered from 1; --frames, default n=8)\n"
          "  --json              print one JSON object instead of the text\n"
          "  --max-pixels <n>    pixel budget per image or frame (default 50000000)\n"
          "  --max-frames <n>    video: sample at most n frames (default 256); a plan cut short says so\n"
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
    int allow_private, json;
    int dump_pattern; /* --dump has a frame-number conversion */
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
        if (!strcmp(o, "--json")) {
            a->json = 1;
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
    if (a->dump) { /* checked before any work: the extension names the format, at most one %d */
        if (vlm_image_path_pattern(a->dump, &a->dump_pattern) ||
            (vlm_image_format_for_path(a->dump) == VLM_IMAGE_UNKNOWN &&
             vlm_errorf(VLM_ERR_INVALID, "--dump '%s': the extension names no format vlm writes (use .png, .jpg or .jpeg)",
                        a->dump))) {
            fprintf(stderr, "vlm media: %s\n", vlm_last_error());
            return 2;
        }
    }
    return 0;
}

static int fail(void)
{
    return cli_fail("media");
}

/* The JSON being built (--json), or NULL. */
typedef struct {
    const media_args *a;
    cJSON *root, *dumped, *times;
    char *dump_lines; /* text mode: the "dumped: ..." lines, printed after the frame list */
    size_t dump_len;
} out_t;

static void add_dump_line(out_t *o, const char *line)
{
    const size_t n = strlen(line);
    char *p = realloc(o->dump_lines, o->dump_len + n + 1);
    if (!p) return;
    memcpy(p + o->dump_len, line, n + 1);
    o->dump_lines = p;
    o->dump_len += n;
}

static void flush_dump_lines(out_t *o)
{
    if (o->dump_lines) fputs(o->dump_lines, stdout);
    free(o->dump_lines);
    o->dump_lines = NULL;
    o->dump_len = 0;
}

static void put_str(out_t *o, const char *k, const char *v)
{
    if (o->root) cJSON_AddStringToObject(o->root, k, v);
}
static void put_num(out_t *o, const char *k, double v)
{
    if (o->root) cJSON_AddNumberToObject(o->root, k, v);
}

/* Writes img for frame number i (from 1) of the dump; records the name. */
static int dump_one(out_t *o, const vlm_image *img, int i, double pts)
{
    char path[4096];
    if (vlm_image_path_format(o->a->dump, i, path, sizeof path) || vlm_image_write(path, img)) return fail();
    if (o->root) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "path", path);
        if (pts >= 0) cJSON_AddNumberToObject(d, "pts", pts);
        cJSON_AddItemToArray(o->dumped, d);
    } else {
        char line[4200];
        if (pts >= 0)
            snprintf(line, sizeof line, "dumped: %s (frame at %.3f s)\n", path, pts);
        else
            snprintf(line, sizeof line, "dumped: %s\n", path);
        add_dump_line(o, line);
    }
    return 0;
}

/* mime: the type the URL declared ("" or NULL for none). */
static int show_image(out_t *o, const char *name, const char *mime, const uint8_t *data, size_t size)
{
    const media_args *a = o->a;
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
    const int orient = vlm_exif_orientation(data, size);
    if (o->root) {
        if (mime && mime[0]) put_str(o, "type", mime);
        put_str(o, "kind", "image");
        put_str(o, "format", vlm_image_format_name(info.format));
        put_num(o, "width", img.width);
        put_num(o, "height", img.height);
        if (info.frames > 1) cJSON_AddBoolToObject(o->root, "animated", 1);
        if (orient) {
            put_num(o, "exif_orientation", orient);
            put_str(o, "exif_orientation_means", vlm_exif_orientation_name(orient));
            cJSON_AddBoolToObject(o->root, "exif_orientation_applied", 0);
        }
    } else {
        if (mime && mime[0]) printf("type: %s\n", mime);
        printf("kind: image\nformat: %s\nsize: %dx%d\n", vlm_image_format_name(info.format), img.width, img.height);
        if (info.frames > 1) printf("frames: animated (only the first frame is used)\n");
        if (orient)
            printf("exif orientation: %d (%s to display; not applied: the model sees the pixels as stored, as "
                   "the official pipeline does)\n",
                   orient, vlm_exif_orientation_name(orient));
    }
    int rc = a->dump ? dump_one(o, &img, 1, -1) : 0;
    vlm_image_free(&img);
    return rc;
}

static int show_video(out_t *o, const char *mime, vlm_video *v)
{
    const media_args *a = o->a;
    const vlm_video_info *in = vlm_video_get_info(v);
    /* Fill in what the container left out (frame count, length) from the packets. */
    if (in->frames < 0 || in->frames_estimated || in->duration < 0) {
        if (vlm_video_scan(v)) return fail();
    }
    if (o->root) {
        if (mime && mime[0]) put_str(o, "type", mime);
        put_str(o, "kind", "video");
        put_str(o, "container", in->container);
        put_str(o, "codec", in->codec);
        put_num(o, "width", in->width);
        put_num(o, "height", in->height);
        put_num(o, "coded_width", in->coded_width);
        put_num(o, "coded_height", in->coded_height);
        put_num(o, "rotation", in->rotation);
        if (in->duration >= 0) put_num(o, "duration", in->duration);
        if (in->fps > 0) put_num(o, "fps", in->fps);
        if (in->frames >= 0) put_num(o, "frames", (double)in->frames);
        if (in->frames >= 0) cJSON_AddBoolToObject(o->root, "frames_estimated", in->frames_estimated);
    } else {
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
    }
    if (!a->frames && !a->dump) return 0;
    /* --dump alone: the first frame; a dump pattern alone: the frames n=8 picks */
    const char *rule = a->frames ? a->frames : a->dump_pattern ? "n=8" : NULL;
    vlm_video_sampling s;
    if (vlm_video_sampling_parse(rule ? rule : "n=1", &s)) return fail();
    if (!rule) {
        s.mode = VLM_VIDEO_EVERY;
        s.value = 1e6;
    }
    if (vlm_video_start(v, &s)) return fail();
    if (rule && !o->root) printf("sampling: %s\n", rule);
    if (rule && o->root) o->times = cJSON_AddArrayToObject(cJSON_AddObjectToObject(o->root, "sampling"), "timestamps");
    int n = 0, r, rc = 0;
    double pts;
    vlm_image img;
    while ((r = vlm_video_next(v, a->dump && (n == 0 || a->dump_pattern) ? &img : NULL, &pts)) == 1) {
        if (o->times) cJSON_AddItemToArray(o->times, cJSON_CreateNumber(pts));
        else if (rule) printf("  %.3f\n", pts);
        if (a->dump && (n == 0 || a->dump_pattern)) {
            rc = dump_one(o, &img, n + 1, pts);
            vlm_image_free(&img);
            if (rc) return rc;
        }
        n++;
    }
    if (r < 0) return fail();
    vlm_video_plan plan;
    vlm_video_get_plan(v, &plan);
    if (rule) {
        if (o->root) {
            cJSON *sm = cJSON_GetObjectItem(o->root, "sampling");
            cJSON_AddStringToObject(sm, "rule", rule);
            if (plan.planned >= 0) cJSON_AddNumberToObject(sm, "planned", (double)plan.planned);
            else cJSON_AddNullToObject(sm, "planned");
            cJSON_AddNumberToObject(sm, "kept", n);
            cJSON_AddNumberToObject(sm, "max_frames", (double)a->max_frames);
            cJSON_AddBoolToObject(sm, "cut", plan.cut);
        } else {
            printf("sampled: %d frames\n", n);
        }
    }
    /* never silently: a plan cut short by --max-frames is said on stderr (and in the JSON above) */
    if (plan.cut) {
        if (plan.planned >= 0)
            fprintf(stderr, "vlm media: --max-frames %lld cut the sampling: %s plans %lld frames, the first %d were kept\n",
                    a->max_frames, rule ? rule : "the first frame", (long long)plan.planned, n);
        else
            fprintf(stderr, "vlm media: --max-frames %lld cut the sampling: %s stopped after %d frames (how many "
                    "more it wanted is not known)\n", a->max_frames, rule ? rule : "the first frame", n);
    }
    if (a->dump && n == 0) {
        fprintf(stderr, "vlm media: no frame to dump\n");
        return 1;
    }
    return 0;
}

/* Bytes in memory (a URL's body, a pipe's content): an image, else a video. */
static int show_bytes(out_t *o, const char *mime, const uint8_t *data, size_t size, const vlm_video_limits *vlim)
{
    const vlm_media_kind kind = vlm_media_sniff(data, size, NULL);
    if (kind == VLM_MEDIA_IMAGE) return show_image(o, o->a->input, mime, data, size);
    vlm_video *v;
    if (vlm_video_open_memory(data, size, vlim, &v)) {
        if (kind != VLM_MEDIA_UNKNOWN) return fail();
        fprintf(stderr, "vlm media: '%s' is not a supported image or video (%s)\n", o->a->input, vlm_last_error());
        return 1;
    }
    int rc = show_video(o, mime, v);
    vlm_video_close(v);
    return rc;
}

/* The whole run for one input into o (text printed as it goes, or the JSON filled). */
static int run(out_t *o)
{
    const media_args *a = o->a;
    vlm_video_limits vlim = {a->max_pixels, (int)a->max_frames, 0};
    int rc;
    if (vlm_url_is_url(a->input)) {
        vlm_url_policy pol;
        vlm_url_policy_default(&pol);
        pol.max_bytes = (size_t)a->max_bytes;
        pol.timeout_ms = (long)a->timeout;
        pol.allow_private = a->allow_private;
        pol.allow_addrs = a->addrs;
        pol.n_allow_addrs = a->n_addrs;
        pol.allow_domains = a->domains;
        pol.n_allow_domains = a->n_domains;
        pol.media_dir = a->media_dir;
        pol.accept = VLM_URL_ACCEPT_IMAGE | VLM_URL_ACCEPT_VIDEO;
        vlm_url_blob b;
        if (vlm_url_fetch(a->input, &pol, &b)) return fail();
        rc = show_bytes(o, b.mime, b.data, b.size, &vlim);
        vlm_url_blob_free(&b);
        return rc;
    }
    /* A local file: images are read whole (at most the decoded-bytes limit), videos are streamed, a pipe
       is read whole (it cannot be read twice). Directories and devices are refused unread. */
    const char *problem = vlm_file_kind_problem(a->input);
    if (problem) {
        fprintf(stderr, "vlm media: '%s' %s\n", a->input, problem);
        return 1;
    }
    struct stat st;
    if (stat(a->input, &st) == 0 && S_ISFIFO(st.st_mode)) {
        unsigned char *data;
        size_t size;
        if (vlm_read_bytes(a->input, (size_t)VLM_IMAGE_DEFAULT_MAX_DECODED_BYTES, &data, &size)) return fail();
        if (size == 0) {
            fprintf(stderr, "vlm media: '%s' is empty (0 bytes)\n", a->input);
            return 1;
        }
        rc = show_bytes(o, NULL, data, size, &vlim);
        free(data);
        return rc;
    }
    uint8_t head[64];
    size_t hn = 0;
    FILE *f = fopen(a->input, "rb");
    if (f) {
        hn = fread(head, 1, sizeof head, f);
        fclose(f);
    }
    if (f && hn == 0) {
        fprintf(stderr, "vlm media: '%s' is empty (0 bytes)\n", a->input);
        return 1;
    }
    if (f && vlm_image_detect(head, hn) != VLM_IMAGE_UNKNOWN) {
        unsigned char *data;
        size_t size;
        if (vlm_read_bytes(a->input, (size_t)VLM_IMAGE_DEFAULT_MAX_DECODED_BYTES, &data, &size)) return fail();
        rc = show_image(o, a->input, NULL, data, size);
        free(data);
        return rc;
    }
    vlm_video *v;
    if (vlm_video_open_file(a->input, &vlim, &v)) {
        if (f && vlm_media_sniff(head, hn, NULL) == VLM_MEDIA_UNKNOWN)
            fprintf(stderr, "vlm media: '%s' is not a supported image or video (%s)\n", a->input, vlm_last_error());
        else
            return fail();
        return 1;
    }
    rc = show_video(o, NULL, v);
    vlm_video_close(v);
    return rc;
}

int vlm_cmd_media(int argc, char **argv)
{
    media_args a;
    int pr = parse_args(argc, argv, &a);
    if (pr) return pr == 1 ? 0 : 2;
    out_t o = {&a, NULL, NULL, NULL, NULL, 0};
    if (a.json) {
        o.root = cJSON_CreateObject();
        cJSON_AddStringToObject(o.root, "input", a.input);
        if (a.dump) o.dumped = cJSON_AddArrayToObject(o.root, "dumped");
    }
    int rc = run(&o);
    flush_dump_lines(&o);
    if (o.root) {
        if (rc == 0) {
            char *s = cJSON_PrintUnformatted(o.root);
            if (s) puts(s);
            free(s);
        }
        cJSON_Delete(o.root);
    }
    return rc;
}
