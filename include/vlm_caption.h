/* vlm captioning: timestamped descriptions of videos (SRT, WebVTT, JSONL) through the request engine.
 *
 *     vlm_caption_options o;
 *     vlm_caption_options_default(&o);
 *     o.out_dir = "captions";
 *     const char *inputs[] = {"videos/", "@more.txt", "clip.mp4"};
 *     vlm_caption_stats st;
 *     if (vlm_caption_run(engine, inputs, 3, &o, &st) != 0) puts(vlm_last_error());
 *
 * An input is a video file, a folder (searched recursively; videos are recognised by their bytes, not their
 * names), a URL (data:, http(s)://, file:// under the engine-independent policy below) or "@list.txt" (one input
 * per line; blank lines and lines starting with '#' are skipped). Frames are sampled with the media layer
 * (media/video.h: fps=, every=, n=, scene), grouped into segments of `window` frames, and each segment is one
 * engine request (several in flight at once). Results are appended to a journal in the run folder as they
 * arrive, so a rerun of the same command skips what is done; per-video SRT, VTT and JSONL files and the run's
 * captions.jsonl are rewritten atomically (temporary file + rename) from it. */
#ifndef VLM_CAPTION_H
#define VLM_CAPTION_H

#include <stdint.h>

#include "vlm.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    VLM_CAPTION_SRT = 1,
    VLM_CAPTION_VTT = 2,
    VLM_CAPTION_JSONL = 4,
    VLM_CAPTION_ALL = 7,
};

/* What the runner reports as it goes (vlm_caption_options.on_event, on the calling thread). */
typedef enum {
    VLM_CAPTION_EV_SEGMENT = 1, /* a segment was captioned */
    VLM_CAPTION_EV_VIDEO_DONE,  /* a video's files were written (or it was already done: skipped = 1) */
    VLM_CAPTION_EV_VIDEO_FAILED,
} vlm_caption_event_type;

typedef struct {
    int videos_total;       /* inputs of this run (after --shard) */
    int videos_done;        /* captioned, this run or an earlier one */
    int videos_skipped;     /* of those, already complete in the journal */
    int videos_failed;
    int64_t segments_done;  /* captioned by this run */
    int64_t segments_resumed; /* taken from the journal */
    int64_t segments_known; /* planned so far (all videos opened yet), done ones included */
    int64_t frames_done;    /* frames in the segments captioned by this run */
    double expected_segments; /* estimate of all segments of the run (from the videos' durations) */
    double elapsed_s;
    double model_busy_s;    /* wall time with at least one request in the engine */
} vlm_caption_stats;

typedef struct {
    vlm_caption_event_type type;
    const char *video;      /* the input as given or found */
    const char *error;      /* VIDEO_FAILED: the message */
    int segments;           /* VIDEO_DONE: its segment count */
    int skipped;            /* VIDEO_DONE: it was complete already */
    double seconds;         /* VIDEO_DONE: wall time since its first request */
    const vlm_caption_stats *stats;
} vlm_caption_event;

typedef struct {
    const char *frames;     /* sampling: "every=2" (default), "fps=0.5", "n=16", "scene", "scene=0.4" */
    int window;             /* frames per caption, given as one multi-image prompt [1] */
    int stride;             /* frames from one segment's start to the next [window]; < window: the windows
                               overlap (each frame is then seen by several prompts, the engine's image cache
                               encodes it once), the segments' times never do */
    const char *prompt;     /* NULL: a request for one sentence */
    int with_previous;      /* the previous segment's caption goes into the prompt (segments of one video then
                               run one after another; videos still run side by side) */
    int summary;            /* one text-only request per video summarising its captions */
    vlm_ask_options gen;    /* generation (greedy by default, max_new_tokens 48); on_text is not used */
    const char *out_dir;    /* NULL: each video's files beside it (URLs: the current folder), the run files
                               (journal, captions.jsonl) in the current folder */
    unsigned formats;       /* VLM_CAPTION_*; 0 = all */
    int force;              /* forget the journal and start over */
    int shard_index, shard_count; /* take the inputs whose path hash % shard_count == shard_index; 0/0 = all */
    int max_in_flight;      /* segments in the engine at once [8] */
    int queue_frames;       /* decoded frames held ahead of the engine [2 * max_in_flight * window] */
    int64_t max_pixels;     /* per frame; 0 = the media layer's default */
    /* URL inputs */
    int allow_private;
    const char *media_dir;
    int64_t max_url_bytes;  /* 0 = 1 GiB */
    const char *model_id;   /* identifies the model and its settings in the resume key and the records (e.g. the
                               model folder and quant); NULL = "" */
    void (*on_event)(void *user, const vlm_caption_event *ev);
    void *user;
    volatile int *stop;     /* optional: non-zero asks the run to stop after the requests in the engine have answered
                               (what is done stays journaled); set it from a signal handler or with an atomic store */
} vlm_caption_options;

void vlm_caption_options_default(vlm_caption_options *o);

/* Captions the inputs with the engine. Open it for this with vlm_engine_options.prefix_cache_mib = -1 (a caption's
 * prompt starts with its frames, so prompts share no prefix and the cache only fills up) and image_cache_mib = -1
 * unless windows overlap (stride < window): then memory stays flat however long the videos (vlm caption does).
 * Returns 0 when the run went through, even if some videos failed
 * (st->videos_failed counts them, each with an error record); a negative code when it could not run at all
 * (bad options, the run folder not writable). st may be NULL. */
int vlm_caption_run(vlm_engine *e, const char *const *inputs, int n_inputs, const vlm_caption_options *o,
                    vlm_caption_stats *st);

/* Joins the captions.jsonl (and captions.shard-*.jsonl) of several run folders into out_path, in the order a
 * single run writes (by video, then segment), each record once. *n_records (optional) = records written. */
int vlm_caption_merge(const char *const *dirs, int n_dirs, const char *out_path, int64_t *n_records);

#ifdef __cplusplus
}
#endif
#endif
