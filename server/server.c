#include "server/server.h"

#include "core/clock.h"
#include "core/error.h"
#include "server/chat_response.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

enum { EP_OTHER, EP_CHAT, EP_MODELS, EP_MODEL, EP_HEALTH, EP_METRICS };

typedef struct req req;

struct srv {
    srv_options o;
    char *model_name;
    struct MHD_Daemon *d;
    int port;
    int64_t started;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* active changed */
    srv_backend be;
    int ready, draining, stopping, cancelled_all;
    int64_t active;
    req *reqs; /* chat requests with an engine job */
    srv_metrics metrics;
};

struct req {
    srv *s;
    struct MHD_Connection *con;
    int ep;
    const char *ep_name;
    srv_buf body;
    int too_large, answered;
    double t0, wall0;
    char id[40];
    char client[64];
    const char *key_id;
    int status;
    char error[512];
    /* chat */
    srv_chat *chat;
    void *job;
    int linked;
    req *prev, *next;
    int has_sync;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_buf text;        /* answer text accepted so far */
    size_t text_sent;    /* of it, bytes already in chunks */
    srv_buf sse;         /* bytes for the client */
    size_t sse_off;
    int stage;           /* stream: 0 nothing sent, 1 role sent, 2 all written */
    int done, filtered, cancel_sent;
    const vlm_result *result;
    double t_first, t_last;
    double t_out; /* last bytes handed to the connection (stream) */
    srv_resp_info info;
};

static double now_s(void) { return vlm_now_ms() / 1e3; }

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void new_id(char *out, size_t cap)
{
    unsigned char r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        static unsigned long long counter;
        unsigned long long v = (unsigned long long)(now_s() * 1e9) ^ __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        memcpy(r, &v, 8);
        memset(r + 8, 0, 4);
    }
    int n = snprintf(out, cap, "chatcmpl-");
    for (size_t i = 0; i < sizeof r && (size_t)n + 2 < cap; i++) n += snprintf(out + n, cap - (size_t)n, "%02x", r[i]);
}

/* ---- backend: the real engine ------------------------------------------------------------------- */

static int eng_submit(void *ctx, const vlm_message *m, int n, const vlm_request_options *o, void **job)
{
    vlm_job *j = NULL;
    int rc = vlm_engine_submit(ctx, m, n, o, &j);
    *job = j;
    return rc;
}
static void eng_cancel(void *job) { vlm_job_cancel(job); }
static void eng_free(void *job) { vlm_job_free(job); }
static int eng_stats(void *ctx, vlm_engine_stats *st) { return vlm_engine_stats_get(ctx, st); }
static int64_t eng_experts(void *ctx, int64_t *c, int64_t cap) { return vlm_engine_expert_counts(ctx, c, cap); }

void srv_backend_engine(vlm_engine *e, srv_backend *out)
{
    out->ctx = e;
    out->submit = eng_submit;
    out->cancel = eng_cancel;
    out->free_job = eng_free;
    out->stats = eng_stats;
    out->expert_counts = eng_experts;
}

/* ---- answers ------------------------------------------------------------------------------------ */

static enum MHD_Result send_body(req *r, int status, const char *type, char *body /* taken */)
{
    if (!body) {
        status = 503;
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
        type = "application/json";
        if (!body) return MHD_NO;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (r->ep == EP_CHAT) MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (status == 429) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", r->s->o.retry_after_s > 0 ? r->s->o.retry_after_s : 1);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 405) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->ep == EP_CHAT ? "POST" : "GET, HEAD");
    if (status == 503 && r->s->draining) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(r->con, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->answered = 1;
    return ret;
}

static enum MHD_Result send_error(req *r, const srv_error *e)
{
    snprintf(r->error, sizeof r->error, "%s", e->message);
    return send_body(r, e->status, "application/json", srv_error_json(e));
}

static enum MHD_Result fail(req *r, int status, const char *type, const char *code, const char *fmt, const char *arg)
{
    srv_error e;
    srv_error_set(&e, status, type, code, NULL, fmt, arg);
    return send_error(r, &e);
}

/* ---- the engine's callbacks (engine thread) ----------------------------------------------------- */

static int on_text(void *user, const char *text, size_t len)
{
    req *r = user;
    const double t = now_s();
    double itl = -1;
    int stop = 0, newly_filtered = 0;
    pthread_mutex_lock(&r->mu);
    if (r->filtered) {
        stop = 1;
    } else {
        const size_t before = r->text.n;
        if (srv_buf_add(&r->text, text, len)) {
            stop = 1;
        } else if (r->s->o.block && srv_blocklist_match(r->s->o.block, r->text.p, r->text.n) >= 0) {
            r->text.n = before; /* the piece that completes a match is not sent */
            r->text.p[before] = 0;
            r->filtered = stop = newly_filtered = 1;
        } else {
            if (r->t_first == 0) r->t_first = t;
            else itl = t - r->t_last;
            r->t_last = t;
        }
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    if (itl >= 0) srv_metrics_observe(&r->s->metrics, SRV_HIST_ITL, itl);
    if (newly_filtered) srv_metrics_count(&r->s->metrics, &r->s->metrics.filtered_answers, 1);
    return stop;
}

static void on_done(void *user, vlm_job *job, const vlm_result *res)
{
    (void)job;
    req *r = user;
    pthread_mutex_lock(&r->mu);
    r->result = res;
    r->done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* The client closed its end (a shutdown or reset seen on the socket). */
static int client_gone(req *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->con, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd p = {ci->connect_fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void cancel_job(req *r)
{
    if (r->job && !__atomic_exchange_n(&r->cancel_sent, 1, __ATOMIC_ACQ_REL)) r->s->be.cancel(r->job);
}

/* Waits (r->mu held) up to 200 ms for news; cancels the job when the client went away. 1 = go on, 0 = give up. */
static int wait_news(req *r)
{
    vlm_cond_wait_ms(&r->cv, &r->mu, 200);
    if (r->done) return 1;
    if (client_gone(r)) {
        cancel_job(r);
        return 0;
    }
    return !r->s->stopping;
}

static srv_usage usage_of(const vlm_result *res)
{
    srv_usage u = {0, 0, 0};
    if (res) {
        u.prompt_tokens = res->prompt_tokens;
        u.completion_tokens = res->completion_tokens;
        u.cached_tokens = res->cached_tokens;
    }
    return u;
}

/* The boxes of the answer, against the last image of the request. */
static void *answer_boxes(const req *r)
{
    if (!r->result || !r->result->full_text || !strstr(r->result->full_text, "<|det|>")) return NULL;
    const srv_chat *c = r->chat;
    int w = 0, h = 0;
    if (c->n_media > 0) {
        w = c->media[c->n_media - 1].width;
        h = c->media[c->n_media - 1].height;
    }
    return srv_boxes(r->result->full_text, srv_chat_n_images(c) - 1, w, h);
}

/* An error that ends a job (finish "error", or cancelled). */
static void job_error(const req *r, srv_error *e)
{
    const vlm_result *res = r->result;
    if (res && res->finish == VLM_FINISH_ERROR) srv_error_from_vlm(e, res->error_code, NULL, res->error);
    else if (r->s->draining || r->s->stopping)
        srv_error_set(e, 503, "server_error", "shutting_down", NULL, "the server is shutting down; the request was cancelled");
    else srv_error_set(e, 503, "server_error", "cancelled", NULL, "the request was cancelled");
}

/* SSE: the response body, produced as the answer arrives. */
static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    req *r = cls;
    srv_metrics *m = &r->s->metrics;
    const int usage_mode = r->chat->include_usage ? 1 : 0;
    double keepalive = r->s->o.idle_timeout_s / 3.0;
    if (keepalive > 15) keepalive = 15;
    if (keepalive < 0.2) keepalive = 0.2;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (r->sse_off < r->sse.n) {
            size_t n = r->sse.n - r->sse_off < max ? r->sse.n - r->sse_off : max;
            memcpy(buf, r->sse.p + r->sse_off, n);
            r->sse_off += n;
            r->t_out = now_s();
            pthread_mutex_unlock(&r->mu);
            return (ssize_t)n;
        }
        r->sse.n = r->sse_off = 0;
        if (r->stage == 2) {
            pthread_mutex_unlock(&r->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        char *json = NULL;
        if (r->stage == 0) {
            json = srv_chunk_json(&r->info, "assistant", "", 0, NULL, usage_mode, NULL, NULL);
            r->stage = 1;
        } else if (r->text_sent < r->text.n) {
            json = srv_chunk_json(&r->info, NULL, r->text.p + r->text_sent, r->text.n - r->text_sent, NULL, usage_mode, NULL, NULL);
            r->text_sent = r->text.n;
        } else if (r->done) {
            const vlm_result *res = r->result;
            const char *finish = srv_finish_name(res ? res->finish : VLM_FINISH_CANCELLED, r->filtered);
            if (finish) {
                const srv_usage u = usage_of(res);
                json = srv_chunk_json(&r->info, NULL, NULL, 0, finish, usage_mode, NULL, r->filtered ? NULL : answer_boxes(r));
                if (json && r->chat->include_usage) {
                    char *uj = srv_chunk_json(&r->info, NULL, NULL, 0, NULL, 2, &u, NULL);
                    if (srv_sse_data(&r->sse, json) == 0 && uj) {
                        free(json);
                        json = uj;
                        uj = NULL;
                    }
                    free(uj);
                }
            } else {
                srv_error e;
                job_error(r, &e);
                snprintf(r->error, sizeof r->error, "%s", e.message);
                json = srv_error_json(&e);
            }
            if (json) srv_sse_data(&r->sse, json);
            free(json);
            json = NULL;
            srv_buf_add(&r->sse, "data: [DONE]\n\n", 14);
            r->stage = 2;
            if (r->t_first > 0) srv_metrics_observe(m, SRV_HIST_TTFT, r->t_first - r->t0);
            continue;
        } else if (now_s() - r->t_out >= keepalive) {
            /* an SSE comment: libmicrohttpd counts a connection as idle while its reader waits, and would
             * close it after --idle-timeout; proxies like it too */
            srv_buf_add(&r->sse, ": keep-alive\n\n", 14);
            continue;
        } else {
            if (!wait_news(r)) {
                pthread_mutex_unlock(&r->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            continue;
        }
        if (!json || srv_sse_data(&r->sse, json)) {
            free(json);
            pthread_mutex_unlock(&r->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        free(json);
    }
}

static void unlink_req(req *r)
{
    srv *s = r->s;
    pthread_mutex_lock(&s->mu);
    if (r->linked) {
        if (r->prev) r->prev->next = r->next;
        else s->reqs = r->next;
        if (r->next) r->next->prev = r->prev;
        r->linked = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result chat(req *r)
{
    srv *s = r->s;
    srv_error e;
    if (r->too_large) {
        char msg[32];
        snprintf(msg, sizeof msg, "%zu", s->o.max_body_bytes);
        return fail(r, 413, NULL, "request_too_large", "the request body is larger than the limit of %s bytes", msg);
    }
    if (srv_chat_parse(r->body.p ? r->body.p : "", r->body.n, &s->o.limits, &r->chat, &e)) return send_error(r, &e);
    srv_buf_free(&r->body);
    srv_chat *c = r->chat;
    if (c->model && strcmp(c->model, s->model_name)) {
        srv_error_set(&e, 404, NULL, "model_not_found", "model", "The model `%.200s` does not exist; this server has `%.200s`.", c->model,
                      s->model_name);
        return send_error(r, &e);
    }
    for (int i = 0; s->o.block; i++) {
        const char *t = srv_chat_text(c, i);
        if (!t) break;
        if (srv_blocklist_match(s->o.block, t, strlen(t)) >= 0) {
            srv_metrics_count(&s->metrics, &s->metrics.filtered_prompts, 1);
            srv_error_set(&e, 400, NULL, "content_filter", "messages", "the prompt was refused by the server's content filter");
            return send_error(r, &e);
        }
    }
    if (srv_chat_fetch(c, &s->o.media, &e) || srv_chat_build(c, &e)) return send_error(r, &e);

    vlm_request_options ro;
    vlm_request_options_default(&ro);
    srv_chat_gen(c, s->o.default_max_tokens > 0 ? s->o.default_max_tokens : 512, &ro.gen);
    if (s->o.media.max_pixels > 0) ro.gen.max_pixels = s->o.media.max_pixels;
    ro.gen.on_text = on_text;
    ro.gen.user = r;
    ro.on_done = on_done;
    ro.done_user = r;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->has_sync = 1;
    r->info.id = r->id;
    r->info.created = (int64_t)r->wall0;
    r->info.model = s->model_name;

    pthread_mutex_lock(&s->mu);
    if (s->draining) {
        pthread_mutex_unlock(&s->mu);
        return fail(r, 503, "server_error", "shutting_down", "%s", "the server is shutting down");
    }
    r->linked = 1;
    r->next = s->reqs;
    if (s->reqs) s->reqs->prev = r;
    s->reqs = r;
    pthread_mutex_unlock(&s->mu);

    void *job = NULL;
    const int rc = s->be.submit(s->be.ctx, c->vmsgs, c->n_vmsgs, &ro, &job);
    pthread_mutex_lock(&s->mu);
    r->job = job;
    if (job && s->cancelled_all) cancel_job(r);
    pthread_mutex_unlock(&s->mu);
    if (rc) {
        srv_error_from_vlm(&e, rc, NULL, vlm_last_error());
        if (rc == VLM_ERR_BUSY)
            snprintf(e.message, sizeof e.message, "the server is busy (its queue is full); retry after %d s",
                     s->o.retry_after_s > 0 ? s->o.retry_after_s : 1);
        return send_error(r, &e);
    }

    if (c->stream) {
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_reader, r, NULL);
        if (!resp) return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Request-Id", r->id);
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        enum MHD_Result ret = MHD_queue_response(r->con, 200, resp);
        MHD_destroy_response(resp);
        r->status = 200;
        r->answered = 1;
        return ret;
    }

    pthread_mutex_lock(&r->mu);
    while (!r->done) /* until the engine ends the job; a client gone or the server stopping cancels it */
        if (!wait_news(r) && s->stopping) cancel_job(r);
    pthread_mutex_unlock(&r->mu);
    const vlm_result *res = r->result;
    if (r->t_first > 0) srv_metrics_observe(&s->metrics, SRV_HIST_TTFT, r->t_first - r->t0);
    const char *finish = srv_finish_name(res ? res->finish : VLM_FINISH_CANCELLED, r->filtered);
    if (!finish) {
        job_error(r, &e);
        return send_error(r, &e);
    }
    const srv_usage u = usage_of(res);
    const char *text = r->filtered ? r->text.p : res->text;
    return send_body(r, 200, "application/json",
                     srv_completion_json(&r->info, text ? text : "", finish, &u, r->filtered ? NULL : answer_boxes(r)));
}

/* ---- requests ----------------------------------------------------------------------------------- */

static int endpoint_of(const char *url, const char **name)
{
    static const struct {
        const char *path;
        int ep;
    } table[] = {{"/v1/chat/completions", EP_CHAT}, {"/v1/models", EP_MODELS}, {"/health", EP_HEALTH}, {"/metrics", EP_METRICS}};
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (!strcmp(url, table[i].path)) {
            *name = table[i].path;
            return table[i].ep;
        }
    if (!strncmp(url, "/v1/models/", 11)) {
        *name = "/v1/models";
        return EP_MODEL;
    }
    *name = "other";
    return EP_OTHER;
}

static enum MHD_Result answer_get(req *r, const char *url)
{
    srv *s = r->s;
    if (r->ep == EP_HEALTH) {
        pthread_mutex_lock(&s->mu);
        const char *state = s->draining ? "draining" : !s->ready ? "loading" : "ok";
        pthread_mutex_unlock(&s->mu);
        char body[64];
        snprintf(body, sizeof body, "{\"status\":\"%s\"}", state);
        return send_body(r, strcmp(state, "ok") ? 503 : 200, "application/json", strdup(body));
    }
    if (r->ep == EP_METRICS) {
        vlm_engine_stats st;
        int64_t *experts = NULL;
        srv_metrics_extra x = {NULL, NULL, srv_rss_bytes(), s->draining, s->ready, srv_active(s)};
        if (s->ready && s->be.stats && s->be.stats(s->be.ctx, &st) == 0) {
            x.engine = &st;
            const int64_t n = (int64_t)st.n_moe_layers * st.n_experts;
            if (n > 0 && n < (1 << 24) && s->be.expert_counts && (experts = calloc((size_t)n, sizeof *experts)) &&
                s->be.expert_counts(s->be.ctx, experts, n) == n)
                x.expert_counts = experts;
        }
        char *text = srv_metrics_render(&s->metrics, &x);
        free(experts);
        return send_body(r, 200, "text/plain; version=0.0.4; charset=utf-8", text);
    }
    if (r->ep == EP_MODEL && strcmp(url + 11, s->model_name)) {
        srv_error e;
        srv_error_set(&e, 404, NULL, "model_not_found", "model", "The model `%.200s` does not exist.", url + 11);
        return send_error(r, &e);
    }
    char *list = srv_models_json(s->model_name, s->started);
    if (list && r->ep == EP_MODEL) { /* the one model object */
        char *obj = strstr(list, "[{");
        char *end = obj ? strrchr(obj, ']') : NULL;
        if (obj && end) {
            *end = 0;
            char *one = strdup(obj + 1);
            free(list);
            list = one;
        }
    }
    return send_body(r, 200, "application/json", list);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *con, const char *url, const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)version;
    srv *s = cls;
    req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->s = s;
        r->con = con;
        r->t0 = now_s();
        r->wall0 = wall_s();
        r->status = 500;
        r->key_id = "";
        r->ep = endpoint_of(url, &r->ep_name);
        new_id(r->id, sizeof r->id);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->client, sizeof r->client);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client, sizeof r->client);
        }
        *con_cls = r;
        pthread_mutex_lock(&s->mu);
        s->active++;
        pthread_mutex_unlock(&s->mu);

        const int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        if (r->ep == EP_OTHER) return fail(r, 404, NULL, "not_found", "no such endpoint: %.200s", url);
        if (r->ep == EP_CHAT ? strcmp(method, "POST") != 0 : !is_get)
            return fail(r, 405, NULL, "method_not_allowed", "method %.20s is not allowed here", method);
        if (r->ep == EP_CHAT || r->ep == EP_MODELS || r->ep == EP_MODEL) {
            const char *auth = MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
            if (s->o.keys && !srv_keys_check(s->o.keys, auth, &r->key_id))
                return fail(r, 401, "invalid_request_error", "invalid_api_key", "%s",
                            auth ? "Incorrect API key provided." : "You didn't provide an API key (Authorization: Bearer KEY).");
        }
        if (r->ep != EP_CHAT) return answer_get(r, url);
        if (s->draining) return fail(r, 503, "server_error", "shutting_down", "%s", "the server is shutting down");
        if (!s->ready) return fail(r, 503, "server_error", "loading", "%s", "the model is still loading");
        const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const unsigned long long length = cl ? strtoull(cl, NULL, 10) : 0;
        if (length > s->o.max_body_bytes) {
            /* 413 at once when the client waits for "100 Continue" (it then sends nothing) or the body is huge;
             * otherwise the body is read and dropped first, so that the client, busy sending, does not meet a
             * closed connection instead of the answer */
            r->too_large = 1;
            const char *expect = MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
            if ((expect && !strcasecmp(expect, "100-continue")) || length > s->o.max_body_bytes + (256u << 20)) return chat(r);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->answered && !r->too_large) {
            if (r->body.n + *upload_data_size > s->o.max_body_bytes) {
                r->too_large = 1;
                srv_buf_free(&r->body);
            } else if (srv_buf_add(&r->body, upload_data, *upload_data_size)) {
                r->too_large = 1;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->answered) return MHD_YES;
    return chat(r);
}

static void completed(void *cls, struct MHD_Connection *con, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)con;
    srv *s = cls;
    req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    unlink_req(r);
    if (r->job) { /* a client gone early cancels its job; on_done comes in any case, and the result stays valid
                     until free_job below */
        pthread_mutex_lock(&r->mu);
        if (!r->done) cancel_job(r);
        while (!r->done) pthread_cond_wait(&r->cv, &r->mu);
        pthread_mutex_unlock(&r->mu);
    }
    const double t = now_s();
    const vlm_result *res = r->done ? r->result : NULL;
    const char *finish = res ? srv_finish_name(res->finish, r->filtered) : NULL;
    if (r->ep == EP_CHAT && r->chat && r->job) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK || (r->cancel_sent && !s->cancelled_all))
            srv_metrics_count(&s->metrics, &s->metrics.client_disconnects, 1);
        if (r->status == 200 && finish) srv_metrics_observe(&s->metrics, SRV_HIST_E2E, t - r->t0);
        if (res) srv_metrics_observe(&s->metrics, SRV_HIST_QUEUE, res->queue_ms / 1e3);
    }
    srv_metrics_request(&s->metrics, r->ep_name, r->status);
    if (s->o.audit && r->ep == EP_CHAT) {
        const srv_chat *c = r->chat;
        const char *hashes[64];
        int nh = 0;
        for (int i = 0; c && i < c->n_media && nh < 64; i++)
            if (c->media[i].fetched) hashes[nh++] = c->media[i].sha256;
        const char *roles[256], *texts[256];
        int nt = 0;
        for (int i = 0; c && i < c->n_vmsgs && nt < 256; i++, nt++) {
            roles[nt] = c->vmsgs[i].role;
            texts[nt] = c->vmsgs[i].content;
        }
        srv_audit_record a = {
            .time = r->wall0, .request_id = r->id, .key_id = r->key_id, .client = r->client, .endpoint = r->ep_name,
            .status = r->status, .model = s->model_name, .n_images = c ? srv_chat_n_images(c) : 0, .image_sha256 = hashes,
            .n_hashes = nh, .prompt_tokens = res ? res->prompt_tokens : 0, .completion_tokens = res ? res->completion_tokens : 0,
            .cached_tokens = res ? res->cached_tokens : 0, .finish = finish, .latency_ms = (t - r->t0) * 1e3,
            .ttft_ms = r->t_first > 0 ? (r->t_first - r->t0) * 1e3 : -1, .error = r->error[0] ? r->error : NULL,
            .roles = roles, .texts = texts, .n_texts = nt,
            .answer = r->filtered ? r->text.p : res ? res->text : NULL};
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !a.error) a.error = "client disconnected";
        srv_audit_write(s->o.audit, &a);
    }
    if (s->o.log_requests)
        fprintf(stderr, "%s %s %d %.1f ms%s%s\n", r->client, r->ep_name, r->status, (t - r->t0) * 1e3,
                finish ? " " : "", finish ? finish : "");
    if (r->job) s->be.free_job(r->job); /* no callback runs after this */
    srv_chat_free(r->chat);
    srv_buf_free(&r->body);
    srv_buf_free(&r->text);
    srv_buf_free(&r->sse);
    if (r->has_sync) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
    }
    free(r);
    pthread_mutex_lock(&s->mu);
    s->active--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- the daemon --------------------------------------------------------------------------------- */

int srv_start(const srv_options *o, srv **out)
{
    *out = NULL;
    srv *s = calloc(1, sizeof *s);
    if (!s) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    s->o = *o;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (!s->o.max_body_bytes) s->o.max_body_bytes = 20u << 20;
    if (!s->o.max_connections) s->o.max_connections = 512;
    if (!s->o.idle_timeout_s) s->o.idle_timeout_s = 120;
    s->model_name = strdup(o->model_name ? o->model_name : "vlm");
    s->started = (int64_t)wall_s();
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    srv_metrics_init(&s->metrics);

    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int gai = getaddrinfo(s->o.host, port, &hints, &ai);
    if (gai || !ai) {
        srv_stop(s);
        return vlm_errorf(VLM_ERR_INVALID, "cannot resolve host '%s': %s", o->host, gai_strerror(gai));
    }
    struct sockaddr_storage ss;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    const int v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | (v6 ? MHD_USE_IPv6 : 0);
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.idle_timeout_s, MHD_OPTION_LISTEN_BACKLOG_SIZE, 256u,
                            MHD_OPTION_END);
    if (!s->d) {
        int err = errno;
        srv_stop(s);
        return vlm_errorf(VLM_ERR_IO, "cannot listen on %s port %d: %s", o->host, o->port, strerror(err));
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    *out = s;
    return VLM_OK;
}

int srv_port(const srv *s) { return s->port; }
srv_metrics *srv_get_metrics(srv *s) { return &s->metrics; }

int64_t srv_active(srv *s)
{
    pthread_mutex_lock(&s->mu);
    int64_t n = s->active;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void srv_set_backend(srv *s, const srv_backend *b)
{
    pthread_mutex_lock(&s->mu);
    s->be = *b;
    s->ready = 1;
    pthread_mutex_unlock(&s->mu);
}

/* Waits (s->mu held) until no request is active or the deadline (monotonic seconds) passes. */
static void wait_idle(srv *s, double deadline)
{
    while (s->active > 0) {
        double left = deadline - now_s();
        if (left <= 0) break;
        vlm_cond_wait_ms(&s->cv, &s->mu, left > 0.1 ? 100 : left * 1e3);
    }
}

static int cancel_all(srv *s)
{
    int n = 0;
    s->cancelled_all = 1;
    for (req *r = s->reqs; r; r = r->next)
        if (r->job && !r->cancel_sent) {
            cancel_job(r);
            n++;
        }
    return n;
}

int srv_drain(srv *s, double seconds)
{
    pthread_mutex_lock(&s->mu);
    s->draining = 1;
    pthread_mutex_unlock(&s->mu);
    if (s->d) {
        MHD_socket fd = MHD_quiesce_daemon(s->d);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    pthread_mutex_lock(&s->mu);
    wait_idle(s, now_s() + seconds);
    int n = cancel_all(s);
    if (n) wait_idle(s, now_s() + 10);
    pthread_mutex_unlock(&s->mu);
    return n;
}

void srv_stop(srv *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->draining = s->stopping = 1;
    cancel_all(s);
    pthread_mutex_unlock(&s->mu);
    if (s->d) MHD_stop_daemon(s->d);
    srv_metrics_destroy(&s->metrics);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->model_name);
    free(s);
}
