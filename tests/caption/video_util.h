// Small test videos for the caption tests, encoded with the libavcodec/libavformat the tests link
// (MPEG-4 part 2, always built into FFmpeg). Frame i is a flat colour that depends on i, so a frame
// can be told from its pixels.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
}

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
    AVFormatContext *oc = nullptr;
    if (avformat_alloc_output_context2(&oc, nullptr, s.format, path.c_str()) < 0 || !oc) {
        ADD_FAILURE() << "no muxer " << s.format;
        return false;
    }
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
    AVStream *st = avformat_new_stream(oc, nullptr);
    AVCodecContext *c = avcodec_alloc_context3(codec);
    c->width = s.w;
    c->height = s.h;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = s.tb;
    if (s.pts.empty()) c->framerate = av_inv_q(s.tb);
    c->gop_size = 10;
    c->max_b_frames = 0;
    c->flags |= AV_CODEC_FLAG_QSCALE;
    c->global_quality = FF_QP2LAMBDA * 4;
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    bool ok = avcodec_open2(c, codec, nullptr) == 0;
    avcodec_parameters_from_context(st->codecpar, c);
    st->time_base = s.tb;
    if (s.pts.empty()) st->avg_frame_rate = av_inv_q(s.tb);
    ok = ok && avio_open(&oc->pb, path.c_str(), AVIO_FLAG_WRITE) >= 0;
    ok = ok && avformat_write_header(oc, nullptr) >= 0;
    AVFrame *f = av_frame_alloc();
    f->format = AV_PIX_FMT_YUV420P;
    f->width = s.w;
    f->height = s.h;
    av_frame_get_buffer(f, 0);
    AVPacket *pkt = av_packet_alloc();
    auto drain = [&]() {
        while (avcodec_receive_packet(c, pkt) == 0) {
            av_packet_rescale_ts(pkt, c->time_base, st->time_base);
            pkt->stream_index = st->index;
            if (av_interleaved_write_frame(oc, pkt) < 0) ok = false;
        }
    };
    for (int i = 0; ok && i < s.frames; i++) {
        av_frame_make_writable(f);
        Paint(i + s.offset, f);
        f->pts = (s.pts.empty() ? i : s.pts[i]) + s.start;
        if (avcodec_send_frame(c, f) < 0) ok = false;
        drain();
    }
    avcodec_send_frame(c, nullptr);
    drain();
    if (ok && av_write_trailer(oc) < 0) ok = false;
    if (oc->pb) avio_closep(&oc->pb);
    av_packet_free(&pkt);
    av_frame_free(&f);
    avcodec_free_context(&c);
    avformat_free_context(oc);
    EXPECT_TRUE(ok) << "could not write " << path;
    return ok;
}

} // namespace capvid
