/* vlm quantize: store a checkpoint with its weights already converted (fusion/quantize.h). */
#include "core/error.h"
#include "fusion/quantize.h"
#include "samples/cli.h"

#include <string.h>

static void usage(FILE *f)
{
    fputs("usage: vlm quantize <model dir> <out dir> --quant Q [options]\n"
          "  Writes a checkpoint folder whose weights are stored in the formats Q asks for (the same\n"
          "  weights and bytes that loading <model dir> with --quant Q converts), so that loading\n"
          "  <out dir> maps them in place instead. Load it with the same --quant, or with none.\n"
          "  <out dir> must not exist or be empty.\n"
          "  --quant Q        weight formats as in `ask`: q8, q4, q4:64, experts=q4,attention=q8, ...\n"
          "  --shard-gb G     shard size limit in GiB (default 4)\n"
          "  --threads N      CPU threads (default: all cores)\n"
          "  --quiet          no progress lines\n",
          f);
}

int vlm_cmd_quantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *quant = NULL;
    vlm_quantize_options o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else if (!strcmp(a, "--quant") && i + 1 < argc) {
            quant = argv[++i];
        } else if (!strcmp(a, "--shard-gb") && i + 1 < argc) {
            if (cli_float("quantize", a, argv[++i], 0.001, 1024, &o.shard_gb)) return 2;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            long long t;
            if (cli_int("quantize", a, argv[++i], 1, 1024, &t)) return 2;
            o.n_threads = (int)t;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vlm quantize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            fprintf(stderr, "vlm quantize: more than two folders given\n");
            return 2;
        }
    }
    if (!in || !out || !quant) {
        if (in && out) fprintf(stderr, "vlm quantize: --quant is required\n");
        usage(stderr);
        return 2;
    }
    if (vlm_quant_options_parse(quant, &o.quant)) return cli_fail("quantize");
    if (vlm_quantize_checkpoint(in, out, &o)) return cli_fail("quantize");
    return 0;
}
