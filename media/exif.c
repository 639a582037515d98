/* EXIF orientation from JPEG APP1 or a TIFF header (exif.h). */
#include "media/exif.h"

#include <stdint.h>
#include <string.h>

static unsigned rd16(const uint8_t *p, int be) { return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0]; }

static uint32_t rd32(const uint8_t *p, int be)
{
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The orientation entry of the first IFD of a TIFF structure t[0..n). */
static int tiff_orientation(const uint8_t *t, size_t n)
{
    if (n < 8) return 0;
    int be;
    if (t[0] == 'I' && t[1] == 'I') be = 0;
    else if (t[0] == 'M' && t[1] == 'M') be = 1;
    else return 0;
    if (rd16(t + 2, be) != 42) return 0;
    const uint32_t ifd = rd32(t + 4, be);
    if (ifd < 8 || (uint64_t)ifd + 2 > n) return 0;
    const unsigned count = rd16(t + ifd, be);
    for (unsigned k = 0; k < count; k++) {
        const uint64_t e = (uint64_t)ifd + 2 + 12ull * k;
        if (e + 12 > n) return 0;
        if (rd16(t + e, be) != 0x0112) continue;
        const unsigned type = rd16(t + e + 2, be);
        const uint32_t cnt = rd32(t + e + 4, be);
        uint32_t v;
        if (type == 3 && cnt >= 1) v = rd16(t + e + 8, be); /* SHORT, held in the value field */
        else if (type == 4 && cnt == 1) v = rd32(t + e + 8, be); /* LONG (some writers) */
        else return 0;
        return v >= 1 && v <= 8 ? (int)v : 0;
    }
    return 0;
}

int vlm_exif_orientation(const void *data, size_t size)
{
    const uint8_t *p = (const uint8_t *)data;
    if (!p || size < 4) return 0;
    if (p[0] == 'I' || p[0] == 'M') return tiff_orientation(p, size);
    if (!(p[0] == 0xFF && p[1] == 0xD8)) return 0;
    size_t i = 2;
    while (i + 4 <= size) {
        if (p[i] != 0xFF) return 0; /* not at a marker: the header is damaged */
        const uint8_t m = p[i + 1];
        if (m == 0xFF) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) { /* markers without a length */
            i += 2;
            continue;
        }
        if (m == 0xDA || m == 0xD9) return 0; /* image data or the end: no EXIF before it */
        const size_t len = rd16(p + i + 2, 1);
        if (len < 2) return 0;
        const uint8_t *seg = p + i + 4;
        const size_t avail = size - (i + 4), seglen = len - 2 < avail ? len - 2 : avail;
        if (m == 0xE1 && seglen >= 6 && !memcmp(seg, "Exif\0\0", 6)) return tiff_orientation(seg + 6, seglen - 6);
        i += 2 + len;
    }
    return 0;
}

const char *vlm_exif_orientation_name(int o)
{
    switch (o) {
    case 1: return "normal";
    case 2: return "mirror left-right";
    case 3: return "rotate 180";
    case 4: return "mirror top-bottom";
    case 5: return "mirror left-right, then rotate 90 counter-clockwise";
    case 6: return "rotate 90 clockwise";
    case 7: return "mirror left-right, then rotate 90 clockwise";
    case 8: return "rotate 90 counter-clockwise";
    default: return "none";
    }
}
