/* vlm mkmodel: write a random-weight checkpoint folder of DeepSeek-VL2's real shapes. */
#include "core/error.h"
#include "fusion/mkmodel.h"
#include "samples/cli.h"

#include <string.h>

static void usage(FILE *f)
{
    fputs("usage: vlm mkmodel --shape tiny|small|base|<config.json> [options] <out dir>\n"
          "  Writes config.json, processor_config.json, a byte-level stand-in tokenizer (special tokens at\n"
          "  the real ids, every other id a placeholder word \" w<id>\") and random BF16 weights of the real\n"
          "  shapes as sharded safetensors + index. Timings on it are those of the real model; its answers\n"
          "  are noise (placeholder words).\n"
          "  --shape S        tiny, small, base, or a config.json to copy\n"
          "  --shard-gb G     shard size limit in GiB (default 4)\n"
          "  --seed N         random seed (default 0; the same seed writes the same bytes)\n"
          "  --quiet          no progress lines\n",
          f);
}

int vlm_cmd_mkmodel(int argc, char **argv)
{
    const char *shape = NULL, *out = NULL;
    vlm_mkmodel_options o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else if (!strcmp(a, "--shape") && i + 1 < argc) {
            shape = argv[++i];
        } else if (!strcmp(a, "--shard-gb") && i + 1 < argc) {
            if (cli_float("mkmodel", a, argv[++i], 0.001, 1024, &o.shard_gb)) return 2;
        } else if (!strcmp(a, "--seed") && i + 1 < argc) {
            long long s;
            if (cli_int("mkmodel", a, argv[++i], 0, 0x7fffffffffffffffLL, &s)) return 2;
            o.seed = (uint64_t)s;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vlm mkmodel: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!out) {
            out = a;
        } else {
            fprintf(stderr, "vlm mkmodel: more than one output folder given\n");
            return 2;
        }
    }
    if (!shape || !out) {
        usage(stderr);
        return 2;
    }
    if (vlm_mkmodel(shape, out, &o)) return cli_fail("mkmodel");
    return 0;
}
