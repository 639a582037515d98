/* Fuzz target: the grounding parser on arbitrary answer text. Every box must
 * carry finite coordinates and a label that is a NUL-terminated copy from the
 * input; pixel conversion must stay within its saturation bounds. */
#include "core/error.h"
#include "text/grounding.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vlm_grounding g;
    if (vlm_grounding_parse((const char *)data, size, &g) != VLM_OK) return 0;
    for (int i = 0; i < g.n_boxes; i++) {
        const vlm_ground_box *b = &g.boxes[i];
        size_t l = strlen(b->label);
        if (l > size) abort();
        if (l && !memmem(data, size, b->label, l)) abort();
        int px[4];
        for (int k = 0; k < 4; k++)
            if (!isfinite(b->grid[k])) abort();
        vlm_grounding_to_pixels(b->grid, 640, 480, px);
        for (int k = 0; k < 4; k++)
            if (px[k] > (1 << 30) || px[k] < -(1 << 30)) abort();
    }
    vlm_grounding_free(&g);
    return 0;
}
