/* Fuzz target: still-image decoding (every format vlm_image_decode_memory takes:
 * PNG, JPEG, GIF, WebP, BMP, TIFF, AVIF) and header probing. Small budgets keep
 * each run fast; a decoded image must have the size it claims. */
#include <stdint.h>
#include <stdlib.h>

#include "media/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vlm_image_limits lim = {1 << 20, 64 << 20};
    vlm_image img;
    if (vlm_image_decode_memory(data, size, &lim, &img) == 0) {
        if (img.width <= 0 || img.height <= 0 || (int64_t)img.width * img.height > lim.max_pixels) abort();
        volatile uint8_t sink = img.rgb[(size_t)img.width * img.height * 3 - 1]; /* ASan checks the size */
        (void)sink;
        vlm_image_free(&img);
    } else if (img.rgb || img.width || img.height) {
        abort(); /* a failure must leave the output empty */
    }
    vlm_image_info info;
    if (vlm_image_probe_memory(data, size, &info) == 0 && (info.width <= 0 || info.height <= 0)) abort();
    return 0;
}
