/* Writes the bundled demo clip (tests/data/media/caption_demo.mp4): 6 s, 320x180, 10 fps, MPEG-4 part 2 in MP4,
 * a test pattern in the manner of FFmpeg's testsrc: colour bars over a grey ramp with a white square moving
 * across, the bars reversed half way (a scene change). Other lengths and sizes for the caption benchmark.
 *
 *   cc -O1 -o /tmp/make_demo_clip tests/caption/make_demo_clip.c -lavformat -lavcodec -lavutil
 *   /tmp/make_demo_clip tests/data/media/caption_demo.mp4 [seconds width height [fps]]
 * (a low fps makes long clips quickly, e.g. an hour of 1920x1080 at 1 fps for the memory check) */
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

static int W = 320, H = 180, SECONDS = 6, FPS = 10;

static void rgb_to_yuv(int r, int g, int b, int *y, int *u, int *v)
{
    *y = (66 * r + 129 * g + 25 * b + 128) / 256 + 16;
    *u = (-38 * r - 74 * g + 112 * b + 128) / 256 + 128;
    *v = (112 * r - 94 * g - 18 * b + 128) / 256 + 128;
}

static void paint(AVFrame *f, int i)
{
    static const int bars[7][3] = {{192, 192, 192}, {192, 192, 0}, {0, 192, 192}, {0, 192, 0},
                                   {192, 0, 192},   {192, 0, 0},   {0, 0, 192}};
    int reversed = i >= SECONDS * FPS / 2;
    int bx = 10 + (int)((long)i * (W - 20 - H * 2 / 9) / (SECONDS * FPS)), by = H * 2 / 9;
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++) {
            int r, g, b;
            if (x >= bx && x < bx + H * 2 / 9 && y >= by && y < by + H * 2 / 9) {
                r = g = b = 255;
            } else if (y < H * 2 / 3) {
                int k = x * 7 / W;
                if (reversed) k = 6 - k;
                r = bars[k][0], g = bars[k][1], b = bars[k][2];
            } else {
                r = g = b = x * 255 / (W - 1);
            }
            int Y, U, V;
            rgb_to_yuv(r, g, b, &Y, &U, &V);
            f->data[0][y * f->linesize[0] + x] = (uint8_t)Y;
            if (!(x & 1) && !(y & 1)) {
                f->data[1][(y / 2) * f->linesize[1] + x / 2] = (uint8_t)U;
                f->data[2][(y / 2) * f->linesize[2] + x / 2] = (uint8_t)V;
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s out.mp4 [seconds width height [fps]]\n", argv[0]);
        return 2;
    }
    if (argc >= 5) {
        SECONDS = atoi(argv[2]);
        W = atoi(argv[3]) & ~1;
        H = atoi(argv[4]) & ~1;
        if (argc == 6) FPS = atoi(argv[5]);
        if (SECONDS < 1 || W < 64 || H < 64 || FPS < 1 || FPS > 120) return 2;
    }
    AVFormatContext *oc = NULL;
    if (avformat_alloc_output_context2(&oc, NULL, "mp4", argv[1]) < 0) return 1;
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
    AVStream *st = avformat_new_stream(oc, NULL);
    AVCodecContext *c = avcodec_alloc_context3(codec);
    c->width = W;
    c->height = H;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = (AVRational){1, FPS};
    c->framerate = (AVRational){FPS, 1};
    c->gop_size = FPS * 2;
    c->max_b_frames = 0;
    c->flags |= AV_CODEC_FLAG_QSCALE;
    c->global_quality = FF_QP2LAMBDA * 6;
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (avcodec_open2(c, codec, NULL) < 0) return 1;
    avcodec_parameters_from_context(st->codecpar, c);
    st->time_base = c->time_base;
    st->avg_frame_rate = c->framerate;
    if (avio_open(&oc->pb, argv[1], AVIO_FLAG_WRITE) < 0 || avformat_write_header(oc, NULL) < 0) return 1;
    AVFrame *f = av_frame_alloc();
    f->format = AV_PIX_FMT_YUV420P;
    f->width = W;
    f->height = H;
    av_frame_get_buffer(f, 0);
    AVPacket *pkt = av_packet_alloc();
    for (int i = 0; i <= SECONDS * FPS; i++) {
        if (i < SECONDS * FPS) {
            av_frame_make_writable(f);
            paint(f, i);
            f->pts = i;
        }
        avcodec_send_frame(c, i < SECONDS * FPS ? f : NULL);
        while (avcodec_receive_packet(c, pkt) == 0) {
            av_packet_rescale_ts(pkt, c->time_base, st->time_base);
            pkt->stream_index = st->index;
            if (av_interleaved_write_frame(oc, pkt) < 0) return 1;
        }
    }
    av_write_trailer(oc);
    avio_closep(&oc->pb);
    av_packet_free(&pkt);
    av_frame_free(&f);
    avcodec_free_context(&c);
    avformat_free_context(oc);
    return 0;
}
