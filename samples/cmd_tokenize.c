/* vlm tokenize / vlm detokenize: the model's tokenizer on its own.
 *   vlm tokenize -m <model dir> [--json] "text"      (no text: read stdin)
 *   vlm detokenize -m <model dir> [--json] [--skip-special] <id>... */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "samples/cli.h"
#include "text/detok_stream.h"
#include "text/tokenizer.h"

static void usage_tokenize(FILE *f)
{
    fputs("usage: vlm tokenize -m <model dir> [--json] [text...]\n"
          "  Prints the token ids of the text (encoded without bos/eos; added tokens such as\n"
          "  <image> or <|User|> in the text are matched). Several words are joined with spaces;\n"
          "  with no text, standard input is read.\n"
          "  -m, --model DIR   folder with tokenizer.json (and tokenizer_config.json)\n"
          "  --json            print {\"ids\": [...], \"pieces\": [...]} (pieces: the vocabulary entries)\n",
          f);
}

static void usage_detokenize(FILE *f)
{
    fputs("usage: vlm detokenize -m <model dir> [--json] [--skip-special] <id>...\n"
          "  Prints the text of the token ids.\n"
          "  -m, --model DIR   folder with tokenizer.json (and tokenizer_config.json)\n"
          "  --json            print {\"text\": ...} (bytes that are not UTF-8 become U+FFFD)\n"
          "  --skip-special    leave out special tokens (bos, eos, <image>, ...)\n",
          f);
}

typedef struct {
    const char *model;
    int json, skip_special, help;
    char **args; /* positional arguments */
    int n_args;
} opts;

/* Options may stand anywhere; "--" makes everything after it positional.
 * A negative number is taken as an (invalid) id, not an option. */
static int parse(const char *cmd, int argc, char **argv, opts *o, int detok)
{
    memset(o, 0, sizeof *o);
    o->args = malloc((size_t)argc * sizeof *o->args);
    if (!o->args) {
        fprintf(stderr, "vlm %s: out of memory\n", cmd);
        return -1;
    }
    int only_args = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_args || a[0] != '-' || !a[1] || (detok && a[1] >= '0' && a[1] <= '9')) {
            o->args[o->n_args++] = argv[i];
        } else if (!strcmp(a, "--")) {
            only_args = 1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (++i >= argc) {
                fprintf(stderr, "vlm %s: %s needs a folder\n", cmd, a);
                return -1;
            }
            o->model = argv[i];
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (detok && !strcmp(a, "--skip-special")) {
            o->skip_special = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            o->help = 1;
        } else {
            fprintf(stderr, "vlm %s: unknown option '%s'\n", cmd, a);
            return -1;
        }
    }
    if (!o->help && !o->model) {
        fprintf(stderr, "vlm %s: -m <model dir> is required\n", cmd);
        return -1;
    }
    return 0;
}

static char *read_stdin(size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
        if (n == cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

static int print_json(cJSON *root)
{
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!s) {
        fprintf(stderr, "vlm: out of memory\n");
        return 1;
    }
    puts(s);
    free(s);
    return 0;
}

int vlm_cmd_tokenize(int argc, char **argv)
{
    opts o;
    if (parse("tokenize", argc, argv, &o, 0)) {
        free(o.args);
        usage_tokenize(stderr);
        return 2;
    }
    if (o.help) {
        free(o.args);
        usage_tokenize(stdout);
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    if (o.n_args > 0) {
        for (int i = 0; i < o.n_args; i++) len += strlen(o.args[i]) + 1;
        text = malloc(len);
        if (text) {
            text[0] = 0;
            for (int i = 0; i < o.n_args; i++) {
                if (i) strcat(text, " ");
                strcat(text, o.args[i]);
            }
            len = strlen(text);
        }
    } else {
        text = read_stdin(&len);
    }
    free(o.args);
    if (!text) {
        fprintf(stderr, "vlm tokenize: out of memory\n");
        return 1;
    }
    vlm_tokenizer *t = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (vlm_tokenizer_load(o.model, &t) || vlm_tokenizer_encode(t, text, len, &ids, &n)) {
        rc = cli_fail("tokenize");
    } else if (o.json) {
        cJSON *root = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(root, "ids");
        cJSON *p = cJSON_AddArrayToObject(root, "pieces");
        for (size_t i = 0; a && p && i < n; i++) {
            cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
            cJSON_AddItemToArray(p, cJSON_CreateString(vlm_tokenizer_id_to_token(t, ids[i])));
        }
        rc = print_json(root);
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    free(ids);
    free(text);
    vlm_tokenizer_free(t);
    return rc;
}

int vlm_cmd_detokenize(int argc, char **argv)
{
    opts o;
    if (parse("detokenize", argc, argv, &o, 1)) {
        free(o.args);
        usage_detokenize(stderr);
        return 2;
    }
    if (o.help) {
        free(o.args);
        usage_detokenize(stdout);
        return 0;
    }
    int n = o.n_args;
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids) {
        free(o.args);
        fprintf(stderr, "vlm detokenize: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        long long v;
        if (cli_int("detokenize", "an id", o.args[i], 0, INT32_MAX, &v)) {
            free(ids);
            free(o.args);
            return 2;
        }
        ids[i] = (int32_t)v;
    }
    free(o.args);
    vlm_tokenizer *t = NULL;
    int rc = 0;
    char *text = NULL;
    size_t len = 0;
    if (vlm_tokenizer_load(o.model, &t) || vlm_tokenizer_decode(t, ids, (size_t)n, o.skip_special, &text, &len)) {
        rc = cli_fail("detokenize");
    } else if (o.json) {
        /* JSON needs valid UTF-8: the streaming detokenizer gives the same
         * text with U+FFFD for invalid bytes, as tokenizers' decode does. */
        vlm_detok_stream *s = NULL;
        char *lossy = malloc(3 * len + 1);
        size_t k = 0;
        if (!lossy || vlm_detok_stream_new(t, !o.skip_special, &s)) {
            rc = lossy ? cli_fail("detokenize") : 1;
        } else {
            const char *p;
            size_t m;
            for (int i = 0; i < n && !rc; i++) {
                if (vlm_detok_stream_push(s, ids[i], &p, &m)) rc = cli_fail("detokenize");
                else memcpy(lossy + k, p, m), k += m;
            }
            if (!rc && vlm_detok_stream_flush(s, &p, &m) == VLM_OK) memcpy(lossy + k, p, m), k += m;
            lossy[k] = 0;
            if (!rc) {
                cJSON *root = cJSON_CreateObject();
                cJSON_AddStringToObject(root, "text", lossy);
                rc = print_json(root);
            }
        }
        vlm_detok_stream_free(s);
        free(lossy);
    } else {
        fwrite(text, 1, len, stdout);
        putchar('\n');
    }
    free(text);
    free(ids);
    vlm_tokenizer_free(t);
    return rc;
}
