/* Parsing <|ref|>/<|det|> grounding boxes out of generated text (grounding.h). */
#include "text/grounding.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define REF_OPEN "<|ref|>"
#define REF_CLOSE "<|/ref|>"
#define DET_OPEN "<|det|>"
#define DET_CLOSE "<|/det|>"
#define MAX_BOXES 100000

/* First occurrence of the NUL-terminated needle in s[from..len), or -1. */
static long long find(const char *s, size_t len, size_t from, const char *needle)
{
    size_t n = strlen(needle);
    if (from > len || len - from < n) return -1;
    const char *p = memmem(s + from, len - from, needle, n);
    return p ? (long long)(p - s) : -1;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* One decimal number at s[*i..e): [+-] digits [. digits] [e [+-] digits]. */
static int parse_number(const char *s, size_t *i, size_t e, double *out)
{
    size_t k = *i, digits = 0;
    char buf[64];
    if (k < e && (s[k] == '+' || s[k] == '-')) k++;
    while (k < e && s[k] >= '0' && s[k] <= '9') k++, digits++;
    if (k < e && s[k] == '.') {
        k++;
        while (k < e && s[k] >= '0' && s[k] <= '9') k++, digits++;
    }
    if (!digits) return 0;
    if (k < e && (s[k] == 'e' || s[k] == 'E')) {
        size_t x = k + 1, xd = 0;
        if (x < e && (s[x] == '+' || s[x] == '-')) x++;
        while (x < e && s[x] >= '0' && s[x] <= '9') x++, xd++;
        if (xd) k = x;
    }
    if (k - *i >= sizeof buf) return 0;
    memcpy(buf, s + *i, k - *i);
    buf[k - *i] = '\0';
    double v = strtod(buf, NULL);
    if (!isfinite(v)) return 0;
    *out = v;
    *i = k;
    return 1;
}

/* "a, b, c, d" exactly (spaces allowed around the numbers) in s[b..e). */
static int parse_box(const char *s, size_t b, size_t e, double v[4])
{
    size_t i = b;
    for (int k = 0; k < 4; k++) {
        while (i < e && is_space(s[i])) i++;
        if (!parse_number(s, &i, e, &v[k])) return 0;
        while (i < e && is_space(s[i])) i++;
        if (k < 3) {
            if (i >= e || s[i] != ',') return 0;
            i++;
        }
    }
    return i == e;
}

static int add_box(vlm_grounding *g, int *cap, const char *label, size_t label_len, const double v[4])
{
    if (g->n_boxes == MAX_BOXES) return vlm_errorf(VLM_ERR_LIMIT, "grounding: more than %d boxes", MAX_BOXES);
    if (g->n_boxes == *cap) {
        int nc = *cap ? *cap * 2 : 8;
        vlm_ground_box *nb = realloc(g->boxes, (size_t)nc * sizeof *nb);
        if (!nb) return vlm_errorf(VLM_ERR_NOMEM, "grounding: out of memory");
        g->boxes = nb;
        *cap = nc;
    }
    char *l = malloc(label_len + 1);
    if (!l) return vlm_errorf(VLM_ERR_NOMEM, "grounding: out of memory");
    if (label_len) memcpy(l, label, label_len);
    l[label_len] = '\0';
    vlm_ground_box *b = &g->boxes[g->n_boxes++];
    b->label = l;
    memcpy(b->grid, v, sizeof b->grid);
    return VLM_OK;
}

/* The boxes of one <|det|> block s[b..e): each innermost [...] holding four numbers. */
static int parse_det(vlm_grounding *g, int *cap, const char *s, size_t b, size_t e, const char *label,
                     size_t label_len)
{
    size_t i = b;
    while (i < e) {
        if (s[i] != '[') {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < e && s[j] != ']' && s[j] != '[') j++;
        if (j >= e) break;
        if (s[j] == '[') { /* an inner bracket opens first: start over there */
            i = j;
            continue;
        }
        double v[4];
        if (parse_box(s, i + 1, j, v)) {
            int rc = add_box(g, cap, label, label_len, v);
            if (rc) return rc;
        }
        i = j + 1;
    }
    return VLM_OK;
}

int vlm_grounding_parse(const char *text, size_t len, vlm_grounding *out)
{
    memset(out, 0, sizeof *out);
    if (!text) return VLM_OK;
    int cap = 0, rc = VLM_OK;
    size_t pos = 0, label_b = 0, label_len = 0;
    for (;;) {
        long long r = find(text, len, pos, REF_OPEN), d = find(text, len, pos, DET_OPEN);
        if (r < 0 && d < 0) break;
        if (r >= 0 && (d < 0 || r < d)) {
            size_t b = (size_t)r + strlen(REF_OPEN);
            long long c = find(text, len, b, REF_CLOSE);
            if (c < 0) break;
            label_b = b;
            label_len = (size_t)c - b;
            pos = (size_t)c + strlen(REF_CLOSE);
        } else {
            size_t b = (size_t)d + strlen(DET_OPEN);
            long long c = find(text, len, b, DET_CLOSE);
            if (c < 0) break;
            if ((rc = parse_det(out, &cap, text, b, (size_t)c, text + label_b, label_len))) break;
            label_len = 0; /* the next block needs its own <|ref|> */
            label_b = 0;
            pos = (size_t)c + strlen(DET_CLOSE);
        }
    }
    if (rc) vlm_grounding_free(out);
    return rc;
}

void vlm_grounding_free(vlm_grounding *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_boxes; i++) free(g->boxes[i].label);
    free(g->boxes);
    g->boxes = NULL;
    g->n_boxes = 0;
}

static int to_px(double v, int size)
{
    double p = v / 999 * size; /* Python: v / 999 * size, then int() */
    const double lim = 1073741824.0;
    if (p >= lim) return (int)lim;
    if (p <= -lim) return -(int)lim;
    return (int)p; /* C's conversion truncates toward zero, like int() */
}

void vlm_grounding_to_pixels(const double grid[4], int width, int height, int px[4])
{
    px[0] = to_px(grid[0], width);
    px[1] = to_px(grid[1], height);
    px[2] = to_px(grid[2], width);
    px[3] = to_px(grid[3], height);
}
