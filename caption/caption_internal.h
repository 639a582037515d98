/* Internal to caption/: the pieces of vlm caption, each testable without a model.
 *
 * util.c     growing strings, JSON escaping, FNV-1a, atomic file writes, folders
 * inputs.c   inputs (files, folders by content, @lists, URLs) to a list of videos with output names, shards
 * plan.c     sampled frame timestamps to segments (times in ms, never overlapping, never past the end)
 * writers.c  SRT, WebVTT and JSONL from segment records
 * journal.c  the append-only journal (one JSON line per result, flushed each) and its reader
 * run.c      the runner: a decoding thread ahead of the engine, many segments in flight
 * backend.c  the runner's engine interface on vlm_engine_submit
 * merge.c    joining shards' captions.jsonl */
#ifndef VLM_CAPTION_INTERNAL_H
#define VLM_CAPTION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "vlm_caption.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- util.c ---- */
uint64_t vlm_cap_fnv1a64(const void *data, size_t n);
/* Writes data to path through path.tmp + fsync + rename (readers see the old file or the new one). */
int vlm_cap_write_atomic(const char *path, const void *data, size_t n);
/* mkdir -p (the folders of a path when last_is_file). */
int vlm_cap_mkdirs(const char *path, int last_is_file);
int vlm_cap_read_whole(const char *path, char **data, size_t *n);
char *vlm_cap_strdup(const char *s);
/* "HH:MM:SS,mmm" (SRT, sep ',') or "HH:MM:SS.mmm" (VTT, sep '.'), into buf[>= 16]. */
void vlm_cap_format_time(int64_t ms, char sep, char *buf);

/* ---- inputs.c ---- */
typedef struct {
    char *path;   /* as given, or folder + '/' + path inside it */
    char *stem;   /* output files' path without the extension ("out/a/clip") */
    char *error;  /* set when the input cannot be used (missing, unreadable list) */
    int is_url;
    uint64_t hash; /* FNV-1a of path: the shard */
} vlm_cap_input;

typedef struct {
    vlm_cap_input *v;
    int n, cap;
} vlm_cap_inputs;

/* Expands the inputs in order (folders sorted by name, recursively, symlinked folders not followed), drops
 * repeated paths, and gives each video its output stem: beside it, or under out_dir (a folder's videos keep
 * their sub-path, others their base name; URLs their last path part); stems that would collide get "-<hash>".
 * Errors (a missing file, an unreadable @list) become entries with error set; the return code is for running
 * out of memory only. */
int vlm_cap_inputs_expand(const char *const *inputs, int n, const char *out_dir, vlm_cap_inputs *out);
/* Keeps the entries whose hash % count == index. */
void vlm_cap_inputs_shard(vlm_cap_inputs *in, int index, int count);
void vlm_cap_inputs_free(vlm_cap_inputs *in);
/* 1 when the file's first bytes are a video container the media layer knows. */
int vlm_cap_is_video_file(const char *path);

/* ---- plan.c ---- */
typedef struct {
    int index;              /* 0, 1, ... in time order */
    int64_t start_ms, end_ms;
    int first_frame, n_frames; /* the frames (indices into the sampled frames) its prompt shows */
} vlm_cap_segment;

typedef struct {
    int window, stride, centered; /* centered: frames stand for the middle of their span (n=N sampling) */
    int64_t duration_ms;    /* < 0: unknown until finish */
    double *ts;
    int n, cap;
    int finished, failed;
    int next_group;         /* the next frame group (first frame next_group * stride) to look at */
    int n_emitted;
    int all_emitted;         /* the last segment went out */
    int have_pending;
    vlm_cap_segment pending; /* emitted when the next segment's start (or the end) is known */
} vlm_cap_planner;

/* duration_s <= 0 or NaN: unknown (finish then takes the last frame + frame_s). */
void vlm_cap_planner_init(vlm_cap_planner *p, int window, int stride, int centered, double duration_s);
/* Frames in increasing time order. */
int vlm_cap_planner_push(vlm_cap_planner *p, double ts);
/* No more frames; frame_s = one frame's duration (for an unknown video length). */
void vlm_cap_planner_finish(vlm_cap_planner *p, double frame_s);
/* 1 and *seg for the next segment whose frames and times are known, 0 when none is ready yet. */
int vlm_cap_planner_next(vlm_cap_planner *p, vlm_cap_segment *seg);
void vlm_cap_planner_free(vlm_cap_planner *p);
/* All at once (tests): *segs malloc'd. */
int vlm_cap_plan(const double *ts, int n, double duration_s, double frame_s, int window, int stride, int centered,
                 vlm_cap_segment **segs, int *n_segs);

/* ---- writers.c ---- */
typedef struct {
    int index;
    int64_t start_ms, end_ms;
    double *frames;
    int n_frames;
    char *caption;
    char finish[16];
} vlm_cap_record;

void vlm_cap_record_free(vlm_cap_record *r);
/* The caption as one subtitle line: control characters and runs of white space become one space, ends trimmed,
 * invalid UTF-8 replaced; "(no caption)" when empty. malloc'd. */
char *vlm_cap_one_line(const char *caption);
/* Files in memory (NUL-terminated, malloc'd), records sorted by index. */
char *vlm_cap_srt(const vlm_cap_record *r, int n);
char *vlm_cap_vtt(const vlm_cap_record *r, int n);
/* One line: {"video","segment","start","end","frames","caption","finish","settings"} (settings: a JSON object). */
void vlm_cap_jsonl_record(vlm_strbuf *b, const char *video, const vlm_cap_record *r, const char *settings_json);
void vlm_cap_jsonl_summary(vlm_strbuf *b, const char *video, const char *summary, const char *settings_json);
void vlm_cap_jsonl_error(vlm_strbuf *b, const char *video, const char *error);
/* <stem>.srt / .vtt / .jsonl as formats asks, each atomically. */
int vlm_cap_write_video(const char *stem, unsigned formats, const char *video, const vlm_cap_record *r, int n,
                        const char *summary, const char *settings_json);

/* ---- journal.c ---- */
typedef struct {
    char *video;
    int complete;           /* a "video" record: all segments and the files were written */
    int n_segments;         /* from it */
    vlm_cap_record *segs;   /* by index (a sparse array of cap entries; caption NULL = missing) */
    int cap;
    char *summary;
    char *error;            /* the last error record, NULL when none (or cleared by a later success) */
} vlm_cap_jvideo;

typedef struct {
    int fd;
    char *path;
    uint64_t key;           /* the settings' hash: records with another key are ignored */
    vlm_cap_jvideo *v;
    int n, cap;
    int *index;             /* open addressing over v by video (icap a power of two) */
    int icap;
    int64_t bad_lines;
} vlm_cap_journal;

/* Opens (creating) the journal, reads the records of this key and cuts off a torn last line. force: empty it. */
int vlm_cap_journal_open(const char *path, uint64_t key, int force, vlm_cap_journal *j);
void vlm_cap_journal_close(vlm_cap_journal *j);
vlm_cap_jvideo *vlm_cap_journal_find(vlm_cap_journal *j, const char *video);
/* Each appends one line with one write() and fdatasync()s it, and updates the in-memory view. */
int vlm_cap_journal_segment(vlm_cap_journal *j, const char *video, const vlm_cap_record *r);
int vlm_cap_journal_summary(vlm_cap_journal *j, const char *video, const char *summary);
int vlm_cap_journal_video(vlm_cap_journal *j, const char *video, int n_segments);
int vlm_cap_journal_error(vlm_cap_journal *j, const char *video, const char *error);

/* ---- backend: how the runner reaches the model ---- */
typedef struct {
    int ok;                 /* 0: error holds the message */
    const char *text;
    const char *finish;     /* "stop", "length", ... */
    const char *error;
    int64_t completion_tokens;
} vlm_cap_answer;

typedef void (*vlm_cap_done_fn)(void *user, const vlm_cap_answer *a);

typedef struct {
    void *ctx;
    /* Queues one user message (prompt + n images, decoded RGB); done runs once later, on any thread, unless this
     * fails. VLM_ERR_BUSY: the engine's queue is full, retry after a completion. *handle: for release. */
    int (*submit)(void *ctx, const char *prompt, const vlm_image_input *imgs, int n, const vlm_ask_options *gen,
                  vlm_cap_done_fn done, void *user, void **handle);
    /* After done ran: frees the request. */
    void (*release)(void *ctx, void *handle);
} vlm_cap_backend;

int vlm_cap_engine_backend(vlm_engine *e, vlm_cap_backend *b);

/* The run on any backend (vlm_caption_run = this on the engine's). */
int vlm_cap_run(const vlm_cap_backend *b, const char *const *inputs, int n_inputs, const vlm_caption_options *o,
                vlm_caption_stats *st);

/* The run files' names in a run folder: "captions" or "captions.shard-I-of-N", + ".jsonl" / ".journal". */
void vlm_cap_run_file(const vlm_caption_options *o, const char *ext, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
