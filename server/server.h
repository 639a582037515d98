/* `vlm serve`: an OpenAI-compatible HTTP API over the request engine (include/vlm.h).
 *
 * HTTP is libmicrohttpd, one thread per connection: a request's preparation blocks (image URLs fetched,
 * vlm_engine_submit decodes and preprocesses every image), and so does a streamed answer waiting for the
 * next text, so each connection gets its own thread and the engine thread only appends text and signals.
 * Endpoints: POST /v1/chat/completions (JSON or SSE), GET /v1/models, GET /health, GET /metrics. */
#ifndef VLM_SERVER_SERVER_H
#define VLM_SERVER_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "server/chat_request.h"
#include "server/metrics.h"
#include "server/policy.h"
#include "vlm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the server needs of an engine: vlm_engine_* by default (srv_backend_engine); tests put a fake here. */
typedef struct {
    void *ctx;
    int (*submit)(void *ctx, const vlm_message *msgs, int n, const vlm_request_options *o, void **job);
    void (*cancel)(void *job);
    void (*free_job)(void *job); /* cancels if running, waits until no callback runs, frees */
    int (*stats)(void *ctx, vlm_engine_stats *out);
    int64_t (*expert_counts)(void *ctx, int64_t *counts, int64_t cap);
} srv_backend;

void srv_backend_engine(vlm_engine *e, srv_backend *out);

typedef struct {
    const char *host;          /* NULL = 127.0.0.1 */
    int port;                  /* 0 = any free port (srv_port says which) */
    const char *model_name;    /* the id /v1/models lists and requests must name */
    const srv_keys *keys;      /* NULL or none: no authentication */
    const srv_blocklist *block;/* NULL: no content filter */
    srv_audit *audit;          /* NULL: no audit log */
    srv_media_options media;
    srv_chat_limits limits;
    size_t max_body_bytes;     /* 0 = 20 MiB */
    int64_t default_max_tokens;/* 0 = 512 */
    int max_connections;       /* 0 = 512 */
    int idle_timeout_s;        /* keep-alive and stalled clients; 0 = 120 */
    int retry_after_s;         /* Retry-After of 429 answers; 0 = 1 */
    int log_requests;          /* one line per request on stderr */
} srv_options;

typedef struct srv srv;

/* Binds and starts answering (/health says 503 "loading" until srv_set_backend). */
int srv_start(const srv_options *o, srv **out);
int srv_port(const srv *s);
/* Ready: chat requests go to b from now on. */
void srv_set_backend(srv *s, const srv_backend *b);
/* Stops accepting connections, answers 503 to new requests, lets running ones finish for up to
 * seconds, then cancels what is left. Returns the number of requests that had to be cancelled. */
int srv_drain(srv *s, double seconds);
/* Stops the daemon (after srv_drain or not) and frees s; the backend is not closed. */
void srv_stop(srv *s);
srv_metrics *srv_get_metrics(srv *s);
/* Requests being answered now. */
int64_t srv_active(srv *s);

#ifdef __cplusplus
}
#endif
#endif
