/* Fuzz target: video demuxing and decoding from memory (our own AVIOContext over
 * the input, the demuxer whitelist), a short sampling pass with RGB conversion and
 * rotation, and the packet scan. Limits keep each run short. */
#include <stdint.h>
#include <stdlib.h>

#include "media/video.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vlm_video_limits lim = {256 * 256, 4, 1};
    vlm_video *v;
    if (vlm_video_open_memory(data, size, &lim, &v) != 0) return 0;
    const vlm_video_info *in = vlm_video_get_info(v);
    if (in->width <= 0 || in->height <= 0) abort();
    static const char *specs[] = {"fps=5", "n=3", "scene=0.2"};
    vlm_video_sampling s;
    if (vlm_video_sampling_parse(specs[size % 3], &s) == 0 && vlm_video_start(v, &s) == 0) {
        vlm_image img;
        double pts, last = -1e300;
        int n = 0;
        while (vlm_video_next(v, &img, &pts) == 1) {
            if (img.width <= 0 || img.height <= 0 || pts <= last) abort();
            volatile uint8_t sink = img.rgb[(size_t)img.width * img.height * 3 - 1];
            (void)sink;
            vlm_image_free(&img);
            last = pts;
            if (++n > lim.max_frames) abort();
        }
    }
    if (size % 5 == 0) vlm_video_scan(v);
    vlm_video_close(v);
    return 0;
}
