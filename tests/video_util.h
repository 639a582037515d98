// Small test videos the media tests encode themselves with the libavcodec/libavformat they link
// (MPEG-4 part 2, always built into FFmpeg): each frame is flat grey at a level that encodes its index,
// so every sampled frame can be identified from its pixels, independently of the timestamps reported.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>

#include "media/image.h"
}

namespace videotest {

inline std::string TmpPath(const std::string &name)
{
    return "/tmp/vlm_video_" + std::to_string(getpid()) + "_" + name;
}

// Grey level of frame i (luma), and back. Levels 4 apart survive MPEG-4 at q=2.
inline int LevelOf(int i) { return 20 + 4 * (i % 50); }
inline int IndexOfLevel(double y) { return int(std::lround((y - 20) / 4)); }

struct VideoSpec {
    int w = 64, h = 48;
    int frames = 30;
    AVRational tb{1, 10};
    std::vector<int64_t> pts; // in tb units; empty: 0, 1, 2, ...
    int64_t start = 0;        // added to every pts (a stream that does not start at 0)
    const char *format = "mp4";
    int gop = 10;
    int qscale = 2;           // MPEG-4 quantizer (2: levels 4 apart survive)
    int rotation = 0; // clockwise degrees in the display matrix
    const char *mux_options = nullptr; // e.g. "live=1" (av_dict_parse_string syntax)
    std::vector<int64_t> mux_pts;      // if set: the timestamps written for packet i (in tb units)
    // Paints frame i (YUV 4:2:0); default: flat grey, left half LevelOf(i), right half the hundreds.
    std::function<void(int, AVFrame *)> paint;
};

inline void PaintIndex(int i, AVFrame *f)
{
    for (int y = 0; y < f->height; y++)
        for (int x = 0; x < f->width; x++)
            f->data[0][y * f->linesize[0] + x] = uint8_t(x < f->width / 2 ? LevelOf(i) : 20 + 30 * (i / 50));
    for (int p = 1; p < 3; p++)
        for (int y = 0; y < f->height / 2; y++) std::memset(f->data[p] + y * f->linesize[p], 128, f->width / 2);
}

// Encodes the spec into the file at path; false on failure (with a test failure).
inline bool WriteVideoTo(const VideoSpec &s, const std::string &path)
{
    AVFormatContext *oc = nullptr;
    if (avformat_alloc_output_context2(&oc, nullptr, s.format, path.c_str()) < 0 || !oc) {
        ADD_FAILURE() << "no muxer " << s.format;
        return false;
    }
    bool ok = true;
    // a failed step: a test failure naming it, and the write reports false
    auto check = [&](bool good, const char *what) {
        if (!good) {
            ADD_FAILURE() << what << " failed writing " << path;
            ok = false;
        }
    };
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
    AVStream *st = avformat_new_stream(oc, nullptr);
    AVCodecContext *c = avcodec_alloc_context3(codec);
    c->width = s.w;
    c->height = s.h;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = s.tb;
    if (s.pts.empty()) c->framerate = av_inv_q(s.tb);
    c->gop_size = s.gop;
    c->max_b_frames = 0;
    c->flags |= AV_CODEC_FLAG_QSCALE;
    c->global_quality = FF_QP2LAMBDA * s.qscale;
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    check(avcodec_open2(c, codec, nullptr) == 0, "avcodec_open2");
    avcodec_parameters_from_context(st->codecpar, c);
    st->time_base = s.tb;
    if (s.pts.empty()) st->avg_frame_rate = av_inv_q(s.tb);
    if (s.rotation) {
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 31, 100)
        AVPacketSideData *sd = av_packet_side_data_new(&st->codecpar->coded_side_data,
                                                       &st->codecpar->nb_coded_side_data,
                                                       AV_PKT_DATA_DISPLAYMATRIX, 9 * sizeof(int32_t), 0);
        av_display_rotation_set((int32_t *)sd->data, s.rotation); // "clockwise" in FFmpeg's terms
#else
        uint8_t *sd = av_stream_new_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, 9 * sizeof(int32_t));
        av_display_rotation_set((int32_t *)sd, s.rotation); // "clockwise" in FFmpeg's terms
#endif
    }
    check(avio_open(&oc->pb, path.c_str(), AVIO_FLAG_WRITE) >= 0, "avio_open");
    AVDictionary *mux_opts = nullptr;
    if (s.mux_options) {
        check(av_dict_parse_string(&mux_opts, s.mux_options, "=", ":", 0) >= 0, "mux options");
    }
    check(ok && avformat_write_header(oc, &mux_opts) >= 0, "avformat_write_header");
    av_dict_free(&mux_opts);
    AVFrame *f = av_frame_alloc();
    f->format = AV_PIX_FMT_YUV420P;
    f->width = s.w;
    f->height = s.h;
    av_frame_get_buffer(f, 0);
    AVPacket *pkt = av_packet_alloc();
    size_t written = 0;
    auto drain = [&]() {
        while (avcodec_receive_packet(c, pkt) == 0) {
            if (written < s.mux_pts.size()) pkt->pts = pkt->dts = s.mux_pts[written];
            written++;
            av_packet_rescale_ts(pkt, c->time_base, st->time_base);
            pkt->stream_index = st->index;
            check(av_interleaved_write_frame(oc, pkt) >= 0, "av_interleaved_write_frame");
        }
    };
    for (int i = 0; ok && i < s.frames; i++) {
        av_frame_make_writable(f);
        (s.paint ? s.paint : PaintIndex)(i, f);
        f->pts = (s.pts.empty() ? i : s.pts[i]) + s.start;
        check(avcodec_send_frame(c, f) >= 0, "avcodec_send_frame");
        drain();
    }
    avcodec_send_frame(c, nullptr);
    drain();
    if (ok) check(av_write_trailer(oc) >= 0, "av_write_trailer");
    if (oc->pb) avio_closep(&oc->pb);
    av_packet_free(&pkt);
    av_frame_free(&f);
    avcodec_free_context(&c);
    avformat_free_context(oc);
    return ok;
}

// Encodes the spec into TmpPath(name); returns "" on failure (with a test failure).
inline std::string WriteVideo(const VideoSpec &s, const std::string &name)
{
    const std::string path = TmpPath(name);
    return WriteVideoTo(s, path) ? path : "";
}

inline std::vector<uint8_t> ReadBytes(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Mean luma-equivalent of a region of an RGB frame (BT.601 limited range undone).
inline double MeanY(const vlm_image &img, int x0, int x1, int y0, int y1)
{
    double sum = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) sum += img.rgb[(size_t(y) * img.width + x) * 3 + 1];
    double rgb = sum / ((x1 - x0) * (y1 - y0));
    return rgb * 219.0 / 255.0 + 16.0;
}

inline int FrameIndex(const vlm_image &img)
{
    int lo = IndexOfLevel(MeanY(img, 4, img.width / 2 - 4, 4, img.height - 4));
    int hi = int(std::lround((MeanY(img, img.width / 2 + 4, img.width - 4, 4, img.height - 4) - 20) / 30));
    return hi * 50 + lo;
}

}  // namespace videotest
