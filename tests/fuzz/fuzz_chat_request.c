/* Fuzz target: a POST /v1/chat/completions body through the server's request path without a model or network:
 * JSON parse and validation (srv_chat_parse), data: URLs decoded and probed (srv_chat_fetch, only when every
 * media URL is a data: URL), engine messages built (srv_chat_build), sampling options, and the JSON answers
 * (error object, completion, chunks) written for it. Invariants: a refusal is a 4xx/5xx error with a message;
 * an accepted request gives one engine message per turn (system turns merged) whose images number what its
 * parts gave. The server sources are compiled in (they are part of the program, not of libvlm). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/chat_request.c"
#include "server/chat_response.c"
#include "server/sha256.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    srv_chat *c = NULL;
    srv_error e;
    memset(&e, 0, sizeof e);
    srv_chat_limits lim = {64, 8, 8};
    if (srv_chat_parse((const char *)data, size, &lim, &c, &e) != 0) {
        if (c || e.status < 400 || e.status > 599 || !e.message[0]) abort();
        char *j = srv_error_json(&e);
        if (!j) abort();
        free(j);
        return 0;
    }
    int all_data = 1;
    for (int i = 0; i < c->n_media; i++) all_data &= !strncmp(c->media[i].url, "data:", 5);
    srv_media_options mo;
    memset(&mo, 0, sizeof mo);
    vlm_url_policy_default(&mo.url);
    mo.url.max_bytes = 1 << 16;
    mo.max_pixels = 1 << 20;
    mo.video_frames = 2;
    int ok = 1;
    if (all_data && c->n_media > 0 && srv_chat_fetch(c, &mo, &e) != 0) {
        if (e.status < 400 || !e.message[0]) abort();
        ok = 0;
    }
    if (ok && srv_chat_build(c, &e) == 0) {
        int images = 0;
        for (int i = 0; i < c->n_vmsgs; i++) {
            const vlm_message *m = &c->vmsgs[i];
            if (!m->role || !m->content || (m->n_images && !m->images)) abort();
            images += m->n_images;
        }
        if (images != srv_chat_n_images(c) || c->n_vmsgs < 1 || c->n_vmsgs > c->n_msgs) abort();
        vlm_ask_options o;
        vlm_ask_options_default(&o);
        srv_chat_gen(c, 512, &o);
        if (o.max_new_tokens < 1 || o.n_stop > 8) abort();
        srv_resp_info info = {"chatcmpl-fuzz", 0, "m"};
        srv_usage u = {1, 2, 0};
        const char *text = c->vmsgs[c->n_vmsgs - 1].content;
        char *j = srv_completion_json(&info, text, "stop", &u, srv_boxes(text, 0, 640, 480));
        char *k = srv_chunk_json(&info, NULL, text, strlen(text), NULL, 1, NULL, NULL);
        if (!j || !k) abort();
        free(j);
        free(k);
    }
    srv_chat_free(c);
    return 0;
}
