/* JSON the HTTP API answers with, in OpenAI's shapes: errors, chat.completion, chat.completion.chunk
 * (as Server-Sent Events), the model list, and the grounding boxes of an answer. Pure functions. */
#ifndef VLM_SERVER_CHAT_RESPONSE_H
#define VLM_SERVER_CHAT_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "server/chat_request.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A growable byte string (always NUL-terminated when p is set). */
typedef struct {
    char *p;
    size_t n, cap;
} srv_buf;
int srv_buf_add(srv_buf *b, const void *data, size_t len); /* 0 or -1 (out of memory) */
int srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void srv_buf_free(srv_buf *b);

typedef struct {
    const char *id;       /* "chatcmpl-..." */
    int64_t created;      /* unix seconds */
    const char *model;
} srv_resp_info;

typedef struct {
    int64_t prompt_tokens, completion_tokens, cached_tokens;
} srv_usage;

/* {"error": {"message", "type", "param", "code"}}, malloc'd (NULL when out of memory). */
char *srv_error_json(const srv_error *e);
/* "stop", "length", "content_filter" (filtered), NULL for the others. */
const char *srv_finish_name(vlm_finish_reason r, int filtered);
/* The grounding boxes written in an answer's full text (special tokens kept) as a JSON array
 * [{"label", "grid": [x1,y1,x2,y2], "image": i, "box": [pixels]}] ("image"/"box" null when width is 0);
 * a cJSON*, NULL when the text has no box. */
void *srv_boxes(const char *full_text, int image_index, int width, int height);
/* A whole chat.completion; boxes (from srv_boxes, may be NULL) is taken over. malloc'd. */
char *srv_completion_json(const srv_resp_info *info, const char *text, const char *finish, const srv_usage *u, void *boxes);
/* One chat.completion.chunk. role (first chunk) and content may be NULL; finish NULL = null; usage_mode 0 = no
 * "usage" member, 1 = "usage": null, 2 = u's figures with "choices": [] (the last chunk of include_usage).
 * boxes (may be NULL) is taken over and put in the delta. malloc'd. */
char *srv_chunk_json(const srv_resp_info *info, const char *role, const char *content, size_t content_len,
                     const char *finish, int usage_mode, const srv_usage *u, void *boxes);
/* "data: <json>\n\n" appended to b. */
int srv_sse_data(srv_buf *b, const char *json);
/* {"object": "list", "data": [{"id", "object": "model", "created", "owned_by": "vlm"}]} */
char *srv_models_json(const char *model, int64_t created);

#ifdef __cplusplus
}
#endif
#endif
