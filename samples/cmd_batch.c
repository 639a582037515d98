/* vlm batch: OpenAI Batch files offline. */
#include "server/server_cli.h"

int vlm_cmd_batch(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "vlm batch: not written yet\n");
    return 2;
}
