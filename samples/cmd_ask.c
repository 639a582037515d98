/* vlm ask: answer a question about one or more images, streaming the answer;
 * with no question, an interactive chat that keeps the conversation.
 *
 * Chat: each turn renders the whole conversation (system prompt, earlier
 * questions and answers with eos, as the chat template does) with every image
 * given so far, and runs it from scratch: the KV cache is recomputed per turn.
 * Answers go to stdout; prompts and notices go to stderr, and only when stdin
 * is a terminal, so a pipe gets exactly the answers. */
#include "vlm.h"

#include "core/error.h"
#include "media/draw.h"
#include "media/resolve.h"
#include "media/image_write.h"
#include "samples/cli.h"
#include "text/decoder.h"
#include "text/chat_template.h"
#include "text/grounding.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_IMAGES 64
#define MAX_STOPS 16

typedef struct {
    const char *model_dir, *question, *ids_text, *system, *draw_path, *quant, *device, *frames, *media_dir;
    const char *allow_addrs[16];
    int n_allow_addrs, allow_private;
    const char *images[MAX_IMAGES];
    int n_images;
    const char *stops[MAX_STOPS];
    int n_stops;
    long long max_tokens, threads, max_pixels, context, top_k, seed, max_frames;
    double temperature, top_p, rep_penalty;
    int json, ignore_eos, verbose;
    vlm_kv_type kv_cache;
} ask_args;

static void usage(FILE *f)
{
    fputs("usage: vlm ask -m <model dir> [-i <image>]... [options] [\"question\"]\n"
          "  With a question: answers it and exits. Without one: a chat that keeps the conversation;\n"
          "  type questions, one per line, or these commands:\n"
          "    /image <path>  add an image to the next question (placed at its <image> markers,\n"
          "                   else before it)\n"
          "    /reset         forget the conversation and its images\n"
          "    /quit          leave (so does end of input)\n"
          "  -m, --model DIR          checkpoint folder (config.json, *.safetensors, tokenizer.json)\n"
          "  -i, --image INPUT        an image or a video (repeat for several): a file, data: URL, http(s)://\n"
          "                           URL or file:// URL (below --media-dir); placed at each <image> in the\n"
          "                           question, or before it when it has no <image> markers; a video gives\n"
          "                           its sampled frames, each as \"Frame N at T s: <image>\"\n"
          "  --frames RULE            video frames: n=8 (default), fps=1, every=2 or scene\n"
          "  --max-frames N           at most N frames per video (default 64; a longer plan is cut, with a note)\n"
          "  --allow-private          URLs may reach private / loopback / link-local addresses\n"
          "  --allow-addr A           ... or only these addresses or CIDR ranges (repeatable)\n"
          "  --media-dir DIR          file:// URLs below DIR (refused otherwise)\n"
          "  --system TEXT            system prompt, put before the conversation\n"
          "  --stop TEXT              stop when the answer's visible text contains TEXT (not printed; hidden\n"
          "                           special tokens never match); repeatable\n"
          "  --max-tokens N           new tokens at most (default 512)\n"
          "  --temperature T          0 = greedy (default 0)\n"
          "  --top-p P, --top-k K     nucleus / top-k sampling (defaults 1.0 / 0 = off)\n"
          "  --repetition-penalty R   (default 1.0 = off)\n"
          "  --seed N                 sampling seed (default 0)\n"
          "  --ignore-eos             keep generating after the end-of-sentence token\n"
          "  --ids 0,9,...            use these prompt token ids instead of the question and chat template\n"
          "                           (a question given too is ignored)\n"
          "  -v, --verbose            timings on stderr after each answer (load, vision, prefill, first token,\n"
          "                           decode tok/s)\n"
          "  --json                   print {\"text\", \"token_ids\", \"stop_reason\", \"timings\", \"boxes\"} instead\n"
          "                           of streaming text (one line per answer in a chat)\n"
          "  --draw OUT.png           write the image the answer's grounding boxes refer to (the last one\n"
          "                           given) with the boxes drawn and labelled; unchanged if there are none\n"
          "  --threads N              CPU threads (default: all cores)\n"
          "  --int8-act A             int8 activations in prompt / image products on q8 / q4 weights: auto\n"
          "                           (default: on), on, or off (fp32 products on dequantized weights)\n"
          "  --kv-cache T             KV cache values: auto (default: f16 with converted weights on the CPU,\n"
          "                           f32 with --quant ref), f16 or f32\n"
          "  --max-pixels N           refuse larger images, checked before decoding (default 50000000)\n"
          "  --context N              limit the context (default: the model's max_position_embeddings)\n"
          "  --quant Q                weight formats: bf16 (default; a `vlm quantize` folder: as written), ref\n"
          "                           (the exact fp32 reference kernels), q8[:G], q4[:G], per component e.g.\n"
          "                           q4,vision=bf16 (see README)\n"
          "  --device D               cpu (default), cuda or cuda:N: where the text decoder runs (the vision\n"
          "                           encoder and projector stay on the CPU); without a usable GPU: a note on\n"
          "                           stderr and the CPU. CUDA runs weights as stored or bf16, not q8/q4\n"
          "Grounding: an answer holding <|ref|>label<|/ref|><|det|>[[x1,y1,x2,y2],...]<|/det|> (a 0-999 grid)\n"
          "gives boxes in pixels of the original image: int(x / 999 * width), int(y / 999 * height).\n",
          f);
}

static int parse_args(int argc, char **argv, ask_args *a)
{
    memset(a, 0, sizeof *a);
    a->max_tokens = 512;
    a->top_p = 1.0;
    a->rep_penalty = 1.0;
    a->max_pixels = 50000000;
    a->max_frames = 64;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { usage(stdout); return 1; }
        if (!strcmp(o, "--json")) { a->json = 1; continue; }
        if (!strcmp(o, "--ignore-eos")) { a->ignore_eos = 1; continue; }
        if (!strcmp(o, "-v") || !strcmp(o, "--verbose")) { a->verbose = 1; continue; }
        if (!strcmp(o, "--allow-private")) { a->allow_private = 1; continue; }
        if (o[0] != '-' || !strcmp(o, "-")) {
            if (a->question) { fprintf(stderr, "vlm ask: more than one question given ('%s'); quote the question\n", o); return 2; }
            a->question = o;
            continue;
        }
        if (i + 1 >= argc) { fprintf(stderr, "vlm ask: %s needs a value\n", o); return 2; }
        const char *val = argv[++i];
        int bad = 0;
        if (!strcmp(o, "-m") || !strcmp(o, "--model")) a->model_dir = val;
        else if (!strcmp(o, "-i") || !strcmp(o, "--image")) {
            if (a->n_images == MAX_IMAGES) { fprintf(stderr, "vlm ask: at most %d images\n", MAX_IMAGES); return 2; }
            a->images[a->n_images++] = val;
        } else if (!strcmp(o, "--stop")) {
            if (!*val) { fprintf(stderr, "vlm ask: --stop needs a non-empty string\n"); return 2; }
            if (a->n_stops == MAX_STOPS) { fprintf(stderr, "vlm ask: at most %d stop strings\n", MAX_STOPS); return 2; }
            a->stops[a->n_stops++] = val;
        } else if (!strcmp(o, "--allow-addr")) {
            if (a->n_allow_addrs == 16) { fprintf(stderr, "vlm ask: at most 16 --allow-addr\n"); return 2; }
            a->allow_addrs[a->n_allow_addrs++] = val;
        } else if (!strcmp(o, "--media-dir")) a->media_dir = val;
        else if (!strcmp(o, "--frames")) a->frames = val;
        else if (!strcmp(o, "--max-frames")) bad = cli_int("ask", o, val, 1, 256, &a->max_frames);
        else if (!strcmp(o, "--system")) a->system = val;
        else if (!strcmp(o, "--draw")) a->draw_path = val;
        else if (!strcmp(o, "--ids")) a->ids_text = val;
        else if (!strcmp(o, "--quant")) a->quant = val;
        else if (!strcmp(o, "--device")) a->device = val;
        else if (!strcmp(o, "--int8-act")) bad = cli_int8_act("ask", val);
        else if (!strcmp(o, "--kv-cache")) bad = cli_kv_cache("ask", val, &a->kv_cache);
        else if (!strcmp(o, "--max-tokens")) bad = cli_int("ask", o, val, 0, 1 << 20, &a->max_tokens);
        else if (!strcmp(o, "--threads")) bad = cli_int("ask", o, val, 0, 1024, &a->threads);
        else if (!strcmp(o, "--max-pixels")) bad = cli_int("ask", o, val, 1, (long long)1 << 40, &a->max_pixels);
        else if (!strcmp(o, "--context")) bad = cli_int("ask", o, val, 2, 1 << 24, &a->context);
        else if (!strcmp(o, "--top-k")) bad = cli_int("ask", o, val, 0, 1 << 24, &a->top_k);
        else if (!strcmp(o, "--seed")) bad = cli_int("ask", o, val, 0, (long long)(~0ULL >> 1), &a->seed);
        else if (!strcmp(o, "--temperature")) bad = cli_float("ask", o, val, 0, 100, &a->temperature);
        else if (!strcmp(o, "--top-p")) bad = cli_float("ask", o, val, 0, 1, &a->top_p);
        else if (!strcmp(o, "--repetition-penalty")) bad = cli_float("ask", o, val, 0.01, 100, &a->rep_penalty);
        else { fprintf(stderr, "vlm ask: unknown option '%s'\n", o); usage(stderr); return 2; }
        if (bad) return 2;
    }
    if (!a->model_dir) { fprintf(stderr, "vlm ask: no model folder given (-m <dir>)\n"); return 2; }
    if (a->ids_text && a->system) { fprintf(stderr, "vlm ask: --system needs the chat template; it cannot go with --ids\n"); return 2; }
    return 0;
}

/* "0,9,58" -> ids */
static int parse_ids(const char *s, int32_t **ids, int64_t *n)
{
    size_t cap = 16, cnt = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    while (*s) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 0 || x > 0x7fffffff) {
            free(v);
            return vlm_errorf(VLM_ERR_INVALID, "--ids: '%s' is not a comma-separated list of token ids", s);
        }
        if (cnt == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) { free(v); return vlm_errorf(VLM_ERR_NOMEM, "out of memory"); }
            v = nv;
        }
        v[cnt++] = (int32_t)x;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    if (!cnt) { free(v); return vlm_errorf(VLM_ERR_INVALID, "--ids: no token ids given"); }
    *ids = v;
    *n = (int64_t)cnt;
    return VLM_OK;
}

/* ---------------------------------------------------------------- the session */

/* Ctrl-C: during an answer it stops that answer; at the prompt it leaves. */
static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

typedef struct {
    const ask_args *a;
    vlm_engine *e;
    double load_ms;
    /* the conversation: user and assistant messages alternating; user message i has n_msg_images[i]
     * images, the next ones of images[] in order */
    char **msgs;
    int *n_msg_images;
    int n_msgs, cap_msgs;
    vlm_image images[MAX_IMAGES];
    double times[MAX_IMAGES]; /* a video frame's time in seconds, -1 for a still image */
    int n_images, n_pending;  /* the last n_pending images go with the next question */
    int printed;             /* the current answer has printed something */
} session;

static void session_reset(session *s)
{
    for (int i = 0; i < s->n_msgs; i++) free(s->msgs[i]);
    s->n_msgs = 0;
    for (int i = 0; i < s->n_images; i++) vlm_image_free(&s->images[i]);
    s->n_images = s->n_pending = 0;
}

static void session_free(session *s)
{
    session_reset(s);
    free(s->msgs);
    free(s->n_msg_images);
    vlm_engine_close(s->e);
}

/* An image or a video (its sampled frames), from a path or a URL, through the media layer's resolver. */
static int add_image(session *s, const char *input)
{
    const ask_args *a = s->a;
    vlm_image_limits lim;
    vlm_image_limits_default(&lim);
    lim.max_pixels = a->max_pixels;
    vlm_url_policy pol;
    vlm_url_policy_default(&pol);
    pol.accept = VLM_URL_ACCEPT_IMAGE | VLM_URL_ACCEPT_VIDEO;
    pol.allow_private = a->allow_private;
    pol.allow_addrs = a->allow_addrs;
    pol.n_allow_addrs = (size_t)a->n_allow_addrs;
    pol.media_dir = a->media_dir;
    vlm_resolve_options ro;
    vlm_resolve_options_default(&ro);
    ro.url = &pol;
    ro.image = &lim;
    if (a->frames) ro.sampling = a->frames;
    ro.max_frames = (int)a->max_frames;
    vlm_resolved r;
    int rc = vlm_media_resolve(input, &ro, &r);
    if (rc) return rc;
    if (r.cut) /* never cut silently */
        fprintf(stderr, "vlm ask: %s: the sampling %s plans %lld frames; kept the first %d (--max-frames)\n", input,
                r.sampling, (long long)r.planned, r.n);
    if (s->n_images + r.n > MAX_IMAGES) {
        vlm_resolved_free(&r);
        return vlm_errorf(VLM_ERR_LIMIT, "%s: at most %d images (video frames count one each) in a conversation", input,
                          MAX_IMAGES);
    }
    for (int i = 0; i < r.n; i++) {
        s->images[s->n_images] = r.items[i].image;
        s->times[s->n_images++] = r.items[i].from_video ? r.items[i].pts : -1;
        memset(&r.items[i].image, 0, sizeof r.items[i].image);
    }
    s->n_pending += r.n;
    vlm_resolved_free(&r);
    return VLM_OK;
}

/* The session's images as engine inputs (rgb, with video frames' times). */
static vlm_image_input *inputs_of(const session *s)
{
    vlm_image_input *in = calloc((size_t)s->n_images + 1, sizeof *in);
    for (int i = 0; in && i < s->n_images; i++)
        in[i] = (vlm_image_input){.rgb = s->images[i].rgb, .width = s->images[i].width, .height = s->images[i].height,
                                  .video_frame = s->times[i] >= 0, .time_s = s->times[i] >= 0 ? s->times[i] : 0};
    return in;
}

static int push_msg(session *s, const char *text, int n_images)
{
    if (s->n_msgs == s->cap_msgs) {
        int cap = s->cap_msgs ? s->cap_msgs * 2 : 8;
        char **p = realloc(s->msgs, (size_t)cap * sizeof *p);
        if (p) s->msgs = p;
        int *q = realloc(s->n_msg_images, (size_t)cap * sizeof *q);
        if (q) s->n_msg_images = q;
        if (!p || !q) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        s->cap_msgs = cap;
    }
    if (!(s->msgs[s->n_msgs] = strdup(text))) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    s->n_msg_images[s->n_msgs++] = n_images;
    return VLM_OK;
}

/* Streamed answer text (engine thread): straight to stdout. */
static int on_text(void *user, const char *text, size_t len)
{
    session *s = user;
    if (len && !s->a->json) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        s->printed = 1;
    }
    return 0;
}

static void fill_options(session *s, vlm_request_options *ro)
{
    const ask_args *a = s->a;
    vlm_request_options_default(ro);
    ro->gen.max_new_tokens = (int)a->max_tokens;
    ro->gen.temperature = (float)a->temperature;
    ro->gen.top_k = (int)a->top_k;
    ro->gen.top_p = (float)a->top_p;
    ro->gen.repetition_penalty = (float)a->rep_penalty;
    ro->gen.seed = (uint64_t)a->seed;
    ro->gen.ignore_eos = a->ignore_eos;
    ro->gen.max_pixels = a->max_pixels;
    ro->gen.stop = a->stops;
    ro->gen.n_stop = a->n_stops;
    ro->gen.on_text = on_text;
    ro->gen.user = s;
}

/* Waits for the answer; Ctrl-C cancels it. */
static const vlm_result *wait_answer(vlm_job *j)
{
    const vlm_result *r = NULL;
    while (!vlm_job_poll(j, &r)) {
        if (g_interrupted) {
            vlm_job_cancel(j);
            vlm_job_wait(j, &r);
            break;
        }
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    return r;
}

/* The boxes of the answer as JSON; grid coordinates always, pixels when an image exists. */
static cJSON *boxes_json(const vlm_grounding *g, const vlm_image *img, int img_index)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < g->n_boxes; i++) {
        cJSON *b = cJSON_CreateObject();
        if (!b) break;
        cJSON_AddItemToArray(arr, b);
        cJSON_AddStringToObject(b, "label", g->boxes[i].label);
        cJSON_AddItemToObject(b, "grid", cJSON_CreateDoubleArray(g->boxes[i].grid, 4));
        if (img) {
            int px[4];
            vlm_grounding_to_pixels(g->boxes[i].grid, img->width, img->height, px);
            cJSON_AddNumberToObject(b, "image", img_index);
            cJSON_AddItemToObject(b, "box", cJSON_CreateIntArray(px, 4));
        } else {
            cJSON_AddNullToObject(b, "image");
            cJSON_AddNullToObject(b, "box");
        }
    }
    return arr;
}

static void add_timings(cJSON *t, const session *s, const vlm_result *r)
{
    cJSON_AddNumberToObject(t, "load_ms", s->load_ms);
    cJSON_AddNumberToObject(t, "queue_ms", r->queue_ms);
    cJSON_AddNumberToObject(t, "vision_ms", r->vision_ms);
    cJSON_AddNumberToObject(t, "prefill_ms", r->prefill_ms);
    cJSON_AddNumberToObject(t, "ttft_ms", r->ttft_ms);
    cJSON_AddNumberToObject(t, "decode_ms", r->decode_ms);
    cJSON_AddNumberToObject(t, "prompt_tokens", (double)r->prompt_tokens);
    cJSON_AddNumberToObject(t, "image_tokens", (double)r->image_tokens);
    cJSON_AddNumberToObject(t, "cached_tokens", (double)r->cached_tokens);
    cJSON_AddNumberToObject(t, "generated_tokens", (double)r->n_token_ids);
    if (r->prefill_ms > 0)
        cJSON_AddNumberToObject(t, "prefill_tok_s", (r->prompt_tokens - r->cached_tokens) / (r->prefill_ms / 1e3));
    if (r->n_token_ids > 1 && r->decode_ms > 0)
        cJSON_AddNumberToObject(t, "decode_tok_s", (r->n_token_ids - 1) / (r->decode_ms / 1e3));
}

static void print_json(const session *s, const vlm_result *r, int has_text, const vlm_grounding *gr,
                       const vlm_image *img, int img_index)
{
    cJSON *root = cJSON_CreateObject();
    if (has_text) cJSON_AddStringToObject(root, "text", r->text);
    else cJSON_AddNullToObject(root, "text");
    cJSON *ids = cJSON_AddArrayToObject(root, "token_ids");
    for (int64_t i = 0; i < r->n_token_ids; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->token_ids[i]));
    cJSON_AddStringToObject(root, "stop_reason", r->stop_detail ? r->stop_detail : "");
    add_timings(cJSON_AddObjectToObject(root, "timings"), s, r);
    cJSON_AddItemToObject(root, "boxes", boxes_json(gr, img, img_index));
    char *out = cJSON_PrintUnformatted(root);
    if (out) puts(out);
    fflush(stdout);
    free(out);
    cJSON_Delete(root);
}

/* -v: the same timings on stderr. */
static void print_timings(const session *s, const vlm_result *r)
{
    fprintf(stderr, "vlm ask: load %.0f ms, vision %.0f ms, prefill %.0f ms (%lld tokens, %lld cached), first token %.0f ms",
            s->load_ms, r->vision_ms, r->prefill_ms, (long long)r->prompt_tokens, (long long)r->cached_tokens, r->ttft_ms);
    if (r->n_token_ids > 1 && r->decode_ms > 0)
        fprintf(stderr, ", decode %.1f tok/s (%lld tokens)", (r->n_token_ids - 1) / (r->decode_ms / 1e3),
                (long long)r->n_token_ids);
    fputc('\n', stderr);
}

/* --draw: the image with the boxes on a copy, written as PNG. */
static int draw_boxes(const char *path, const vlm_image *img, int img_index, const vlm_grounding *g)
{
    vlm_image copy = {img->width, img->height, malloc((size_t)img->width * (size_t)img->height * 3)};
    if (!copy.rgb) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    memcpy(copy.rgb, img->rgb, (size_t)img->width * (size_t)img->height * 3);
    for (int i = 0; i < g->n_boxes; i++) {
        int px[4];
        vlm_grounding_to_pixels(g->boxes[i].grid, img->width, img->height, px);
        vlm_draw_labeled_box(&copy, px[0], px[1], px[2], px[3], g->boxes[i].label, vlm_draw_palette(i));
    }
    int rc = vlm_image_write_png(path, &copy);
    free(copy.rgb);
    if (rc) return rc;
    if (!g->n_boxes) fprintf(stderr, "vlm ask: the answer has no grounding boxes; wrote the image unchanged to %s\n", path);
    else fprintf(stderr, "vlm ask: drew %d box%s on image %d into %s\n", g->n_boxes, g->n_boxes == 1 ? "" : "es", img_index, path);
    return VLM_OK;
}

/* Runs one request through the engine (msgs, or --ids), streams or prints the answer, and gives
 * back the answer's full text (special tokens kept) for the conversation history. */
static int answer(session *s, const vlm_message *msgs, int n_msgs, const int32_t *ids, int64_t n_ids, char **full_text)
{
    const ask_args *a = s->a;
    const int has_tok = !a->ids_text || vlm_engine_has_tokenizer(s->e);
    vlm_request_options ro;
    fill_options(s, &ro);
    vlm_image_input *inputs = NULL;
    if (ids) { /* every image of the session goes to the prompt's image-token runs */
        if (!(inputs = inputs_of(s))) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        ro.prompt_ids = ids;
        ro.n_prompt_ids = n_ids;
        ro.prompt_images = inputs;
        ro.n_prompt_images = s->n_images;
    }
    if (full_text) *full_text = NULL;
    s->printed = 0;
    g_interrupted = 0;
    vlm_job *j = NULL;
    vlm_grounding gr = {0};
    int rc = vlm_engine_submit(s->e, msgs, n_msgs, &ro, &j);
    free(inputs);
    if (rc) return rc;
    const vlm_result *r = wait_answer(j);
    if (r->finish == VLM_FINISH_ERROR) {
        rc = vlm_errorf(r->error_code, "%s", r->error);
        goto done;
    }
    if (!has_tok) { /* no tokenizer: ids only */
        if (a->json) print_json(s, r, 0, &gr, NULL, 0);
        else {
            for (int64_t i = 0; i < r->n_token_ids; i++) printf(i ? " %d" : "%d", r->token_ids[i]);
            putchar('\n');
        }
        goto done;
    }
    if (!a->json) {
        putchar('\n');
        fflush(stdout);
        s->printed = 0;
    }
    if (r->finish == VLM_FINISH_CANCELLED) {
        rc = vlm_errorf(VLM_ERR_INVALID, "interrupted: the answer was stopped (not kept in the conversation)");
        goto done;
    }
    if (a->verbose) print_timings(s, r);
    if ((rc = vlm_grounding_parse(r->full_text, strlen(r->full_text), &gr))) goto done;
    /* the boxes refer to the last image given, as in the official demo */
    const vlm_image *img = s->n_images ? &s->images[s->n_images - 1] : NULL;
    if (full_text && !(*full_text = strdup(r->full_text))) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (a->json) print_json(s, r, 1, &gr, img, s->n_images - 1);
    if (a->draw_path) {
        if (!img) rc = vlm_errorf(VLM_ERR_INVALID, "--draw: the conversation has no image to draw on");
        else rc = draw_boxes(a->draw_path, img, s->n_images - 1, &gr);
    }
done:
    if (rc && s->printed) { /* end the partial answer's line before the error */
        putchar('\n');
        fflush(stdout);
    }
    if (rc && full_text) {
        free(*full_text);
        *full_text = NULL;
    }
    vlm_grounding_free(&gr);
    vlm_job_free(j);
    return rc;
}

/* One question in the conversation: the whole conversation to the engine, both sides remembered. */
static int ask_turn(session *s, const char *question)
{
    /* the engine places the images (in front without <image> markers; video frames with their times) */
    char *user = strdup(question), *reply = NULL;
    int n = 0, rc, img = 0;
    vlm_message *msgs = malloc(((size_t)s->n_msgs + 2) * sizeof *msgs);
    vlm_image_input *inputs = inputs_of(s);
    if (!user || !msgs || !inputs) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (s->a->system) msgs[n++] = (vlm_message){"system", s->a->system, NULL, 0};
    for (int i = 0; i < s->n_msgs; i++) {
        msgs[n++] = (vlm_message){i % 2 ? "assistant" : "user", s->msgs[i], inputs + img, s->n_msg_images[i]};
        img += s->n_msg_images[i];
    }
    msgs[n++] = (vlm_message){"user", user, inputs + img, s->n_pending};
    if ((rc = answer(s, msgs, n, NULL, 0, &reply))) goto done;
    if ((rc = push_msg(s, user, s->n_pending))) goto done;
    if ((rc = push_msg(s, reply, 0))) {
        free(s->msgs[--s->n_msgs]);
        goto done;
    }
    s->n_pending = 0;
done:
    free(inputs);
    free(msgs);
    free(user);
    free(reply);
    return rc;
}

/* ---------------------------------------------------------------- the chat loop */

static char *trim(char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = '\0';
    while (*line == ' ' || *line == '\t') line++;
    return line;
}

static int chat_loop(session *s)
{
    int tty = isatty(STDIN_FILENO), failed = 0;
    if (tty)
        fputs("vlm chat: type a question and press Enter. /image <path> adds an image to the next question,\n"
              "/reset starts over, /quit (or Ctrl-D) leaves.\n",
              stderr);
    char *buf = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty) {
            fputs(s->n_pending ? "(+image) > " : "> ", stderr);
            fflush(stderr);
        }
        g_interrupted = 0;
        if (getline(&buf, &cap, stdin) < 0) { /* Ctrl-D, end of input, or Ctrl-C at the prompt */
            if (tty) fputc('\n', stderr);
            break;
        }
        char *line = trim(buf);
        if (!*line) continue;
        int rc = VLM_OK;
        if (line[0] == '/') {
            char *arg = line + 1 + strcspn(line + 1, " \t");
            size_t cmd_len = (size_t)(arg - line);
            while (*arg == ' ' || *arg == '\t') arg++;
            if (cmd_len == 5 && !strncmp(line, "/quit", 5)) break;
            if (cmd_len == 5 && !strncmp(line, "/exit", 5)) break;
            if (cmd_len == 6 && !strncmp(line, "/reset", 6)) {
                session_reset(s);
                if (tty) fputs("(conversation cleared)\n", stderr);
                continue;
            }
            if (cmd_len == 6 && !strncmp(line, "/image", 6)) {
                if (!*arg) rc = vlm_errorf(VLM_ERR_INVALID, "/image needs a file name: /image <path>");
                else if (!(rc = add_image(s, arg)) && tty)
                    fprintf(stderr, "(image %d: %dx%d, goes with the next question)\n", s->n_images,
                            s->images[s->n_images - 1].width, s->images[s->n_images - 1].height);
            } else if (cmd_len == 5 && !strncmp(line, "/help", 5)) {
                usage(stderr);
                continue;
            } else {
                rc = vlm_errorf(VLM_ERR_INVALID, "unknown command '%.*s' (commands: /image <path>, /reset, /quit)",
                                (int)(cmd_len > 40 ? 40 : cmd_len), line);
            }
        } else {
            rc = ask_turn(s, line);
            if (g_interrupted) { /* the answer was stopped: back to the prompt */
                vlm_clear_error();
                if (tty) fputs("(stopped; Ctrl-C again or Ctrl-D leaves)\n", stderr);
                continue;
            }
        }
        if (rc) {
            cli_fail("ask");
            if (rc == VLM_ERR_LIMIT && line[0] != '/')
                fputs("vlm ask: (that question is not kept; /reset starts a new conversation)\n", stderr);
            failed = 1;
        }
    }
    free(buf);
    return failed;
}

int vlm_cmd_ask(int argc, char **argv)
{
    ask_args a;
    int pr = parse_args(argc, argv, &a);
    if (pr) return pr == 1 ? 0 : 2;

    int rc = 1;
    session s = {.a = &a};
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    /* decode the images first: a bad image fails fast, before the model loads */
    for (int i = 0; i < a.n_images; i++)
        if (add_image(&s, a.images[i])) goto fail;
    if (a.ids_text && parse_ids(a.ids_text, &ids, &n_ids)) goto fail;
    vlm_engine_options eo = {.n_threads = (int)a.threads, .max_context = a.context, .device = a.device,
                             .quant = a.quant, .kv_cache = vlm_kv_type_name(a.kv_cache), .max_running = 1};
    const double t0 = vlm_now_ms();
    if (vlm_engine_open(a.model_dir, &eo, &s.e)) goto fail;
    s.load_ms = vlm_now_ms() - t0;
    if (vlm_engine_device_note(s.e)) fprintf(stderr, "vlm ask: %s\n", vlm_engine_device_note(s.e));
    /* Ctrl-C stops the answer under way (in a chat: back to the prompt, where it leaves) */
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    if (a.ids_text) {
        if (answer(&s, NULL, 0, ids, n_ids, NULL)) goto fail;
        rc = 0;
    } else if (a.question) {
        if (ask_turn(&s, a.question)) goto fail;
        rc = 0;
    } else {
        rc = chat_loop(&s);
    }
    goto done;
fail:
    rc = cli_fail("ask");
done:
    free(ids);
    session_free(&s);
    return rc;
}
