/* Segments from sampled frames, as the frames arrive.
 *
 * Group g holds frames [g * stride, g * stride + window) (fewer at the end). Its segment starts at its first
 * frame's boundary: 0 for the first group; the frame's own timestamp, or with `centered` (frames sampled at the
 * middle of equal slices, n=N) half way between it and the frame before. A segment ends where the next one
 * starts, the last one at the video's duration. All times are whole milliseconds, so what the files say is
 * exactly what was planned: a group whose start does not come after the previous segment's start (frames less
 * than a millisecond apart) is folded into it, and groups starting at or past the duration (a container that
 * understates its length) are folded into the last segment before. Hence segments never overlap, never have
 * zero length and never pass the duration. */
#include "caption/caption_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int64_t ms_floor(double s) { return (int64_t)floor(s * 1000.0 + 1e-6); }
static int64_t ms_round(double s) { return (int64_t)llround(s * 1000.0); }

void vlm_cap_planner_init(vlm_cap_planner *p, int window, int stride, int centered, double duration_s)
{
    memset(p, 0, sizeof *p);
    p->window = window > 0 ? window : 1;
    p->stride = stride > 0 ? stride : p->window;
    if (p->stride > p->window) p->stride = p->window;
    p->centered = centered;
    p->duration_ms = duration_s > 0 && isfinite(duration_s) ? ms_floor(duration_s) : -1;
    if (p->duration_ms == 0) p->duration_ms = 1;
}

int vlm_cap_planner_push(vlm_cap_planner *p, double ts)
{
    if (p->finished) return vlm_errorf(VLM_ERR_INVALID, "plan: frame after the end");
    if (p->n && !(ts > p->ts[p->n - 1])) return vlm_errorf(VLM_ERR_INVALID, "plan: frame times must increase");
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        double *t = realloc(p->ts, (size_t)cap * sizeof *t);
        if (!t) {
            p->failed = 1;
            return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        }
        p->ts = t;
        p->cap = cap;
    }
    p->ts[p->n++] = ts;
    return VLM_OK;
}

void vlm_cap_planner_finish(vlm_cap_planner *p, double frame_s)
{
    p->finished = 1;
    if (p->duration_ms < 0) {
        double last = p->n ? p->ts[p->n - 1] : 0;
        if (!(frame_s > 0) || !isfinite(frame_s)) frame_s = 0.04;
        p->duration_ms = ms_floor(last + frame_s);
        int64_t min = p->n ? ms_round(last) + 1 : 1;
        if (p->duration_ms < min) p->duration_ms = min;
    }
}

/* Start of group g (its first frame exists). */
static int64_t group_start(const vlm_cap_planner *p, int g)
{
    if (g == 0) return 0;
    int f = g * p->stride;
    double b = p->centered ? 0.5 * (p->ts[f - 1] + p->ts[f]) : p->ts[f];
    int64_t ms = ms_round(b);
    return ms < 0 ? 0 : ms;
}

static int emit(vlm_cap_planner *p, int64_t end, vlm_cap_segment *seg)
{
    if (p->duration_ms >= 0 && end > p->duration_ms) end = p->duration_ms;
    *seg = p->pending;
    seg->end_ms = end;
    seg->index = p->n_emitted++;
    p->have_pending = 0;
    return 1;
}

int vlm_cap_planner_next(vlm_cap_planner *p, vlm_cap_segment *seg)
{
    if (p->failed) return 0;
    for (;;) {
        int g = p->next_group;
        int f = g * p->stride;
        if (!p->have_pending) {
            if (p->all_emitted) return 0;
            if (f >= p->n) return 0;
            int64_t start = group_start(p, g);
            if (g > 0 && p->duration_ms >= 0 && start >= p->duration_ms) {
                p->all_emitted = 1;
                return 0;
            }
            if (!p->finished && p->n < f + p->window) return 0; /* its frames are still coming */
            p->pending.start_ms = start;
            p->pending.first_frame = f;
            p->pending.n_frames = p->n - f < p->window ? p->n - f : p->window;
            p->have_pending = 1;
            p->next_group++;
            continue;
        }
        /* The pending segment ends where the next group that starts later does. */
        if (f >= p->n) {
            if (!p->finished) return 0;
            p->all_emitted = 1;
            return emit(p, p->duration_ms, seg);
        }
        int64_t start = group_start(p, g);
        if (p->duration_ms >= 0 && start >= p->duration_ms) {
            p->all_emitted = 1;
            return emit(p, p->duration_ms, seg);
        }
        if (start <= p->pending.start_ms) {
            p->next_group++;
            continue;
        }
        return emit(p, start, seg);
    }
}

void vlm_cap_planner_free(vlm_cap_planner *p)
{
    free(p->ts);
    p->ts = NULL;
    p->n = p->cap = 0;
}

int vlm_cap_plan(const double *ts, int n, double duration_s, double frame_s, int window, int stride, int centered,
                 vlm_cap_segment **segs, int *n_segs)
{
    *segs = NULL;
    *n_segs = 0;
    vlm_cap_planner p;
    vlm_cap_planner_init(&p, window, stride, centered, duration_s);
    vlm_cap_segment *out = NULL;
    int cnt = 0, cap = 0, rc = VLM_OK;
    for (int i = 0; i <= n && rc == VLM_OK; i++) {
        if (i < n)
            rc = vlm_cap_planner_push(&p, ts[i]);
        else
            vlm_cap_planner_finish(&p, frame_s);
        vlm_cap_segment s;
        while (rc == VLM_OK && vlm_cap_planner_next(&p, &s)) {
            if (cnt == cap) {
                cap = cap ? cap * 2 : 16;
                vlm_cap_segment *o = realloc(out, (size_t)cap * sizeof *o);
                if (!o) {
                    rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
                    break;
                }
                out = o;
            }
            out[cnt++] = s;
        }
    }
    vlm_cap_planner_free(&p);
    if (rc) {
        free(out);
        return rc;
    }
    *segs = out;
    *n_segs = cnt;
    return VLM_OK;
}
