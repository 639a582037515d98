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
    char *vtext;    /* the visible bytes of text, where stop strings are looked for; NUL-terminated */
    size_t *vpos;   /* per byte of vtext: its index in text */
    size_t vlen, vcap;
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
    free(s->vtext);
    free(s->vpos);
    free(s->out);
    free(s);
}

void vlm_stop_text_reset(vlm_stop_text *s)
{
    s->len = s->released = s->vlen = 0;
    s->stopped = 0;
    if (s->text) s->text[0] = '\0';
    if (s->vtext) s->vtext[0] = '\0';
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

/* Room for n more bytes of text (and of visible text). */
static int reserve(vlm_stop_text *s, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;
        char *t = realloc(s->text, cap);
        if (!t) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        s->text = t;
        uint8_t *v = realloc(s->vis, cap);
        if (!v) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        s->vis = v;
        s->cap = cap;
    }
    if (s->vlen + n + 1 > s->vcap) {
        size_t cap = (s->vlen + n + 1) * 2;
        char *t = realloc(s->vtext, cap);
        if (!t) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        s->vtext = t;
        size_t *p = realloc(s->vpos, cap * sizeof *p);
        if (!p) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        s->vpos = p;
        s->vcap = cap;
    }
    return VLM_OK;
}

int vlm_stop_text_push(vlm_stop_text *s, const char *text, size_t len, int visible_flag, const char **show,
                       size_t *show_len)
{
    *show = "";
    *show_len = 0;
    if (s->stopped) return 1;
    int rc = reserve(s, len);
    if (rc) return rc;
    const size_t old_vlen = s->vlen;
    if (len) {
        memcpy(s->text + s->len, text, len);
        memset(s->vis + s->len, visible_flag ? 1 : 0, len);
        if (visible_flag) {
            memcpy(s->vtext + s->vlen, text, len);
            for (size_t i = 0; i < len; i++) s->vpos[s->vlen + i] = s->len + i;
            s->vlen += len;
        }
    }
    s->len += len;
    s->text[s->len] = '\0';
    s->vtext[s->vlen] = '\0';
    if (!s->n_stops) {
        visible(s, s->released, s->len, show, show_len);
        s->released = s->len;
        return 0;
    }
    /* a stop string can only newly appear across the new visible bytes (a hidden piece adds none, but
     * it does not separate the visible bytes around it either) */
    if (s->vlen > old_vlen) {
        size_t from = old_vlen + 1 > s->max_len ? old_vlen + 1 - s->max_len : 0, cut = SIZE_MAX;
        for (int i = 0; i < s->n_stops; i++) {
            const char *p = memmem(s->vtext + from, s->vlen - from, s->stops[i], s->stop_len[i]);
            if (p && (size_t)(p - s->vtext) < cut) cut = (size_t)(p - s->vtext);
        }
        if (cut != SIZE_MAX) { /* the text ends before the stop string's first byte */
            const size_t tcut = s->vpos[cut];
            s->vlen = cut;
            s->vtext[cut] = '\0';
            s->len = tcut;
            s->text[tcut] = '\0';
            s->stopped = 1;
            if (tcut > s->released) visible(s, s->released, tcut, show, show_len);
            s->released = tcut;
            return 1;
        }
    }
    /* hold back the longest visible tail that a stop string starts with (from its first byte on) */
    size_t hold = 0;
    for (int i = 0; i < s->n_stops; i++) {
        size_t k = s->stop_len[i] - 1 < s->vlen ? s->stop_len[i] - 1 : s->vlen;
        for (; k > hold; k--)
            if (memcmp(s->vtext + s->vlen - k, s->stops[i], k) == 0) {
                hold = k;
                break;
            }
    }
    size_t safe = hold ? s->vpos[s->vlen - hold] : s->len;
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
    if (len) *len = visible_only ? s->vlen : s->len;
    if (visible_only) return s->vtext ? s->vtext : "";
    return s->text ? s->text : "";
}
