#include "server/metrics.h"

#include "server/chat_response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double kLatency[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640};
static const double kInterToken[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5};

void srv_metrics_init(srv_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    for (int i = 0; i < SRV_N_HIST; i++) {
        m->hist[i].bounds = i == SRV_HIST_ITL ? kInterToken : kLatency;
        m->hist[i].n_bounds = i == SRV_HIST_ITL ? (int)(sizeof kInterToken / sizeof *kInterToken)
                                                : (int)(sizeof kLatency / sizeof *kLatency);
    }
}

void srv_metrics_destroy(srv_metrics *m) { pthread_mutex_destroy(&m->mu); }

void srv_metrics_request(srv_metrics *m, const char *endpoint, int status)
{
    pthread_mutex_lock(&m->mu);
    int i = 0;
    for (; i < m->n_req; i++)
        if (m->req[i].status == status && !strcmp(m->req[i].endpoint, endpoint)) break;
    if (i == m->n_req && m->n_req < SRV_MAX_REQ_SERIES) {
        snprintf(m->req[i].endpoint, sizeof m->req[i].endpoint, "%s", endpoint);
        m->req[i].status = status;
        m->n_req++;
    }
    if (i < m->n_req) m->req[i].n++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_observe(srv_metrics *m, srv_hist_id id, double v)
{
    if ((unsigned)id >= SRV_N_HIST || v != v) return;
    pthread_mutex_lock(&m->mu);
    srv_histogram *h = &m->hist[id];
    int b = 0;
    while (b < h->n_bounds && v > h->bounds[b]) b++;
    h->counts[b]++;
    h->sum += v;
    h->count++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_count(srv_metrics *m, int64_t *field, int64_t delta)
{
    pthread_mutex_lock(&m->mu);
    *field += delta;
    pthread_mutex_unlock(&m->mu);
}

int64_t srv_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    long long size, rss;
    int ok = fscanf(f, "%lld %lld", &size, &rss) == 2;
    fclose(f);
    return ok ? rss * (int64_t)sysconf(_SC_PAGESIZE) : -1;
}

static void meta(srv_buf *b, const char *name, const char *type, const char *help)
{
    srv_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(srv_buf *b, const char *name, const char *type, const char *help, double v)
{
    meta(b, name, type, help);
    srv_buf_printf(b, "%s %.17g\n", name, v);
}

static void histogram(srv_buf *b, const char *name, const char *help, const srv_histogram *h)
{
    meta(b, name, "histogram", help);
    int64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        srv_buf_printf(b, "%s_bucket{le=\"%g\"} %lld\n", name, h->bounds[i], (long long)cum);
    }
    cum += h->counts[h->n_bounds];
    srv_buf_printf(b, "%s_bucket{le=\"+Inf\"} %lld\n%s_sum %.17g\n%s_count %lld\n", name, (long long)cum, name, h->sum, name,
                   (long long)h->count);
}

static double ratio(int64_t a, int64_t b) { return b > 0 ? (double)a / (double)b : 0; }

char *srv_metrics_render(srv_metrics *m, const srv_metrics_extra *x)
{
    srv_buf b = {0};
    pthread_mutex_lock(&m->mu);
    meta(&b, "vlm_http_requests_total", "counter", "HTTP requests answered, by endpoint and status code.");
    for (int i = 0; i < m->n_req; i++)
        srv_buf_printf(&b, "vlm_http_requests_total{endpoint=\"%s\",status=\"%d\"} %lld\n", m->req[i].endpoint, m->req[i].status,
                       (long long)m->req[i].n);
    histogram(&b, "vlm_time_to_first_token_seconds", "Time from request arrival to the first answer text.", &m->hist[SRV_HIST_TTFT]);
    histogram(&b, "vlm_inter_token_latency_seconds", "Time between consecutive pieces of streamed answer text.", &m->hist[SRV_HIST_ITL]);
    histogram(&b, "vlm_e2e_request_latency_seconds", "Time from request arrival to its last byte of answer.", &m->hist[SRV_HIST_E2E]);
    histogram(&b, "vlm_request_queue_seconds", "Time requests waited for admission by the engine.", &m->hist[SRV_HIST_QUEUE]);
    scalar(&b, "vlm_content_filter_prompts_total", "counter", "Requests refused because their prompt matched the block list.",
           (double)m->filtered_prompts);
    scalar(&b, "vlm_content_filter_answers_total", "counter", "Answers stopped because they matched the block list.",
           (double)m->filtered_answers);
    scalar(&b, "vlm_client_disconnects_total", "counter", "Requests whose client went away before the answer was complete.",
           (double)m->client_disconnects);
    pthread_mutex_unlock(&m->mu);

    scalar(&b, "vlm_server_ready", "gauge", "1 when the model is loaded and the server takes requests.", x->ready && !x->draining);
    scalar(&b, "vlm_server_draining", "gauge", "1 while the server drains after SIGTERM/SIGINT.", x->draining);
    scalar(&b, "vlm_http_requests_in_progress", "gauge", "HTTP requests being answered.", (double)x->connections);
    if (x->rss_bytes >= 0) scalar(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", (double)x->rss_bytes);
    const vlm_engine_stats *s = x->engine;
    if (s) {
        scalar(&b, "vlm_requests_running", "gauge", "Requests the engine is decoding or prefilling.", (double)s->requests_running);
        scalar(&b, "vlm_requests_waiting", "gauge", "Requests queued for admission.", (double)s->requests_waiting);
        scalar(&b, "vlm_requests_submitted_total", "counter", "Requests the engine accepted.", (double)s->requests_submitted);
        scalar(&b, "vlm_requests_refused_total", "counter", "Requests refused because the queue was full.", (double)s->requests_refused);
        meta(&b, "vlm_requests_finished_total", "counter", "Requests the engine finished, by reason.");
        static const char *reasons[5] = {"none", "stop", "length", "cancelled", "error"};
        for (int i = 1; i < 5; i++)
            srv_buf_printf(&b, "vlm_requests_finished_total{reason=\"%s\"} %lld\n", reasons[i], (long long)s->requests_finished[i]);
        scalar(&b, "vlm_prompt_tokens_total", "counter", "Prompt tokens (text and image) of admitted requests.", (double)s->prompt_tokens);
        scalar(&b, "vlm_cached_prompt_tokens_total", "counter", "Prompt tokens whose KV came from the prefix cache.",
               (double)s->cached_prompt_tokens);
        scalar(&b, "vlm_generation_tokens_total", "counter", "Tokens generated.", (double)s->generated_tokens);
        scalar(&b, "vlm_kv_cache_blocks_total", "gauge", "KV cache blocks of the running sequences' budget.", (double)s->kv_blocks_total);
        scalar(&b, "vlm_kv_cache_blocks_used", "gauge", "KV cache blocks in use.", (double)s->kv_blocks_used);
        scalar(&b, "vlm_kv_cache_usage_ratio", "gauge", "Fraction of the KV cache budget in use.", ratio(s->kv_blocks_used, s->kv_blocks_total));
        scalar(&b, "vlm_kv_cache_block_tokens", "gauge", "Tokens per KV cache block.", (double)s->kv_block_tokens);
        scalar(&b, "vlm_prefix_cache_blocks_used", "gauge", "KV blocks kept for prefix reuse.", (double)s->prefix_blocks_used);
        scalar(&b, "vlm_prefix_cache_blocks_total", "gauge", "Capacity of the prefix cache in blocks.", (double)s->prefix_blocks_total);
        scalar(&b, "vlm_prefix_cache_hits_total", "counter", "Admitted requests that reused cached prefix blocks.", (double)s->prefix_hits);
        scalar(&b, "vlm_prefix_cache_misses_total", "counter", "Admitted requests that reused no prefix block.", (double)s->prefix_misses);
        scalar(&b, "vlm_prefix_cache_hit_ratio", "gauge", "Prefix cache hits over lookups since start.",
               ratio(s->prefix_hits, s->prefix_hits + s->prefix_misses));
        scalar(&b, "vlm_image_cache_bytes", "gauge", "Bytes of image embeddings kept for reuse.", (double)s->image_cache_bytes);
        scalar(&b, "vlm_image_cache_capacity_bytes", "gauge", "Capacity of the image embedding cache.", (double)s->image_cache_capacity);
        scalar(&b, "vlm_image_cache_hits_total", "counter", "Images whose embeddings came from the cache.", (double)s->image_hits);
        scalar(&b, "vlm_image_cache_misses_total", "counter", "Images encoded by the vision tower.", (double)s->image_misses);
        scalar(&b, "vlm_image_cache_hit_ratio", "gauge", "Image cache hits over lookups since start.",
               ratio(s->image_hits, s->image_hits + s->image_misses));
        scalar(&b, "vlm_engine_steps_total", "counter", "Batched forward steps.", (double)s->steps);
        scalar(&b, "vlm_engine_step_rows_total", "counter", "Token rows over all batched forward steps.", (double)s->step_rows);
        scalar(&b, "vlm_engine_step_seconds_total", "counter", "Time spent in batched forward steps.", s->step_ms_total / 1e3);
        scalar(&b, "vlm_engine_vision_seconds_total", "counter", "Time spent encoding images.", s->vision_ms_total / 1e3);
        if (x->expert_counts && s->n_moe_layers > 0 && s->n_experts > 0) {
            meta(&b, "vlm_expert_routed_tokens_total", "counter",
                 "Tokens routed to each expert of each MoE layer (layer: index among the MoE layers).");
            for (int l = 0; l < s->n_moe_layers; l++)
                for (int e = 0; e < s->n_experts; e++)
                    srv_buf_printf(&b, "vlm_expert_routed_tokens_total{layer=\"%d\",expert=\"%d\"} %lld\n", l, e,
                                   (long long)x->expert_counts[(int64_t)l * s->n_experts + e]);
        }
    }
    if (!b.p) srv_buf_add(&b, "", 0);
    return b.p;
}
