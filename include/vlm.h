/* vlm: the public C API.
 *
 * Ask questions about images with a vision-language model (DeepSeek-VL2) loaded
 * from an official Hugging Face checkpoint folder:
 *
 *     vlm_engine *e;
 *     if (vlm_engine_open("deepseek-vl2-tiny", NULL, &e) != 0) { puts(vlm_last_error()); return 1; }
 *     vlm_ask_options o;
 *     vlm_ask_options_default(&o);
 *     const char *images[] = {"photo.jpg"};
 *     char *answer;
 *     if (vlm_engine_ask(e, "What is on the table?", images, 1, &o, &answer) == 0) { puts(answer); free(answer); }
 *     vlm_engine_close(e);
 *
 * Every function returns 0 on success or a negative error code; vlm_last_error()
 * then describes the problem (per thread). Link with `pkg-config --libs vlm`. */
#ifndef VLM_H
#define VLM_H

#include <stddef.h>
#include <stdint.h>

#include "vlm_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_engine vlm_engine;

typedef struct {
    int n_threads;       /* CPU threads; 0 = one per core */
    int64_t max_context; /* 0 = the model's max_position_embeddings */
    const char *quant;   /* weight formats as `vlm ask --quant`: NULL = bf16, the fast kernels (a `vlm quantize`
                            folder: as written); "ref" = the exact fp32 reference; "q8", "q4,vision=bf16", ... */
    const char *device;  /* where the text decoder runs: NULL/"cpu", "cuda" or "cuda:N" (CUDA builds; without a
                            usable GPU the engine runs on the CPU and vlm_engine_device_note says so) */
    const char *kv_cache; /* KV cache values as `vlm ask --kv-cache`: NULL/"auto" (16-bit with converted
                             weights on the CPU, else fp32), "f16" or "f32" */
    /* request engine limits (0 = the default in brackets) */
    int max_running;          /* sequences decoded together [16] */
    int max_waiting;          /* requests queued beyond them; more are refused with VLM_ERR_BUSY [64] */
    int64_t kv_budget_mib;    /* KV cache memory of the running sequences [enough for max_running full contexts,
                                 at most 4096] */
    int64_t prefix_cache_mib; /* KV blocks kept for prefix reuse [512; -1 = off] */
    int64_t image_cache_mib;  /* image embeddings kept for reuse [256; -1 = off] */
    int prefill_chunk;        /* prompt tokens per step, shared by the prefilling requests [256; 1024 with
                                 throughput, where larger products run faster and no stream waits on them] */
    int throughput;           /* 1: every step takes up to prefill_chunk prompt tokens even while other requests
                                 decode (batch jobs: more requests per second, longer gaps between a stream's
                                 tokens); 0 (default): while streams decode, a step's prompt work is held to about
                                 1.8x a decode step so that they keep flowing */
    /* URL policy for image paths given as URLs */
    int allow_private;        /* allow private / loopback / link-local addresses */
    const char *const *allow_addrs; /* addresses or CIDR ranges allowed although private ("127.0.0.1") */
    int n_allow_addrs;
    const char *media_dir;    /* file:// URLs only below this folder (NULL: refused) */
    int no_local_paths;       /* 1: plain file paths in vlm_image_input.path are refused (a server) */
    const char *video_frames; /* frames taken from a video input: "n=8" (default), "fps=1", "every=2", "scene" */
    int max_video_frames;     /* at most this many per video [64]; a cut plan is an error naming both counts */
} vlm_engine_options;

/* Generation settings of one request (vlm_engine_ask and vlm_engine_submit). */
typedef struct {
    int max_new_tokens;       /* default 512 */
    float temperature;        /* 0 = greedy (default) */
    float top_p;              /* 1 = off */
    int top_k;                /* 0 = off */
    float repetition_penalty; /* 1 = off */
    uint64_t seed;
    int ignore_eos;
    int64_t max_pixels;       /* images above this are refused before decoding; default 50 megapixels */
    /* Stop strings: generation ends when the visible answer contains one (it is not part of the answer). */
    const char *const *stop;
    int n_stop;
    /* Called with each new piece of visible answer text (complete UTF-8), on the engine's thread: copy
     * and return quickly (every running request waits for it); return non-zero to stop (finish
     * reason "cancelled"). */
    int (*on_text)(void *user, const char *text, size_t len);
    void *user;
} vlm_ask_options;

void vlm_ask_options_default(vlm_ask_options *o);
int vlm_engine_open(const char *model_dir, const vlm_engine_options *opt, vlm_engine **out);
/* Cancels what is still queued or running (their finish reason "cancelled"), stops the engine thread and
 * frees the model. Jobs not yet freed stay readable (vlm_job_result) until vlm_job_free. */
void vlm_engine_close(vlm_engine *e);
/* NULL, or one line saying the device asked for was not available and the CPU is used instead. */
const char *vlm_engine_device_note(const vlm_engine *e);
/* 1 when the model folder has a tokenizer (text prompts work), 0 when only prompt_ids requests do. */
int vlm_engine_has_tokenizer(const vlm_engine *e);
/* One question about n_images image files. The images go where the question says
 * <image>, or before the question when it has no markers. *answer is malloc'd.
 * A thin synchronous wrapper over vlm_engine_submit + vlm_job_wait. */
int vlm_engine_ask(vlm_engine *e, const char *question, const char *const *image_paths, int n_images,
                   const vlm_ask_options *opt, char **answer);

/* ---- the request engine: many requests in flight, one loaded model -------------------------------
 *
 * vlm_engine_submit queues a request and returns at once; one engine thread owns the model and runs
 * every admitted request together (continuous batching: all running sequences decode in one step,
 * long prompts are prefilled in chunks between decode steps). Functions here may be called from any
 * thread. Streamed text reaches o->on_text, the end of a job its on_done, both on the engine thread. */

/* An image or a video: exactly one of path, bytes or rgb is set. What a path or bytes hold is told by
 * their content: a video gives its frames (vlm_engine_options.video_frames), each placed in the prompt
 * with its time ("Frame 1 at 0.0 s: <image>"). */
typedef struct {
    const char *path;   /* file path (unless vlm_engine_options.no_local_paths), or URL: data:...;base64,...,
                           http(s):// (the engine's URL policy), file:// (only below its media_dir) */
    const void *bytes;  /* an encoded image (JPEG, PNG, WebP, ...) or video in memory, n_bytes long */
    size_t n_bytes;
    const uint8_t *rgb; /* decoded 8-bit RGB, rows packed, width * height * 3 bytes */
    int width, height;
    int video_frame;    /* rgb is a video frame: placed as "Frame N at <time_s> s: <image>" */
    double time_s;
} vlm_image_input;

/* One message of a conversation. The text may hold <image> markers, which take the message's images in
 * order; a message with images and no markers gets them in front ("<image>\n" each), as vlm ask does.
 * Earlier assistant turns are given as their full text (special tokens included, as vlm_result.full_text). */
typedef struct {
    const char *role; /* "system" (first message only), "user" or "assistant" */
    const char *content;
    const vlm_image_input *images;
    int n_images;
} vlm_message;

typedef enum {
    VLM_FINISH_NONE = 0,  /* still running */
    VLM_FINISH_STOP,      /* end of sentence or a stop string */
    VLM_FINISH_LENGTH,    /* max_new_tokens or the context */
    VLM_FINISH_CANCELLED, /* vlm_job_cancel, on_text asked to stop, or the engine closed */
    VLM_FINISH_ERROR,     /* see error_code / error */
} vlm_finish_reason;

typedef struct {
    vlm_finish_reason finish;
    const char *stop_detail;  /* what ended it: "eos", "stop_string", "length" (max_new_tokens), "context",
                                 "cancelled" or "error" */
    int error_code;           /* VLM_ERR_* when finish is VLM_FINISH_ERROR */
    char error[512];          /* its message */
    const char *text;         /* the visible answer (stop string cut off) */
    const char *full_text;    /* the same with special tokens' text, for the conversation history */
    const int32_t *token_ids; /* generated ids (eos included when it stopped there) */
    int64_t n_token_ids;
    int64_t prompt_tokens;    /* text and image tokens */
    int64_t image_tokens;
    int64_t cached_tokens;    /* prompt tokens whose KV came from the prefix cache */
    int64_t completion_tokens;
    /* milliseconds: waiting for admission, image encoding (0 on an image-cache hit), prompt prefill,
     * submit to first token, first to last token, submit to end */
    double queue_ms, vision_ms, prefill_ms, ttft_ms, decode_ms, total_ms;
} vlm_result;

typedef struct vlm_job vlm_job;

typedef struct {
    vlm_ask_options gen;      /* sampling, stop strings, streaming (gen.on_text) */
    /* Called once when the job has finished (any reason), on the engine thread, after the last on_text.
     * The result stays valid until vlm_job_free. */
    void (*on_done)(void *user, vlm_job *job, const vlm_result *r);
    void *done_user;
    const int32_t *prompt_ids; /* instead of messages: raw prompt ids (images then go to the image-token runs) */
    int64_t n_prompt_ids;
    const vlm_image_input *prompt_images; /* the images of a prompt_ids request */
    int n_prompt_images;
    /* Called with each generated token id on the engine thread (timing, token-level clients); non-zero stops. */
    int (*on_token)(void *user, int32_t id);
    /* Called with the logits [vocab] each token is chosen from, before sampling (verification, log
     * probabilities); on the engine thread; non-zero stops. Both take gen.user. */
    int (*on_logits)(void *user, const float *logits, int64_t vocab);
} vlm_request_options;

void vlm_request_options_default(vlm_request_options *o);

/* Queues a request. Checks made here (each a return code, nothing queued): arguments, the template, every
 * image decoded and preprocessed, prompt + images against the context (VLM_ERR_LIMIT), and the queue
 * (VLM_ERR_BUSY when max_waiting requests already wait: retry later). *out is owned by the caller
 * (vlm_job_free) whatever happens after. */
int vlm_engine_submit(vlm_engine *e, const vlm_message *msgs, int n_msgs, const vlm_request_options *o,
                      vlm_job **out);
/* Asks the job to stop (before admission, during image encoding, prefill or decode); it then finishes
 * with VLM_FINISH_CANCELLED (or its earlier reason) and frees its KV memory. */
void vlm_job_cancel(vlm_job *j);
/* Waits until the job has finished; *out (optional) = its result. */
int vlm_job_wait(vlm_job *j, const vlm_result **out);
/* Non-blocking: 1 and *out when finished, else 0 (a negative error for a NULL job). */
int vlm_job_poll(vlm_job *j, const vlm_result **out);
/* Cancels the job if it is still running, waits until the engine lets go of it, frees it. */
void vlm_job_free(vlm_job *j);
const char *vlm_finish_reason_name(vlm_finish_reason r); /* "stop", "length", "cancelled", "error", "" */

/* Counters for monitoring (what vlm serve exports). Totals count since vlm_engine_open. */
typedef struct {
    int64_t requests_waiting, requests_running;
    int64_t requests_submitted, requests_refused;                 /* refused: queue full */
    int64_t requests_finished[5];                                 /* by vlm_finish_reason */
    int64_t prompt_tokens, cached_prompt_tokens, generated_tokens;
    int64_t kv_block_tokens;                                      /* tokens per KV block */
    int64_t kv_blocks_total, kv_blocks_used;                      /* the running sequences' KV budget */
    int64_t prefix_blocks_total, prefix_blocks_used;              /* the prefix cache */
    int64_t prefix_hits, prefix_misses;                           /* per admitted request */
    int64_t image_cache_bytes, image_cache_capacity, image_hits, image_misses; /* per image */
    int64_t steps, step_rows;                                     /* batched forward steps and their rows */
    double step_ms_total, step_ms_last, vision_ms_total;
    int n_moe_layers, n_experts;                                  /* shape of vlm_engine_expert_counts */
} vlm_engine_stats;
int vlm_engine_stats_get(vlm_engine *e, vlm_engine_stats *out);
/* Tokens routed to each expert of each MoE layer since open: counts[layer * n_experts + expert], for
 * up to cap entries; returns the number of entries (n_moe_layers * n_experts) or a negative error. */
int64_t vlm_engine_expert_counts(vlm_engine *e, int64_t *counts, int64_t cap);

const char *vlm_last_error(void);
/* The library's version ("0.1.0"), the git commit it was built from, and its build options ("CUDA" or
 * "no CUDA"). */
const char *vlm_version(void);
const char *vlm_build_commit(void);
const char *vlm_build_options(void);

#ifdef __cplusplus
}
#endif
#endif
