/* Compiling tokenizer.json regexes for PCRE2.
 *
 * tokenizers compiles them with Oniguruma in Ruby syntax, which differs from
 * PCRE2 in a few places that matter for tokenizer patterns:
 *   - ^ and $ always work per line            -> PCRE2_MULTILINE, LF newlines
 *   - inline (?m) means "dot matches newline" -> rewritten to (?s)
 *   - \h is a hex digit, not horizontal space -> [0-9a-fA-F]
 *   - \s is exactly Unicode White_Space (PCRE2's UCP \s also takes U+180E)
 *   - \w is letters, marks, numbers and connector punctuation (PCRE2 10.42's
 *     UCP \w lacks the marks and connectors)
 *   - Oniguruma's Unicode tables are version 16.0, PCRE2 10.42's are 14.0: the
 *     general categories \p{L}, \p{Lu}, ..., \p{S}, \d, \w also take the code
 *     points assigned since (tok_unicode_new.h: new emoji, scripts, digits).
 *     Not covered: \P{..} inside a [...] class and \p{Cn} (these still see
 *     the new code points as unassigned), and one mark that moved from Mn to Mc.
 * so those escapes are expanded into explicit classes before compiling. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/tok_regex.h"
#include "text/tok_unicode_new.h"

#define WS_BODY "\\t\\n\\x0b\\f\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}" \
                "\\x{202f}\\x{205f}\\x{3000}"
#define HEX_BODY "0-9a-fA-F"

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}
#define SB_LIT(b, s) sb_put((b), (s), sizeof(s) - 1)

/* Expansion of an escape letter, inside or outside a class; NULL: copy as is. */
static const char *expand_escape(char d, int in_class)
{
    switch (d) {
    case 's': return in_class ? WS_BODY : "[" WS_BODY "]";
    case 'S': return in_class ? NULL : "[^" WS_BODY "]";
    case 'h': return in_class ? HEX_BODY : "[" HEX_BODY "]";
    case 'H': return in_class ? NULL : "[^" HEX_BODY "]";
    default: return NULL;
    }
}

/* cat (1 or 2 letters) is a general category PCRE2 knows: L, Lu, ..., Zs. */
static int is_general_category(const char *cat, size_t len)
{
    static const char *const cats[] = {"C",  "Cc", "Cf", "Cn", "Co", "Cs", "L",  "Ll", "Lm", "Lo", "Lt", "Lu",
                                       "M",  "Mc", "Me", "Mn", "N",  "Nd", "Nl", "No", "P",  "Pc", "Pd", "Pe",
                                       "Pf", "Pi", "Po", "Ps", "S",  "Sc", "Sk", "Sm", "So", "Z",  "Zl", "Zp",
                                       "Zs"};
    for (size_t i = 0; i < sizeof cats / sizeof *cats; i++)
        if (strlen(cats[i]) == len && memcmp(cats[i], cat, len) == 0) return 1;
    return 0;
}

/* "\p{cat}" and the code points Unicode assigned to cat after PCRE2's tables
 * (a class body: goes inside [...]). */
static int put_category(sbuf *b, const char *cat, size_t len)
{
    if (SB_LIT(b, "\\p{") || sb_put(b, cat, len) || SB_LIT(b, "}")) return -1;
    for (size_t i = 0; i < sizeof tok_unicode_new / sizeof *tok_unicode_new; i++) {
        const char *c = tok_unicode_new[i].cat;
        if (strlen(c) == len && memcmp(c, cat, len) == 0)
            if (sb_put(b, tok_unicode_new[i].body, strlen(tok_unicode_new[i].body))) return -1;
    }
    return 0;
}

/* \w's body: letters, marks, numbers, connector punctuation. */
static int put_word(sbuf *b)
{
    return put_category(b, "L", 1) || put_category(b, "M", 1) || put_category(b, "N", 1) || put_category(b, "Pc", 2);
}

/* Escapes that depend on Unicode's categories at pat[i] ('\\' at pat[i]):
 * \p{X} \pX \P{X} \PX \p{^X} (X a general category), \d \D \w \W. Returns
 * the pattern bytes consumed (0: not one of them, copy as usual), or -1 when
 * out of memory. */
static long expand_category_escape(const char *pat, size_t n, size_t i, int in_class, sbuf *out)
{
    char d = pat[i + 1];
    int neg = 0, r = 0;
    size_t used = 2;
    const char *cat;
    size_t len;
    if (d == 'd' || d == 'D' || d == 'w' || d == 'W') {
        neg = d == 'D' || d == 'W';
        if (neg && in_class) return 0;
        r = neg ? SB_LIT(out, "[^") : in_class ? 0 : SB_LIT(out, "[");
        r = r || (d == 'd' || d == 'D' ? put_category(out, "Nd", 2) : put_word(out));
        r = r || (in_class ? 0 : SB_LIT(out, "]"));
        return r ? -1 : (long)used;
    }
    if (d != 'p' && d != 'P') return 0;
    neg = d == 'P';
    if (i + 2 < n && pat[i + 2] == '{') {
        size_t k = i + 3;
        while (k < n && pat[k] != '}') k++;
        if (k >= n) return 0;
        cat = pat + i + 3;
        len = k - (i + 3);
        used = k + 1 - i;
        if (len && cat[0] == '^') {
            neg = !neg;
            cat++;
            len--;
        }
    } else if (i + 2 < n) {
        cat = pat + i + 2;
        len = 1;
        used = 3;
    } else {
        return 0;
    }
    if (!is_general_category(cat, len) || (neg && in_class)) return 0;
    r = neg ? SB_LIT(out, "[^") : in_class ? 0 : SB_LIT(out, "[");
    r = r || put_category(out, cat, len) || (in_class ? 0 : SB_LIT(out, "]"));
    return r ? -1 : (long)used;
}

static int translate(const char *pat, size_t n, sbuf *out)
{
    int in_class = 0;
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            long used = expand_category_escape(pat, n, i, in_class, out);
            if (used < 0) {
                rc = -1;
            } else if (used > 0) {
                i += (size_t)used;
            } else {
                const char *x = expand_escape(pat[i + 1], in_class);
                rc = x ? sb_put(out, x, strlen(x)) : sb_put(out, pat + i, 2);
                i += 2;
            }
        } else if (c == '[' && !in_class) {
            in_class = 1;
            rc = sb_put(out, pat + i, 1);
            i++;
            if (i < n && pat[i] == '^') rc |= sb_put(out, pat + i++, 1);
            if (i < n && pat[i] == ']') rc |= sb_put(out, pat + i++, 1); /* literal ] */
        } else if (c == '[' && in_class && i + 1 < n && pat[i + 1] == ':') {
            /* POSIX class [:alpha:]: copy through ":]" */
            const char *end = NULL;
            for (size_t k = i + 2; k + 1 < n; k++)
                if (pat[k] == ':' && pat[k + 1] == ']') { end = pat + k + 2; break; }
            size_t len = end ? (size_t)(end - (pat + i)) : 1;
            rc = sb_put(out, pat + i, len);
            i += len;
        } else if (c == ']' && in_class) {
            in_class = 0;
            rc = sb_put(out, pat + i++, 1);
        } else if (c == '(' && !in_class && i + 1 < n && pat[i + 1] == '?') {
            /* (?imx-imx) or (?imx-imx:...): Ruby's m is PCRE2's s */
            size_t k = i + 2;
            while (k < n && strchr("imx-", pat[k])) k++;
            if (k < n && k > i + 2 && (pat[k] == ')' || pat[k] == ':')) {
                for (size_t j = i; j <= k && rc == 0; j++) {
                    char ch = pat[j] == 'm' ? 's' : pat[j];
                    rc = sb_put(out, &ch, 1);
                }
                i = k + 1;
            } else {
                rc = sb_put(out, pat + i, 2);
                i += 2;
            }
        } else {
            rc = sb_put(out, pat + i++, 1);
        }
    }
    return rc ? vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory") : VLM_OK;
}

int tok_regex_compile(const char *pat, size_t n, int literal, pcre2_code **out, int *jit)
{
    *out = NULL;
    *jit = 0;
    sbuf b = {0};
    int rc;
    if (literal) {
        rc = sb_put(&b, pat, n) ? vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory") : 0;
    } else {
        rc = translate(pat, n, &b);
    }
    if (rc) {
        free(b.p);
        return rc;
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc) {
        free(b.p);
        return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    }
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF; /* the only ones PCRE2_LITERAL allows */
    opts |= literal ? PCRE2_LITERAL : PCRE2_UCP | PCRE2_MULTILINE;
    int err;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.n, opts, &err, &erroff, cc);
    pcre2_compile_context_free(cc);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        int show = n > 200 ? 200 : (int)n;
        rc = vlm_errorf(VLM_ERR_FORMAT, "tokenizer: bad regex '%.*s': %s (offset %zu)", show, pat,
                        (const char *)msg, (size_t)erroff);
        free(b.p);
        return rc;
    }
    free(b.p);
    *jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    *out = re;
    return VLM_OK;
}

int tok_regex_next(const pcre2_code *re, int jit, const uint8_t *s, size_t n, size_t start,
                   pcre2_match_data *md, size_t *ms, size_t *me)
{
    int r = jit ? pcre2_jit_match(re, s, n, start, 0, md, NULL)
                : pcre2_match(re, s, n, start, 0, md, NULL);
    if (r == PCRE2_ERROR_NOMATCH) return 0;
    if (r < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(r, msg, sizeof msg);
        return vlm_errorf(VLM_ERR_LIMIT, "tokenizer: regex match failed: %s", (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}
