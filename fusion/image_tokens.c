#include "fusion/image_tokens.h"

#include <string.h>

int64_t vlm_image_embed_count(int side, int nw, int nh)
{
    return (int64_t)side * (side + 1) + 1 + (int64_t)side * nh * ((int64_t)side * nw + 1);
}

void vlm_image_embeds_assemble(const float *proj, int side, int nw, int nh, const float *newline,
                               const float *separator, int64_t H, float *out)
{
    const size_t row = (size_t)H * sizeof(float);
    const int64_t per_tile = (int64_t)side * side;
    float *o = out;
    for (int r = 0; r < side; r++) {
        memcpy(o, proj + (int64_t)r * side * H, (size_t)side * row);
        o += (int64_t)side * H;
        memcpy(o, newline, row);
        o += H;
    }
    memcpy(o, separator, row);
    o += H;
    const float *local = proj + per_tile * H;
    for (int ty = 0; ty < nh; ty++)
        for (int r = 0; r < side; r++) {
            for (int tx = 0; tx < nw; tx++) {
                const float *tile = local + (int64_t)(ty * nw + tx) * per_tile * H;
                memcpy(o, tile + (int64_t)r * side * H, (size_t)side * row);
                o += (int64_t)side * H;
            }
            memcpy(o, newline, row);
            o += H;
        }
}
