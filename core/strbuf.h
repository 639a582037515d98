/* A growing NUL-terminated string for building prompts, messages and JSON lines. A failed allocation is
 * remembered (failed = 1; later appends do nothing) and checked once at the end. */
#ifndef VLM_CORE_STRBUF_H
#define VLM_CORE_STRBUF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char *s; /* malloc'd, NUL-terminated once anything was added; the caller frees it */
    size_t len, cap;
    int failed;
} vlm_strbuf;

void vlm_strbuf_add(vlm_strbuf *b, const char *s, size_t n);
void vlm_strbuf_adds(vlm_strbuf *b, const char *s); /* a NUL-terminated string */
void vlm_strbuf_printf(vlm_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string literal (quotes included; NULL as ""); invalid UTF-8 becomes U+FFFD. */
void vlm_strbuf_json_str(vlm_strbuf *b, const char *s);
/* Frees the text and clears the buffer for reuse. */
void vlm_strbuf_free(vlm_strbuf *b);

#ifdef __cplusplus
}
#endif
#endif
