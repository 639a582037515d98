// Small test videos for the caption tests: tests/video_util.h's writer with frame i a flat colour that
// depends on i (so a frame can be told from its pixels), MPEG-4 part 2 at quantizer 4, a keyframe every 10.
#pragma once

#include "../video_util.h"

namespace capvid {

struct Spec {
    int w = 64, h = 48;
    int frames = 20;
    AVRational tb{1, 10};     // one tick per frame by default (10 fps)
    std::vector<int64_t> pts; // in tb units; empty: 0, 1, 2, ...
    int64_t start = 0;        // added to every pts (a stream that does not start at 0)
    const char *format = "mp4";
    int offset = 0;           // frame i is painted as frame i + offset (videos that differ)
};

inline void Paint(int i, AVFrame *f)
{
    for (int y = 0; y < f->height; y++)
        std::memset(f->data[0] + y * f->linesize[0], 30 + (i * 37) % 190, f->width);
    for (int y = 0; y < f->height / 2; y++) {
        std::memset(f->data[1] + y * f->linesize[1], 60 + (i * 53) % 130, f->width / 2);
        std::memset(f->data[2] + y * f->linesize[2], 200 - (i * 29) % 130, f->width / 2);
    }
}

// Writes the video to path; false (with a test failure) if it could not.
inline bool Write(const Spec &s, const std::string &path)
{
    videotest::VideoSpec v;
    v.w = s.w, v.h = s.h, v.frames = s.frames, v.tb = s.tb, v.pts = s.pts, v.start = s.start, v.format = s.format;
    v.gop = 10, v.qscale = 4;
    const int offset = s.offset;
    v.paint = [offset](int i, AVFrame *f) { Paint(i + offset, f); };
    return videotest::WriteVideoTo(v, path);
}

} // namespace capvid
