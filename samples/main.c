/* vlm: ask questions about images with vision-language models. */
#include "samples/cli.h"
#include "server/server_cli.h" /* vlm serve, vlm batch */
#include "core/ops.h"
#include "core/version.h"

#include <string.h>

static void usage(FILE *f)
{
    fputs("usage: vlm <command> [options]\n"
          "\n"
          "commands:\n"
          "  ask         answer a question about images:  vlm ask -m <model dir> -i photo.jpg \"question\"\n"
          "  verify      check a golden case:  vlm verify --model <dir> --input <case dir> --golden <file>\n"
          "  tokenize    show token ids:  vlm tokenize -m <model dir> \"text\"\n"
          "  detokenize  ids to text:  vlm detokenize -m <model dir> <id>...\n"
          "  media       what vlm sees in an image, video or URL:  vlm media clip.mp4 --frames fps=1\n"
          "  mkmodel     random-weight checkpoint of real shapes:  vlm mkmodel --shape tiny <out dir>\n"
          "  bench       CPU speed of a model:  vlm bench -m <model dir> [--quant q8] [--json]\n"
          "  quantize    store converted weights:  vlm quantize <model dir> <out dir> --quant q4\n"
          "  caption     subtitles and records for videos:  vlm caption -m <model dir> videos/ --out-dir captions\n"
          "  serve       OpenAI-compatible HTTP API:  vlm serve -m <model dir> [--port 8080]\n"
          "  batch       OpenAI Batch file offline:  vlm batch -m <model dir> requests.jsonl -o results.jsonl\n"
          "  version     version, git commit, build options and the SIMD level in use (also --version)\n"
          "\n"
          "`vlm <command> --help` shows a command's options.\n",
          f);
}

/* The version, the commit it was built from, the build options and the kernels this CPU gets. */
static int print_version(void)
{
    printf("vlm %s\n", vlm_version());
    printf("commit: %s\n", vlm_build_commit());
    printf("build: %s\n", vlm_build_options());
    printf("simd: %s (detected at run time)\n", vlm_ops_simd());
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "ask")) return vlm_cmd_ask(argc - 1, argv + 1);
    if (!strcmp(cmd, "verify")) return vlm_cmd_verify(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return vlm_cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "detokenize")) return vlm_cmd_detokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "mkmodel")) return vlm_cmd_mkmodel(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return vlm_cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "media")) return vlm_cmd_media(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize")) return vlm_cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "caption")) return vlm_cmd_caption(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return vlm_cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "batch")) return vlm_cmd_batch(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version") || !strcmp(cmd, "-V")) return print_version();
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "vlm: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
