/* Internal to media/: the state behind vlm_video (video.c opens and decodes,
 * video_sample.c picks frames, video_frame.c converts them). */
#ifndef VLM_MEDIA_VIDEO_INTERNAL_H
#define VLM_MEDIA_VIDEO_INTERNAL_H

#include <stdio.h>

#include "media/av_util.h"
#include "media/video.h"

struct SwsContext;

struct vlm_video {
    vlm_av_source src;
    FILE *file;
    AVFormatContext *fc;
    AVStream *st;
    int si;
    AVCodecContext *dec;
    AVPacket *pkt;
    vlm_video_limits lim;
    vlm_video_info info;
    double tb;         /* seconds per stream time-base unit */
    int64_t start_ts;  /* stream start in time-base units (AV_NOPTS_VALUE: first frame's) */
    double frame_dur;  /* fallback duration of one frame, seconds */

    /* decoding state */
    int demux_eof, dec_eof;
    int have_last;
    double last_pts;   /* of the last decoded frame */
    int bad_packets;

    /* sampling pass */
    vlm_video_sampling s;
    int started, done;
    int64_t k;         /* index of the next wanted time */
    int emitted;
    double last_emitted;
    int64_t planned;   /* sample times the rule asks for (at most the frame count); -1 unknown */
    int cut;           /* the pass ended at max_frames with more wanted */
    AVFrame *prev, *cur; /* candidate (last frame <= t) and the frame after it */
    int have_prev, have_cur, prev_emitted;
    double prev_pts, cur_pts;
    int no_seek;       /* seeking proved useless for this file */
    int64_t seeked_k;  /* the target index the last seek was for */
    /* scene detection */
    uint8_t *thumb_prev, *thumb_cur;
    int have_thumb;
    double prev_mafd;
    struct SwsContext *thumb_sws, *rgb_sws;

    vlm_video_stats stats;
};

/* video.c */
/* Next decoded frame into f with its timestamp: 1, 0 at the end, < 0 error. */
int vlm_video_decode_next(vlm_video *v, AVFrame *f, double *pts);
/* Jumps to the keyframe at or before t seconds; 0 if done, < 0 if it failed. */
int vlm_video_seek(vlm_video *v, double t);
/* Seconds of the keyframe the index says a jump to t would land on; -1 if unknown. */
double vlm_video_keyframe_before(vlm_video *v, double t);
/* Back to the start (decoder flushed). */
int vlm_video_rewind(vlm_video *v);

/* video_frame.c */
/* The frame in RGB, upright (rotation applied); img allocated here. */
int vlm_video_frame_rgb(vlm_video *v, const AVFrame *f, vlm_image *img);
/* Scene-change score of f against the previous frame given to this function
 * (0 for the first). */
int vlm_video_scene_score(vlm_video *v, const AVFrame *f, double *score);

#endif
