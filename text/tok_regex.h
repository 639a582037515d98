/* PCRE2 regexes with tokenizers' (Oniguruma, Ruby syntax) meaning. Internal. */
#ifndef VLM_TEXT_TOK_REGEX_H
#define VLM_TEXT_TOK_REGEX_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

/* Compiles pat (n bytes; literal: match the string itself). *jit tells
 * whether JIT code is available. Returns 0 or VLM_ERR_FORMAT naming the regex. */
int tok_regex_compile(const char *pat, size_t n, int literal, pcre2_code **out, int *jit);

/* Leftmost match in s[0..n) starting at or after start. Returns 1 with the
 * match in [*ms, *me), 0 for no match, or a negative VLM_ERR_* (match limit). */
int tok_regex_next(const pcre2_code *re, int jit, const uint8_t *s, size_t n, size_t start,
                   pcre2_match_data *md, size_t *ms, size_t *me);

#endif
