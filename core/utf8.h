/* Strict UTF-8: one decoder for the tokenizer, the JSON escaping of core/strbuf and the subtitle writers. */
#ifndef VLM_CORE_UTF8_H
#define VLM_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Decodes the character at p (n bytes left). Returns its length (1..4) and sets *cp, or returns 0 for an
 * invalid or truncated sequence (overlong forms, surrogates, code points past U+10FFFF included). It reads
 * no byte past the first one that is not a continuation byte, so on a NUL-terminated string any n >= 4
 * is safe. */
int vlm_utf8_decode(const uint8_t *p, size_t n, uint32_t *cp);

#ifdef __cplusplus
}
#endif
#endif
