/* Sampling passes: which frames to hand out, in one streaming pass with seeks.
 *
 * FPS / EVERY / COUNT make a list of wanted times t_0 < t_1 < ...; the frame for
 * t is the last frame with timestamp <= t (the first frame if t precedes it).
 * Two decoded frames are kept: prev (the candidate) and cur (the next one); when
 * cur passes t, prev is the answer.  Before decoding towards a t far ahead, the
 * index is asked for the keyframe before t; if that keyframe lies past what we
 * have decoded, we seek there (the frames in between cannot be the answer).
 * SCENE decodes every frame and keeps those whose scene score passes the
 * threshold (and the first). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "media/video_internal.h"

/* Do not bother seeking for gaps shorter than this (seconds). */
#define SEEK_MIN_GAP 1.0
/* Without an index, seek only across gaps at least this long (seconds). */
#define SEEK_NOINDEX_GAP 10.0
/* Wanted times are numbered k = 0, 1, ...; from K_END on there are none.  A bound far
 * past any real video (at 1000 fps, 30,000 years), low enough that (double)k still
 * steps by one: a hostile timestamp near 1e300 s in a stream of unknown length must
 * end the pass, not walk k up one at a time towards INT64_MAX. */
#define K_END ((int64_t)1000000000000000LL)

static int parse_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v)) return -1;
    if (*end == 's' && end[1] == '\0') end++;
    if (*end) return -1;
    *out = v;
    return 0;
}

int vlm_video_sampling_parse(const char *spec, vlm_video_sampling *out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "frames: no output given");
    memset(out, 0, sizeof *out);
    if (!spec || !*spec)
        return vlm_errorf(VLM_ERR_INVALID, "frames: empty spec (use fps=F, every=S, n=N or scene[=T])");
    double v;
    if (!strncmp(spec, "fps=", 4)) {
        if (parse_number(spec + 4, &v) || !(v > 0) || v > 1000)
            return vlm_errorf(VLM_ERR_INVALID, "frames: fps needs a number in (0, 1000], got '%s'", spec + 4);
        out->mode = VLM_VIDEO_FPS;
        out->value = v;
    } else if (!strncmp(spec, "every=", 6)) {
        if (parse_number(spec + 6, &v) || !(v >= 0.001) || v > 1e6)
            return vlm_errorf(VLM_ERR_INVALID, "frames: every needs seconds in [0.001, 1e6], got '%s'",
                              spec + 6);
        out->mode = VLM_VIDEO_EVERY;
        out->value = v;
    } else if (!strncmp(spec, "n=", 2)) {
        char *end;
        errno = 0;
        long n = strtol(spec + 2, &end, 10);
        if (end == spec + 2 || *end || errno || n < 1 || n > 100000)
            return vlm_errorf(VLM_ERR_INVALID, "frames: n needs a whole number in [1, 100000], got '%s'",
                              spec + 2);
        out->mode = VLM_VIDEO_COUNT;
        out->count = (int)n;
    } else if (!strcmp(spec, "scene")) {
        out->mode = VLM_VIDEO_SCENE;
        out->value = VLM_VIDEO_DEFAULT_SCENE_THRESHOLD;
    } else if (!strncmp(spec, "scene=", 6)) {
        if (parse_number(spec + 6, &v) || !(v > 0) || v > 1)
            return vlm_errorf(VLM_ERR_INVALID, "frames: scene needs a threshold in (0, 1], got '%s'",
                              spec + 6);
        out->mode = VLM_VIDEO_SCENE;
        out->value = v;
    } else {
        return vlm_errorf(VLM_ERR_INVALID, "frames: unknown spec '%s' (use fps=F, every=S, n=N or scene[=T])",
                          spec);
    }
    return VLM_OK;
}

static int64_t plan_size(const vlm_video *v);

static void drop_frames(vlm_video *v)
{
    av_frame_unref(v->prev);
    av_frame_unref(v->cur);
    v->have_prev = v->have_cur = 0;
    v->prev_emitted = 0;
}

int vlm_video_start(vlm_video *v, const vlm_video_sampling *s)
{
    if (!v || !s) return vlm_errorf(VLM_ERR_INVALID, "video: no video or sampling given");
    switch (s->mode) {
    case VLM_VIDEO_FPS:
    case VLM_VIDEO_EVERY:
        if (!(s->value > 0) || !isfinite(s->value))
            return vlm_errorf(VLM_ERR_INVALID, "video: sampling needs a positive value");
        break;
    case VLM_VIDEO_COUNT:
        if (s->count < 1) return vlm_errorf(VLM_ERR_INVALID, "video: n must be at least 1");
        break;
    case VLM_VIDEO_SCENE:
        if (s->value < 0 || s->value > 1 || isnan(s->value))
            return vlm_errorf(VLM_ERR_INVALID, "video: scene threshold must be in (0, 1]");
        break;
    default: return vlm_errorf(VLM_ERR_INVALID, "video: unknown sampling mode %d", (int)s->mode);
    }
    v->s = *s;
    if (v->s.mode == VLM_VIDEO_SCENE && v->s.value == 0) v->s.value = VLM_VIDEO_DEFAULT_SCENE_THRESHOLD;
    drop_frames(v);
    v->k = 0;
    v->emitted = 0;
    v->last_emitted = -INFINITY;
    v->done = 0;
    v->no_seek = 0;
    v->seeked_k = -1;
    v->have_thumb = 0;
    v->prev_mafd = 0;
    int rc = vlm_video_rewind(v);
    if (rc) return rc;
    /* n evenly spaced frames need the length; read it from the packets if the
     * container does not give it. */
    if (v->s.mode == VLM_VIDEO_COUNT && !(v->info.duration > 0)) {
        if ((rc = vlm_video_scan(v)) != VLM_OK) return rc;
        if (!(v->info.duration > 0))
            return vlm_errorf(VLM_ERR_FORMAT, "video: length unknown, cannot place %d frames", v->s.count);
    }
    v->planned = plan_size(v);
    v->cut = 0;
    v->started = 1;
    return VLM_OK;
}

void vlm_video_get_plan(const vlm_video *v, vlm_video_plan *p)
{
    p->planned = v && v->started ? v->planned : 0;
    p->given = v ? v->emitted : 0;
    p->cut = v ? v->cut : 0;
}

/* The k-th wanted time, or NAN when there are no more. */
static double target(const vlm_video *v, int64_t k)
{
    if (k >= K_END) return NAN;
    double d = v->info.duration;
    switch (v->s.mode) {
    case VLM_VIDEO_FPS:
    case VLM_VIDEO_EVERY: {
        double step = v->s.mode == VLM_VIDEO_FPS ? 1.0 / v->s.value : v->s.value;
        double t = (double)k * step;
        if (d > 0 && t >= d) return NAN;
        return t;
    }
    case VLM_VIDEO_COUNT:
        if (k >= v->s.count) return NAN;
        return ((double)k + 0.5) * d / v->s.count;
    default: return NAN;
    }
}

/* How many wanted times the rule has over the video's length (at most its frame count), -1 unknown. */
static int64_t plan_size(const vlm_video *v)
{
    const double d = v->info.duration;
    int64_t n;
    if (v->s.mode == VLM_VIDEO_COUNT) {
        n = v->s.count;
    } else if (v->s.mode == VLM_VIDEO_FPS || v->s.mode == VLM_VIDEO_EVERY) {
        if (!(d > 0)) return -1;
        const double step = v->s.mode == VLM_VIDEO_FPS ? 1.0 / v->s.value : v->s.value;
        const double q = d / step;
        if (!(q < (double)K_END)) return -1;
        n = (int64_t)ceil(q);
        /* the times are k * step < d, as target() computes them */
        while (n > 1 && (double)(n - 1) * step >= d) n--;
        while ((double)n * step < d) n++;
    } else {
        return -1;
    }
    if (v->info.frames > 0 && n > v->info.frames) n = v->info.frames;
    return n;
}

/* The index of the first wanted time >= x, and at least k. */
static int64_t first_target_from(const vlm_video *v, double x, int64_t k)
{
    double q;
    if (v->s.mode == VLM_VIDEO_COUNT)
        q = v->info.duration > 0 ? x * v->s.count / v->info.duration - 0.5 : 0;
    else
        q = x / (v->s.mode == VLM_VIDEO_FPS ? 1.0 / v->s.value : v->s.value);
    if (!(q < (double)K_END)) return K_END; /* past anything: the pass ends */
    int64_t j = q > 0 ? (int64_t)ceil(q - 1e-9) : 0;
    return j > k ? j : k;
}

static int emit(vlm_video *v, AVFrame *f, double pts, vlm_image *img, double *out_pts)
{
    if (img) {
        int rc = vlm_video_frame_rgb(v, f, img);
        if (rc) return rc;
    }
    *out_pts = pts;
    v->emitted++;
    v->last_emitted = pts;
    return 1;
}

/* Moves cur into prev (cur becomes empty). */
static void advance(vlm_video *v)
{
    av_frame_unref(v->prev);
    av_frame_move_ref(v->prev, v->cur);
    v->prev_pts = v->cur_pts;
    v->have_prev = 1;
    v->prev_emitted = 0;
    v->have_cur = 0;
}

/* Seek towards t when the frames before it need not be decoded. */
static void maybe_seek(vlm_video *v, double t)
{
    if (v->no_seek || v->seeked_k == v->k) return;
    double pos = v->have_prev ? v->prev_pts : (v->have_last ? v->last_pts : 0);
    if (t - pos < SEEK_MIN_GAP) return;
    double kf = vlm_video_keyframe_before(v, t);
    if (kf >= 0) {
        if (kf <= pos + 1e-6) return; /* the keyframe is behind us: keep decoding */
    } else if (t - pos < SEEK_NOINDEX_GAP) {
        return;
    }
    v->seeked_k = v->k;
    double before = pos;
    if (vlm_video_seek(v, t) != 0) {
        v->no_seek = 1;
        return;
    }
    drop_frames(v);
    /* Landing before where we were means the index misled us: stop seeking. */
    double first;
    int r = vlm_video_decode_next(v, v->cur, &first);
    if (r == 1) {
        v->have_cur = 1;
        v->cur_pts = first;
        if (first < before) v->no_seek = 1;
    }
}

static int next_timed(vlm_video *v, vlm_image *img, double *pts)
{
    for (;;) {
        double t = target(v, v->k);
        if (isnan(t)) return 0;
        if (!v->have_cur) {
            if (!v->have_prev || v->prev_pts <= t) maybe_seek(v, t);
        }
        if (!v->have_cur) {
            int r = vlm_video_decode_next(v, v->cur, &v->cur_pts);
            if (r < 0) return r;
            if (r == 0) {
                /* End of stream: the last frame stays on screen until the end. */
                double end = v->info.duration > 0 ? v->info.duration : v->prev_pts + v->frame_dur;
                if (v->have_prev && !v->prev_emitted && t < end && v->prev_pts > v->last_emitted) {
                    v->prev_emitted = 1;
                    v->k++;
                    return emit(v, v->prev, v->prev_pts, img, pts);
                }
                return 0;
            }
            v->have_cur = 1;
        }
        if (v->cur_pts <= t) {
            advance(v);
            continue;
        }
        /* cur is past t: prev (if any) is the frame on screen at t, and at every
         * wanted time before cur; skip those at once (a timestamp jump must not
         * make us walk through millions of wanted times). */
        if (v->have_prev) {
            v->k = first_target_from(v, v->cur_pts, v->k + 1);
            if (v->prev_emitted || v->prev_pts <= v->last_emitted) continue;
            v->prev_emitted = 1;
            return emit(v, v->prev, v->prev_pts, img, pts);
        }
        /* t comes before the first frame we have: take that frame (for every
         * wanted time up to it). */
        advance(v);
        v->k = first_target_from(v, v->prev_pts, v->k + 1);
        if (v->prev_pts <= v->last_emitted) continue;
        v->prev_emitted = 1;
        return emit(v, v->prev, v->prev_pts, img, pts);
    }
}

static int next_scene(vlm_video *v, vlm_image *img, double *pts)
{
    for (;;) {
        int r = vlm_video_decode_next(v, v->cur, &v->cur_pts);
        if (r <= 0) return r;
        double score;
        int rc = vlm_video_scene_score(v, v->cur, &score);
        if (rc) {
            av_frame_unref(v->cur);
            return rc;
        }
        if (v->emitted == 0 || score > v->s.value) {
            r = emit(v, v->cur, v->cur_pts, img, pts);
            av_frame_unref(v->cur);
            return r;
        }
        av_frame_unref(v->cur);
    }
}

int vlm_video_next(vlm_video *v, vlm_image *img, double *pts)
{
    if (img) memset(img, 0, sizeof *img);
    if (!v || !pts) return vlm_errorf(VLM_ERR_INVALID, "video: no video or output given");
    if (!v->started) return vlm_errorf(VLM_ERR_INVALID, "video: call vlm_video_start first");
    if (v->done) return 0;
    if (v->emitted >= v->lim.max_frames) {
        /* the cap ends the pass: say whether the rule wanted more */
        if (v->s.mode == VLM_VIDEO_SCENE) {
            v->cut = 1;
        } else {
            const double t = target(v, v->k), d = v->info.duration;
            v->cut = !isnan(t) && (!(d > 0) || t < d) && (v->planned < 0 || v->emitted < v->planned);
        }
        v->done = 1;
        drop_frames(v);
        return 0;
    }
    int r = v->s.mode == VLM_VIDEO_SCENE ? next_scene(v, img, pts) : next_timed(v, img, pts);
    if (r <= 0) {
        v->done = 1;
        drop_frames(v);
    }
    return r;
}
