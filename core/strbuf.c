#include "core/strbuf.h"

#include <stdlib.h>
#include <string.h>

void vlm_strbuf_add(vlm_strbuf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        const size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void vlm_strbuf_adds(vlm_strbuf *b, const char *s) { vlm_strbuf_add(b, s, strlen(s)); }
