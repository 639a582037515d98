#include "server/chat_request.h"

#include "core/error.h"
#include "media/image.h"
#include "media/video.h"
#include "server/sha256.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int srv_error_set(srv_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
{
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", type ? type : "invalid_request_error");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

int srv_error_from_vlm(srv_error *e, int vlm_code, const char *param, const char *message)
{
    switch (vlm_code) {
    case VLM_ERR_INVALID:
    case VLM_ERR_FORMAT:
    case VLM_ERR_UNSUPPORTED:
        return srv_error_set(e, 400, NULL, "invalid_value", param, "%s", message);
    case VLM_ERR_LIMIT:
        return srv_error_set(e, 400, NULL, "limit_exceeded", param, "%s", message);
    case VLM_ERR_BUSY:
        return srv_error_set(e, 429, "rate_limit_error", "queue_full", NULL, "%s", message);
    case VLM_ERR_NOMEM:
        return srv_error_set(e, 503, "server_error", "out_of_memory", NULL, "%s", message);
    default:
        return srv_error_set(e, 500, "server_error", NULL, NULL, "%s", message);
    }
}

/* ---- parsing ------------------------------------------------------------------------------------ */

static int bad(srv_error *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(srv_error *e, const char *param, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return srv_error_set(e, 400, NULL, "invalid_value", param, "%s", msg);
}

static int is_absent(const cJSON *j) { return !j || cJSON_IsNull(j); }

/* An optional number in [lo, hi] (NAN when absent). */
static int get_number(const cJSON *root, const char *name, double lo, double hi, double *out, srv_error *e)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = NAN;
    if (is_absent(j)) return 0;
    if (!cJSON_IsNumber(j) || isnan(j->valuedouble))
        return srv_error_set(e, 400, NULL, "invalid_type", name, "'%s' must be a number", name);
    if (j->valuedouble < lo || j->valuedouble > hi)
        return bad(e, name, "'%s' must be between %g and %g, got %g", name, lo, hi, j->valuedouble);
    *out = j->valuedouble;
    return 0;
}

/* An optional integer in [lo, hi]; *present says whether it was given. */
static int get_int(const cJSON *root, const char *name, double lo, double hi, int64_t *out, int *present, srv_error *e)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, name);
    *present = 0;
    if (is_absent(j)) return 0;
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || isnan(j->valuedouble))
        return srv_error_set(e, 400, NULL, "invalid_type", name, "'%s' must be an integer", name);
    if (j->valuedouble < lo || j->valuedouble > hi)
        return bad(e, name, "'%s' must be between %.0f and %.0f, got %.17g", name, lo, hi, j->valuedouble);
    *out = (int64_t)j->valuedouble;
    *present = 1;
    return 0;
}

static int get_bool(const cJSON *root, const char *name, int *out, srv_error *e)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, name);
    if (is_absent(j)) return 0;
    if (!cJSON_IsBool(j)) return srv_error_set(e, 400, NULL, "invalid_type", name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(j);
    return 0;
}

static int parse_stop(srv_chat *c, const cJSON *root, int max_stop, srv_error *e)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (is_absent(j)) return 0;
    int n = cJSON_IsString(j) ? 1 : cJSON_IsArray(j) ? cJSON_GetArraySize(j) : -1;
    if (n < 0) return srv_error_set(e, 400, NULL, "invalid_type", "stop", "'stop' must be a string or an array of strings");
    if (n > max_stop) return bad(e, "stop", "'stop' takes at most %d strings, got %d", max_stop, n);
    c->stop = calloc((size_t)n + 1, sizeof *c->stop);
    if (!c->stop) return srv_error_set(e, 503, "server_error", NULL, NULL, "out of memory");
    const cJSON *s = cJSON_IsString(j) ? j : j->child;
    for (; s; s = cJSON_IsString(j) ? NULL : s->next) {
        if (!cJSON_IsString(s)) return srv_error_set(e, 400, NULL, "invalid_type", "stop", "'stop' must hold strings");
        if (strlen(s->valuestring) > 1024) return bad(e, "stop", "a stop string is longer than 1024 bytes");
        if (s->valuestring[0]) c->stop[c->n_stop++] = s->valuestring; /* empty strings stop nothing */
    }
    return 0;
}

static int count_markers(const char *s)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, "<image>")); p += 7) n++;
    return n;
}

/* One content part of message mi, part pi. */
static int parse_part(srv_chat *c, srv_msg *m, const cJSON *part, int mi, int pi, int max_media, srv_error *e)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content[%d]", mi, pi);
    if (!cJSON_IsObject(part)) return srv_error_set(e, 400, NULL, "invalid_type", param, "a content part must be an object");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
    if (!cJSON_IsString(type)) return srv_error_set(e, 400, NULL, "invalid_type", param, "a content part needs a string 'type'");
    srv_part *p = &m->parts[m->n_parts];
    if (!strcmp(type->valuestring, "text")) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(t)) return srv_error_set(e, 400, NULL, "invalid_type", param, "a text part needs a string 'text'");
        p->text = t->valuestring;
        if (strstr(p->text, "<image>")) m->markers = 1;
        m->n_parts++;
        return 0;
    }
    int video = !strcmp(type->valuestring, "video_url");
    if (!video && strcmp(type->valuestring, "image_url"))
        return bad(e, param, "content part type '%.40s' is not supported (text, image_url, video_url)", type->valuestring);
    if (strcmp(m->role, "user"))
        return bad(e, param, "only user messages can hold images or videos, not %s messages", m->role);
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(part, type->valuestring);
    const cJSON *url = cJSON_IsString(obj) ? obj : cJSON_GetObjectItemCaseSensitive(obj, "url");
    if (!cJSON_IsString(url))
        return srv_error_set(e, 400, NULL, "invalid_type", param, "a %s part needs '%s': {\"url\": \"...\"}", type->valuestring,
                             type->valuestring);
    if (cJSON_IsObject(obj)) {
        const cJSON *detail = cJSON_GetObjectItemCaseSensitive(obj, "detail");
        if (!is_absent(detail) && (!cJSON_IsString(detail) || (strcmp(detail->valuestring, "auto") && strcmp(detail->valuestring, "low") &&
                                                              strcmp(detail->valuestring, "high"))))
            return bad(e, param, "'detail' must be \"auto\", \"low\" or \"high\"");
    }
    if (!vlm_url_is_url(url->valuestring))
        return bad(e, param, "the %s must be a data:, http(s):// or file:// URL", type->valuestring);
    if (c->n_media >= max_media) return bad(e, param, "a request takes at most %d images and videos", max_media);
    srv_media *md = &c->media[c->n_media];
    memset(md, 0, sizeof *md);
    md->video = video;
    md->url = url->valuestring;
    p->is_media = 1;
    p->media = c->n_media++;
    m->n_parts++;
    return 0;
}

static int parse_messages(srv_chat *c, const cJSON *root, const srv_chat_limits *lim, srv_error *e)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (is_absent(msgs)) return srv_error_set(e, 400, NULL, "missing_required_parameter", "messages", "'messages' is required");
    if (!cJSON_IsArray(msgs)) return srv_error_set(e, 400, NULL, "invalid_type", "messages", "'messages' must be an array");
    int n = cJSON_GetArraySize(msgs);
    if (n == 0) return bad(e, "messages", "'messages' must not be empty");
    if (n > lim->max_messages) return bad(e, "messages", "'messages' takes at most %d messages, got %d", lim->max_messages, n);
    /* parts and media: at most the number of array elements in all contents */
    int n_parts = 0;
    for (const cJSON *m = msgs->child; m; m = m->next) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        n_parts += cJSON_IsArray(content) ? cJSON_GetArraySize(content) : 1;
    }
    c->msgs = calloc((size_t)n, sizeof *c->msgs);
    srv_part *parts = calloc((size_t)n_parts + 1, sizeof *parts);
    c->media = calloc((size_t)lim->max_media + 1, sizeof *c->media);
    if (!c->msgs || !parts || !c->media) {
        free(parts);
        return srv_error_set(e, 503, "server_error", NULL, NULL, "out of memory");
    }
    c->msgs[0].parts = parts; /* the block, freed through msgs[0] */
    int i = 0, seen_other = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", i);
        if (!cJSON_IsObject(m)) return srv_error_set(e, 400, NULL, "invalid_type", param, "a message must be an object");
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        snprintf(param, sizeof param, "messages[%d].role", i);
        if (!cJSON_IsString(role)) return srv_error_set(e, 400, NULL, "invalid_type", param, "a message needs a string 'role'");
        const char *r = role->valuestring;
        srv_msg *sm = &c->msgs[c->n_msgs];
        if (!strcmp(r, "system") || !strcmp(r, "developer")) sm->role = "system";
        else if (!strcmp(r, "user")) sm->role = "user";
        else if (!strcmp(r, "assistant")) sm->role = "assistant";
        else return bad(e, param, "role '%.40s' is not supported (system, developer, user, assistant)", r);
        if (sm->role[0] == 's' && seen_other) return bad(e, param, "system messages must come before the others");
        if (sm->role[0] != 's') seen_other = 1;
        sm->parts = parts;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        snprintf(param, sizeof param, "messages[%d].content", i);
        if (cJSON_IsString(content)) {
            parts[0].text = content->valuestring;
            sm->markers = strstr(content->valuestring, "<image>") != NULL;
            sm->n_parts = 1;
        } else if (cJSON_IsArray(content)) {
            int pi = 0;
            for (const cJSON *p = content->child; p; p = p->next, pi++)
                if (parse_part(c, sm, p, i, pi, lim->max_media, e)) return -1;
        } else if (is_absent(content) && sm->role[0] == 'a') {
            sm->n_parts = 0; /* an assistant turn without content (e.g. tool calls, which are not used) */
        } else {
            return srv_error_set(e, 400, NULL, is_absent(content) ? "missing_required_parameter" : "invalid_type", param,
                                 "a message's 'content' must be a string or an array of parts");
        }
        parts += sm->n_parts;
        c->n_msgs++;
    }
    if (!strcmp(c->msgs[c->n_msgs - 1].role, "system")) return bad(e, "messages", "the conversation has no user message");
    return 0;
}

static int refuse_unsupported(const cJSON *root, srv_error *e)
{
    int64_t n;
    int present;
    if (get_int(root, "n", -1e15, 1e15, &n, &present, e)) return -1;
    if (present && n != 1) return bad(e, "n", "only n = 1 is supported");
    double v;
    /* The engine has a multiplicative repetition penalty, not OpenAI's additive ones: 0 (the default)
     * is accepted, anything else refused rather than silently approximated. */
    if (get_number(root, "frequency_penalty", -2, 2, &v, e)) return -1;
    if (!isnan(v) && v != 0) return bad(e, "frequency_penalty", "frequency_penalty is not supported (only 0); use repetition_penalty");
    if (get_number(root, "presence_penalty", -2, 2, &v, e)) return -1;
    if (!isnan(v) && v != 0) return bad(e, "presence_penalty", "presence_penalty is not supported (only 0); use repetition_penalty");
    int b = 0;
    if (get_bool(root, "logprobs", &b, e)) return -1;
    if (b) return bad(e, "logprobs", "logprobs are not supported");
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "top_logprobs");
    if (!is_absent(j)) return bad(e, "top_logprobs", "logprobs are not supported");
    j = cJSON_GetObjectItemCaseSensitive(root, "tools");
    if (!is_absent(j) && (!cJSON_IsArray(j) || cJSON_GetArraySize(j) > 0)) return bad(e, "tools", "tools are not supported");
    j = cJSON_GetObjectItemCaseSensitive(root, "functions");
    if (!is_absent(j) && (!cJSON_IsArray(j) || cJSON_GetArraySize(j) > 0)) return bad(e, "functions", "functions are not supported");
    j = cJSON_GetObjectItemCaseSensitive(root, "logit_bias");
    if (!is_absent(j) && (!cJSON_IsObject(j) || j->child)) return bad(e, "logit_bias", "logit_bias is not supported");
    j = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    if (!is_absent(j)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text"))
            return bad(e, "response_format", "only response_format {\"type\": \"text\"} is supported");
    }
    return 0;
}

int srv_chat_parse(const char *body, size_t len, const srv_chat_limits *lim_in, srv_chat **out, srv_error *e)
{
    *out = NULL;
    srv_chat_limits lim = {256, 16, 16};
    if (lim_in) {
        if (lim_in->max_messages > 0) lim.max_messages = lim_in->max_messages;
        if (lim_in->max_media > 0) lim.max_media = lim_in->max_media;
        if (lim_in->max_stop > 0) lim.max_stop = lim_in->max_stop;
    }
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root)
        return srv_error_set(e, 400, NULL, "invalid_json", NULL,
                             "We could not parse the JSON body of your request: invalid JSON near byte %td",
                             cJSON_GetErrorPtr() && cJSON_GetErrorPtr() >= body && cJSON_GetErrorPtr() <= body + len
                                 ? cJSON_GetErrorPtr() - body : (ptrdiff_t)0);
    srv_chat *c = calloc(1, sizeof *c);
    if (!c) {
        cJSON_Delete(root);
        return srv_error_set(e, 503, "server_error", NULL, NULL, "out of memory");
    }
    c->json = root;
    c->max_tokens = -1;
    c->temperature = c->top_p = c->repetition_penalty = NAN;
    c->top_k = -1;
    if (!cJSON_IsObject(root)) {
        bad(e, NULL, "the request body must be a JSON object");
        goto fail;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!is_absent(model)) {
        if (!cJSON_IsString(model)) {
            srv_error_set(e, 400, NULL, "invalid_type", "model", "'model' must be a string");
            goto fail;
        }
        c->model = model->valuestring;
    }
    if (parse_messages(c, root, &lim, e) || refuse_unsupported(root, e)) goto fail;
    int64_t v;
    int present;
    if (get_int(root, "max_tokens", 1, 1 << 24, &v, &present, e)) goto fail;
    if (present) c->max_tokens = v;
    if (get_int(root, "max_completion_tokens", 1, 1 << 24, &v, &present, e)) goto fail;
    if (present) c->max_tokens = v;
    if (get_number(root, "temperature", 0, 2, &c->temperature, e) || get_number(root, "top_p", 0, 1, &c->top_p, e) ||
        get_number(root, "repetition_penalty", 0.01, 10, &c->repetition_penalty, e))
        goto fail;
    if (get_int(root, "top_k", -1, 1 << 30, &v, &present, e)) goto fail;
    if (present) c->top_k = (int)v;
    if (get_int(root, "seed", -9.2e18, 1.8e19, &v, &c->has_seed, e)) goto fail;
    if (c->has_seed) c->seed = (uint64_t)v;
    if (get_bool(root, "ignore_eos", &c->ignore_eos, e) || get_bool(root, "stream", &c->stream, e)) goto fail;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (!is_absent(so)) {
        if (!cJSON_IsObject(so)) {
            srv_error_set(e, 400, NULL, "invalid_type", "stream_options", "'stream_options' must be an object");
            goto fail;
        }
        if (!c->stream) {
            bad(e, "stream_options", "stream_options is only allowed when stream is true");
            goto fail;
        }
        if (get_bool(so, "include_usage", &c->include_usage, e)) goto fail;
    }
    if (parse_stop(c, root, lim.max_stop, e)) goto fail;
    *out = c;
    return 0;
fail:
    srv_chat_free(c);
    return -1;
}

/* ---- media -------------------------------------------------------------------------------------- */

static int media_error(srv_error *e, int rc, int index, const char *what)
{
    char param[48];
    snprintf(param, sizeof param, "image[%d]", index);
    char msg[480];
    snprintf(msg, sizeof msg, "%s %d: %s", what, index, vlm_last_error());
    if (rc == VLM_ERR_IO) return srv_error_set(e, 400, NULL, "image_fetch_failed", param, "%s", msg);
    if (rc == VLM_ERR_INVALID) return srv_error_set(e, 400, NULL, "image_url_refused", param, "%s", msg);
    return srv_error_from_vlm(e, rc, param, msg);
}

static int fetch_video(srv_media *md, const srv_media_options *o, int index, srv_error *e)
{
    vlm_video_limits vl = {o->max_pixels, 0, 1};
    vlm_video *v = NULL;
    int rc = vlm_video_open_memory(md->bytes, md->n_bytes, &vl, &v);
    vlm_video_sampling s = {VLM_VIDEO_COUNT, 0, o->video_frames > 0 ? o->video_frames : 8};
    if (rc == VLM_OK) rc = vlm_video_start(v, &s);
    vlm_image *frames = calloc((size_t)s.count, sizeof *frames);
    md->frames = calloc((size_t)s.count, sizeof *md->frames);
    md->decoded = frames;
    if (rc == VLM_OK && (!frames || !md->frames)) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    double pts;
    while (rc == VLM_OK && md->n_frames < s.count) {
        int r = vlm_video_next(v, &frames[md->n_frames], &pts);
        if (r < 0) rc = r;
        if (r <= 0) break;
        vlm_image_input *in = &md->frames[md->n_frames++];
        in->rgb = frames[md->n_frames - 1].rgb;
        in->width = md->width = frames[md->n_frames - 1].width;
        in->height = md->height = frames[md->n_frames - 1].height;
    }
    vlm_video_close(v);
    if (rc == VLM_OK && md->n_frames == 0) rc = vlm_errorf(VLM_ERR_FORMAT, "the video has no frames");
    return rc ? media_error(e, rc, index, "video") : 0;
}

int srv_chat_fetch(srv_chat *c, const srv_media_options *o, srv_error *e)
{
    for (int i = 0; i < c->n_media; i++) {
        srv_media *md = &c->media[i];
        if (md->fetched) continue;
        vlm_url_policy pol = o->url;
        pol.accept = md->video ? VLM_URL_ACCEPT_VIDEO | VLM_URL_ACCEPT_IMAGE : VLM_URL_ACCEPT_IMAGE;
        vlm_url_blob blob = {0};
        int rc = vlm_url_fetch(md->url, &pol, &blob);
        if (rc) return media_error(e, rc, i, md->video ? "video" : "image");
        md->fetched = 1;
        md->bytes = blob.data;
        md->n_bytes = blob.size;
        srv_sha256_hex(md->bytes, md->n_bytes, md->sha256);
        if (md->video && blob.kind == VLM_MEDIA_VIDEO) {
            if (fetch_video(md, o, i, e)) return -1;
            continue;
        }
        md->video = 0; /* a video_url holding an image is that image */
        vlm_image_info info;
        rc = vlm_image_probe_memory(md->bytes, md->n_bytes, &info);
        if (rc) return media_error(e, rc, i, "image");
        const int64_t max_px = o->max_pixels > 0 ? o->max_pixels : VLM_IMAGE_DEFAULT_MAX_PIXELS;
        if ((int64_t)info.width * info.height > max_px)
            return srv_error_set(e, 400, NULL, "image_too_large", NULL, "image %d is %dx%d, more than the %lld pixels allowed", i,
                                 info.width, info.height, (long long)max_px);
        md->width = info.width;
        md->height = info.height;
        md->frames = calloc(1, sizeof *md->frames);
        if (!md->frames) return srv_error_set(e, 503, "server_error", NULL, NULL, "out of memory");
        md->frames[0].bytes = md->bytes;
        md->frames[0].n_bytes = md->n_bytes;
        md->n_frames = 1;
    }
    return 0;
}

/* ---- engine messages ---------------------------------------------------------------------------- */

/* Appends s to the growing string *buf (length *n, capacity *cap). */
static int append(char **buf, size_t *n, size_t *cap, const char *s, size_t len)
{
    if (*n + len + 1 > *cap) {
        size_t nc = (*n + len + 1) * 2;
        char *b = realloc(*buf, nc);
        if (!b) return -1;
        *buf = b;
        *cap = nc;
    }
    memcpy(*buf + *n, s, len);
    *n += len;
    (*buf)[*n] = 0;
    return 0;
}

static int media_count(const srv_media *md) { return md->fetched ? md->n_frames : 1; }

int srv_chat_build(srv_chat *c, srv_error *e)
{
    /* leading system messages become one */
    int n_sys = 0;
    while (n_sys < c->n_msgs && c->msgs[n_sys].role[0] == 's') n_sys++;
    const int n = c->n_msgs - n_sys + (n_sys > 0);
    c->vmsgs = calloc((size_t)n, sizeof *c->vmsgs);
    c->contents = calloc((size_t)n, sizeof *c->contents);
    c->inputs = calloc((size_t)n, sizeof *c->inputs);
    if (!c->vmsgs || !c->contents || !c->inputs) return srv_error_set(e, 503, "server_error", NULL, NULL, "out of memory");
    c->n_vmsgs = n;
    int vi = 0;
    for (int mi = 0; mi < c->n_msgs; mi++) {
        const srv_msg *m = &c->msgs[mi];
        char *buf = c->contents[vi];
        size_t len = buf ? strlen(buf) : 0, cap = len;
        int n_img = 0, markers = 0;
        for (int p = 0; p < m->n_parts; p++) {
            if (m->parts[p].is_media) n_img += media_count(&c->media[m->parts[p].media]);
            else markers += count_markers(m->parts[p].text);
        }
        if (m->markers && markers != n_img)
            return bad(e, "messages", "message %d has %d <image> markers for %d images", mi, markers, n_img);
        vlm_image_input *in = n_img ? calloc((size_t)n_img, sizeof *in) : NULL;
        if (n_img && !in) return srv_error_set(e, 503, "server_error", NULL, NULL, "out of memory");
        int k = 0, first = 1;
        if (buf && m->n_parts && append(&buf, &len, &cap, "\n", 1)) goto nomem; /* a further leading system message */
        for (int p = 0; p < m->n_parts; p++) {
            const srv_part *pt = &m->parts[p];
            if (pt->is_media) {
                const srv_media *md = &c->media[pt->media];
                for (int f = 0; f < media_count(md); f++) {
                    if (md->fetched) in[k] = md->frames[f];
                    else in[k].path = md->url;
                    k++;
                    if (m->markers) continue;
                    if ((!first && append(&buf, &len, &cap, "\n", 1)) || append(&buf, &len, &cap, "<image>", 7)) goto nomem;
                    first = 0;
                }
            } else {
                if ((!first && append(&buf, &len, &cap, "\n", 1)) || append(&buf, &len, &cap, pt->text, strlen(pt->text)))
                    goto nomem;
                first = 0;
            }
        }
        if (!buf && append(&buf, &len, &cap, "", 0)) goto nomem;
        c->contents[vi] = buf;
        c->inputs[vi] = in;
        vlm_message *vm = &c->vmsgs[vi];
        vm->role = m->role;
        vm->content = buf;
        vm->images = in;
        vm->n_images = n_img;
        if (m->role[0] != 's' || mi + 1 >= c->n_msgs || c->msgs[mi + 1].role[0] != 's') vi++;
        continue;
    nomem:
        free(in);
        c->contents[vi] = buf;
        return srv_error_set(e, 503, "server_error", NULL, NULL, "out of memory");
    }
    return 0;
}

void srv_chat_gen(const srv_chat *c, int64_t default_max_tokens, vlm_ask_options *o)
{
    int64_t mt = c->max_tokens > 0 ? c->max_tokens : default_max_tokens;
    o->max_new_tokens = mt > (1 << 24) ? (1 << 24) : (int)mt;
    if (!isnan(c->temperature)) o->temperature = (float)c->temperature;
    if (!isnan(c->top_p)) {
        if (c->top_p <= 0) o->temperature = 0; /* only the most likely token: greedy */
        else o->top_p = (float)c->top_p;
    }
    if (c->top_k > 0) o->top_k = c->top_k;
    if (!isnan(c->repetition_penalty)) o->repetition_penalty = (float)c->repetition_penalty;
    if (c->has_seed) o->seed = c->seed;
    if (c->ignore_eos) o->ignore_eos = 1;
    o->stop = c->stop;
    o->n_stop = c->n_stop;
}

const char *srv_chat_text(const srv_chat *c, int i)
{
    for (int m = 0; m < c->n_msgs; m++)
        for (int p = 0; p < c->msgs[m].n_parts; p++)
            if (!c->msgs[m].parts[p].is_media && i-- == 0) return c->msgs[m].parts[p].text;
    return NULL;
}

int srv_chat_n_images(const srv_chat *c)
{
    int n = 0;
    for (int i = 0; i < c->n_media; i++) n += media_count(&c->media[i]);
    return n;
}

void srv_chat_free(srv_chat *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_media; i++) {
        srv_media *md = &c->media[i];
        free(md->bytes);
        vlm_image *fr = md->decoded;
        for (int f = 0; fr && f < md->n_frames; f++) vlm_image_free(&fr[f]);
        free(md->decoded);
        free(md->frames);
    }
    for (int i = 0; i < c->n_vmsgs; i++) {
        if (c->contents) free(c->contents[i]);
        if (c->inputs) free(c->inputs[i]);
    }
    free(c->contents);
    free(c->inputs);
    free(c->vmsgs);
    if (c->msgs) free(c->msgs[0].parts);
    free(c->msgs);
    free(c->media);
    free(c->stop);
    cJSON_Delete(c->json);
    free(c);
}
