/* `vlm serve` and `vlm batch` (samples/cmd_serve.c, samples/cmd_batch.c) and the options they share:
 * the model and engine settings, the media policy and request limits. */
#ifndef VLM_SERVER_SERVER_CLI_H
#define VLM_SERVER_SERVER_CLI_H

#include <stdio.h>

#include "server/chat_request.h"
#include "vlm.h"

#ifdef __cplusplus
extern "C" {
#endif

int vlm_cmd_serve(int argc, char **argv);
int vlm_cmd_batch(int argc, char **argv);

#define SRV_CLI_MAX_ADDRS 32
typedef struct {
    const char *model_dir;
    const char *served_name;  /* NULL: the model folder's name */
    vlm_engine_options eng;
    srv_media_options media;
    srv_chat_limits limits;
    long long default_max_tokens;
    const char *allow_addrs[SRV_CLI_MAX_ADDRS];
    int n_allow_addrs;
} srv_cli_common;

void srv_cli_common_init(srv_cli_common *c);
/* Consumes argv[*i] (and its value) when it is a shared option: 1 consumed, 0 not one of them, -1 bad value
 * (message printed). */
int srv_cli_common_option(const char *cmd, srv_cli_common *c, int argc, char **argv, int *i);
/* Help text of the shared options. */
void srv_cli_common_usage(FILE *f);
/* The engine opened with the options (message printed on failure). */
int srv_cli_open_engine(const char *cmd, srv_cli_common *c, vlm_engine **out);
/* The name /v1/models lists: --served-model-name, else the model folder's last component. malloc'd. */
char *srv_cli_model_name(const srv_cli_common *c);

#ifdef __cplusplus
}
#endif
#endif
