/* vlm batch: an OpenAI Batch input file (JSONL of {"custom_id", "method": "POST", "url": "/v1/chat/completions",
 * "body": {...}}) answered offline through the same request parser as vlm serve and the request engine, many
 * requests in flight together; output lines in OpenAI's batch output format, appended as requests finish, so
 * a rerun skips the custom_ids already answered. */
#include "core/error.h"
#include "server/chat_request.h"
#include "server/chat_response.h"
#include "server/server_cli.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static void usage(FILE *f)
{
    fputs("usage: vlm batch -m <model dir> requests.jsonl -o results.jsonl [options]\n"
          "\n"
          "Each input line: {\"custom_id\": \"...\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {...}}\n"
          "(OpenAI's Batch input format; body as for vlm serve, not streamed). Each output line:\n"
          "{\"id\", \"custom_id\", \"response\": {\"status_code\", \"request_id\", \"body\"}, \"error\"}, written as requests\n"
          "finish. Output lines already in results.jsonl are kept and their custom_ids skipped (a rerun resumes).\n"
          "\n"
          "  -o, --output FILE        results (appended; required)\n"
          "  --window N               requests prepared and in the engine at once (256)\n",
          f);
    srv_cli_common_usage(f);
}

typedef struct done_queue done_queue;
typedef struct item {
    done_queue *q;
    char *custom_id;
    srv_chat *chat;
    vlm_job *job;
    const vlm_result *result;
    char id[40];
    int64_t created;
    struct item *next_done;
} item;

struct done_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *done; /* finished, not yet written */
};

static void on_done(void *user, vlm_job *job, const vlm_result *r)
{
    (void)job;
    item *it = user;
    done_queue *q = it->q;
    pthread_mutex_lock(&q->mu);
    it->result = r;
    it->next_done = q->done;
    q->done = it;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static void new_id(char *out, size_t cap, const char *prefix)
{
    unsigned char r[12] = {0};
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        static unsigned long long n;
        unsigned long long v = (unsigned long long)time(NULL) * 1000003ULL + ++n;
        memcpy(r, &v, sizeof v);
    }
    int k = snprintf(out, cap, "%s", prefix);
    for (size_t i = 0; i < sizeof r && (size_t)k + 2 < cap; i++) k += snprintf(out + k, cap - (size_t)k, "%02x", r[i]);
}

/* One output line; body (a JSON text) or err_code/err_message. */
static int write_line(FILE *out, const char *custom_id, int status, const char *request_id, const char *body,
                      const char *err_code, const char *err_message)
{
    char id[40];
    new_id(id, sizeof id, "batch_req_");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    if (custom_id) cJSON_AddStringToObject(o, "custom_id", custom_id);
    else cJSON_AddNullToObject(o, "custom_id");
    if (body) {
        cJSON *resp = cJSON_AddObjectToObject(o, "response");
        cJSON_AddNumberToObject(resp, "status_code", status);
        cJSON_AddStringToObject(resp, "request_id", request_id ? request_id : "");
        cJSON *b = cJSON_Parse(body);
        if (b) cJSON_AddItemToObject(resp, "body", b);
        else cJSON_AddNullToObject(resp, "body");
        cJSON_AddNullToObject(o, "error");
    } else {
        cJSON_AddNullToObject(o, "response");
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", err_code);
        cJSON_AddStringToObject(e, "message", err_message);
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!line) return -1;
    int rc = fputs(line, out) < 0 || fputc('\n', out) == EOF || fflush(out) ? -1 : 0;
    free(line);
    return rc;
}

static int write_error(FILE *out, const char *custom_id, const char *request_id, const srv_error *e)
{
    char *body = srv_error_json(e);
    int rc = write_line(out, custom_id, e->status, request_id, body ? body : "{}", NULL, NULL);
    free(body);
    return rc;
}

/* custom_ids already answered in the output file (status below 500 and not 429: those are retried). */
static int load_finished(const char *path, char ***ids, int *n)
{
    *ids = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    int cap_ids = 0;
    while (getline(&line, &cap, f) >= 0) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *cid = cJSON_GetObjectItemCaseSensitive(o, "custom_id");
        const cJSON *resp = cJSON_GetObjectItemCaseSensitive(o, "response");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(resp, "status_code");
        const int status = cJSON_IsNumber(st) ? (int)st->valuedouble : 0;
        if (cJSON_IsString(cid) && (!resp || cJSON_IsNull(resp) || (status < 500 && status != 429))) {
            if (*n == cap_ids) {
                cap_ids = cap_ids ? cap_ids * 2 : 64;
                char **nid = realloc(*ids, (size_t)cap_ids * sizeof *nid);
                if (!nid) break;
                *ids = nid;
            }
            (*ids)[(*n)++] = strdup(cid->valuestring);
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int vlm_cmd_batch(int argc, char **argv)
{
    srv_cli_common c;
    srv_cli_common_init(&c);
    const char *in_path = NULL, *out_path = NULL;
    long long window = 256;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return 0;
        }
        int r = srv_cli_common_option("batch", &c, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if ((!strcmp(o, "-o") || !strcmp(o, "--output")) && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(o, "--window") && i + 1 < argc) {
            window = atoll(argv[++i]);
            if (window < 1 || window > 100000) {
                fprintf(stderr, "vlm batch: --window needs an integer in [1, 100000]\n");
                return 2;
            }
        } else if (o[0] != '-' && !in_path) in_path = o;
        else {
            fprintf(stderr, "vlm batch: unknown option or argument '%s'\n", o);
            usage(stderr);
            return 2;
        }
    }
    if (!c.model_dir || !in_path || !out_path) {
        fprintf(stderr, "vlm batch: needs -m <model dir>, an input file and -o <output file>\n");
        return 2;
    }
    c.eng.throughput = 1; /* nobody watches the tokens arrive: requests per second count */
    if (!c.eng.max_waiting) c.eng.max_waiting = (int)(window < 4096 ? window : 4096);

    FILE *in = fopen(in_path, "r");
    if (!in) {
        fprintf(stderr, "vlm batch: cannot open '%s'\n", in_path);
        return 1;
    }
    char **finished;
    int n_finished;
    load_finished(out_path, &finished, &n_finished);
    if (n_finished) qsort(finished, (size_t)n_finished, sizeof *finished, cmp_str);
    FILE *out = fopen(out_path, "a");
    if (!out) {
        fprintf(stderr, "vlm batch: cannot open '%s' for appending\n", out_path);
        fclose(in);
        return 1;
    }
    vlm_engine *e = NULL;
    char *name = srv_cli_model_name(&c);
    int status = 1;
    if (srv_cli_open_engine("batch", &c, &e)) goto out;

    done_queue q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len = 0;
    long long lineno = 0, n_ok = 0, n_err = 0, n_skip = 0, inflight = 0, io_err = 0;
    item *held = NULL; /* prepared but refused as busy: submitted again once something finished */
    int eof = 0;
    char **seen = NULL;
    int n_seen = 0, cap_seen = 0;
    while (!eof || held || inflight > 0) {
        /* fill the window */
        while ((held || !eof) && inflight < window) {
            item *it = held;
            held = NULL;
            if (!it) {
                if ((len = getline(&line, &cap, in)) < 0) {
                    eof = 1;
                    break;
                }
                lineno++;
                while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
                if (len == 0) continue;
                cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
                const cJSON *cid = cJSON_GetObjectItemCaseSensitive(o, "custom_id");
                const cJSON *method = cJSON_GetObjectItemCaseSensitive(o, "method");
                const cJSON *url = cJSON_GetObjectItemCaseSensitive(o, "url");
                const cJSON *body = cJSON_GetObjectItemCaseSensitive(o, "body");
                char msg[160];
                msg[0] = 0;
                const char *cids = cJSON_IsString(cid) ? cid->valuestring : NULL;
                if (cids && n_finished && bsearch(&cids, finished, (size_t)n_finished, sizeof *finished, cmp_str)) {
                    n_skip++;
                    cJSON_Delete(o);
                    continue;
                }
                if (!o) snprintf(msg, sizeof msg, "line %lld is not JSON", lineno);
                else if (!cJSON_IsString(cid) || !cid->valuestring[0]) snprintf(msg, sizeof msg, "line %lld has no custom_id", lineno);
                else if (!cJSON_IsString(method) || strcmp(method->valuestring, "POST"))
                    snprintf(msg, sizeof msg, "line %lld: method must be POST", lineno);
                else if (!cJSON_IsString(url) || strcmp(url->valuestring, "/v1/chat/completions"))
                    snprintf(msg, sizeof msg, "line %lld: url must be /v1/chat/completions", lineno);
                else if (!cJSON_IsObject(body)) snprintf(msg, sizeof msg, "line %lld has no body object", lineno);
                if (!msg[0]) { /* duplicates within the input */
                    for (int k = 0; k < n_seen && !msg[0]; k++)
                        if (!strcmp(seen[k], cids)) snprintf(msg, sizeof msg, "line %lld: custom_id '%.60s' repeats an earlier line", lineno, cids);
                    if (!msg[0] && n_seen == cap_seen) {
                        cap_seen = cap_seen ? cap_seen * 2 : 256;
                        char **ns = realloc(seen, (size_t)cap_seen * sizeof *ns);
                        if (ns) seen = ns;
                    }
                    if (!msg[0] && n_seen < cap_seen) seen[n_seen++] = strdup(cids);
                }
                if (msg[0]) {
                    io_err |= write_line(out, cids, 0, NULL, NULL, "invalid_request", msg);
                    n_err++;
                    cJSON_Delete(o);
                    continue;
                }
                it = calloc(1, sizeof *it);
                char *btext = cJSON_PrintUnformatted(body);
                it->custom_id = strdup(cids);
                cJSON_Delete(o);
                new_id(it->id, sizeof it->id, "chatcmpl-");
                it->created = (int64_t)time(NULL);
                srv_error err;
                int bad = srv_chat_parse(btext ? btext : "", btext ? strlen(btext) : 0, &c.limits, &it->chat, &err);
                free(btext);
                if (!bad && it->chat->stream) bad = srv_error_set(&err, 400, NULL, "invalid_value", "stream", "batch requests cannot be streamed");
                if (!bad && it->chat->model && strcmp(it->chat->model, name))
                    bad = srv_error_set(&err, 404, NULL, "model_not_found", "model", "The model `%.200s` does not exist.", it->chat->model);
                if (!bad) bad = srv_chat_fetch(it->chat, &c.media, &err) || srv_chat_build(it->chat, &err);
                if (bad) {
                    io_err |= write_error(out, it->custom_id, it->id, &err);
                    n_err++;
                    srv_chat_free(it->chat);
                    free(it->custom_id);
                    free(it);
                    continue;
                }
            }
            vlm_request_options ro;
            vlm_request_options_default(&ro);
            srv_chat_gen(it->chat, c.default_max_tokens, &ro.gen);
            ro.gen.max_pixels = c.media.max_pixels;
            ro.on_done = on_done;
            ro.done_user = it;
            it->q = &q;
            int rc = vlm_engine_submit(e, it->chat->vmsgs, it->chat->n_vmsgs, &ro, &it->job);
            if (rc == VLM_ERR_BUSY && inflight > 0) {
                vlm_job_free(it->job);
                it->job = NULL;
                held = it;
                break;
            }
            if (rc) {
                srv_error err;
                srv_error_from_vlm(&err, rc, NULL, vlm_last_error());
                io_err |= write_error(out, it->custom_id, it->id, &err);
                n_err++;
                vlm_job_free(it->job);
                srv_chat_free(it->chat);
                free(it->custom_id);
                free(it);
                continue;
            }
            inflight++;
        }
        if (inflight == 0) continue;
        /* write what finished */
        pthread_mutex_lock(&q.mu);
        while (!q.done) pthread_cond_wait(&q.cv, &q.mu);
        item *list = q.done;
        q.done = NULL;
        pthread_mutex_unlock(&q.mu);
        while (list) {
            item *it = list;
            list = it->next_done;
            const vlm_result *r = it->result;
            const char *finish = srv_finish_name(r->finish, 0);
            if (finish) {
                srv_resp_info info = {it->id, it->created, name};
                srv_usage u = {r->prompt_tokens, r->completion_tokens, r->cached_tokens};
                char *body = srv_completion_json(&info, r->text, finish, &u, NULL);
                io_err |= write_line(out, it->custom_id, 200, it->id, body ? body : "{}", NULL, NULL);
                free(body);
                n_ok++;
            } else {
                srv_error err;
                if (r->finish == VLM_FINISH_ERROR) srv_error_from_vlm(&err, r->error_code, NULL, r->error);
                else srv_error_set(&err, 500, "server_error", "cancelled", NULL, "the request was cancelled");
                io_err |= write_error(out, it->custom_id, it->id, &err);
                n_err++;
            }
            vlm_job_free(it->job);
            srv_chat_free(it->chat);
            free(it->custom_id);
            free(it);
            inflight--;
        }
        if ((n_ok + n_err) % 50 == 0 && n_ok + n_err > 0)
            fprintf(stderr, "vlm batch: %lld answered, %lld errors, %lld skipped\n", n_ok, n_err, n_skip);
    }
    free(line);
    for (int k = 0; k < n_seen; k++) free(seen[k]);
    free(seen);
    fprintf(stderr, "vlm batch: %lld answered, %lld errors, %lld skipped (already in %s)\n", n_ok, n_err, n_skip, out_path);
    if (io_err) fprintf(stderr, "vlm batch: writing '%s' failed\n", out_path);
    status = io_err ? 1 : 0;
out:
    vlm_engine_close(e);
    free(name);
    for (int k = 0; k < n_finished; k++) free(finished[k]);
    free(finished);
    fclose(out);
    fclose(in);
    return status;
}
