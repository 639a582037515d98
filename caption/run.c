/* The captioning run.
 *
 * Two threads of ours plus the engine's:
 * - the decoding thread opens the videos one after another, samples their frames (media/video.h), plans the
 *   segments (plan.c) as the frames come and queues each segment still to do with its decoded frames; it stops
 *   while the frames queued or in the engine reach queue_frames, so memory stays flat however long the video;
 * - the calling thread takes segments from that queue, submits up to max_in_flight of them to the engine (several
 *   videos' at once), and handles the answers the engine's done callback hands back: each goes to the journal
 *   (flushed) before anything else; a video whose segments are all there gets its files written (atomically) and
 *   a "video" record. At the end captions.jsonl is rewritten from the journal.
 * A video that cannot be opened, decoded or captioned gets an error record; the run goes on with the others. */
#include "caption/caption_internal.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "media/url.h"
#include "media/video.h"

#define DEFAULT_MAX_TOKENS 48
#define DEFAULT_IN_FLIGHT 8
#define URL_DEFAULT_MAX_BYTES ((int64_t)1 << 30)
#define SUMMARY_MAX_CHARS 6000

void vlm_caption_options_default(vlm_caption_options *o)
{
    memset(o, 0, sizeof *o);
    o->frames = "every=2";
    o->window = 1;
    vlm_ask_options_default(&o->gen);
    o->gen.max_new_tokens = DEFAULT_MAX_TOKENS;
    o->formats = VLM_CAPTION_ALL;
    o->max_in_flight = DEFAULT_IN_FLIGHT;
}

void vlm_cap_run_file(const vlm_caption_options *o, const char *ext, char *buf, size_t size)
{
    const char *dir = o->out_dir ? o->out_dir : ".";
    if (o->shard_count > 1)
        snprintf(buf, size, "%s/captions.shard-%d-of-%d%s", dir, o->shard_index, o->shard_count, ext);
    else
        snprintf(buf, size, "%s/captions%s", dir, ext);
}

static double now_s(void) { return vlm_now_ms() / 1e3; }

/* ---- frames shared by the decoding thread and the segments using them ---- */
typedef struct {
    vlm_image img;
    atomic_int refs;
} frame_ref;

static void frame_unref(frame_ref *f)
{
    if (f && atomic_fetch_sub(&f->refs, 1) == 1) {
        vlm_image_free(&f->img);
        free(f);
    }
}

typedef enum { ITEM_SEGMENT, ITEM_VIDEO_END, ITEM_VIDEO_FAIL, ITEM_SUMMARY } item_kind;

typedef struct item {
    item_kind kind;
    int video;
    vlm_cap_segment seg;
    double *ts;          /* the segment's frame timestamps */
    frame_ref **frames;
    int n_segments;      /* VIDEO_END */
    char *error;         /* VIDEO_FAIL */
    void *handle;        /* the engine's request */
    void *ctx;           /* the run, for the done callback */
    /* the answer, set by the done callback */
    int ok;
    char *text, *finish, *answer_error;
    struct item *next;
} item;

static void item_free(item *it)
{
    if (!it) return;
    for (int i = 0; it->frames && i < it->seg.n_frames; i++) frame_unref(it->frames[i]);
    free(it->frames);
    free(it->ts);
    free(it->error);
    free(it->text);
    free(it->finish);
    free(it->answer_error);
    free(it);
}

typedef struct {
    item *head, *tail;
    int n;
} item_list;

static void list_push(item_list *l, item *it)
{
    it->next = NULL;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    l->n++;
}

static item *list_pop(item_list *l)
{
    item *it = l->head;
    if (!it) return NULL;
    l->head = it->next;
    if (!l->head) l->tail = NULL;
    l->n--;
    it->next = NULL;
    return it;
}

enum { V_PENDING, V_RUNNING, V_DONE, V_FAILED, V_SKIPPED };

typedef struct {
    int status;
    int n_segments;      /* -1 until the decoding thread has planned them all */
    int in_flight;
    int summary_in_flight;
    char *error;
    double t_first;
    item_list held;      /* --with-previous: segments waiting for the one before */
    /* for the decoding thread (read-only while it runs): segments already in the journal */
    unsigned char *done;
    int64_t *done_start, *done_end;
    int n_done_cap;
    double expected;     /* segment count estimate (0: unknown) */
    atomic_int cancel;   /* the decoding thread may stop on this video */
    int skip;            /* complete in the journal: not opened (set before the decoding thread starts) */
} vstate;

typedef struct {
    const vlm_cap_backend *be;
    const vlm_caption_options *o;
    vlm_caption_options opt; /* with defaults filled in */
    vlm_video_sampling sampling;
    vlm_cap_inputs in;
    int *order;          /* videos by path: captions.jsonl's order */
    vstate *vs;
    vlm_cap_journal journal;
    char *settings;      /* JSON object */
    uint64_t key;
    vlm_caption_stats st;
    double t0, busy_since;

    pthread_mutex_t m;
    pthread_cond_t cv;        /* the calling thread: an item queued or an answer back */
    pthread_cond_t cv_space;  /* the decoding thread: room in the queue */
    item_list queue;          /* decoding thread -> calling thread */
    item_list answers;        /* engine -> calling thread */
    int queued_frames;        /* frames in the queue and in the engine */
    int producer_done;
    atomic_int stopping;
    int in_flight;            /* requests of ours in the engine (the calling thread's count) */
    int n_held;               /* items in the videos' held lists */
    int fatal;                /* journal write failed: stop */
} run_ctx;

/* ---- the decoding thread ---- */

static void push_item(run_ctx *c, item *it, int n_frames)
{
    pthread_mutex_lock(&c->m);
    while (n_frames && c->queued_frames > 0 && c->queued_frames + n_frames > c->opt.queue_frames &&
           !atomic_load(&c->stopping) && !atomic_load(&c->vs[it->video].cancel))
        pthread_cond_wait(&c->cv_space, &c->m);
    c->queued_frames += n_frames;
    list_push(&c->queue, it);
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->m);
}

static void push_fail(run_ctx *c, int video, const char *msg)
{
    item *it = calloc(1, sizeof *it);
    if (!it) return; /* the video then never ends: reported as unfinished */
    it->kind = ITEM_VIDEO_FAIL;
    it->video = video;
    it->error = vlm_cap_strdup(msg);
    push_item(c, it, 0);
}

static int seg_done(const vstate *v, const vlm_cap_segment *s)
{
    return s->index < v->n_done_cap && v->done[s->index] && v->done_start[s->index] == s->start_ms &&
           v->done_end[s->index] == s->end_ms;
}

/* Frames kept by the decoding thread: indices [base, base + n). */
typedef struct {
    frame_ref **f;
    int base, n, cap;
} frame_window;

static void window_drop_before(frame_window *w, int idx)
{
    int k = 0;
    while (k < w->n && w->base + k < idx) frame_unref(w->f[k++]);
    if (k) {
        memmove(w->f, w->f + k, (size_t)(w->n - k) * sizeof *w->f);
        w->n -= k;
        w->base += k;
    }
}

static int caption_video(run_ctx *c, int vi)
{
    vstate *vs = &c->vs[vi];
    const vlm_cap_input *in = &c->in.v[vi];
    vlm_video_limits lim = {c->opt.max_pixels, 10000000, 0};
    vlm_url_blob blob = {0};
    vlm_video *v = NULL;
    frame_window w = {0};
    vlm_cap_planner p;
    int planner_live = 0;
    int rc;
    if (in->error) {
        vlm_errorf(VLM_ERR_IO, "%s", in->error);
        return VLM_ERR_IO;
    }
    if (in->is_url) {
        vlm_url_policy pol;
        vlm_url_policy_default(&pol);
        pol.accept = VLM_URL_ACCEPT_VIDEO;
        pol.allow_private = c->opt.allow_private;
        pol.media_dir = c->opt.media_dir;
        pol.max_bytes = (size_t)(c->opt.max_url_bytes > 0 ? c->opt.max_url_bytes : URL_DEFAULT_MAX_BYTES);
        pol.timeout_ms = 600000;
        if ((rc = vlm_url_fetch(in->path, &pol, &blob))) return rc;
        rc = vlm_video_open_memory(blob.data, blob.size, &lim, &v);
    } else {
        rc = vlm_video_open_file(in->path, &lim, &v);
    }
    if (rc) goto done;
    const vlm_video_info *info = vlm_video_get_info(v);
    if (info->duration < 0 && (rc = vlm_video_scan(v))) goto done;
    double dur = info->duration;
    double frame_s = info->fps > 0 ? 1.0 / info->fps : 0.04;
    int S = c->opt.stride, K = c->opt.window;
    /* an estimate of the segment count, for the ETA */
    double est = 0;
    if (dur > 0) {
        double frames = c->sampling.mode == VLM_VIDEO_FPS     ? dur * c->sampling.value
                        : c->sampling.mode == VLM_VIDEO_EVERY ? dur / c->sampling.value
                        : c->sampling.mode == VLM_VIDEO_COUNT ? c->sampling.count
                                                              : 0;
        if (info->fps > 0 && frames > dur * info->fps) frames = dur * info->fps;
        est = ceil(frames / S);
    }
    pthread_mutex_lock(&c->m);
    vs->expected = est;
    pthread_mutex_unlock(&c->m);
    if ((rc = vlm_video_start(v, &c->sampling))) goto done;
    vlm_cap_planner_init(&p, K, S, c->sampling.mode == VLM_VIDEO_COUNT, dur);
    planner_live = 1;
    for (;;) {
        if (atomic_load(&c->stopping) || atomic_load(&vs->cancel)) {
            rc = 1; /* stopped: no end item */
            goto done;
        }
        vlm_image img;
        double pts;
        int r = vlm_video_next(v, &img, &pts);
        if (r < 0) {
            rc = r;
            goto done;
        }
        if (r == 1) {
            frame_ref *f = malloc(sizeof *f);
            if (!f || (w.n == w.cap && !(w.f = realloc(w.f, (size_t)(w.cap = w.cap ? w.cap * 2 : 16) * sizeof *w.f)))) {
                free(f);
                vlm_image_free(&img);
                rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
                goto done;
            }
            f->img = img;
            atomic_init(&f->refs, 1);
            w.f[w.n++] = f;
            if ((rc = vlm_cap_planner_push(&p, pts))) goto done;
        } else {
            vlm_cap_planner_finish(&p, frame_s);
        }
        vlm_cap_segment s;
        while (vlm_cap_planner_next(&p, &s)) {
            if (!seg_done(vs, &s)) {
                item *it = calloc(1, sizeof *it);
                if (it) {
                    it->ts = malloc((size_t)s.n_frames * sizeof *it->ts);
                    it->frames = calloc((size_t)s.n_frames, sizeof *it->frames);
                }
                if (!it || !it->ts || !it->frames) {
                    item_free(it);
                    rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
                    goto done;
                }
                it->kind = ITEM_SEGMENT;
                it->video = vi;
                it->seg = s;
                for (int k = 0; k < s.n_frames; k++) {
                    frame_ref *f = w.f[s.first_frame + k - w.base];
                    atomic_fetch_add(&f->refs, 1);
                    it->frames[k] = f;
                    it->ts[k] = p.ts[s.first_frame + k];
                }
                push_item(c, it, s.n_frames);
            }
            window_drop_before(&w, s.first_frame + S);
        }
        if (r == 0) break;
    }
    if (p.n == 0) {
        rc = vlm_errorf(VLM_ERR_FORMAT, "no frames could be sampled");
        goto done;
    }
    item *end = calloc(1, sizeof *end);
    if (!end) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    end->kind = ITEM_VIDEO_END;
    end->video = vi;
    end->n_segments = p.n_emitted;
    push_item(c, end, 0);
    rc = VLM_OK;
done:
    if (planner_live) vlm_cap_planner_free(&p);
    window_drop_before(&w, w.base + w.n);
    free(w.f);
    vlm_video_close(v);
    vlm_url_blob_free(&blob);
    return rc;
}

static void *producer(void *arg)
{
    run_ctx *c = arg;
    for (int vi = 0; vi < c->in.n && !atomic_load(&c->stopping); vi++) {
        if (c->vs[vi].skip) continue;
        int rc = caption_video(c, vi);
        if (rc < 0) push_fail(c, vi, vlm_last_error());
    }
    pthread_mutex_lock(&c->m);
    c->producer_done = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->m);
    return NULL;
}

/* ---- answers (on the engine's thread) ---- */

static void on_answer(void *user, const vlm_cap_answer *a)
{
    item *it = user;
    run_ctx *c = it->ctx;
    it->ok = a->ok;
    it->text = vlm_cap_strdup(a->text ? a->text : "");
    it->finish = vlm_cap_strdup(a->finish ? a->finish : "");
    it->answer_error = a->ok ? NULL : vlm_cap_strdup(a->error && a->error[0] ? a->error : "the request failed");
    pthread_mutex_lock(&c->m);
    list_push(&c->answers, it);
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->m);
}

/* ---- the calling thread ---- */

static void emit(run_ctx *c, vlm_caption_event_type type, int vi, const char *error, int segments, int skipped,
                 double seconds)
{
    if (!c->opt.on_event) return;
    c->st.elapsed_s = now_s() - c->t0;
    vlm_caption_event ev = {type, c->in.v[vi].path, error, segments, skipped, seconds, &c->st};
    c->opt.on_event(c->opt.user, &ev);
}

static char *build_prompt(run_ctx *c, const item *it)
{
    vlm_strbuf b = {0};
    if (c->opt.with_previous && it->seg.index > 0) {
        vlm_cap_jvideo *jv = vlm_cap_journal_find(&c->journal, c->in.v[it->video].path);
        const vlm_cap_record *prev = jv && it->seg.index - 1 < jv->cap ? &jv->segs[it->seg.index - 1] : NULL;
        if (prev && prev->caption) {
            char *line = vlm_cap_one_line(prev->caption);
            vlm_strbuf_printf(&b, "The previous part of the video: %s\n", line ? line : "");
            free(line);
        }
    }
    if (c->opt.prompt)
        vlm_strbuf_adds(&b, c->opt.prompt);
    else if (it->seg.n_frames > 1)
        vlm_strbuf_printf(&b, "These are %d frames of a video, in order. Describe what happens in one sentence.",
                      it->seg.n_frames);
    else
        vlm_strbuf_adds(&b, "Describe what happens in this video frame in one sentence.");
    if (b.failed) {
        vlm_strbuf_free(&b);
        return NULL;
    }
    return b.s;
}

static char *build_summary_prompt(run_ctx *c, int vi)
{
    vlm_cap_jvideo *jv = vlm_cap_journal_find(&c->journal, c->in.v[vi].path);
    vlm_strbuf b = {0};
    vlm_strbuf_adds(&b, "Here are timestamped captions of a video:\n");
    int n = c->vs[vi].n_segments;
    /* at most SUMMARY_MAX_CHARS of captions, spread over the video */
    size_t per = n > 0 ? SUMMARY_MAX_CHARS / (size_t)n : 0;
    if (per < 40) per = 40;
    int step = n > 0 && (size_t)n * 40 > SUMMARY_MAX_CHARS ? (int)((size_t)n * 40 / SUMMARY_MAX_CHARS) + 1 : 1;
    for (int i = 0; jv && i < n; i += step) {
        char t[24];
        vlm_cap_format_time(jv->segs[i].start_ms, '.', t);
        char *line = vlm_cap_one_line(jv->segs[i].caption);
        if (line && strlen(line) > per) line[per] = '\0';
        vlm_strbuf_printf(&b, "[%s] %s\n", t, line ? line : "");
        free(line);
    }
    vlm_strbuf_adds(&b, "Summarize the whole video in a few sentences.");
    if (b.failed) {
        vlm_strbuf_free(&b);
        return NULL;
    }
    return b.s;
}

/* Submits it; VLM_ERR_BUSY leaves it to the caller, other errors fail its video. */
static int submit(run_ctx *c, item *it)
{
    char *prompt = it->kind == ITEM_SUMMARY ? build_summary_prompt(c, it->video) : build_prompt(c, it);
    if (!prompt) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    vlm_image_input imgs[64];
    vlm_image_input *pi = it->seg.n_frames <= 64 ? imgs : calloc((size_t)it->seg.n_frames, sizeof *pi);
    if (!pi) {
        free(prompt);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    int n = it->kind == ITEM_SUMMARY ? 0 : it->seg.n_frames;
    for (int k = 0; k < n; k++) {
        memset(&pi[k], 0, sizeof pi[k]);
        pi[k].rgb = it->frames[k]->img.rgb;
        pi[k].width = it->frames[k]->img.width;
        pi[k].height = it->frames[k]->img.height;
        if (n > 1) { /* a window: each frame placed with its time ("Frame 1 at 0.0 s: <image>") */
            pi[k].video_frame = 1;
            pi[k].time_s = it->ts[k];
        }
    }
    vlm_ask_options gen = c->opt.gen;
    gen.on_text = NULL;
    gen.user = NULL;
    if (c->opt.max_pixels > 0) gen.max_pixels = c->opt.max_pixels;
    it->ctx = c;
    it->handle = NULL;
    int rc = c->be->submit(c->be->ctx, prompt, pi, n, &gen, on_answer, it, &it->handle);
    if (pi != imgs) free(pi);
    free(prompt);
    return rc;
}

static void fail_video(run_ctx *c, int vi, const char *msg)
{
    vstate *vs = &c->vs[vi];
    if (vs->status == V_FAILED) return;
    vs->status = V_FAILED;
    free(vs->error);
    vs->error = vlm_cap_strdup(msg);
    atomic_store(&vs->cancel, 1);
    pthread_mutex_lock(&c->m);
    pthread_cond_broadcast(&c->cv_space);
    pthread_mutex_unlock(&c->m);
}

static int file_exists(const char *stem, const char *ext)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s", stem, ext);
    struct stat st;
    return stat(path, &st) == 0;
}

/* The video's segments 0..n-1 from the journal (shallow copies), or NULL if one is missing. */
static vlm_cap_record *collect(run_ctx *c, int vi, int n)
{
    vlm_cap_jvideo *jv = vlm_cap_journal_find(&c->journal, c->in.v[vi].path);
    if (!jv || jv->cap < n) return NULL;
    vlm_cap_record *r = malloc((size_t)(n ? n : 1) * sizeof *r);
    if (!r) return NULL;
    for (int i = 0; i < n; i++) {
        if (!jv->segs[i].caption) {
            free(r);
            return NULL;
        }
        r[i] = jv->segs[i];
    }
    return r;
}

static int write_video_files(run_ctx *c, int vi)
{
    int n = c->vs[vi].n_segments;
    vlm_cap_record *r = collect(c, vi, n);
    if (!r) return vlm_errorf(VLM_ERR_INVALID, "segments missing in the journal");
    vlm_cap_jvideo *jv = vlm_cap_journal_find(&c->journal, c->in.v[vi].path);
    int rc = vlm_cap_write_video(c->in.v[vi].stem, c->opt.formats, c->in.v[vi].path, r, n,
                                 c->opt.summary && jv ? jv->summary : NULL, c->settings);
    free(r);
    return rc;
}

/* Called whenever something about the video changed: finishes it when it can. */
static void check_video(run_ctx *c, int vi)
{
    vstate *vs = &c->vs[vi];
    if (vs->status == V_DONE || vs->status == V_SKIPPED || vs->in_flight || vs->summary_in_flight) return;
    const char *path = c->in.v[vi].path;
    if (vs->status == V_FAILED) {
        if (vs->error) {
            if (vlm_cap_journal_error(&c->journal, path, vs->error)) c->fatal = 1;
            c->st.videos_failed++;
            emit(c, VLM_CAPTION_EV_VIDEO_FAILED, vi, vs->error, 0, 0, 0);
            free(vs->error);
            vs->error = NULL; /* reported */
        }
        return;
    }
    if (vs->n_segments < 0 || vs->held.n) return;
    vlm_cap_jvideo *jv = vlm_cap_journal_find(&c->journal, path);
    for (int i = 0; i < vs->n_segments; i++)
        if (!jv || i >= jv->cap || !jv->segs[i].caption) return; /* still coming */
    if (c->opt.summary && (!jv || !jv->summary)) {
        item *it = calloc(1, sizeof *it);
        if (!it) {
            fail_video(c, vi, "out of memory");
            check_video(c, vi);
            return;
        }
        it->kind = ITEM_SUMMARY;
        it->video = vi;
        int rc;
        while ((rc = submit(c, it)) == VLM_ERR_BUSY && c->in_flight == 0) usleep(20000);
        if (rc == VLM_ERR_BUSY) { /* retried when an answer comes back */
            list_push(&vs->held, it);
            c->n_held++;
            return;
        }
        if (rc) {
            char msg[600];
            snprintf(msg, sizeof msg, "summary: %s", vlm_last_error());
            item_free(it);
            fail_video(c, vi, msg);
            check_video(c, vi);
            return;
        }
        vs->summary_in_flight = 1;
        c->in_flight++;
        return;
    }
    int rc = write_video_files(c, vi);
    if (rc == VLM_OK) rc = vlm_cap_journal_video(&c->journal, path, vs->n_segments);
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", vlm_last_error());
        fail_video(c, vi, msg);
        check_video(c, vi);
        return;
    }
    vs->status = V_DONE;
    c->st.videos_done++;
    emit(c, VLM_CAPTION_EV_VIDEO_DONE, vi, NULL, vs->n_segments, 0, vs->t_first > 0 ? now_s() - vs->t_first : 0);
}

static void handle_answer(run_ctx *c, item *it)
{
    vstate *vs = &c->vs[it->video];
    if (it->handle) c->be->release(c->be->ctx, it->handle);
    it->handle = NULL;
    c->in_flight--;
    const char *path = c->in.v[it->video].path;
    if (it->kind == ITEM_SUMMARY) {
        vs->summary_in_flight = 0;
        if (!it->ok) {
            char msg[600];
            snprintf(msg, sizeof msg, "summary: %s", it->answer_error);
            fail_video(c, it->video, msg);
        } else if (vlm_cap_journal_summary(&c->journal, path, it->text)) {
            c->fatal = 1;
        }
    } else {
        vs->in_flight--;
        if (!it->ok) {
            char msg[600];
            snprintf(msg, sizeof msg, "segment %d (%.3f s): %s", it->seg.index, it->seg.start_ms / 1000.0,
                     it->answer_error);
            fail_video(c, it->video, msg);
        } else {
            vlm_cap_record r = {0};
            r.index = it->seg.index;
            r.start_ms = it->seg.start_ms;
            r.end_ms = it->seg.end_ms;
            r.frames = it->ts;
            r.n_frames = it->seg.n_frames;
            /* the caption as generated, without the white space around it */
            char *t = it->text;
            while (*t == ' ' || *t == '\n' || *t == '\t' || *t == '\r') t++;
            size_t len = strlen(t);
            while (len && (t[len - 1] == ' ' || t[len - 1] == '\n' || t[len - 1] == '\t' || t[len - 1] == '\r'))
                t[--len] = '\0';
            r.caption = t;
            snprintf(r.finish, sizeof r.finish, "%s", it->finish);
            if (vlm_cap_journal_segment(&c->journal, path, &r)) {
                c->fatal = 1;
            } else {
                c->st.segments_done++;
                c->st.frames_done += it->seg.n_frames;
                emit(c, VLM_CAPTION_EV_SEGMENT, it->video, NULL, 0, 0, 0);
            }
        }
    }
    pthread_mutex_lock(&c->m);
    if (it->kind == ITEM_SEGMENT) c->queued_frames -= it->seg.n_frames;
    pthread_cond_broadcast(&c->cv_space);
    pthread_mutex_unlock(&c->m);
    int vi = it->video;
    item_free(it);
    check_video(c, vi);
}

/* Whether a segment may go now (--with-previous: once the one before is captioned). */
static int ready(run_ctx *c, const item *it)
{
    if (it->kind != ITEM_SEGMENT || !c->opt.with_previous || it->seg.index == 0) return 1;
    vlm_cap_jvideo *jv = vlm_cap_journal_find(&c->journal, c->in.v[it->video].path);
    return jv && it->seg.index - 1 < jv->cap && jv->segs[it->seg.index - 1].caption;
}

/* The next item to submit, from the held ones first (0 when none may go). */
static item *next_ready(run_ctx *c, int *from_held)
{
    for (int vi = 0; vi < c->in.n; vi++) {
        vstate *vs = &c->vs[vi];
        if (vs->held.head && (vs->held.head->kind == ITEM_SUMMARY || ready(c, vs->held.head))) {
            *from_held = 1;
            return list_pop(&vs->held);
        }
    }
    *from_held = 0;
    return NULL;
}

static void update_known(run_ctx *c)
{
    pthread_mutex_lock(&c->m);
    int64_t known = 0;
    double expected = 0, sum_est = 0;
    int n_est = 0, n_unknown = 0;
    for (int vi = 0; vi < c->in.n; vi++) {
        vstate *vs = &c->vs[vi];
        if (vs->status == V_FAILED) continue;
        if (vs->n_segments >= 0) {
            known += vs->n_segments;
            expected += vs->n_segments;
        } else if (vs->expected > 0) {
            expected += vs->expected;
            sum_est += vs->expected;
            n_est++;
        } else {
            n_unknown++;
        }
    }
    if (n_unknown) expected += n_unknown * (n_est ? sum_est / n_est : (expected > 0 ? expected / (c->in.n - n_unknown) : 1));
    c->st.segments_known = known;
    c->st.expected_segments = expected;
    pthread_mutex_unlock(&c->m);
}

/* The caller's stop flag (set by a signal handler or another thread). */
static int stop_asked(const run_ctx *c) { return c->opt.stop && __atomic_load_n(c->opt.stop, __ATOMIC_RELAXED); }

static void set_stopping(run_ctx *c)
{
    pthread_mutex_lock(&c->m);
    atomic_store(&c->stopping, 1);
    pthread_cond_broadcast(&c->cv_space);
    pthread_mutex_unlock(&c->m);
}

/* An item that will not be submitted: its frames go back to the queue's budget. */
static void drop_item(run_ctx *c, item *it)
{
    pthread_mutex_lock(&c->m);
    if (it->kind == ITEM_SEGMENT) c->queued_frames -= it->seg.n_frames;
    pthread_cond_broadcast(&c->cv_space);
    pthread_mutex_unlock(&c->m);
    item_free(it);
}

/* Takes one item out of the queue (or the held ones) and acts on it; the mutex is not held. 0: nothing to do
 * (or the engine is full: *busy). */
static int step(run_ctx *c, item **retry, int *busy)
{
    int from_held = 0;
    item *it = *retry;
    *retry = NULL;
    if (!it && c->n_held) it = next_ready(c, &from_held);
    if (!it) {
        pthread_mutex_lock(&c->m);
        it = list_pop(&c->queue);
        pthread_mutex_unlock(&c->m);
    }
    if (!it) return 0;
    if (from_held) c->n_held--;
    int vi = it->video;
    vstate *vs = &c->vs[vi];
    if (it->kind == ITEM_VIDEO_END) {
        vs->n_segments = it->n_segments;
        item_free(it);
        update_known(c);
        check_video(c, vi);
        return 1;
    }
    if (it->kind == ITEM_VIDEO_FAIL) {
        fail_video(c, vi, it->error ? it->error : "failed");
        item_free(it);
        check_video(c, vi);
        return 1;
    }
    if (vs->status == V_FAILED) {
        drop_item(c, it);
        check_video(c, vi);
        return 1;
    }
    if (!ready(c, it)) {
        list_push(&vs->held, it);
        c->n_held++;
        return 1;
    }
    if (vs->status == V_PENDING) {
        vs->status = V_RUNNING;
        vs->t_first = now_s();
    }
    int rc = submit(c, it);
    if (rc == VLM_ERR_BUSY) {
        *retry = it;
        *busy = 1;
        return 0;
    }
    if (rc) {
        char msg[600];
        if (it->kind == ITEM_SUMMARY)
            snprintf(msg, sizeof msg, "summary: %s", vlm_last_error());
        else
            snprintf(msg, sizeof msg, "segment %d (%.3f s): %s", it->seg.index, it->seg.start_ms / 1000.0,
                     vlm_last_error());
        drop_item(c, it);
        fail_video(c, vi, msg);
        check_video(c, vi);
        return 1;
    }
    c->in_flight++;
    if (it->kind == ITEM_SEGMENT)
        vs->in_flight++;
    else
        vs->summary_in_flight = 1;
    return 1;
}

static void main_loop(run_ctx *c)
{
    item *retry = NULL; /* refused as busy: goes first once something came back */
    double busy_t = now_s();
    for (;;) {
        double t = now_s();
        if (c->in_flight > 0) c->st.model_busy_s += t - busy_t;
        busy_t = t;
        int progressed = 0;
        for (;;) { /* the answers first: they free room */
            pthread_mutex_lock(&c->m);
            item *a = list_pop(&c->answers);
            pthread_mutex_unlock(&c->m);
            if (!a) break;
            handle_answer(c, a);
            progressed = 1;
        }
        if (!atomic_load(&c->stopping) && (c->fatal || stop_asked(c))) set_stopping(c);
        int stopping = atomic_load(&c->stopping);
        int busy = 0;
        while (!stopping && c->in_flight < c->opt.max_in_flight && step(c, &retry, &busy)) progressed = 1;
        if (busy && c->in_flight == 0) { /* the engine is full of others' requests: try again shortly */
            usleep(20000);
            continue;
        }
        pthread_mutex_lock(&c->m);
        int finished = c->in_flight == 0 && !c->answers.head && c->producer_done &&
                       (stopping || (!c->queue.head && !c->n_held && !retry));
        if (finished) {
            pthread_mutex_unlock(&c->m);
            break;
        }
        if (!progressed && !c->answers.head && !(c->queue.head && c->in_flight < c->opt.max_in_flight && !stopping))
            vlm_cond_wait_ms(&c->cv, &c->m, 200);
        pthread_mutex_unlock(&c->m);
    }
    /* what is left after a stop */
    item *it;
    while ((it = list_pop(&c->queue))) item_free(it);
    item_free(retry);
    for (int vi = 0; vi < c->in.n; vi++)
        while ((it = list_pop(&c->vs[vi].held))) item_free(it);
}

/* captions.jsonl of the run's videos, in path order, from the journal. */
static int write_run_jsonl(run_ctx *c)
{
    vlm_strbuf b = {0};
    for (int k = 0; k < c->in.n; k++) {
        int vi = c->order[k];
        vstate *vs = &c->vs[vi];
        const char *path = c->in.v[vi].path;
        vlm_cap_jvideo *jv = vlm_cap_journal_find(&c->journal, path);
        if (vs->status == V_DONE || vs->status == V_SKIPPED) {
            for (int i = 0; jv && i < vs->n_segments; i++) vlm_cap_jsonl_record(&b, path, &jv->segs[i], c->settings);
            if (c->opt.summary && jv && jv->summary) vlm_cap_jsonl_summary(&b, path, jv->summary, c->settings);
        } else if (vs->status == V_FAILED) {
            vlm_cap_jsonl_error(&b, path, jv && jv->error ? jv->error : "failed");
        }
    }
    if (b.failed) {
        vlm_strbuf_free(&b);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    char path[4096];
    vlm_cap_run_file(&c->opt, ".jsonl", path, sizeof path);
    int rc = vlm_cap_write_atomic(path, b.s ? b.s : "", b.len);
    vlm_strbuf_free(&b);
    return rc;
}

static char *settings_json(const vlm_caption_options *o)
{
    vlm_strbuf b = {0};
    vlm_strbuf_adds(&b, "{\"model\":");
    vlm_strbuf_json_str(&b, o->model_id ? o->model_id : "");
    vlm_strbuf_adds(&b, ",\"frames\":");
    vlm_strbuf_json_str(&b, o->frames);
    vlm_strbuf_printf(&b, ",\"window\":%d,\"stride\":%d,\"prompt\":", o->window, o->stride);
    if (o->prompt)
        vlm_strbuf_json_str(&b, o->prompt);
    else
        vlm_strbuf_adds(&b, "null");
    vlm_strbuf_printf(&b, ",\"with_previous\":%s,\"max_tokens\":%d,\"temperature\":%g,\"top_p\":%g,\"top_k\":%d,"
                      "\"repetition_penalty\":%g,\"seed\":%llu}",
                  o->with_previous ? "true" : "false", o->gen.max_new_tokens, (double)o->gen.temperature,
                  (double)o->gen.top_p, o->gen.top_k, (double)o->gen.repetition_penalty,
                  (unsigned long long)o->gen.seed);
    if (b.failed) {
        vlm_strbuf_free(&b);
        return NULL;
    }
    return b.s;
}

static int cmp_order(const void *a, const void *b, void *ctx)
{
    const vlm_cap_inputs *in = ctx;
    return strcmp(in->v[*(const int *)a].path, in->v[*(const int *)b].path);
}

/* Marks the videos the journal has complete (writing their files if missing) and tells the decoding thread which
 * segments it may skip. */
static int prepare_videos(run_ctx *c)
{
    for (int vi = 0; vi < c->in.n; vi++) {
        vstate *vs = &c->vs[vi];
        vs->n_segments = -1;
        atomic_init(&vs->cancel, 0);
        vlm_cap_jvideo *jv = vlm_cap_journal_find(&c->journal, c->in.v[vi].path);
        if (!jv) continue;
        if (jv->complete) {
            vlm_cap_record *r = collect(c, vi, jv->n_segments);
            int summary_ok = !c->opt.summary || jv->summary;
            if (r && summary_ok) {
                free(r);
                c->st.segments_resumed += jv->n_segments;
                vs->status = V_SKIPPED;
                vs->skip = 1;
                vs->n_segments = jv->n_segments;
                const char *stem = c->in.v[vi].stem;
                unsigned f = c->opt.formats;
                if (((f & VLM_CAPTION_SRT) && !file_exists(stem, ".srt")) ||
                    ((f & VLM_CAPTION_VTT) && !file_exists(stem, ".vtt")) ||
                    ((f & VLM_CAPTION_JSONL) && !file_exists(stem, ".jsonl"))) {
                    int rc = write_video_files(c, vi);
                    if (rc) return rc;
                }
                continue;
            }
            free(r);
        }
        if (jv->cap) {
            vs->done = calloc((size_t)jv->cap, 1);
            vs->done_start = malloc((size_t)jv->cap * sizeof *vs->done_start);
            vs->done_end = malloc((size_t)jv->cap * sizeof *vs->done_end);
            if (!vs->done || !vs->done_start || !vs->done_end) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
            vs->n_done_cap = jv->cap;
            for (int i = 0; i < jv->cap; i++) {
                if (!jv->segs[i].caption) continue;
                vs->done[i] = 1;
                vs->done_start[i] = jv->segs[i].start_ms;
                vs->done_end[i] = jv->segs[i].end_ms;
                c->st.segments_resumed++;
            }
        }
    }
    return VLM_OK;
}

int vlm_cap_run(const vlm_cap_backend *be, const char *const *inputs, int n_inputs, const vlm_caption_options *o,
                vlm_caption_stats *st)
{
    if (st) memset(st, 0, sizeof *st);
    if (!be || !o || (n_inputs && !inputs) || n_inputs < 0)
        return vlm_errorf(VLM_ERR_INVALID, "caption: missing arguments");
    run_ctx *c = calloc(1, sizeof *c);
    if (!c) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    c->be = be;
    c->o = o;
    c->opt = *o;
    if (!c->opt.frames) c->opt.frames = "every=2";
    if (c->opt.window <= 0) c->opt.window = 1;
    if (c->opt.stride <= 0) c->opt.stride = c->opt.window;
    if (!c->opt.formats) c->opt.formats = VLM_CAPTION_ALL;
    if (c->opt.max_in_flight <= 0) c->opt.max_in_flight = DEFAULT_IN_FLIGHT;
    if (c->opt.queue_frames <= 0) c->opt.queue_frames = 2 * c->opt.max_in_flight * c->opt.window;
    if (c->opt.queue_frames < c->opt.window) c->opt.queue_frames = c->opt.window;
    int rc = VLM_OK, threaded = 0, locks = 0;
    pthread_t th;
    if (c->opt.window > 64) {
        rc = vlm_errorf(VLM_ERR_INVALID, "caption: --window %d: at most 64 frames per caption", c->opt.window);
        goto out;
    }
    if (c->opt.stride > c->opt.window) {
        rc = vlm_errorf(VLM_ERR_INVALID, "caption: --stride %d is larger than --window %d (frames would be skipped)",
                        c->opt.stride, c->opt.window);
        goto out;
    }
    if (c->opt.shard_count < 0 || (c->opt.shard_count > 0 && (c->opt.shard_index < 0 ||
                                                             c->opt.shard_index >= c->opt.shard_count))) {
        rc = vlm_errorf(VLM_ERR_INVALID, "caption: shard %d/%d: the index must be in [0, %d)", c->opt.shard_index,
                        c->opt.shard_count, c->opt.shard_count);
        goto out;
    }
    if ((rc = vlm_video_sampling_parse(c->opt.frames, &c->sampling))) goto out;
    if (!(c->settings = settings_json(&c->opt))) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto out;
    }
    c->key = vlm_cap_fnv1a64(c->settings, strlen(c->settings));
    if ((rc = vlm_cap_inputs_expand(inputs, n_inputs, c->opt.out_dir, &c->in))) goto out;
    vlm_cap_inputs_shard(&c->in, c->opt.shard_index, c->opt.shard_count);
    c->vs = calloc((size_t)(c->in.n ? c->in.n : 1), sizeof *c->vs);
    c->order = malloc((size_t)(c->in.n ? c->in.n : 1) * sizeof *c->order);
    if (!c->vs || !c->order) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < c->in.n; i++) c->order[i] = i;
    qsort_r(c->order, (size_t)c->in.n, sizeof *c->order, cmp_order, &c->in);
    c->st.videos_total = c->in.n;
    char jpath[4096];
    vlm_cap_run_file(&c->opt, ".journal", jpath, sizeof jpath);
    if ((rc = vlm_cap_journal_open(jpath, c->key, c->opt.force, &c->journal))) goto out;
    if ((rc = prepare_videos(c))) goto out;
    c->t0 = now_s();
    pthread_mutex_init(&c->m, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_cond_init(&c->cv_space, NULL);
    locks = 1;
    atomic_init(&c->stopping, 0);
    for (int vi = 0; vi < c->in.n; vi++) {
        if (c->vs[vi].status != V_SKIPPED) continue;
        c->st.videos_done++;
        c->st.videos_skipped++;
        emit(c, VLM_CAPTION_EV_VIDEO_DONE, vi, NULL, c->vs[vi].n_segments, 1, 0);
    }
    update_known(c);
    if (pthread_create(&th, NULL, producer, c) != 0) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "caption: cannot start the decoding thread");
        goto out;
    }
    threaded = 1;
    main_loop(c);
    pthread_join(th, NULL);
    threaded = 0;
    if (c->fatal) {
        rc = vlm_errorf(VLM_ERR_IO, "caption: the journal could not be written");
        goto out;
    }
    if ((rc = write_run_jsonl(c))) goto out;
    if (atomic_load(&c->stopping) || stop_asked(c))
        rc = vlm_errorf(VLM_ERR_INVALID, "caption: stopped (what was done is in the journal; rerun to go on)");
out:
    if (threaded) {
        atomic_store(&c->stopping, 1);
        pthread_mutex_lock(&c->m);
        pthread_cond_broadcast(&c->cv_space);
        pthread_mutex_unlock(&c->m);
        pthread_join(th, NULL);
    }
    c->st.elapsed_s = c->t0 > 0 ? now_s() - c->t0 : 0;
    if (st) *st = c->st;
    if (locks) {
        pthread_mutex_destroy(&c->m);
        pthread_cond_destroy(&c->cv);
        pthread_cond_destroy(&c->cv_space);
    }
    for (int vi = 0; c->vs && vi < c->in.n; vi++) {
        free(c->vs[vi].error);
        free(c->vs[vi].done);
        free(c->vs[vi].done_start);
        free(c->vs[vi].done_end);
    }
    vlm_cap_journal_close(&c->journal);
    vlm_cap_inputs_free(&c->in);
    free(c->vs);
    free(c->order);
    free(c->settings);
    free(c);
    return rc;
}

int vlm_caption_run(vlm_engine *e, const char *const *inputs, int n_inputs, const vlm_caption_options *o,
                    vlm_caption_stats *st)
{
    if (!e) return vlm_errorf(VLM_ERR_INVALID, "caption: no engine");
    vlm_cap_backend b;
    int rc = vlm_cap_engine_backend(e, &b);
    if (rc) return rc;
    vlm_caption_options defaults;
    if (!o) {
        vlm_caption_options_default(&defaults);
        o = &defaults;
    }
    return vlm_cap_run(&b, inputs, n_inputs, o, st);
}
