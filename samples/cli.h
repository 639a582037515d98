/* Shared pieces of the vlm command-line program. */
#ifndef VLM_SAMPLES_CLI_H
#define VLM_SAMPLES_CLI_H

#include "core/clock.h"
#include "text/decoder.h"

#include <stdint.h>
#include <stdio.h>

int vlm_cmd_ask(int argc, char **argv);
int vlm_cmd_verify(int argc, char **argv);
int vlm_cmd_tokenize(int argc, char **argv);
int vlm_cmd_detokenize(int argc, char **argv);
int vlm_cmd_mkmodel(int argc, char **argv);
int vlm_cmd_bench(int argc, char **argv);
int vlm_cmd_media(int argc, char **argv);
int vlm_cmd_quantize(int argc, char **argv);
int vlm_cmd_caption(int argc, char **argv);

/* Prints "vlm <cmd>: <message>" for the library's last error and returns 1. */
int cli_fail(const char *cmd);
/* Parses a whole decimal integer/float option value; prints an error and returns -1 if invalid. */
int cli_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out);
int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);
/* vlm bench --concurrency (samples/cmd_bench_serve.c) */
int vlm_cmd_bench_concurrency(const char *dir, const char *quant, const char *kv, int threads, const char *list, int reps,
                              int json);
/* --int8-act auto|on|off: sets vlm_ops_set_int8_activations; prints an error and returns -1 if invalid. */
int cli_int8_act(const char *cmd, const char *s);
/* The current setting as the option spells it. */
const char *cli_int8_act_name(void);
/* --kv-cache auto|f16|f32 into *out; prints an error and returns -1 if invalid. */
int cli_kv_cache(const char *cmd, const char *s, vlm_kv_type *out);

#endif
