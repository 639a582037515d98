/* A growing NUL-terminated string for building prompts and messages. A failed allocation is
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

#ifdef __cplusplus
}
#endif
#endif
