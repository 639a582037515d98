/* vlm caption: timestamped captions of videos (SRT, WebVTT, JSONL) through the request engine. The work is in
 * caption/ (include/vlm_caption.h); this is the command line, the progress display and the exit status. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "samples/cli.h"
#include "vlm.h"
#include "vlm_caption.h"

int vlm_cmd_caption(int argc, char **argv);

static void usage(FILE *f)
{
    fputs("usage: vlm caption -m <model dir> [options] INPUT...\n"
          "       vlm caption --merge DIR... [--out-dir DIR]\n"
          "\n"
          "Captions videos: samples frames, describes each segment with the model (many segments in flight),\n"
          "and writes <name>.srt, <name>.vtt and <name>.jsonl per video plus captions.jsonl for the run.\n"
          "INPUT: a video file, a folder (searched recursively; videos found by their bytes), a URL\n"
          "(http(s)://, data:, file:// under --media-dir) or @list.txt (one input per line, # comments).\n"
          "Results go to a journal (captions.journal) as they come: rerunning the same command skips what is done.\n"
          "\n"
          "options:\n"
          "  -m, --model <dir>       model folder (required unless --merge)\n"
          "  --frames <spec>         sampling: every=S (default every=2), fps=F, n=N, scene[=T]\n"
          "  --window <k>            frames per caption, one multi-image prompt (default 1)\n"
          "  --stride <s>            frames from one segment to the next (default: the window; less overlaps)\n"
          "  --prompt <text>         the question for each segment (default: one sentence describing it)\n"
          "  --with-previous         give each segment the previous segment's caption\n"
          "  --summary               one text-only summary per video from its captions\n"
          "  --out-dir <dir>         where the files go (default: beside each video; run files in .)\n"
          "  --format <list>         srt,vtt,jsonl (default all three)\n"
          "  --force                 forget the journal and start over\n"
          "  --shard <i>/<n>         take the inputs whose path hash is i mod n (Slurm arrays, Indexed Jobs)\n"
          "  --merge <dir>...        join the captions.jsonl of shard folders into --out-dir/captions.jsonl\n"
          "  --parallel <n>          segments in the engine at once (default 8)\n"
          "  --quiet                 no progress, no summary line (errors still go to stderr)\n"
          "  --max-tokens <n>        per caption (default 48); --temperature, --top-p, --top-k,\n"
          "                          --repetition-penalty, --seed as vlm ask (greedy by default)\n"
          "  --quant <q>, --threads <n>, --device <d>, --kv-cache <t>, --context <n>   as vlm ask\n"
          "  --max-pixels <n>        per frame (default 50000000)\n"
          "  --allow-private, --media-dir <dir>, --max-bytes <n>   URL inputs (default cap 1 GiB)\n",
          f);
}

static volatile int g_stop;

static void on_sigint(int sig)
{
    (void)sig;
    g_stop = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends it at once */
}

typedef struct {
    int quiet, tty;
    int drawn;   /* a progress line is on screen */
} progress;

static void fmt_duration(double s, char *buf, size_t n)
{
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

static void draw_bar(progress *p, const vlm_caption_stats *st)
{
    double done = (double)(st->segments_done + st->segments_resumed);
    double total = st->expected_segments > done ? st->expected_segments : done;
    double frac = total > 0 ? done / total : 0;
    int width = 24, fill = (int)(frac * width + 0.5);
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    double fps = st->elapsed_s > 0 ? (double)st->frames_done / st->elapsed_s : 0;
    double rate = st->elapsed_s > 0 ? (double)st->segments_done / st->elapsed_s : 0;
    char eta[32];
    fmt_duration(rate > 0 ? (total - done) / rate : -1, eta, sizeof eta);
    fprintf(stderr, "\r[%s] %3.0f%%  videos %d/%d  segments %lld/%.0f  %.2f frames/s  ETA %s   ", bar, 100 * frac,
            st->videos_done + st->videos_failed, st->videos_total, (long long)done, total, fps, eta);
    fflush(stderr);
    p->drawn = 1;
}

static void clear_bar(progress *p)
{
    if (p->drawn) fputs("\r\033[K", stderr);
    p->drawn = 0;
}

static void on_event(void *user, const vlm_caption_event *ev)
{
    progress *p = user;
    if (ev->type == VLM_CAPTION_EV_VIDEO_FAILED) {
        clear_bar(p);
        fprintf(stderr, "vlm caption: %s: %s\n", ev->video, ev->error);
    } else if (ev->type == VLM_CAPTION_EV_VIDEO_DONE && !p->quiet && !p->tty) {
        if (ev->skipped)
            fprintf(stderr, "%s: already done (%d segments)\n", ev->video, ev->segments);
        else
            fprintf(stderr, "%s: %d segments in %.1f s\n", ev->video, ev->segments, ev->seconds);
    }
    if (!p->quiet && p->tty) draw_bar(p, ev->stats);
}

static int parse_formats(const char *s, unsigned *out)
{
    unsigned f = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "srt"))
            f |= VLM_CAPTION_SRT;
        else if (!strcmp(t, "vtt") || !strcmp(t, "webvtt"))
            f |= VLM_CAPTION_VTT;
        else if (!strcmp(t, "jsonl"))
            f |= VLM_CAPTION_JSONL;
        else {
            fprintf(stderr, "vlm caption: --format: unknown format '%s' (srt, vtt, jsonl)\n", t);
            return -1;
        }
    }
    if (!f) {
        fprintf(stderr, "vlm caption: --format needs srt, vtt and/or jsonl\n");
        return -1;
    }
    *out = f;
    return 0;
}

int vlm_cmd_caption(int argc, char **argv)
{
    vlm_caption_options o;
    vlm_caption_options_default(&o);
    vlm_engine_options eo;
    memset(&eo, 0, sizeof eo);
    const char *model = NULL;
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    int n_inputs = 0, merge = 0, quiet = 0;
    if (!inputs) return cli_fail("caption");
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long long v;
        double d;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto out;
        }
        if (a[0] != '-' || !a[1]) {
            inputs[n_inputs++] = a;
            continue;
        }
        if (!strcmp(a, "--with-previous")) { o.with_previous = 1; continue; }
        if (!strcmp(a, "--summary")) { o.summary = 1; continue; }
        if (!strcmp(a, "--force")) { o.force = 1; continue; }
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) { quiet = 1; continue; }
        if (!strcmp(a, "--allow-private")) { o.allow_private = eo.allow_private = 1; continue; }
        if (!strcmp(a, "--merge")) { merge = 1; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "vlm caption: %s needs a value\n", a);
            goto out;
        }
        const char *val = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = val;
        else if (!strcmp(a, "--frames")) o.frames = val;
        else if (!strcmp(a, "--prompt")) o.prompt = val;
        else if (!strcmp(a, "--out-dir")) o.out_dir = val;
        else if (!strcmp(a, "--media-dir")) o.media_dir = eo.media_dir = val;
        else if (!strcmp(a, "--quant")) eo.quant = val;
        else if (!strcmp(a, "--device")) eo.device = val;
        else if (!strcmp(a, "--kv-cache")) eo.kv_cache = val;
        else if (!strcmp(a, "--format")) {
            if (parse_formats(val, &o.formats)) goto out;
        } else if (!strcmp(a, "--shard")) {
            int si, sn, used = 0;
            if (sscanf(val, "%d/%d%n", &si, &sn, &used) != 2 || val[used] || sn < 1 || si < 0 || si >= sn) {
                fprintf(stderr, "vlm caption: --shard wants i/n with 0 <= i < n, got '%s'\n", val);
                goto out;
            }
            o.shard_index = si;
            o.shard_count = sn;
        } else if (!strcmp(a, "--window")) {
            if (cli_int("caption", a, val, 1, 64, &v)) goto out;
            o.window = (int)v;
        } else if (!strcmp(a, "--stride")) {
            if (cli_int("caption", a, val, 1, 64, &v)) goto out;
            o.stride = (int)v;
        } else if (!strcmp(a, "--parallel")) {
            if (cli_int("caption", a, val, 1, 1024, &v)) goto out;
            o.max_in_flight = (int)v;
        } else if (!strcmp(a, "--max-tokens")) {
            if (cli_int("caption", a, val, 1, 1 << 20, &v)) goto out;
            o.gen.max_new_tokens = (int)v;
        } else if (!strcmp(a, "--top-k")) {
            if (cli_int("caption", a, val, 0, 1 << 20, &v)) goto out;
            o.gen.top_k = (int)v;
        } else if (!strcmp(a, "--seed")) {
            if (cli_int("caption", a, val, 0, (long long)1 << 62, &v)) goto out;
            o.gen.seed = (uint64_t)v;
        } else if (!strcmp(a, "--threads")) {
            if (cli_int("caption", a, val, 0, 1024, &v)) goto out;
            eo.n_threads = (int)v;
        } else if (!strcmp(a, "--context")) {
            if (cli_int("caption", a, val, 1, (long long)1 << 30, &v)) goto out;
            eo.max_context = v;
        } else if (!strcmp(a, "--max-pixels")) {
            if (cli_int("caption", a, val, 1, (long long)1 << 40, &v)) goto out;
            o.max_pixels = v;
        } else if (!strcmp(a, "--max-bytes")) {
            if (cli_int("caption", a, val, 1, (long long)1 << 40, &v)) goto out;
            o.max_url_bytes = v;
        } else if (!strcmp(a, "--temperature")) {
            if (cli_float("caption", a, val, 0, 100, &d)) goto out;
            o.gen.temperature = (float)d;
        } else if (!strcmp(a, "--top-p")) {
            if (cli_float("caption", a, val, 0, 1, &d)) goto out;
            o.gen.top_p = (float)d;
        } else if (!strcmp(a, "--repetition-penalty")) {
            if (cli_float("caption", a, val, 0.01, 100, &d)) goto out;
            o.gen.repetition_penalty = (float)d;
        } else {
            fprintf(stderr, "vlm caption: unknown option '%s' (see vlm caption --help)\n", a);
            goto out;
        }
    }
    if (merge) {
        if (!n_inputs) {
            fprintf(stderr, "vlm caption: --merge needs the folders to join\n");
            goto out;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/captions.jsonl", o.out_dir ? o.out_dir : ".");
        int64_t n = 0;
        if (vlm_caption_merge(inputs, n_inputs, path, &n)) {
            rc = cli_fail("caption");
            goto out;
        }
        if (!quiet) fprintf(stderr, "merged %lld records from %d folders into %s\n", (long long)n, n_inputs, path);
        rc = 0;
        goto out;
    }
    if (!model) {
        fprintf(stderr, "vlm caption: -m <model dir> is required\n");
        goto out;
    }
    if (!n_inputs) {
        usage(stderr);
        goto out;
    }
    char model_id[1024];
    snprintf(model_id, sizeof model_id, "%s%s%s", model, eo.quant ? " quant=" : "", eo.quant ? eo.quant : "");
    o.model_id = model_id;
    if (o.max_in_flight > 16) eo.max_running = o.max_in_flight;
    /* A caption's prompt starts with its frames, so no two share a prefix: the prefix cache would only fill up.
     * The image cache pays only when windows overlap (a frame in several prompts). */
    eo.prefix_cache_mib = -1;
    eo.throughput = 1; /* frames per second, not the gaps between a caption's tokens */
    if (!(o.stride > 0 && o.stride < o.window)) eo.image_cache_mib = -1;
    vlm_engine *e;
    if (vlm_engine_open(model, &eo, &e)) {
        rc = cli_fail("caption");
        goto out;
    }
    const char *note = vlm_engine_device_note(e);
    if (note && !quiet) fprintf(stderr, "%s\n", note);
    progress p = {quiet, isatty(2), 0};
    o.on_event = on_event;
    o.user = &p;
    o.stop = &g_stop;
    signal(SIGINT, on_sigint);
    vlm_caption_stats st;
    int r = vlm_caption_run(e, inputs, n_inputs, &o, &st);
    signal(SIGINT, SIG_DFL);
    clear_bar(&p);
    vlm_engine_close(e);
    if (r) {
        fprintf(stderr, "vlm caption: %s\n", vlm_last_error());
        rc = 1;
    } else {
        rc = st.videos_failed ? 1 : 0;
    }
    if (!quiet) {
        fprintf(stderr, "%d videos captioned, %d failed, %lld segments in %.1f s", st.videos_done, st.videos_failed,
                (long long)st.segments_done, st.elapsed_s);
        if (st.videos_skipped || st.segments_resumed)
            fprintf(stderr, " (%d videos already done, %lld segments from the journal)", st.videos_skipped,
                    (long long)st.segments_resumed);
        if (st.segments_done && st.elapsed_s > 0)
            fprintf(stderr, "; %.2f frames/s, model busy %.0f%% of the time", st.frames_done / st.elapsed_s,
                    100.0 * st.model_busy_s / st.elapsed_s);
        fputc('\n', stderr);
    }
out:
    free(inputs);
    return rc;
}
