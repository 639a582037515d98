#include "core/strbuf.h"
#include "core/utf8.h"

#include <stdarg.h>
#include <stdio.h>
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

void vlm_strbuf_printf(vlm_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    const int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        vlm_strbuf_add(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    vlm_strbuf_add(b, big, (size_t)n);
    free(big);
}

void vlm_strbuf_json_str(vlm_strbuf *b, const char *s)
{
    vlm_strbuf_add(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        const unsigned c = *p;
        if (c == '"' || c == '\\') {
            const char e[2] = {'\\', (char)c};
            vlm_strbuf_add(b, e, 2);
            p++;
        } else if (c < 0x20 || c == 0x7F) {
            switch (c) {
            case '\n': vlm_strbuf_add(b, "\\n", 2); break;
            case '\r': vlm_strbuf_add(b, "\\r", 2); break;
            case '\t': vlm_strbuf_add(b, "\\t", 2); break;
            default: vlm_strbuf_printf(b, "\\u%04x", c);
            }
            p++;
        } else {
            uint32_t cp;
            const int n = vlm_utf8_decode(p, 4, &cp); /* (NUL-terminated: see core/utf8.h) */
            if (n) {
                vlm_strbuf_add(b, (const char *)p, (size_t)n);
                p += n;
            } else {
                vlm_strbuf_adds(b, "\xEF\xBF\xBD");
                p++;
            }
        }
    }
    vlm_strbuf_add(b, "\"", 1);
}

void vlm_strbuf_free(vlm_strbuf *b)
{
    free(b->s);
    memset(b, 0, sizeof *b);
}
