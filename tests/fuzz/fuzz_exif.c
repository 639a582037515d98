/* Fuzz target: the EXIF orientation reader (media/exif.c) on arbitrary bytes, as a JPEG's markers
 * (an input starting FF D8) or a TIFF header ("II"/"MM"), and behind a JPEG SOI + APP1 "Exif" header
 * built here so that the TIFF walk is reached from the JPEG path too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media/exif.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int o = vlm_exif_orientation(data, size);
    if (o < 0 || o > 8 || !vlm_exif_orientation_name(o)) abort();
    if (size > 65000) return 0;
    uint8_t *j = malloc(size + 12);
    if (!j) return 0;
    const size_t len = size + 8; /* APP1 length: itself (2) + "Exif\0\0" (6) + the TIFF bytes */
    const uint8_t head[12] = {0xFF, 0xD8, 0xFF, 0xE1, (uint8_t)(len >> 8), (uint8_t)len, 'E', 'x', 'i', 'f', 0, 0};
    memcpy(j, head, 12);
    if (size) memcpy(j + 12, data, size);
    o = vlm_exif_orientation(j, size + 12);
    if (o < 0 || o > 8) abort();
    free(j);
    return 0;
}
