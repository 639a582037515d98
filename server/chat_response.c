#include "server/chat_response.h"

#include "text/grounding.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(srv_buf *b, size_t extra)
{
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->n + extra + 1) nc *= 2;
    char *p = realloc(b->p, nc);
    if (!p) return -1;
    b->p = p;
    b->cap = nc;
    return 0;
}

int srv_buf_add(srv_buf *b, const void *data, size_t len)
{
    if (reserve(b, len)) return -1;
    if (len) memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = 0;
    return 0;
}

int srv_buf_printf(srv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
    return 0;
}

void srv_buf_free(srv_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static char *print(cJSON *root)
{
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

char *srv_error_json(const srv_error *e)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    if (!err) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type[0] ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(err, "param", e->param);
    else cJSON_AddNullToObject(err, "param");
    if (e->code[0]) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    return print(root);
}

const char *srv_finish_name(vlm_finish_reason r, int filtered)
{
    if (filtered) return "content_filter";
    if (r == VLM_FINISH_STOP) return "stop";
    if (r == VLM_FINISH_LENGTH) return "length";
    return NULL;
}

void *srv_boxes(const char *full_text, int image_index, int width, int height)
{
    if (!full_text) return NULL;
    vlm_grounding g = {0};
    if (vlm_grounding_parse(full_text, strlen(full_text), &g) || g.n_boxes == 0) {
        vlm_grounding_free(&g);
        return NULL;
    }
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < g.n_boxes; i++) {
        cJSON *b = cJSON_CreateObject();
        if (!b) break;
        cJSON_AddItemToArray(arr, b);
        cJSON_AddStringToObject(b, "label", g.boxes[i].label);
        cJSON_AddItemToObject(b, "grid", cJSON_CreateDoubleArray(g.boxes[i].grid, 4));
        if (width > 0 && height > 0) {
            int px[4];
            vlm_grounding_to_pixels(g.boxes[i].grid, width, height, px);
            cJSON_AddNumberToObject(b, "image", image_index);
            cJSON_AddItemToObject(b, "box", cJSON_CreateIntArray(px, 4));
        } else {
            cJSON_AddNullToObject(b, "image");
            cJSON_AddNullToObject(b, "box");
        }
    }
    vlm_grounding_free(&g);
    return arr;
}

static cJSON *usage_json(const srv_usage *u)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)u->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", (double)u->completion_tokens);
    cJSON_AddNumberToObject(o, "total_tokens", (double)(u->prompt_tokens + u->completion_tokens));
    cJSON *d = cJSON_AddObjectToObject(o, "prompt_tokens_details");
    if (d) cJSON_AddNumberToObject(d, "cached_tokens", (double)u->cached_tokens);
    return o;
}

static cJSON *head(const srv_resp_info *info, const char *object)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", info->id);
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)info->created);
    cJSON_AddStringToObject(root, "model", info->model);
    cJSON_AddNullToObject(root, "system_fingerprint");
    return root;
}

char *srv_completion_json(const srv_resp_info *info, const char *text, const char *finish, const srv_usage *u, void *boxes)
{
    cJSON *root = head(info, "chat.completion");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON *m = cJSON_AddObjectToObject(c, "message");
    if (m) {
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", text ? text : "");
        cJSON_AddNullToObject(m, "refusal");
        if (boxes) cJSON_AddItemToObject(m, "boxes", boxes);
        boxes = NULL;
    }
    cJSON_Delete(boxes);
    cJSON_AddNullToObject(c, "logprobs");
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToObject(root, "usage", usage_json(u));
    return print(root);
}

char *srv_chunk_json(const srv_resp_info *info, const char *role, const char *content, size_t content_len,
                     const char *finish, int usage_mode, const srv_usage *u, void *boxes)
{
    cJSON *root = head(info, "chat.completion.chunk");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    if (usage_mode != 2) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddItemToArray(choices, c);
        cJSON_AddNumberToObject(c, "index", 0);
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (d && role) cJSON_AddStringToObject(d, "role", role);
        if (d && content) {
            char *s = malloc(content_len + 1);
            if (s) {
                memcpy(s, content, content_len);
                s[content_len] = 0;
                cJSON_AddStringToObject(d, "content", s);
                free(s);
            }
        }
        if (d && boxes) cJSON_AddItemToObject(d, "boxes", boxes);
        else cJSON_Delete(boxes);
        cJSON_AddNullToObject(c, "logprobs");
        if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
        else cJSON_AddNullToObject(c, "finish_reason");
    } else {
        cJSON_Delete(boxes);
    }
    if (usage_mode == 1) cJSON_AddNullToObject(root, "usage");
    if (usage_mode == 2) cJSON_AddItemToObject(root, "usage", usage_json(u));
    return print(root);
}

int srv_sse_data(srv_buf *b, const char *json)
{
    return srv_buf_add(b, "data: ", 6) || srv_buf_add(b, json, strlen(json)) || srv_buf_add(b, "\n\n", 2) ? -1 : 0;
}

char *srv_models_json(const char *model, int64_t created)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToArray(data, m);
    cJSON_AddStringToObject(m, "id", model);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "vlm");
    return print(root);
}
