/* vlm ask: answer a question about one or more images, streaming the answer;
 * with no question, an interactive chat that keeps the conversation.
 *
 * Chat: each turn renders the whole conversation (system prompt, earlier
 * questions and answers with eos, as the chat template does) with every image
 * given so far, and runs it from scratch: the KV cache is recomputed per turn.
 * Answers go to stdout; prompts and notices go to stderr, and only when stdin
 * is a terminal, so a pipe gets exactly the answers. */
#include "core/error.h"
#include "fusion/model.h"
#include "media/draw.h"
#include "media/image_write.h"
#include "samples/cli.h"
#include "text/detok_stream.h"
#include "text/grounding.h"
#include "text/stop_text.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_IMAGES 64
#define MAX_STOPS 16

typedef struct {
    const char *model_dir, *question, *ids_text, *system, *draw_path, *quant, *device;
    const char *images[MAX_IMAGES];
    int n_images;
    const char *stops[MAX_STOPS];
    int n_stops;
    long long max_tokens, threads, max_pixels, context, top_k, seed;
    double temperature, top_p, rep_penalty;
    int json, ignore_eos;
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
          "  -i, --image FILE         an image (repeat for several); placed at each <image> in the question,\n"
          "                           or before the question when it has no <image> markers\n"
          "  --system TEXT            system prompt, put before the conversation\n"
          "  --stop TEXT              stop when the answer contains TEXT (not printed); repeatable\n"
          "  --max-tokens N           new tokens at most (default 512)\n"
          "  --temperature T          0 = greedy (default 0)\n"
          "  --top-p P, --top-k K     nucleus / top-k sampling (defaults 1.0 / 0 = off)\n"
          "  --repetition-penalty R   (default 1.0 = off)\n"
          "  --seed N                 sampling seed (default 0)\n"
          "  --ignore-eos             keep generating after the end-of-sentence token\n"
          "  --ids 0,9,...            use these prompt token ids instead of the question and chat template\n"
          "                           (a question given too is ignored)\n"
          "  --json                   print {\"text\", \"token_ids\", \"stop_reason\", \"timings\", \"boxes\"} instead\n"
          "                           of streaming text (one line per answer in a chat)\n"
          "  --draw OUT.png           write the image the answer's grounding boxes refer to (the last one\n"
          "                           given) with the boxes drawn and labelled; unchanged if there are none\n"
          "  --threads N              CPU threads (default: all cores)\n"
          "  --int8-act A             int8 activations in prompt / image products: auto (default: for q4\n"
          "                           weights), on (q8 and q4) or off (fp32 products on dequantized weights)\n"
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
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { usage(stdout); return 1; }
        if (!strcmp(o, "--json")) { a->json = 1; continue; }
        if (!strcmp(o, "--ignore-eos")) { a->ignore_eos = 1; continue; }
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
        } else if (!strcmp(o, "--system")) a->system = val;
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

typedef struct {
    const ask_args *a;
    vlm_model *m;
    const vlm_tokenizer *tok; /* NULL: the folder has no tokenizer.json */
    vlm_detok_stream *ds;     /* prints special tokens: stop strings see them; st hides them */
    vlm_stop_text *st;
    /* the conversation: user and assistant messages alternating */
    char **msgs;
    int n_msgs, cap_msgs;
    vlm_image images[MAX_IMAGES];
    int n_images, n_pending; /* the last n_pending images go with the next question */
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
    vlm_detok_stream_free(s->ds);
    vlm_stop_text_free(s->st);
    vlm_model_free(s->m);
}

static int add_image(session *s, const char *path)
{
    if (s->n_images == MAX_IMAGES) return vlm_errorf(VLM_ERR_LIMIT, "at most %d images in a conversation", MAX_IMAGES);
    vlm_image_limits lim;
    vlm_image_limits_default(&lim);
    lim.max_pixels = s->a->max_pixels;
    if (vlm_image_decode_file(path, &lim, &s->images[s->n_images])) return vlm_error_prefix(VLM_ERR_INVALID, "%s", path);
    s->n_images++;
    s->n_pending++;
    return VLM_OK;
}

static int push_msg(session *s, const char *text)
{
    if (s->n_msgs == s->cap_msgs) {
        int cap = s->cap_msgs ? s->cap_msgs * 2 : 8;
        char **p = realloc(s->msgs, (size_t)cap * sizeof *p);
        if (!p) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        s->msgs = p;
        s->cap_msgs = cap;
    }
    if (!(s->msgs[s->n_msgs] = strdup(text))) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    s->n_msgs++;
    return VLM_OK;
}

static void show(session *s, const char *text, size_t len)
{
    if (!len || s->a->json) return;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    s->printed = 1;
}

/* Text of one more piece: through the stop strings, then (visible parts) to stdout. */
static int feed(session *s, const char *text, size_t len, int visible)
{
    const char *out;
    size_t n;
    int r = vlm_stop_text_push(s->st, text, len, visible, &out, &n);
    show(s, out, n);
    return r;
}

static int on_token(void *user, int32_t id)
{
    session *s = user;
    if (!s->tok) return 0;
    const vlm_special_ids *sp = vlm_tokenizer_special(s->tok);
    if (id == sp->eos && !s->a->ignore_eos) return 0; /* the end, not part of the answer */
    const char *piece;
    size_t len;
    int special = vlm_tokenizer_is_special(s->tok, id);
    if (special && vlm_detok_stream_flush(s->ds, &piece, &len) == VLM_OK && len && feed(s, piece, len, 1)) return 1;
    if (vlm_detok_stream_push(s->ds, id, &piece, &len) != VLM_OK || !len) return 0;
    return feed(s, piece, len, !special) != 0; /* 1: a stop string, stop; <0: out of memory, stop too */
}

static const char *stop_reason(vlm_stop_reason r)
{
    static const char *reasons[] = {"length", "eos", "stop_string", "context"};
    return (unsigned)r < 4 ? reasons[r] : "unknown";
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

static void print_json(const session *s, const vlm_generation *g, const char *text, const vlm_grounding *gr,
                       const vlm_image *img, int img_index)
{
    cJSON *root = cJSON_CreateObject();
    if (s->tok) cJSON_AddStringToObject(root, "text", text);
    else cJSON_AddNullToObject(root, "text");
    cJSON *ids = cJSON_AddArrayToObject(root, "token_ids");
    for (int64_t i = 0; i < g->n_ids; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(g->ids[i]));
    cJSON_AddStringToObject(root, "stop_reason", stop_reason(g->stop));
    cJSON *t = cJSON_AddObjectToObject(root, "timings");
    cJSON_AddNumberToObject(t, "vision_ms", g->vision_ms);
    cJSON_AddNumberToObject(t, "prefill_ms", g->prefill_ms);
    cJSON_AddNumberToObject(t, "decode_ms", g->decode_ms);
    cJSON_AddNumberToObject(t, "prompt_tokens", (double)g->prompt_tokens);
    cJSON_AddNumberToObject(t, "image_tokens", (double)g->image_tokens);
    cJSON_AddNumberToObject(t, "generated_tokens", (double)g->n_ids);
    if (g->prefill_ms > 0) cJSON_AddNumberToObject(t, "prefill_tok_s", g->prompt_tokens / (g->prefill_ms / 1e3));
    if (g->n_ids > 1 && g->decode_ms > 0) cJSON_AddNumberToObject(t, "decode_tok_s", (g->n_ids - 1) / (g->decode_ms / 1e3));
    cJSON_AddItemToObject(root, "boxes", boxes_json(gr, img, img_index));
    char *out = cJSON_PrintUnformatted(root);
    if (out) puts(out);
    fflush(stdout);
    free(out);
    cJSON_Delete(root);
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

/* Generates the answer to req, streams or prints it, and gives back the
 * answer's full text (special tokens kept) for the conversation history. */
static int answer(session *s, const vlm_request *req, char **full_text)
{
    const ask_args *a = s->a;
    vlm_generation gen = {0};
    vlm_grounding gr = {0};
    int rc;
    if (full_text) *full_text = NULL;
    s->printed = 0;
    vlm_stop_text_reset(s->st);
    if (s->ds) vlm_detok_stream_reset(s->ds);
    vlm_generate_options go = {
        .max_new_tokens = (int)a->max_tokens,
        .sampler = {.temperature = (float)a->temperature, .top_k = (int)a->top_k, .top_p = (float)a->top_p,
                    .repetition_penalty = (float)a->rep_penalty, .seed = (uint64_t)a->seed},
        .ignore_eos = a->ignore_eos, .on_token = on_token, .user = s,
    };
    rc = vlm_model_generate(s->m, req, &go, &gen);
    if (rc) goto done;
    if (!s->tok) { /* no tokenizer: ids only */
        if (a->json) print_json(s, &gen, NULL, &gr, NULL, 0);
        else {
            for (int64_t i = 0; i < gen.n_ids; i++) printf(i ? " %d" : "%d", gen.ids[i]);
            putchar('\n');
        }
        goto done;
    }
    const char *piece;
    size_t len;
    if (!vlm_stop_text_stopped(s->st) && vlm_detok_stream_flush(s->ds, &piece, &len) == VLM_OK && len && feed(s, piece, len, 1) < 0) {
        rc = VLM_ERR_NOMEM;
        goto done;
    }
    vlm_stop_text_finish(s->st, &piece, &len);
    show(s, piece, len);
    if (!a->json) {
        putchar('\n');
        fflush(stdout);
        s->printed = 0;
    }
    size_t full_len;
    const char *full = vlm_stop_text_get(s->st, 0, &full_len);
    if ((rc = vlm_grounding_parse(full, full_len, &gr))) goto done;
    /* the boxes refer to the last image given, as in the official demo */
    const vlm_image *img = s->n_images ? &s->images[s->n_images - 1] : NULL;
    if (full_text && !(*full_text = strdup(full))) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (a->json) print_json(s, &gen, vlm_stop_text_get(s->st, 1, NULL), &gr, img, s->n_images - 1);
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
    vlm_generation_free(&gen);
    return rc;
}

/* One question in the conversation: template, generate, remember both sides. */
static int ask_turn(session *s, const char *question)
{
    char *user = vlm_chat_place_images(question, s->n_pending), *reply = NULL;
    int n = 0, rc;
    vlm_chat_message *msgs = malloc(((size_t)s->n_msgs + 3) * sizeof *msgs);
    vlm_request req = {0};
    if (!user || !msgs) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (s->a->system) msgs[n++] = (vlm_chat_message){"system", s->a->system};
    for (int i = 0; i < s->n_msgs; i++) msgs[n++] = (vlm_chat_message){i % 2 ? "assistant" : "user", s->msgs[i]};
    msgs[n++] = (vlm_chat_message){"user", user};
    msgs[n++] = (vlm_chat_message){"assistant", ""};
    if ((rc = vlm_model_build_request(s->m, msgs, n, s->images, s->n_images, &req))) goto done;
    if ((rc = answer(s, &req, &reply))) goto done;
    if ((rc = push_msg(s, user))) goto done;
    if ((rc = push_msg(s, reply))) {
        free(s->msgs[--s->n_msgs]);
        goto done;
    }
    s->n_pending = 0;
done:
    vlm_request_free(&req);
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
        if (getline(&buf, &cap, stdin) < 0) break;
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
    vlm_request req = {0};
    /* decode the images first: a bad image fails fast, before the model loads */
    for (int i = 0; i < a.n_images; i++)
        if (add_image(&s, a.images[i])) goto fail;
    vlm_model_options mo = {.n_threads = (int)a.threads, .max_context = a.context, .device = a.device,
                            .kv_cache = a.kv_cache};
    if (a.quant ? vlm_quant_options_parse(a.quant, &mo.quant) : vlm_quant_options_default(a.model_dir, &mo.quant))
        goto fail;
    if (vlm_model_load(a.model_dir, &mo, &s.m)) goto fail;
    if (vlm_model_device_note(s.m)) fprintf(stderr, "vlm ask: %s\n", vlm_model_device_note(s.m));
    s.tok = vlm_model_tokenizer(s.m);
    if (vlm_stop_text_new(a.stops, a.n_stops, &s.st)) goto fail;
    if (s.tok && vlm_detok_stream_new(s.tok, 1, &s.ds)) goto fail;
    if (a.ids_text) {
        if (vlm_model_prepare_images(s.m, s.images, s.n_images, &req) || parse_ids(a.ids_text, &req.ids, &req.n_ids) ||
            answer(&s, &req, NULL))
            goto fail;
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
    vlm_request_free(&req);
    session_free(&s);
    return rc;
}
