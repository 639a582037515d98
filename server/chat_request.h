/* POST /v1/chat/completions bodies (OpenAI's chat format) to engine requests.
 *
 *   srv_chat_parse    JSON text -> srv_chat: every field checked (types, ranges, roles, part types),
 *                     nothing fetched; a refusal is an srv_error in OpenAI's shape (400 + param).
 *   srv_chat_fetch    the image_url / video_url parts to bytes (media layer: data:, http(s):// under the
 *                     address policy, file:// under media_dir); videos sampled to frames.
 *   srv_chat_build    srv_chat -> vlm_message[] for vlm_engine_submit.
 *   srv_chat_gen      the sampling parameters into vlm_ask_options.
 *
 * Content of a message given as parts: when no text part holds an "<image>" marker, the parts are joined
 * in order with "\n", each image part (each sampled frame of a video part) as "<image>"; so one image then
 * one text part gives "<image>\nTEXT", the prompt `vlm ask -i IMAGE "TEXT"` builds. When a text part holds
 * markers, the text parts are joined with "\n" as written and the markers take the images in order (their
 * counts must agree). Pure functions except srv_chat_fetch (network, files). */
#ifndef VLM_SERVER_CHAT_REQUEST_H
#define VLM_SERVER_CHAT_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "media/url.h"
#include "vlm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An error as the HTTP API reports it: {"error": {"message", "type", "param", "code"}}. */
typedef struct {
    int status;        /* HTTP status */
    char type[40];     /* "invalid_request_error", "authentication_error", ... */
    char code[48];     /* "" = null */
    char param[64];    /* "" = null */
    char message[512];
} srv_error;

/* Fills e and returns -1. type NULL = "invalid_request_error"; code / param NULL = null. */
int srv_error_set(srv_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* A library status code (VLM_ERR_*) with its message, as an HTTP error: bad input (invalid, format,
 * limit, unsupported) 400, busy 429, out of memory 503, anything else 500. */
int srv_error_from_vlm(srv_error *e, int vlm_code, const char *param, const char *message);

typedef struct {
    int max_messages;   /* 0 = 256 */
    int max_media;      /* image_url + video_url parts per request; 0 = 16 */
    int max_stop;       /* 0 = 16 */
} srv_chat_limits;

typedef struct {
    vlm_url_policy url; /* data:/http(s)/file policy; url.max_bytes caps each image or video */
    int video_frames;   /* frames sampled evenly from a video_url (0 = 8) */
    int64_t max_pixels; /* per image or frame, checked from the header (0 = VLM_IMAGE_DEFAULT_MAX_PIXELS) */
} srv_media_options;

typedef struct {
    int video;            /* a video_url part */
    const char *url;      /* into the parsed JSON */
    /* after srv_chat_fetch */
    int fetched;
    uint8_t *bytes;       /* the encoded image or video */
    size_t n_bytes;
    char sha256[65];      /* of bytes */
    int n_frames;         /* images this part gives: 1, or a video's sampled frames */
    vlm_image_input *frames;
    void *decoded;        /* a video's frames (vlm_image[]) */
    int width, height;    /* the (last) image's size, 0 when unknown */
} srv_media;

typedef struct {
    int is_media;
    const char *text;     /* a text part (into the parsed JSON) */
    int media;            /* index into srv_chat.media */
} srv_part;

typedef struct {
    const char *role;     /* "system", "user" or "assistant" (static) */
    srv_part *parts;
    int n_parts;
    int markers;          /* a text part holds "<image>" */
} srv_msg;

typedef struct srv_chat {
    void *json;           /* the parsed body (cJSON), which the pointers above point into */
    const char *model;    /* NULL when not given */
    srv_msg *msgs;
    int n_msgs;
    srv_media *media;
    int n_media;
    /* parameters: -1 / NAN when not given */
    int64_t max_tokens;
    double temperature, top_p, repetition_penalty;
    int top_k;
    int has_seed;
    uint64_t seed;
    int ignore_eos;
    const char **stop;
    int n_stop;
    int stream, include_usage;
    /* after srv_chat_build */
    vlm_message *vmsgs;
    int n_vmsgs;
    char **contents;
    vlm_image_input **inputs;
} srv_chat;

/* 0, or -1 with *err set (400). *out NULL on failure. lim may be NULL. */
int srv_chat_parse(const char *body, size_t len, const srv_chat_limits *lim, srv_chat **out, srv_error *err);
/* Fetches and checks every media part (0, or -1 with *err: 400 for refused or bad URLs and images). */
int srv_chat_fetch(srv_chat *c, const srv_media_options *o, srv_error *err);
/* Builds c->vmsgs (0, or -1 with *err). Media not fetched are given to the engine as their URL (path). */
int srv_chat_build(srv_chat *c, srv_error *err);
/* Sampling parameters over o (which holds the defaults); default_max_tokens when max_tokens is absent. */
void srv_chat_gen(const srv_chat *c, int64_t default_max_tokens, vlm_ask_options *o);
/* Every text of the request (system and user messages) in turn, for the block list: returns the i-th or NULL. */
const char *srv_chat_text(const srv_chat *c, int i);
int srv_chat_n_images(const srv_chat *c);
void srv_chat_free(srv_chat *c);

#ifdef __cplusplus
}
#endif
#endif
