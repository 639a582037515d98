/* Stop-string matching over streamed text (stop_text.h). */
#include "text/stop_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

struct vlm_stop_text {
    char **stops;
    size_t *stop_len;
    int n_stops;
    size_t max_len;
    char *text;     /* everything pushed, cut at the stop string; NUL-terminated */
    uint8_t *vis;   /* per byte of text: visible? */
    size_t len, cap;
    size_t released; /* text[0..released) has been handed out */
    int stopped;
    char *out; /* show buffer, and get(visible_only) */
    size_t out_cap;
};

int vlm_stop_text_new(const char *const *stops, int n_stops, vlm_stop_text **out)
{
    *out = NULL;
    if (n_stops < 0 || (n_stops > 0 && !stops)) return vlm_errorf(VLM_ERR_INVALID, "stop strings: bad list");
    for (int i = 0; i < n_stops; i++)
        if (!stops[i] || !stops[i][0]) return vlm_errorf(VLM_ERR_INVALID, "stop strings: an empty stop string");
    vlm_stop_text *s = calloc(1, sizeof *s);
    if (!s) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    if (n_stops) {
        s->stops = calloc((size_t)n_stops, sizeof *s->stops);
        s->stop_len = calloc((size_t)n_stops, sizeof *s->stop_len);
        if (!s->stops || !s->stop_len) goto oom;
    }
    s->n_stops = n_stops;
    for (int i = 0; i < n_stops; i++) {
        if (!(s->stops[i] = strdup(stops[i]))) goto oom;
        s->stop_len[i] = strlen(stops[i]);
        if (s->stop_len[i] > s->max_len) s->max_len = s->stop_len[i];
    }
    *out = s;
    return VLM_OK;
oom:
    vlm_stop_text_free(s);
    return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
}

void vlm_stop_text_free(vlm_stop_text *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_stops; i++) free(s->stops ? s->stops[i] : NULL);
    free(s->stops);
    free(s->stop_len);
    free(s->text);
    free(s->vis);
    free(s->out);
    free(s);
}

void vlm_stop_text_reset(vlm_stop_text *s)
{
    s->len = s->released = 0;
    s->stopped = 0;
    if (s->text) s->text[0] = '\0';
}

int vlm_stop_text_stopped(const vlm_stop_text *s) { return s->stopped; }

static int reserve_out(vlm_stop_text *s, size_t n)
{
    if (n + 1 <= s->out_cap) return VLM_OK;
    size_t cap = (n + 1) * 2;
    char *p = realloc(s->out, cap);
    if (!p) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    s->out = p;
    s->out_cap = cap;
    return VLM_OK;
}

/* The visible bytes of text[b..e) into s->out. On failure to allocate the
 * output is empty. */
static void visible(vlm_stop_text *s, size_t b, size_t e, const char **show, size_t *show_len)
{
    *show = "";
    *show_len = 0;
    if (e <= b || reserve_out(s, e - b)) return;
    size_t n = 0;
    for (size_t i = b; i < e; i++)
        if (s->vis[i]) s->out[n++] = s->text[i];
    s->out[n] = '\0';
    *show = s->out;
    *show_len = n;
}

int vlm_stop_text_push(vlm_stop_text *s, const char *text, size_t len, int visible_flag, const char **show,
                       size_t *show_len)
{
    *show = "";
    *show_len = 0;
    if (s->stopped) return 1;
    if (s->len + len + 1 > s->cap) {
        size_t cap = (s->len + len + 1) * 2;
        char *t = realloc(s->text, cap);
        if (!t) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        s->text = t;
        uint8_t *v = realloc(s->vis, cap);
        if (!v) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        s->vis = v;
        s->cap = cap;
    }
    size_t old = s->len;
    if (len) {
        memcpy(s->text + old, text, len);
        memset(s->vis + old, visible_flag ? 1 : 0, len);
    }
    s->len += len;
    s->text[s->len] = '\0';
    if (!s->n_stops) {
        visible(s, s->released, s->len, show, show_len);
        s->released = s->len;
        return 0;
    }
    /* a stop string can only newly appear across the new bytes */
    size_t from = old + 1 > s->max_len ? old + 1 - s->max_len : 0, cut = SIZE_MAX;
    for (int i = 0; i < s->n_stops; i++) {
        const char *p = memmem(s->text + from, s->len - from, s->stops[i], s->stop_len[i]);
        if (p && (size_t)(p - s->text) < cut) cut = (size_t)(p - s->text);
    }
    if (cut != SIZE_MAX) {
        s->len = cut;
        s->text[cut] = '\0';
        s->stopped = 1;
        if (cut > s->released) visible(s, s->released, cut, show, show_len);
        s->released = cut;
        return 1;
    }
    /* hold back the longest tail that a stop string starts with */
    size_t hold = 0;
    for (int i = 0; i < s->n_stops; i++) {
        size_t k = s->stop_len[i] - 1 < s->len ? s->stop_len[i] - 1 : s->len;
        for (; k > hold; k--)
            if (memcmp(s->text + s->len - k, s->stops[i], k) == 0) {
                hold = k;
                break;
            }
    }
    size_t safe = s->len - hold;
    if (safe > s->released) {
        visible(s, s->released, safe, show, show_len);
        s->released = safe;
    }
    return 0;
}

void vlm_stop_text_finish(vlm_stop_text *s, const char **show, size_t *show_len)
{
    *show = "";
    *show_len = 0;
    if (s->len > s->released) visible(s, s->released, s->len, show, show_len);
    s->released = s->len;
}

const char *vlm_stop_text_get(vlm_stop_text *s, int visible_only, size_t *len)
{
    if (!visible_only) {
        if (len) *len = s->len;
        return s->text ? s->text : "";
    }
    const char *p;
    size_t n;
    visible(s, 0, s->len, &p, &n);
    if (len) *len = n;
    return p;
}
