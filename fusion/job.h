/* One request inside the engine (the public vlm_job): what it asks (prompt ids, preprocessed
 * images, generation settings), where it is (phase, KV cache, sampler), and what it has produced
 * (text through the detokenizer and the stop strings, ids, timings). The engine thread alone
 * touches a running job; the caller reads it once it is done. */
#ifndef VLM_FUSION_JOB_H
#define VLM_FUSION_JOB_H

#include "vlm.h"

#include "core/clock.h"
#include "fusion/image_cache.h"
#include "fusion/model.h"
#include "text/detok_stream.h"
#include "text/stop_text.h"

#include <pthread.h>
#include <stdatomic.h>

typedef enum { JOB_WAITING, JOB_VISION, JOB_PREFILL, JOB_DECODE, JOB_DONE } job_phase;

struct vlm_job {
    struct vlm_engine *engine;
    vlm_request_options opt; /* gen.stop points into stops below */
    char **stops;
    vlm_request req;          /* prompt ids and preprocessed images */
    vlm_image_key *img_keys;  /* [req.n_images] */
    int64_t *img_start;       /* [req.n_images]: the position of each image's first token */
    uint64_t *keys;           /* [req.n_ids]: prefix-cache keys */
    int64_t image_tokens;
    int64_t cap;              /* KV tokens reserved: prompt + max_new_tokens, within the context */
    int64_t kv_blocks;        /* of the engine's budget */

    /* engine state */
    job_phase phase;
    int next_image;           /* VISION: the next image to encode */
    float *embeds;            /* [n_ids, H] prompt embeddings (until the prompt is prefilled) */
    vlm_kv_cache *cache;
    int64_t n_cached;         /* prompt tokens that came from the prefix cache */
    vlm_sampler *sampler;
    int32_t *history;         /* prompt + generated ids */
    int64_t n_hist;
    int32_t *gen;             /* generated ids */
    int64_t n_gen;
    vlm_detok_stream *ds;     /* the visible text (special tokens left out, as the tokenizer's decode) */
    vlm_detok_stream *ds_sp;  /* special tokens' text (kept hidden: the full text, for the history) */
    vlm_stop_text *st;
    atomic_int cancel;
    struct vlm_job *next;     /* in the engine's waiting / running list */

    /* outcome */
    vlm_result result;
    char *text, *full_text;
    pthread_mutex_t mu;       /* guards done (the job's own lock: a finished job outlives its engine) */
    pthread_cond_t cv;
    int done;
    double t_submit, t_admit, t_first, t_last;
};

/* Builds a job from messages (or o->prompt_ids): copies settings, decodes and preprocesses the
 * images, applies the chat template, computes the prefix keys, checks the context. */
int vlm_job_build(const vlm_model *m, const vlm_engine_options *eo, const vlm_message *msgs, int n_msgs,
                  const vlm_request_options *o, struct vlm_job **out);
/* Frees what the job holds (also its KV cache, sampler, text state) and the job. */
void vlm_job_destroy(struct vlm_job *j);
/* Frees the running state (KV cache, embeddings, sampler), keeping the result. */
void vlm_job_release_state(struct vlm_job *j);
/* Prepares generation: sampler, history, detokenizer and stop strings. */
int vlm_job_start(struct vlm_job *j, const vlm_model *m);
/* One generated token: through eos, the detokenizer, the stop strings and the callbacks.
 * Returns 1 when the job is finished (j->result.finish set), 0 to go on, or a negative error. */
int vlm_job_accept(struct vlm_job *j, const vlm_model *m, int32_t id);
/* Ends the job with reason r (error: code and the current error message): flushes the text,
 * fills the result. */
void vlm_job_finish(struct vlm_job *j, vlm_finish_reason r, int error_code, const char *error);

/* The tokens a step takes of a prompt with `left` to go when steps carry at most `cap` prompt tokens
 * (beside decoding streams) and this one has `room` left: the fewest steps, in equal chunks (128 under a
 * cap of 42 as 4 x 32, not 3 x 42 + 2: as many steps, each one shorter). */
int64_t vlm_prompt_chunk(int64_t left, int64_t cap, int64_t room);

#endif
