#include "server/server_cli.h"

#include "core/error.h"
#include "media/image.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void srv_cli_common_init(srv_cli_common *c)
{
    memset(c, 0, sizeof *c);
    vlm_url_policy_default(&c->media.url);
    c->media.video_frames = 8;
    c->media.max_pixels = VLM_IMAGE_DEFAULT_MAX_PIXELS;
    c->default_max_tokens = 512;
}

static int int_value(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "vlm %s: %s needs an integer in [%lld, %lld], got '%s'\n", cmd, opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int srv_cli_common_option(const char *cmd, srv_cli_common *c, int argc, char **argv, int *i)
{
    const char *o = argv[*i];
    if (!strcmp(o, "--allow-private")) {
        c->media.url.allow_private = 1;
        c->eng.allow_private = 1;
        return 1;
    }
    static const char *const with_value[] = {"-m", "--model", "--served-model-name", "--threads", "--quant", "--kv-cache",
                                             "--device", "--context", "--max-running", "--max-waiting", "--allow-addr",
                                             "--media-dir", "--video-frames", "--max-pixels", "--max-image-mb", "--max-images",
                                             "--max-tokens", "--prefix-cache-mib", "--image-cache-mib", NULL};
    int known = 0;
    for (int k = 0; with_value[k]; k++) known |= !strcmp(o, with_value[k]);
    if (!known) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "vlm %s: %s needs a value\n", cmd, o);
        return -1;
    }
    const char *v = argv[++*i];
    long long n = 0;
    if (!strcmp(o, "-m") || !strcmp(o, "--model")) c->model_dir = v;
    else if (!strcmp(o, "--served-model-name")) c->served_name = v;
    else if (!strcmp(o, "--quant")) c->eng.quant = v;
    else if (!strcmp(o, "--kv-cache")) c->eng.kv_cache = v;
    else if (!strcmp(o, "--device")) c->eng.device = v;
    else if (!strcmp(o, "--media-dir")) {
        c->media.url.media_dir = v;
        c->eng.media_dir = v;
    } else if (!strcmp(o, "--allow-addr")) {
        if (c->n_allow_addrs == SRV_CLI_MAX_ADDRS) {
            fprintf(stderr, "vlm %s: at most %d --allow-addr\n", cmd, SRV_CLI_MAX_ADDRS);
            return -1;
        }
        c->allow_addrs[c->n_allow_addrs++] = v;
        c->media.url.allow_addrs = c->allow_addrs;
        c->media.url.n_allow_addrs = (size_t)c->n_allow_addrs;
        c->eng.allow_addrs = c->allow_addrs;
        c->eng.n_allow_addrs = c->n_allow_addrs;
    } else {
        static const struct {
            const char *name;
            long long lo, hi;
        } ranges[] = {{"--threads", 0, 1024},       {"--context", 2, 1 << 24},        {"--max-running", 1, 4096},
                      {"--max-waiting", 1, 1 << 20}, {"--video-frames", 1, 256},       {"--max-pixels", 1, 1LL << 40},
                      {"--max-image-mb", 1, 4096},   {"--max-images", 1, 256},         {"--max-tokens", 1, 1 << 24},
                      {"--prefix-cache-mib", -1, 1 << 20}, {"--image-cache-mib", -1, 1 << 20}};
        for (size_t k = 0; k < sizeof ranges / sizeof *ranges; k++)
            if (!strcmp(o, ranges[k].name) && int_value(cmd, o, v, ranges[k].lo, ranges[k].hi, &n)) return -1;
        if (!strcmp(o, "--threads")) c->eng.n_threads = (int)n;
        else if (!strcmp(o, "--context")) c->eng.max_context = n;
        else if (!strcmp(o, "--max-running")) c->eng.max_running = (int)n;
        else if (!strcmp(o, "--max-waiting")) c->eng.max_waiting = (int)n;
        else if (!strcmp(o, "--video-frames")) c->media.video_frames = (int)n;
        else if (!strcmp(o, "--max-pixels")) c->media.max_pixels = n;
        else if (!strcmp(o, "--max-image-mb")) c->media.url.max_bytes = (size_t)n << 20;
        else if (!strcmp(o, "--max-images")) c->limits.max_media = (int)n;
        else if (!strcmp(o, "--max-tokens")) c->default_max_tokens = n;
        else if (!strcmp(o, "--prefix-cache-mib")) c->eng.prefix_cache_mib = n;
        else if (!strcmp(o, "--image-cache-mib")) c->eng.image_cache_mib = n;
    }
    return 1;
}

void srv_cli_common_usage(FILE *f)
{
    fputs("model and engine:\n"
          "  -m, --model DIR          checkpoint folder (required)\n"
          "  --served-model-name N    the model id clients name (default: the folder's name)\n"
          "  --quant Q, --kv-cache K, --device D, --threads N, --context N   as vlm ask\n"
          "  --max-running N          sequences decoded together (16)\n"
          "  --max-waiting N          requests queued beyond them; more are refused with 429 (64)\n"
          "  --prefix-cache-mib N, --image-cache-mib N   engine caches (-1 = off)\n"
          "requests:\n"
          "  --max-tokens N           max_tokens when a request does not say (512)\n"
          "  --max-images N           image_url + video_url parts per request (16)\n"
          "  --max-pixels N           per image or video frame, checked before decoding (50000000)\n"
          "  --max-image-mb N         bytes per fetched image or video (32)\n"
          "  --video-frames N         frames sampled evenly from each video_url (8)\n"
          "  --allow-private          let http(s) URLs reach private / loopback / link-local addresses\n"
          "  --allow-addr A           allow this address or CIDR range although private (repeatable)\n"
          "  --media-dir DIR          allow file:// URLs below DIR (refused otherwise)\n",
          f);
}

int srv_cli_open_engine(const char *cmd, srv_cli_common *c, vlm_engine **out)
{
    if (vlm_engine_open(c->model_dir, &c->eng, out)) {
        fprintf(stderr, "vlm %s: %s\n", cmd, vlm_last_error());
        return -1;
    }
    const char *note = vlm_engine_device_note(*out);
    if (note) fprintf(stderr, "vlm %s: %s\n", cmd, note);
    return 0;
}

char *srv_cli_model_name(const srv_cli_common *c)
{
    if (c->served_name) return strdup(c->served_name);
    const char *d = c->model_dir;
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && d[b - 1] != '/') b--;
    char *s = malloc(n - b + 1);
    if (s) {
        memcpy(s, d + b, n - b);
        s[n - b] = 0;
    }
    return s;
}
