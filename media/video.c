/* Opening a video, reading its facts, decoding frames in order, seeking. */
#include "media/video_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/display.h>
#include <libswscale/swscale.h>

#include "core/error.h"

/* Demuxers we accept: common video containers and raw video elementary streams.
 * Playlists (hls, concat), image sequences, devices and network demuxers are not
 * on the list. */
static const char k_demuxers[] =
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,mpegvideo,ogg,asf,"
    "h264,hevc,m4v,ivf,obu,nut,yuv4mpegpipe,gif,mjpeg";

/* Corrupt packets tolerated in a row before giving up. */
#define MAX_BAD_PACKETS 64

/* FFmpeg 6.1 moved stream side data into codecpar, and 6.0 renamed pkt_duration. */
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 31, 100)
#define VLM_NEW_SIDE_DATA 1
#endif
#if LIBAVUTIL_VERSION_MAJOR >= 58
#define FRAME_DURATION(f) ((f)->duration)
#else
#define FRAME_DURATION(f) ((f)->pkt_duration)
#endif

static int rotation_of(const AVStream *st)
{
    size_t size = 0;
#ifdef VLM_NEW_SIDE_DATA
    const AVPacketSideData *sd = av_packet_side_data_get(
        st->codecpar->coded_side_data, st->codecpar->nb_coded_side_data, AV_PKT_DATA_DISPLAYMATRIX);
    const uint8_t *m = sd ? sd->data : NULL;
    size = sd ? sd->size : 0;
#else
    const uint8_t *m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &size);
#endif
    if (!m || size < 9 * sizeof(int32_t)) return 0;
    double ccw = av_display_rotation_get((const int32_t *)m);
    if (isnan(ccw)) return 0;
    double cw = -ccw;
    cw -= 360.0 * floor(cw / 360.0 + 0.9 / 360.0); /* into [0, 360) */
    int r = (int)lround(cw / 90.0) * 90 % 360;
    return fabs(cw - r) < 1.0 || fabs(cw - 360.0) < 1.0 ? r : 0;
}

static void fill_info(vlm_video *v)
{
    vlm_video_info *in = &v->info;
    const AVCodecParameters *par = v->st->codecpar;
    snprintf(in->container, sizeof in->container, "%s", v->fc->iformat->name);
    snprintf(in->codec, sizeof in->codec, "%s", avcodec_get_name(par->codec_id));
    in->coded_width = par->width;
    in->coded_height = par->height;
    in->rotation = rotation_of(v->st);
    int swap = in->rotation == 90 || in->rotation == 270;
    in->width = swap ? par->height : par->width;
    in->height = swap ? par->width : par->height;
    AVRational fr = v->st->avg_frame_rate;
    if (fr.num <= 0 || fr.den <= 0) fr = v->st->r_frame_rate;
    in->fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    in->duration = -1;
    if (v->st->duration != AV_NOPTS_VALUE && v->st->duration > 0)
        in->duration = v->st->duration * v->tb;
    else if (v->fc->duration != AV_NOPTS_VALUE && v->fc->duration > 0)
        in->duration = v->fc->duration / (double)AV_TIME_BASE;
    in->frames = -1;
    in->frames_estimated = 0;
    if (v->st->nb_frames > 0) {
        in->frames = v->st->nb_frames;
    } else if (in->duration > 0 && in->fps > 0) {
        in->frames = llround(in->duration * in->fps);
        in->frames_estimated = 1;
    }
    v->frame_dur = in->fps > 0 && in->fps < 1000 ? 1.0 / in->fps : 0.04;
}

/* The frame size from the bitstream headers (extradata, first packets) through the
 * codec's parser, which allocates no picture; used when stream probing could not
 * tell it (e.g. its decoders refused a frame over the pixel cap). 0 if unknown. */
static int peek_size(vlm_video *v, int *w, int *h)
{
    *w = *h = 0;
    AVCodecParserContext *pc = av_parser_init(v->st->codecpar->codec_id);
    AVCodecContext *cc = avcodec_alloc_context3(NULL);
    if (!pc || !cc || avcodec_parameters_to_context(cc, v->st->codecpar) < 0) {
        av_parser_close(pc);
        avcodec_free_context(&cc);
        return 0;
    }
    for (int i = 0; i < 64 && *w <= 0 && av_read_frame(v->fc, v->pkt) >= 0; i++) {
        if (v->pkt->stream_index == v->si) {
            uint8_t *out;
            int outlen;
            const uint8_t *data = v->pkt->data;
            int left = v->pkt->size;
            while (left > 0 && *w <= 0) {
                int used = av_parser_parse2(pc, cc, &out, &outlen, data, left, AV_NOPTS_VALUE, AV_NOPTS_VALUE, 0);
                if (used <= 0) break;
                data += used;
                left -= used;
                *w = pc->width > 0 ? pc->width : cc->width;
                *h = pc->height > 0 ? pc->height : cc->height;
            }
        }
        av_packet_unref(v->pkt);
    }
    av_parser_close(pc);
    avcodec_free_context(&cc);
    return *w > 0 && *h > 0;
}

static int open_common(vlm_video *v, const char *what)
{
    vlm_av_init();
    int rc = vlm_av_open(&v->src, k_demuxers, what, &v->fc);
    if (rc) return rc;
    int64_t maxpix = v->lim.max_pixels;
    /* The video stream: the first that is not cover art. */
    v->si = -1;
    for (unsigned i = 0; i < v->fc->nb_streams; i++) {
        AVStream *st = v->fc->streams[i];
        if (v->si < 0 && st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
            !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
            v->si = (int)i;
        else
            st->discard = AVDISCARD_ALL;
    }
    if (v->si < 0) return vlm_errorf(VLM_ERR_FORMAT, "%s: no video stream", what);
    v->st = v->fc->streams[v->si];
    /* The size from the header, when there is one, is checked before any decoder
     * runs; stream probing (below) then decodes under the same pixel cap. */
    AVCodecParameters *par = v->st->codecpar;
    if (par->width > 0 && par->height > 0 && (int64_t)par->width * par->height > maxpix)
        return vlm_errorf(VLM_ERR_LIMIT, "%s: video is %dx%d = %lld pixels per frame, more than "
                          "the limit of %lld", what, par->width, par->height,
                          (long long)par->width * par->height, (long long)maxpix);
    if (par->width <= 0 || par->height <= 0 || par->codec_id == AV_CODEC_ID_NONE) {
        /* probing may add streams: the options array keeps the count it was made for */
        const unsigned n_opts = v->fc->nb_streams;
        AVDictionary **opts = (AVDictionary **)av_calloc(n_opts, sizeof *opts);
        if (!opts) return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory", what);
        for (unsigned i = 0; i < n_opts; i++)
            av_dict_set_int(&opts[i], "max_pixels", maxpix, 0);
        int r = avformat_find_stream_info(v->fc, opts);
        for (unsigned i = 0; i < n_opts; i++) av_dict_free(&opts[i]);
        av_free(opts);
        if (r < 0) return vlm_av_error(r, what);
        if (par->width <= 0 || par->height <= 0) {
            int pw, ph;
            if (!v->pkt && !(v->pkt = av_packet_alloc())) return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory", what);
            if (peek_size(v, &pw, &ph) && (int64_t)pw * ph > maxpix)
                return vlm_errorf(VLM_ERR_LIMIT, "%s: video is %dx%d = %lld pixels per frame, more than the "
                                  "limit of %lld", what, pw, ph, (long long)pw * ph, (long long)maxpix);
            return vlm_errorf(VLM_ERR_FORMAT, "%s: the video stream has no readable frame size", what);
        }
        if ((int64_t)par->width * par->height > maxpix)
            return vlm_errorf(VLM_ERR_LIMIT, "%s: video is %dx%d, more than the limit of %lld pixels",
                              what, par->width, par->height, (long long)maxpix);
    }
    const AVCodec *codec = NULL;
    if (par->codec_id == AV_CODEC_ID_AV1) codec = avcodec_find_decoder_by_name("libdav1d");
    if (!codec) codec = avcodec_find_decoder(par->codec_id);
    if (!codec)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s: no decoder for the '%s' codec", what,
                          avcodec_get_name(par->codec_id));
    v->dec = avcodec_alloc_context3(codec);
    if (!v->pkt) v->pkt = av_packet_alloc();
    v->prev = av_frame_alloc();
    v->cur = av_frame_alloc();
    if (!v->dec || !v->pkt || !v->prev || !v->cur)
        return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory", what);
    int r = avcodec_parameters_to_context(v->dec, par);
    if (r < 0) return vlm_av_error(r, what);
    v->dec->pkt_timebase = v->st->time_base;
    v->dec->max_pixels = maxpix;
    v->dec->thread_count = v->lim.threads > 0 ? v->lim.threads : 0;
    if ((r = avcodec_open2(v->dec, codec, NULL)) < 0) return vlm_av_error(r, what);
    v->tb = av_q2d(v->st->time_base);
    if (!(v->tb > 0)) return vlm_errorf(VLM_ERR_FORMAT, "%s: invalid stream time base", what);
    v->start_ts = v->st->start_time;
    fill_info(v);
    return VLM_OK;
}

static int video_open(vlm_av_source src, FILE *file, const vlm_video_limits *lim,
                      const char *what, vlm_video **out)
{
    vlm_video *v = (vlm_video *)calloc(1, sizeof *v);
    if (!v) {
        if (file) fclose(file);
        return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory", what);
    }
    v->src = src;
    v->file = file;
    v->src.file = file;
    if (lim) v->lim = *lim;
    if (v->lim.max_pixels <= 0) v->lim.max_pixels = VLM_IMAGE_DEFAULT_MAX_PIXELS;
    if (v->lim.max_frames <= 0) v->lim.max_frames = VLM_VIDEO_DEFAULT_MAX_FRAMES;
    if (v->lim.threads > 16) v->lim.threads = 16;
    int rc = open_common(v, what);
    if (rc) {
        vlm_video_close(v);
        return rc;
    }
    *out = v;
    return VLM_OK;
}

int vlm_video_open_file(const char *path, const vlm_video_limits *lim, vlm_video **out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "video: no output given");
    *out = NULL;
    if (!path) return vlm_errorf(VLM_ERR_INVALID, "video: no path given");
    FILE *f = fopen(path, "rb");
    if (!f) return vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    vlm_av_source src;
    memset(&src, 0, sizeof src);
    int rc = video_open(src, f, lim, "video", out);
    if (rc) return vlm_error_prefix(rc, "'%s'", path);
    return VLM_OK;
}

int vlm_video_open_memory(const void *data, size_t size, const vlm_video_limits *lim,
                          vlm_video **out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "video: no output given");
    *out = NULL;
    if (!data || size == 0) return vlm_errorf(VLM_ERR_FORMAT, "video: empty input (0 bytes)");
    vlm_av_source src;
    memset(&src, 0, sizeof src);
    src.data = (const uint8_t *)data;
    src.size = size;
    return video_open(src, NULL, lim, "video", out);
}

void vlm_video_close(vlm_video *v)
{
    if (!v) return;
    av_frame_free(&v->prev);
    av_frame_free(&v->cur);
    av_packet_free(&v->pkt);
    avcodec_free_context(&v->dec);
    vlm_av_close(&v->fc);
    if (v->file) fclose(v->file);
    sws_freeContext(v->thumb_sws);
    sws_freeContext(v->rgb_sws);
    free(v->thumb_prev);
    free(v->thumb_cur);
    free(v);
}

const vlm_video_info *vlm_video_get_info(const vlm_video *v)
{
    return v ? &v->info : NULL;
}

void vlm_video_get_stats(const vlm_video *v, vlm_video_stats *st)
{
    if (v && st) *st = v->stats;
}

/* ---- decoding ---------------------------------------------------------- */

static double frame_seconds(vlm_video *v, const AVFrame *f)
{
    int64_t ts = f->best_effort_timestamp;
    double dur = FRAME_DURATION(f) > 0 ? FRAME_DURATION(f) * v->tb : v->frame_dur;
    double t;
    if (ts == AV_NOPTS_VALUE) {
        t = v->have_last ? v->last_pts + dur : 0.0;
    } else {
        if (v->start_ts == AV_NOPTS_VALUE) v->start_ts = ts; /* first frame is t = 0 */
        t = ((double)ts - (double)v->start_ts) * v->tb; /* in double: hostile values cannot overflow */
        if (v->have_last && t <= v->last_pts) t = v->last_pts + dur; /* never backwards */
    }
    v->have_last = 1;
    v->last_pts = t;
    return t;
}

int vlm_video_decode_next(vlm_video *v, AVFrame *f, double *pts)
{
    for (;;) {
        if (v->dec_eof) return 0;
        int r = avcodec_receive_frame(v->dec, f);
        if (r >= 0) {
            if ((int64_t)f->width * f->height > v->lim.max_pixels) {
                av_frame_unref(f);
                return vlm_errorf(VLM_ERR_LIMIT, "video: a frame is %dx%d, more than the limit of %lld "
                                  "pixels", f->width, f->height, (long long)v->lim.max_pixels);
            }
            v->stats.decoded++;
            *pts = frame_seconds(v, f);
            return 1;
        }
        if (r == AVERROR_EOF) {
            v->dec_eof = 1;
            return 0;
        }
        if (r != AVERROR(EAGAIN)) {
            /* A broken frame: skip it like players do, up to a point. */
            if (++v->bad_packets > MAX_BAD_PACKETS) return vlm_av_error(r, "video: decoding failed");
            continue;
        }
        if (v->demux_eof) { /* flushed already and the decoder wants more: done */
            v->dec_eof = 1;
            return 0;
        }
        r = av_read_frame(v->fc, v->pkt);
        if (r < 0) {
            if (r != AVERROR_EOF && r != AVERROR(EIO) && r != AVERROR_INVALIDDATA)
                return vlm_av_error(r, "video: reading the container failed");
            v->demux_eof = 1;
            avcodec_send_packet(v->dec, NULL); /* drain the delayed frames */
            continue;
        }
        if (v->pkt->stream_index != v->si) {
            av_packet_unref(v->pkt);
            continue;
        }
        v->stats.packets++;
        r = avcodec_send_packet(v->dec, v->pkt);
        av_packet_unref(v->pkt);
        if (r < 0 && r != AVERROR(EAGAIN)) {
            if (r == AVERROR(ENOMEM)) return vlm_av_error(r, "video");
            if (++v->bad_packets > MAX_BAD_PACKETS)
                return vlm_av_error(r, "video: too many corrupt packets");
        } else if (r >= 0) {
            v->bad_packets = 0;
        }
    }
}

static int64_t seconds_to_ts(vlm_video *v, double t)
{
    double start = v->start_ts == AV_NOPTS_VALUE ? 0 : (double)v->start_ts;
    double ts = start + t / v->tb;
    if (!(ts > -4e18)) return -(int64_t)4e18; /* NaN too */
    if (ts > 4e18) return (int64_t)4e18;
    return (int64_t)llround(ts);
}

double vlm_video_keyframe_before(vlm_video *v, double t)
{
    if (avformat_index_get_entries_count(v->st) <= 0) return -1;
    const AVIndexEntry *e =
        avformat_index_get_entry_from_timestamp(v->st, seconds_to_ts(v, t), AVSEEK_FLAG_BACKWARD);
    if (!e || e->timestamp == AV_NOPTS_VALUE) return -1;
    double start = v->start_ts == AV_NOPTS_VALUE ? 0 : (double)v->start_ts;
    return ((double)e->timestamp - start) * v->tb;
}

static void reset_decoder(vlm_video *v)
{
    avcodec_flush_buffers(v->dec);
    v->demux_eof = v->dec_eof = 0;
    v->have_last = 0;
    v->bad_packets = 0;
}

int vlm_video_seek(vlm_video *v, double t)
{
    int r = av_seek_frame(v->fc, v->si, seconds_to_ts(v, t), AVSEEK_FLAG_BACKWARD);
    if (r < 0) return -1;
    reset_decoder(v);
    v->stats.seeks++;
    return 0;
}

int vlm_video_rewind(vlm_video *v)
{
    int64_t start = v->start_ts == AV_NOPTS_VALUE ? 0 : v->start_ts;
    int r = av_seek_frame(v->fc, v->si, start, AVSEEK_FLAG_BACKWARD);
    if (r < 0) {
        /* Some demuxers cannot seek by time; a byte seek to 0 works for the rest. */
        r = avformat_seek_file(v->fc, -1, INT64_MIN, 0, 0, AVSEEK_FLAG_BYTE);
        if (r < 0) return vlm_av_error(r, "video: cannot go back to the start");
    }
    reset_decoder(v);
    return VLM_OK;
}

int vlm_video_scan(vlm_video *v)
{
    int rc = vlm_video_rewind(v);
    if (rc) return rc;
    int64_t count = 0, end = AV_NOPTS_VALUE, first = AV_NOPTS_VALUE;
    int r;
    while ((r = av_read_frame(v->fc, v->pkt)) >= 0) {
        if (v->pkt->stream_index == v->si) {
            count++;
            int64_t ts = v->pkt->pts != AV_NOPTS_VALUE ? v->pkt->pts : v->pkt->dts;
            if (ts != AV_NOPTS_VALUE) {
                int64_t dur = v->pkt->duration > 0 && v->pkt->duration < INT64_MAX / 4 ? v->pkt->duration : 0;
                int64_t e = ts < INT64_MAX / 2 ? ts + dur : ts;
                if (end == AV_NOPTS_VALUE || e > end) end = e;
                if (first == AV_NOPTS_VALUE || ts < first) first = ts;
            }
        }
        av_packet_unref(v->pkt);
    }
    if (r != AVERROR_EOF && r != AVERROR(EIO) && r != AVERROR_INVALIDDATA)
        return vlm_av_error(r, "video: reading the container failed");
    if (count > 0) {
        v->info.frames = count;
        v->info.frames_estimated = 0;
    }
    if (v->info.duration < 0 && end != AV_NOPTS_VALUE) {
        int64_t start = v->start_ts != AV_NOPTS_VALUE ? v->start_ts : first;
        v->info.duration = ((double)end - (double)start) * v->tb;
        if (v->info.duration <= 0 && count > 0) v->info.duration = count * v->frame_dur;
    } else if (v->info.duration < 0 && count > 0) {
        v->info.duration = count * v->frame_dur;
    }
    return vlm_video_rewind(v);
}
