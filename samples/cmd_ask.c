/* vlm ask: answer a question about one or more images, streaming the answer. */
#include "core/error.h"
#include "fusion/model.h"
#include "samples/cli.h"
#include "text/detok_stream.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGES 64

typedef struct {
    const char *model_dir, *question, *ids_text;
    const char *images[MAX_IMAGES];
    int n_images;
    long long max_tokens, threads, max_pixels, context, top_k, seed;
    double temperature, top_p, rep_penalty;
    int json, ignore_eos;
} ask_args;

static void usage(FILE *f)
{
    fputs("usage: vlm ask -m <model dir> [-i <image>]... [options] \"question\"\n"
          "  -m, --model DIR          checkpoint folder (config.json, *.safetensors, tokenizer.json)\n"
          "  -i, --image FILE         an image (repeat for several); placed at each <image> in the question,\n"
          "                           or before the question when it has no <image> markers\n"
          "  --max-tokens N           new tokens at most (default 512)\n"
          "  --temperature T          0 = greedy (default 0)\n"
          "  --top-p P, --top-k K     nucleus / top-k sampling (defaults 1.0 / 0 = off)\n"
          "  --repetition-penalty R   (default 1.0 = off)\n"
          "  --seed N                 sampling seed (default 0)\n"
          "  --ignore-eos             keep generating after the end-of-sentence token\n"
          "  --ids 0,9,...            use these prompt token ids instead of the question and chat template\n"
          "  --json                   print {\"text\", \"token_ids\", \"timings\"} instead of streaming text\n"
          "  --threads N              CPU threads (default: all cores)\n"
          "  --max-pixels N           refuse larger images, checked before decoding (default 50000000)\n"
          "  --context N              limit the context (default: the model's max_position_embeddings)\n",
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
        } else if (!strcmp(o, "--ids")) a->ids_text = val;
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
    if (!a->question && !a->ids_text) { fprintf(stderr, "vlm ask: no question given\n"); usage(stderr); return 2; }
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

/* The question as the user message: images go where <image> stands, else before it. */
static char *user_message(const char *q, int n_images)
{
    if (!q) q = "";
    size_t extra = strstr(q, "<image>") ? 0 : (size_t)n_images * 8;
    char *s = malloc(strlen(q) + extra + 1);
    if (!s) return NULL;
    s[0] = '\0';
    for (size_t i = 0; extra && i < (size_t)n_images; i++) strcat(s, "<image>\n");
    strcat(s, q);
    return s;
}

typedef struct {
    vlm_detok_stream *ds;
    int stream;
} stream_ctx;

static int on_token(void *user, int32_t id)
{
    stream_ctx *s = user;
    if (!s->stream) return 0;
    const char *piece;
    size_t len;
    if (vlm_detok_stream_push(s->ds, id, &piece, &len) == VLM_OK && len) {
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

static void print_json(const vlm_tokenizer *tok, const vlm_generation *g, const vlm_model *m)
{
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;
    size_t len = 0;
    int64_t n = g->n_ids;
    if (g->stop == VLM_STOP_EOS && n > 0) n--; /* the eos token is not part of the answer text */
    if (tok && vlm_tokenizer_decode(tok, g->ids, (size_t)n, 1, &text, &len) == VLM_OK) cJSON_AddStringToObject(root, "text", text);
    else cJSON_AddNullToObject(root, "text");
    free(text);
    cJSON *ids = cJSON_AddArrayToObject(root, "token_ids");
    for (int64_t i = 0; i < g->n_ids; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(g->ids[i]));
    static const char *reasons[] = {"length", "eos", "stopped", "context"};
    cJSON_AddStringToObject(root, "stop_reason", reasons[g->stop]);
    cJSON *t = cJSON_AddObjectToObject(root, "timings");
    cJSON_AddNumberToObject(t, "vision_ms", g->vision_ms);
    cJSON_AddNumberToObject(t, "prefill_ms", g->prefill_ms);
    cJSON_AddNumberToObject(t, "decode_ms", g->decode_ms);
    cJSON_AddNumberToObject(t, "prompt_tokens", (double)g->prompt_tokens);
    cJSON_AddNumberToObject(t, "image_tokens", (double)g->image_tokens);
    cJSON_AddNumberToObject(t, "generated_tokens", (double)g->n_ids);
    if (g->prefill_ms > 0) cJSON_AddNumberToObject(t, "prefill_tok_s", g->prompt_tokens / (g->prefill_ms / 1e3));
    if (g->n_ids > 1 && g->decode_ms > 0) cJSON_AddNumberToObject(t, "decode_tok_s", (g->n_ids - 1) / (g->decode_ms / 1e3));
    (void)m;
    char *s = cJSON_PrintUnformatted(root);
    if (s) puts(s);
    free(s);
    cJSON_Delete(root);
}

int vlm_cmd_ask(int argc, char **argv)
{
    ask_args a;
    int pr = parse_args(argc, argv, &a);
    if (pr) return pr == 1 ? 0 : 2;

    int rc = 1, n_loaded = 0;
    vlm_model *m = NULL;
    vlm_image *images = calloc((size_t)(a.n_images ? a.n_images : 1), sizeof *images);
    vlm_request req = {0};
    vlm_generation gen = {0};
    stream_ctx sc = {0};
    char *user = NULL;
    if (!images) { vlm_errorf(VLM_ERR_NOMEM, "out of memory"); return cli_fail("ask"); }

    /* decode the images first: a bad image fails fast, before the model loads */
    vlm_image_limits lim;
    vlm_image_limits_default(&lim);
    lim.max_pixels = a.max_pixels;
    for (int i = 0; i < a.n_images; i++, n_loaded++)
        if (vlm_image_decode_file(a.images[i], &lim, &images[i])) {
            vlm_error_prefix(VLM_ERR_INVALID, "%s", a.images[i]);
            rc = cli_fail("ask");
            goto done;
        }
    vlm_model_options mo = {.n_threads = (int)a.threads, .max_context = a.context};
    if (vlm_model_load(a.model_dir, &mo, &m)) { rc = cli_fail("ask"); goto done; }
    if (a.ids_text) {
        if (vlm_model_prepare_images(m, images, a.n_images, &req) || parse_ids(a.ids_text, &req.ids, &req.n_ids)) {
            rc = cli_fail("ask");
            goto done;
        }
    } else {
        if (!(user = user_message(a.question, a.n_images))) { vlm_errorf(VLM_ERR_NOMEM, "out of memory"); rc = cli_fail("ask"); goto done; }
        vlm_chat_message msgs[2] = {{"user", user}, {"assistant", ""}};
        if (vlm_model_build_request(m, msgs, 2, images, a.n_images, &req)) { rc = cli_fail("ask"); goto done; }
    }
    const vlm_tokenizer *tok = vlm_model_tokenizer(m);
    sc.stream = !a.json && tok != NULL;
    if (sc.stream && vlm_detok_stream_new(tok, 0, &sc.ds)) { rc = cli_fail("ask"); goto done; }
    vlm_generate_options go = {
        .max_new_tokens = (int)a.max_tokens,
        .sampler = {.temperature = (float)a.temperature, .top_k = (int)a.top_k, .top_p = (float)a.top_p,
                    .repetition_penalty = (float)a.rep_penalty, .seed = (uint64_t)a.seed},
        .ignore_eos = a.ignore_eos, .on_token = on_token, .user = &sc,
    };
    if (vlm_model_generate(m, &req, &go, &gen)) { rc = cli_fail("ask"); goto done; }
    if (a.json) print_json(tok, &gen, m);
    else if (sc.stream) {
        const char *piece;
        size_t len;
        if (vlm_detok_stream_flush(sc.ds, &piece, &len) == VLM_OK && len) fwrite(piece, 1, len, stdout);
        putchar('\n');
    } else {
        for (int64_t i = 0; i < gen.n_ids; i++) printf(i ? " %d" : "%d", gen.ids[i]);
        putchar('\n');
    }
    rc = 0;
done:
    vlm_detok_stream_free(sc.ds);
    vlm_generation_free(&gen);
    vlm_request_free(&req);
    for (int i = 0; i < n_loaded; i++) vlm_image_free(&images[i]);
    free(images);
    free(user);
    vlm_model_free(m);
    return rc;
}
