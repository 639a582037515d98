/* The request engine behind include/vlm.h: callers submit requests from any thread; one engine
 * thread owns the model and runs every admitted request in batched forward steps.
 *
 * A step (engine_step):
 *   1. admission: waiting requests move to running while max_running and the KV budget allow
 *      (a new request's prompt is looked up in the prefix cache; its KV cache is made);
 *   2. vision: at most one image of one request is encoded (or found in the image cache);
 *   3. one batched forward: one row per decoding request, plus chunks of the prompts being
 *      prefilled (prefill_chunk tokens in all), so running streams keep flowing while a long
 *      prompt goes in;
 *   4. sampling and text for every request whose last row was run; finished requests retire:
 *      their KV blocks go to the prefix cache, their callers are told.
 * Requests wait in a bounded FIFO queue; beyond max_waiting, submit says VLM_ERR_BUSY. */
#include "vlm.h"

#include "core/error.h"
#include "fusion/image_cache.h"
#include "fusion/job.h"
#include "fusion/model.h"
#include "fusion/prefix_cache.h"
#include "media/video.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_BLOCK_TOKENS 16      /* budget accounting unit */
/* The prompt work a step may carry while streams decode, as a multiple of a decode step's time:
 * 1.8 keeps the running streams' gaps within about 2.8x their usual one (the issue allows 3x) and lets
 * a 128-token prompt arriving beside 7 decoding streams in within 4 steps, so its first token comes
 * about 1.6x as late as alone, the time its prompt takes plus the 4 decode steps beside it. */
#define PREFILL_SHARE 1.8
#define PREFIX_BLOCK_TOKENS 32  /* prefix-cache block */

struct vlm_engine {
    vlm_model *model;
    vlm_engine_options opt; /* limits resolved; strings owned below */
    char *media_dir, *video_frames, **allow_addrs;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int closing;
    vlm_job *wait_head, *wait_tail; /* under mu */
    int64_t n_waiting;
    vlm_job *running;                /* engine thread only (n_running under mu for the stats) */
    int64_t n_running;
    int64_t kv_blocks_total, kv_blocks_used;
    vlm_prefix_cache *prefix;
    vlm_image_cache *images;
    vlm_engine_stats st;             /* under mu */
    int64_t *expert_counts, *step_counts, n_counts;
    float *logits;                   /* [max_running, vocab] */
    /* measured costs for the prefill budget of a step (moving averages; 0 = not yet measured): a step
     * of r decode rows only, per r (a batch of 8 costs several times a batch of 1, so one average over
     * all sizes would plan with a stale figure as the batch grows), and a prompt token in a step */
    double *decode_ms, last_decode_ms; /* decode_ms[max_running + 1]; the latest of any size, of */
    int64_t last_decode_rows;          /* this many rows */
    double ms_per_prefill_token;
};

/* The planned time of a step of r decode rows: its moving average once measured, else the latest decode
 * step of any size scaled by rows (a step costs less than proportionally more rows, so this overestimates
 * a larger batch and underestimates a smaller one, until a decode-only step of r rows has run). */
static double decode_step_ms(const vlm_engine *e, int64_t r)
{
    if (e->decode_ms[r] > 0) return e->decode_ms[r];
    return e->last_decode_rows > 0 ? e->last_decode_ms * (double)r / (double)e->last_decode_rows : 0;
}

/* ------------------------------------------------------------------ options */

void vlm_ask_options_default(vlm_ask_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->max_new_tokens = 512;
    o->top_p = 1.0f;
    o->repetition_penalty = 1.0f;
    o->max_pixels = VLM_IMAGE_DEFAULT_MAX_PIXELS;
}

void vlm_request_options_default(vlm_request_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    vlm_ask_options_default(&o->gen);
}

const char *vlm_finish_reason_name(vlm_finish_reason r)
{
    static const char *names[] = {"", "stop", "length", "cancelled", "error"};
    return (unsigned)r < 5 ? names[r] : "";
}

/* ------------------------------------------------------------------ jobs done */

/* The job is finished: counted, its caller told. After this the engine never touches it again.
 * (Lock order: a job's lock, then the engine's - as vlm_job_cancel takes them; never the reverse.) */
static void mark_done(vlm_engine *e, vlm_job *j)
{
    if (j->opt.on_done) j->opt.on_done(j->opt.done_user, j, &j->result);
    pthread_mutex_lock(&e->mu);
    e->st.requests_finished[j->result.finish]++;
    e->st.generated_tokens += j->n_gen;
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* A running job leaves: its KV (prompt and answer) goes to the prefix cache, its memory is freed. */
static void retire(vlm_engine *e, vlm_job *j)
{
    if (j->cache && vlm_kv_cache_len(j->cache) > 0 && j->result.finish != VLM_FINISH_ERROR) {
        const int64_t n = vlm_kv_cache_len(j->cache);
        uint64_t *k = realloc(j->keys, (size_t)(n > j->req.n_ids ? n : j->req.n_ids) * sizeof *k);
        if (k) {
            j->keys = k;
            for (int64_t t = j->req.n_ids; t < n; t++) k[t] = (uint64_t)(uint32_t)j->history[t];
            vlm_prefix_cache_insert(e->prefix, k, n, j->cache);
        }
    }
    vlm_job_release_state(j);
    e->kv_blocks_used -= j->kv_blocks;
    mark_done(e, j);
}

static void fail(vlm_job *j, int rc)
{
    vlm_job_finish(j, VLM_FINISH_ERROR, rc, vlm_last_error());
    vlm_clear_error();
}

/* ------------------------------------------------------------------ admission */

static int64_t blocks_for(int64_t tokens) { return (tokens + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS; }

/* Makes an admitted job ready to run: KV cache (with what the prefix cache holds), embeddings. */
static int start_job(vlm_engine *e, vlm_job *j)
{
    const vlm_model *m = e->model;
    const vlm_lm *lm = vlm_model_lm(m);
    const int64_t T = j->req.n_ids, H = vlm_model_config(m)->lm.hidden_size;
    j->t_admit = vlm_now_ms();
    int rc = vlm_job_start(j, m);
    if (rc == VLM_OK) rc = vlm_kv_cache_create(lm, j->cap, &j->cache);
    if (rc == VLM_OK && !(j->embeds = malloc((size_t)(T * H) * sizeof(float))))
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory for %lld prompt embeddings", (long long)T);
    if (rc == VLM_OK) rc = vlm_lm_embed(lm, j->req.ids, T, j->embeds);
    if (rc) return rc;
    /* at least the last prompt token is computed: its logits choose the first answer token */
    j->n_cached = vlm_prefix_cache_lookup(e->prefix, j->keys, T, T - 1, j->cache);
    /* images whose tokens all come from the prefix cache need no encoding */
    while (j->next_image < j->req.n_images &&
           j->img_start[j->next_image] + vlm_model_image_tokens(m, &j->req.images[j->next_image]) <= j->n_cached)
        j->next_image++;
    j->phase = j->next_image < j->req.n_images ? JOB_VISION : JOB_PREFILL;
    pthread_mutex_lock(&e->mu);
    if (j->n_cached) e->st.prefix_hits++;
    else e->st.prefix_misses++;
    e->st.cached_prompt_tokens += j->n_cached;
    e->st.prompt_tokens += T;
    pthread_mutex_unlock(&e->mu);
    return VLM_OK;
}

/* Moves waiting jobs to running while the limits allow; drops cancelled waiting jobs. Called
 * with mu held; returns the admitted and the dropped jobs (to be started / told outside the lock). */
static void admit(vlm_engine *e, vlm_job **admitted, vlm_job **dropped)
{
    vlm_job **pp = &e->wait_head;
    int64_t n_run = e->n_running;
    while (*pp) {
        vlm_job *j = *pp;
        int take = 0, drop = atomic_load(&j->cancel) || e->closing;
        if (!drop) {
            if (n_run >= e->opt.max_running) break;
            if (e->kv_blocks_used + j->kv_blocks > e->kv_blocks_total) break; /* FIFO: wait for memory */
            take = 1;
        }
        /* only the head is ever taken (FIFO), so the queue stays a plain list */
        *pp = j->next;
        if (!e->wait_head) e->wait_tail = NULL;
        e->n_waiting--;
        j->next = NULL;
        if (take) {
            e->kv_blocks_used += j->kv_blocks;
            n_run++;
            j->next = *admitted;
            *admitted = j;
        } else {
            j->next = *dropped;
            *dropped = j;
        }
    }
}

/* ------------------------------------------------------------------ one step */

/* Encodes the next image of the first job that needs one (or takes it from the image cache). */
static void vision_step(vlm_engine *e)
{
    vlm_job *j = e->running;
    while (j && j->phase != JOB_VISION) j = j->next;
    if (!j) return;
    const vlm_model *m = e->model;
    const int i = j->next_image;
    const vlm_image_tiles *it = &j->req.images[i];
    const int64_t rows = vlm_model_image_tokens(m, it), H = vlm_model_config(m)->lm.hidden_size;
    const double t0 = vlm_now_ms();
    const float *block = vlm_image_cache_get(e->images, j->img_keys[i], rows, H);
    float *fresh = NULL;
    int rc = VLM_OK, hit = block != NULL;
    if (!block) {
        if (!(fresh = malloc((size_t)(rows * H) * sizeof(float)))) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory for an image");
        if (rc == VLM_OK) rc = vlm_model_image_embeds(m, it, fresh, NULL, NULL);
        if (rc == VLM_OK) vlm_image_cache_put(e->images, j->img_keys[i], fresh, rows, H);
        block = fresh;
    }
    if (rc == VLM_OK && vlm_model_place_image(m, j->req.ids, j->req.n_ids, j->img_start[i], block, rows, j->embeds) < 0)
        rc = vlm_errorf(VLM_ERR_INVALID, "image %d does not fit the prompt's image tokens", i + 1);
    free(fresh);
    const double ms = vlm_now_ms() - t0;
    j->result.vision_ms += ms;
    pthread_mutex_lock(&e->mu);
    if (hit) e->st.image_hits++;
    else e->st.image_misses++;
    e->st.vision_ms_total += ms;
    pthread_mutex_unlock(&e->mu);
    if (rc) {
        fail(j, rc);
        return;
    }
    if (++j->next_image == j->req.n_images) j->phase = JOB_PREFILL;
}

typedef struct {
    vlm_job *job;
    int64_t rows;   /* its rows in this step */
    int logits;     /* its last row's logits are sampled */
} planned;

/* Runs the planned rows: one batched forward, or, if that fails, each sequence alone (so that one
 * request's failure is its own). */
static int run_forward(vlm_engine *e, const planned *p, int n, const float *x, int64_t H, int64_t V, float *logits)
{
    vlm_lm_seq seqs[n];
    for (int i = 0; i < n; i++) seqs[i] = (vlm_lm_seq){p[i].job->cache, p[i].rows, p[i].logits};
    int rc = vlm_lm_forward_batch(vlm_model_lm(e->model), seqs, n, x, logits, e->step_counts);
    if (rc == VLM_OK || n == 1) {
        if (rc) fail(p[0].job, rc);
        return rc;
    }
    vlm_clear_error();
    int64_t off = 0, lrow = 0;
    for (int i = 0; i < n; i++) {
        int r = vlm_lm_forward_batch(vlm_model_lm(e->model), &seqs[i], 1, x + off * H, logits + lrow * V, e->step_counts);
        if (r) fail(p[i].job, r);
        off += p[i].rows;
        lrow += p[i].logits;
    }
    return VLM_OK;
}

static void forward_step(vlm_engine *e)
{
    const vlm_model *m = e->model;
    const int64_t H = vlm_model_config(m)->lm.hidden_size, V = vlm_model_config(m)->lm.vocab_size;
    planned p[e->opt.max_running];
    int n = 0;
    int64_t rows = 0, budget = e->opt.prefill_chunk;
    /* decode rows first (one each), then prompt chunks in admission order */
    for (vlm_job *j = e->running; j; j = j->next)
        if (j->phase == JOB_DECODE) p[n++] = (planned){j, 1, 1}, rows++;
    /* while streams decode, a step's prompt tokens are held to about PREFILL_SHARE times the time of
     * a decode step, so that their next tokens come at most about 1 + PREFILL_SHARE times as late
     * (at least 16 tokens a step, so a prompt still goes in; alone, or with opt.throughput, prefill_chunk),
     * each prompt in equal chunks (vlm_prompt_chunk) */
    const double dms = rows ? decode_step_ms(e, rows) : 0;
    int capped = 0;
    if (!e->opt.throughput && dms > 0 && e->ms_per_prefill_token > 0) {
        const int64_t fit = (int64_t)(PREFILL_SHARE * dms / e->ms_per_prefill_token);
        if (fit < budget) budget = fit > 16 ? fit : 16, capped = 1;
    }
    const int64_t decode_rows = rows, cap = budget;
    for (vlm_job *j = e->running; j && budget > 0; j = j->next) {
        if (j->phase != JOB_PREFILL) continue;
        const int64_t left = j->req.n_ids - vlm_kv_cache_len(j->cache);
        const int64_t take = capped ? vlm_prompt_chunk(left, cap, budget) : left < budget ? left : budget;
        p[n++] = (planned){j, take, take == left};
        rows += take;
        budget -= take;
    }
    if (!n) return;
    float *x = malloc((size_t)(rows * H) * sizeof(float));
    if (!x) {
        for (int i = 0; i < n; i++) fail(p[i].job, vlm_errorf(VLM_ERR_NOMEM, "out of memory for a step of %lld rows", (long long)rows));
        return;
    }
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        vlm_job *j = p[i].job;
        int rc = VLM_OK;
        if (j->phase == JOB_DECODE)
            rc = vlm_lm_embed(vlm_model_lm(m), &j->history[j->n_hist - 1], 1, x + off * H);
        else
            memcpy(x + off * H, j->embeds + vlm_kv_cache_len(j->cache) * H, (size_t)(p[i].rows * H) * sizeof(float));
        if (rc) fail(j, rc);
        off += p[i].rows;
    }
    const double t0 = vlm_now_ms();
    memset(e->step_counts, 0, (size_t)e->n_counts * sizeof *e->step_counts);
    run_forward(e, p, n, x, H, V, e->logits);
    const double ms = vlm_now_ms() - t0;
    free(x);
    /* the costs the next steps plan with: a step of decode rows only, and the time per prompt token
     * of a step that had some (less the decode rows' share) */
    if (rows == decode_rows) {
        e->decode_ms[rows] = e->decode_ms[rows] > 0 ? 0.8 * e->decode_ms[rows] + 0.2 * ms : ms;
        e->last_decode_ms = ms, e->last_decode_rows = rows;
    } else if (rows - decode_rows >= 16) {
        const double per = (ms - dms) / (double)(rows - decode_rows);
        if (per > 0) e->ms_per_prefill_token = e->ms_per_prefill_token > 0 ? 0.7 * e->ms_per_prefill_token + 0.3 * per : per;
    }
    /* sample where a last row ran */
    int64_t lrow = 0;
    for (int i = 0; i < n; i++) {
        vlm_job *j = p[i].job;
        if (!p[i].logits) continue;
        float *lg = e->logits + lrow++ * V;
        if (j->phase == JOB_DONE) continue;
        if (j->phase == JOB_PREFILL) { /* the prompt is in: it can be shared from now on */
            j->phase = JOB_DECODE;
            j->result.prefill_ms = vlm_now_ms() - j->t_admit - j->result.vision_ms;
            vlm_prefix_cache_insert(e->prefix, j->keys, j->req.n_ids, j->cache);
            free(j->embeds);
            j->embeds = NULL;
        }
        if (j->opt.gen.max_new_tokens == 0) {
            j->result.stop_detail = "length";
            vlm_job_finish(j, VLM_FINISH_LENGTH, 0, NULL);
            continue;
        }
        if (j->opt.on_logits && j->opt.on_logits(j->opt.gen.user, lg, V)) {
            vlm_job_finish(j, VLM_FINISH_CANCELLED, 0, NULL);
            continue;
        }
        const int32_t id = vlm_sampler_sample(j->sampler, lg, j->history, j->n_hist);
        if (id < 0) {
            fail(j, id); /* the sampler's message names the step */
            continue;
        }
        if (atomic_load(&j->cancel)) {
            vlm_job_finish(j, VLM_FINISH_CANCELLED, 0, NULL);
            continue;
        }
        vlm_job_accept(j, m, id);
    }
    pthread_mutex_lock(&e->mu);
    e->st.steps++;
    e->st.step_rows += rows;
    e->st.step_ms_total += ms;
    e->st.step_ms_last = ms;
    for (int64_t i = 0; i < e->n_counts; i++) e->expert_counts[i] += e->step_counts[i];
    pthread_mutex_unlock(&e->mu);
}

/* Removes finished jobs from the running list and tells their callers. */
static void reap(vlm_engine *e)
{
    vlm_job **pp = &e->running;
    while (*pp) {
        vlm_job *j = *pp;
        if (j->phase != JOB_DONE && atomic_load(&j->cancel)) vlm_job_finish(j, VLM_FINISH_CANCELLED, 0, NULL);
        if (j->phase != JOB_DONE) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        j->next = NULL;
        pthread_mutex_lock(&e->mu);
        e->n_running--;
        pthread_mutex_unlock(&e->mu);
        retire(e, j);
    }
}

static void *engine_main(void *arg)
{
    vlm_engine *e = arg;
    for (;;) {
        vlm_job *admitted = NULL, *dropped = NULL;
        pthread_mutex_lock(&e->mu);
        while (!e->closing && !e->wait_head && !e->running) pthread_cond_wait(&e->wake, &e->mu);
        const int closing = e->closing;
        admit(e, &admitted, &dropped);
        pthread_mutex_unlock(&e->mu);
        for (vlm_job *j = dropped, *next; j; j = next) {
            next = j->next;
            j->next = NULL;
            vlm_job_finish(j, VLM_FINISH_CANCELLED, 0, NULL);
            mark_done(e, j);
        }
        for (vlm_job *j = admitted, *next; j; j = next) {
            next = j->next;
            int rc = start_job(e, j);
            if (rc) fail(j, rc);
            /* append: the running list keeps admission order (prefill is FIFO) */
            vlm_job **pp = &e->running;
            while (*pp) pp = &(*pp)->next;
            j->next = NULL;
            *pp = j;
            pthread_mutex_lock(&e->mu);
            e->n_running++;
            pthread_mutex_unlock(&e->mu);
        }
        if (closing)
            for (vlm_job *j = e->running; j; j = j->next) atomic_store(&j->cancel, 1);
        reap(e);
        if (closing && !e->running) {
            pthread_mutex_lock(&e->mu);
            const int empty = !e->wait_head;
            pthread_mutex_unlock(&e->mu);
            if (empty) break;
            continue;
        }
        vision_step(e);
        forward_step(e);
        reap(e);
    }
    return NULL;
}

/* ------------------------------------------------------------------ the public API */

static int resolve_options(vlm_engine *e, const vlm_engine_options *o)
{
    if (o) e->opt = *o;
    vlm_engine_options *r = &e->opt;
    if (r->max_running < 0 || r->max_waiting < 0 || r->prefill_chunk < 0 || r->kv_budget_mib < 0 || r->n_allow_addrs < 0)
        return vlm_errorf(VLM_ERR_INVALID, "engine options: negative limits");
    if (!r->max_running) r->max_running = 16;
    if (r->max_running > 256) return vlm_errorf(VLM_ERR_INVALID, "max_running %d: at most 256", r->max_running);
    if (!r->max_waiting) r->max_waiting = 64;
    if (!r->prefill_chunk) r->prefill_chunk = r->throughput ? 1024 : 256;
    if (!r->prefix_cache_mib) r->prefix_cache_mib = 512;
    if (!r->image_cache_mib) r->image_cache_mib = 256;
    e->media_dir = o && o->media_dir ? strdup(o->media_dir) : NULL;
    r->media_dir = e->media_dir;
    if (o && o->video_frames) {
        vlm_video_sampling vs;
        int rc = vlm_video_sampling_parse(o->video_frames, &vs);
        if (rc) return vlm_error_prefix(rc, "video_frames");
        e->video_frames = strdup(o->video_frames);
    }
    r->video_frames = e->video_frames;
    if (r->max_video_frames < 0 || r->max_video_frames > 256)
        return vlm_errorf(VLM_ERR_INVALID, "max_video_frames %d: 1 to 256 (0 = 64)", r->max_video_frames);
    if (r->n_allow_addrs) {
        if (!o->allow_addrs) return vlm_errorf(VLM_ERR_INVALID, "engine options: allow_addrs is NULL");
        e->allow_addrs = calloc((size_t)r->n_allow_addrs, sizeof *e->allow_addrs);
        for (int i = 0; e->allow_addrs && i < r->n_allow_addrs; i++) e->allow_addrs[i] = strdup(o->allow_addrs[i] ? o->allow_addrs[i] : "");
        r->allow_addrs = (const char *const *)e->allow_addrs;
    }
    r->quant = r->device = r->kv_cache = NULL; /* used at load only */
    return VLM_OK;
}

int vlm_engine_open(const char *model_dir, const vlm_engine_options *opt, vlm_engine **out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "vlm_engine_open: out is NULL");
    *out = NULL;
    if (!model_dir) return vlm_errorf(VLM_ERR_INVALID, "vlm_engine_open: no model folder given");
    vlm_engine *e = calloc(1, sizeof *e);
    if (!e) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    vlm_model_options mo = {0};
    if (opt) {
        mo.n_threads = opt->n_threads;
        mo.max_context = opt->max_context;
        mo.device = opt->device;
    }
    int rc = opt && opt->quant ? vlm_quant_options_parse(opt->quant, &mo.quant)
                               : vlm_quant_options_default(model_dir, &mo.quant);
    if (rc == VLM_OK && opt && opt->kv_cache) rc = vlm_kv_type_parse(opt->kv_cache, &mo.kv_cache);
    if (rc == VLM_OK) rc = resolve_options(e, opt);
    if (rc == VLM_OK) rc = vlm_model_load(model_dir, &mo, &e->model);
    if (rc) goto fail;
    const vlm_vl2_config *cfg = vlm_model_config(e->model);
    const vlm_lm *lm = vlm_model_lm(e->model);
    const int64_t tok_bytes = vlm_lm_kv_bytes_per_token(lm), ctx = vlm_model_context(e->model);
    /* the KV budget in blocks: as asked, or room for max_running full contexts (at most 4 GiB) */
    if (e->opt.kv_budget_mib) {
        e->kv_blocks_total = e->opt.kv_budget_mib * 1048576 / (KV_BLOCK_TOKENS * tok_bytes);
    } else {
        e->kv_blocks_total = (int64_t)e->opt.max_running * blocks_for(ctx);
        const int64_t cap = (int64_t)4096 * 1048576 / (KV_BLOCK_TOKENS * tok_bytes);
        if (e->kv_blocks_total > cap) e->kv_blocks_total = cap > blocks_for(ctx) ? cap : blocks_for(ctx);
    }
    e->n_counts = (int64_t)vlm_lm_n_moe_layers(lm) * cfg->lm.n_routed_experts;
    e->expert_counts = calloc((size_t)e->n_counts + 1, sizeof *e->expert_counts);
    e->step_counts = calloc((size_t)e->n_counts + 1, sizeof *e->step_counts);
    e->logits = malloc((size_t)e->opt.max_running * cfg->lm.vocab_size * sizeof(float));
    e->decode_ms = calloc((size_t)e->opt.max_running + 1, sizeof *e->decode_ms);
    if (!e->expert_counts || !e->step_counts || !e->logits || !e->decode_ms) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const int64_t pc_bytes = e->opt.prefix_cache_mib > 0 ? e->opt.prefix_cache_mib * 1048576 : 0;
    const int64_t ic_bytes = e->opt.image_cache_mib > 0 ? e->opt.image_cache_mib * 1048576 : 0;
    if ((rc = vlm_prefix_cache_new(PREFIX_BLOCK_TOKENS, tok_bytes, pc_bytes, &e->prefix)) ||
        (rc = vlm_image_cache_new(ic_bytes, &e->images)))
        goto fail;
    e->st.kv_block_tokens = KV_BLOCK_TOKENS;
    e->st.kv_blocks_total = e->kv_blocks_total;
    e->st.n_moe_layers = vlm_lm_n_moe_layers(lm);
    e->st.n_experts = cfg->lm.n_routed_experts;
    e->st.image_cache_capacity = ic_bytes;
    if (pthread_create(&e->thread, NULL, engine_main, e)) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "cannot start the engine thread");
        goto fail;
    }
    e->thread_started = 1;
    *out = e;
    return VLM_OK;
fail:
    vlm_engine_close(e);
    return rc;
}

int vlm_engine_has_tokenizer(const vlm_engine *e) { return e && e->model && vlm_model_tokenizer(e->model) != NULL; }

const char *vlm_engine_device_note(const vlm_engine *e) { return e && e->model ? vlm_model_device_note(e->model) : NULL; }

void vlm_engine_close(vlm_engine *e)
{
    if (!e) return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->closing = 1;
        pthread_cond_signal(&e->wake);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    vlm_prefix_cache_free(e->prefix);
    vlm_image_cache_free(e->images);
    vlm_model_free(e->model);
    free(e->expert_counts);
    free(e->step_counts);
    free(e->logits);
    free(e->decode_ms);
    free(e->media_dir);
    free(e->video_frames);
    for (int i = 0; e->allow_addrs && i < e->opt.n_allow_addrs; i++) free(e->allow_addrs[i]);
    free(e->allow_addrs);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    free(e);
}

int vlm_engine_submit(vlm_engine *e, const vlm_message *msgs, int n_msgs, const vlm_request_options *o, vlm_job **out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "vlm_engine_submit: out is NULL");
    *out = NULL;
    if (!e) return vlm_errorf(VLM_ERR_INVALID, "vlm_engine_submit: no engine");
    if (n_msgs < 0) return vlm_errorf(VLM_ERR_INVALID, "vlm_engine_submit: %d messages", n_msgs);
    vlm_request_options defaults;
    if (!o) {
        vlm_request_options_default(&defaults);
        o = &defaults;
    }
    vlm_job *j;
    int rc = vlm_job_build(e->model, &e->opt, msgs, n_msgs, o, &j);
    if (rc) return rc;
    j->engine = e;
    j->kv_blocks = blocks_for(j->cap);
    pthread_mutex_lock(&e->mu);
    if (e->closing) rc = vlm_errorf(VLM_ERR_INVALID, "the engine is closing");
    else if (j->kv_blocks > e->kv_blocks_total)
        rc = vlm_errorf(VLM_ERR_LIMIT, "the request needs %lld KV tokens (prompt %lld + %d new), over the engine's KV budget of %lld",
                        (long long)j->cap, (long long)j->req.n_ids, j->opt.gen.max_new_tokens,
                        (long long)(e->kv_blocks_total * KV_BLOCK_TOKENS));
    else if (e->n_waiting >= e->opt.max_waiting) {
        e->st.requests_refused++;
        rc = vlm_errorf(VLM_ERR_BUSY, "the engine is busy: %lld requests already wait (max_waiting); retry later",
                        (long long)e->n_waiting);
    }
    if (rc == VLM_OK) {
        if (e->wait_tail) e->wait_tail->next = j;
        else e->wait_head = j;
        e->wait_tail = j;
        e->n_waiting++;
        e->st.requests_submitted++;
        pthread_cond_signal(&e->wake);
    }
    pthread_mutex_unlock(&e->mu);
    if (rc) {
        vlm_job_destroy(j);
        return rc;
    }
    *out = j;
    return VLM_OK;
}

void vlm_job_cancel(vlm_job *j)
{
    if (!j) return;
    atomic_store(&j->cancel, 1);
    /* while the job is not done its engine is alive (closing finishes every job first), and it cannot
     * become done while we hold the job's lock */
    pthread_mutex_lock(&j->mu);
    if (!j->done) {
        vlm_engine *e = j->engine;
        pthread_mutex_lock(&e->mu);
        pthread_cond_signal(&e->wake);
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_unlock(&j->mu);
}

int vlm_job_poll(vlm_job *j, const vlm_result **out)
{
    if (!j) return vlm_errorf(VLM_ERR_INVALID, "vlm_job_poll: no job");
    pthread_mutex_lock(&j->mu);
    const int done = j->done;
    pthread_mutex_unlock(&j->mu);
    if (done && out) *out = &j->result;
    return done;
}

int vlm_job_wait(vlm_job *j, const vlm_result **out)
{
    if (!j) return vlm_errorf(VLM_ERR_INVALID, "vlm_job_wait: no job");
    pthread_mutex_lock(&j->mu);
    while (!j->done) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    if (out) *out = &j->result;
    return VLM_OK;
}

void vlm_job_free(vlm_job *j)
{
    if (!j) return;
    vlm_job_cancel(j);
    vlm_job_wait(j, NULL);
    vlm_job_destroy(j);
}

int vlm_engine_stats_get(vlm_engine *e, vlm_engine_stats *out)
{
    if (!e || !out) return vlm_errorf(VLM_ERR_INVALID, "vlm_engine_stats_get: NULL argument");
    pthread_mutex_lock(&e->mu);
    *out = e->st;
    out->requests_waiting = e->n_waiting;
    out->requests_running = e->n_running;
    out->kv_blocks_used = e->kv_blocks_used;
    out->prefix_blocks_total = vlm_prefix_cache_blocks_total(e->prefix);
    out->prefix_blocks_used = vlm_prefix_cache_blocks_used(e->prefix);
    out->image_cache_bytes = vlm_image_cache_bytes(e->images);
    pthread_mutex_unlock(&e->mu);
    return VLM_OK;
}

int64_t vlm_engine_expert_counts(vlm_engine *e, int64_t *counts, int64_t cap)
{
    if (!e || (cap > 0 && !counts)) return vlm_errorf(VLM_ERR_INVALID, "vlm_engine_expert_counts: NULL argument");
    pthread_mutex_lock(&e->mu);
    for (int64_t i = 0; i < cap && i < e->n_counts; i++) counts[i] = e->expert_counts[i];
    pthread_mutex_unlock(&e->mu);
    return e->n_counts;
}

/* ------------------------------------------------------------------ the synchronous question */

typedef struct {
    const vlm_ask_options *opt;
} ask_ctx;

int vlm_engine_ask(vlm_engine *e, const char *question, const char *const *image_paths, int n_images,
                   const vlm_ask_options *opt, char **answer)
{
    if (!answer) return vlm_errorf(VLM_ERR_INVALID, "vlm_engine_ask: answer is NULL");
    *answer = NULL;
    if (!e || !question) return vlm_errorf(VLM_ERR_INVALID, "vlm_engine_ask: needs an engine and a question");
    if (n_images < 0 || n_images > 256) return vlm_errorf(VLM_ERR_INVALID, "%d images: 0 to 256 are supported", n_images);
    if (n_images && !image_paths) return vlm_errorf(VLM_ERR_INVALID, "vlm_engine_ask: image_paths is NULL");
    vlm_image_input *imgs = calloc((size_t)n_images + 1, sizeof *imgs);
    if (!imgs) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_images; i++) imgs[i].path = image_paths[i];
    vlm_request_options ro;
    vlm_request_options_default(&ro);
    if (opt) ro.gen = *opt;
    const vlm_message msg = {"user", question, imgs, n_images};
    vlm_job *j = NULL;
    const vlm_result *r = NULL;
    int rc = vlm_engine_submit(e, &msg, 1, &ro, &j);
    free(imgs);
    if (rc) return rc;
    vlm_job_wait(j, &r);
    if (r->finish == VLM_FINISH_ERROR) rc = vlm_errorf(r->error_code, "%s", r->error);
    else if (!(*answer = strdup(r->text))) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    vlm_job_free(j);
    return rc;
}
