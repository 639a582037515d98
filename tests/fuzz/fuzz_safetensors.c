/* Fuzz target: safetensors headers and data ranges. The input is written to a
 * file and opened; every tensor view handed out must lie inside the file. */
#include "core/safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/vlm_fuzz_st_%d.safetensors", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    vlm_st_file *st;
    if (vlm_st_open(path, &st) == 0) {
        volatile uint8_t sink = 0;
        for (int i = 0; i < vlm_st_count(st); i++) {
            const vlm_tensor_view *v = vlm_st_at(st, i);
            if (v->nbytes) sink ^= ((const uint8_t *)v->data)[v->nbytes - 1]; /* ASan checks the range */
            if (vlm_st_find(st, v->name) != v) abort();
        }
        (void)sink;
        vlm_st_close(st);
    }
    return 0;
}
