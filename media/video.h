/* Video frames for the model: open a file or a memory buffer, read what it is,
 * and pull RGB frames chosen by a sampling rule, each with its timestamp.
 *
 * Streaming: frames are decoded one after another and handed out one at a time;
 * memory stays at a few frames (the decoder's own, plus the candidate frame and
 * the one after it), never the whole video.  Sparse sampling seeks: when the next
 * wanted time lies past the next keyframe, the demuxer jumps there instead of
 * decoding everything in between.
 *
 * Timestamps are seconds from the start of the stream (the first frame is at, or
 * near, 0).  Frames without a timestamp get one from the previous frame plus a
 * frame duration (the packet's, else 1/average frame rate, else 1/25 s), and
 * timestamps that go backwards are nudged forward, so they always increase.
 *
 * Which frame a time t gives: the frame on screen at t, i.e. the last frame with
 * timestamp <= t (the first frame when t comes before it).  A frame is given at
 * most once even when several wanted times fall on it.
 *
 * Rotation metadata (the display matrix of phones' videos) is applied: frames come
 * out upright, and the info's width/height are the displayed ones.  Only multiples
 * of 90 degrees are applied; flips and other angles are ignored.
 *
 * Containers are opened through media/av_util.c (demuxer whitelist, no nested
 * opens: a playlist cannot make us read another file or a URL). */
#ifndef VLM_MEDIA_VIDEO_H
#define VLM_MEDIA_VIDEO_H

#include <stddef.h>
#include <stdint.h>

#include "media/image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_video vlm_video;

#define VLM_VIDEO_DEFAULT_MAX_FRAMES 256
#define VLM_VIDEO_DEFAULT_SCENE_THRESHOLD 0.3

typedef struct {
    int64_t max_pixels; /* coded frame size; 0 = VLM_IMAGE_DEFAULT_MAX_PIXELS */
    int max_frames;     /* frames one sampling pass may return; 0 = VLM_VIDEO_DEFAULT_MAX_FRAMES */
    int threads;        /* decoder threads; 0 = as many as the machine has (up to 16) */
} vlm_video_limits;

typedef struct {
    char container[48]; /* demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" */
    char codec[32];     /* e.g. "h264" */
    int width, height;  /* displayed size (rotation applied) */
    int coded_width, coded_height;
    int rotation;       /* clockwise degrees applied to every frame: 0, 90, 180 or 270 */
    double duration;    /* seconds; < 0 when unknown */
    double fps;         /* average frame rate; 0 when unknown */
    int64_t frames;     /* frame count, -1 when unknown */
    int frames_estimated; /* frames is duration x fps, not a count from the container */
} vlm_video_info;

typedef enum {
    VLM_VIDEO_FPS = 1, /* value frames per second, from t = 0 */
    VLM_VIDEO_EVERY,   /* one frame every value seconds, from t = 0 */
    VLM_VIDEO_COUNT,   /* count frames at the centres of count equal slices of the video */
    VLM_VIDEO_SCENE,   /* the first frame, then each frame whose scene-change score exceeds
                          value (0..1; 0 = VLM_VIDEO_DEFAULT_SCENE_THRESHOLD) */
} vlm_video_mode;

typedef struct {
    vlm_video_mode mode;
    double value;
    int count;
} vlm_video_sampling;

/* "fps=2", "every=1.5" (or "every=1.5s"), "n=8", "scene", "scene=0.25".
 * VLM_ERR_INVALID with a message naming the problem. */
int vlm_video_sampling_parse(const char *spec, vlm_video_sampling *out);

/* lim may be NULL. The file is read through our own I/O (no protocols). */
int vlm_video_open_file(const char *path, const vlm_video_limits *lim, vlm_video **out);
/* data must stay valid until vlm_video_close. */
int vlm_video_open_memory(const void *data, size_t size, const vlm_video_limits *lim,
                          vlm_video **out);
void vlm_video_close(vlm_video *v);

const vlm_video_info *vlm_video_get_info(const vlm_video *v);

/* Exact duration and frame count by reading every packet (no decoding); fills in
 * what the container did not say. Leaves the video ready for vlm_video_start. */
int vlm_video_scan(vlm_video *v);

/* Starts a sampling pass from the beginning of the video. */
int vlm_video_start(vlm_video *v, const vlm_video_sampling *s);
/* The next sampled frame: 1 with *pts set (and *img filled when img is not NULL;
 * free it with vlm_image_free), 0 when the pass is over, < 0 on error. */
int vlm_video_next(vlm_video *v, vlm_image *img, double *pts);

/* The sampling pass under way (or the last one): planned is how many frames the rule asks for over the
 * video's length, the sample times counted but never more than the frame count (one frame can answer
 * several times, so fewer may come), -1 when not known beforehand (scene changes; a length the container
 * does not give); given is the frames handed out so far; cut is 1 once the pass ended at max_frames while
 * the rule still wanted more (for scene changes: ended at max_frames, later changes not looked for).
 * Nothing is ever dropped silently: a caller that gets cut = 1 should say so. */
typedef struct {
    int64_t planned;
    int given;
    int cut;
} vlm_video_plan;
void vlm_video_get_plan(const vlm_video *v, vlm_video_plan *p);

typedef struct {
    int64_t packets;  /* packets read from the container */
    int64_t decoded;  /* frames the decoder produced */
    int64_t seeks;    /* jumps made to skip ahead */
} vlm_video_stats;
void vlm_video_get_stats(const vlm_video *v, vlm_video_stats *st);

#ifdef __cplusplus
}
#endif
#endif
