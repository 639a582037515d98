/* The server's own measurements (request counts by endpoint and status, latency histograms) and their
 * rendering with the engine's counters in the Prometheus text exposition format (version 0.0.4). */
#ifndef VLM_SERVER_METRICS_H
#define VLM_SERVER_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "vlm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRV_HIST_MAX_BUCKETS 24
typedef struct {
    const double *bounds; /* upper bounds, increasing; +Inf implied */
    int n_bounds;
    int64_t counts[SRV_HIST_MAX_BUCKETS + 1]; /* per bucket (not cumulative); the last is +Inf */
    double sum;
    int64_t count;
} srv_histogram;

typedef enum { SRV_HIST_TTFT, SRV_HIST_ITL, SRV_HIST_E2E, SRV_HIST_QUEUE, SRV_N_HIST } srv_hist_id;

#define SRV_MAX_REQ_SERIES 64
typedef struct {
    pthread_mutex_t mu;
    struct {
        char endpoint[32];
        int status;
        int64_t n;
    } req[SRV_MAX_REQ_SERIES];
    int n_req;
    srv_histogram hist[SRV_N_HIST];
    int64_t filtered_prompts, filtered_answers; /* block list hits */
    int64_t client_disconnects;
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_metrics_destroy(srv_metrics *m);
/* One answered HTTP request. endpoint: the path if known, else "other". */
void srv_metrics_request(srv_metrics *m, const char *endpoint, int status);
void srv_metrics_observe(srv_metrics *m, srv_hist_id h, double seconds);
void srv_metrics_count(srv_metrics *m, int64_t *field, int64_t delta); /* a field of m, under its lock */

typedef struct {
    const vlm_engine_stats *engine; /* NULL: no engine figures (loading) */
    const int64_t *expert_counts;   /* engine->n_moe_layers * n_experts entries, or NULL */
    int64_t rss_bytes;              /* < 0: unknown */
    int draining, ready;
    int64_t connections;            /* open HTTP requests */
} srv_metrics_extra;

/* The whole exposition, malloc'd. */
char *srv_metrics_render(srv_metrics *m, const srv_metrics_extra *x);
/* Resident set size of this process from /proc/self/statm, or -1. */
int64_t srv_rss_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
