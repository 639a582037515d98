/* The "deepseek" conversation template of DeepSeek-VL2 and the processor's
 * image-aware tokenization (see chat_template.h). */
#include "text/chat_template.h"

#include "core/strbuf.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define IMAGE_TAG "<image>"
#define EOS_TEXT "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

/* Python's str.isspace() for one UTF-8 char at p; returns its byte length or 0. */
static size_t py_space_len(const unsigned char *p, size_t n)
{
    if (n == 0) return 0;
    unsigned c = p[0];
    if ((c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20)) return 1;
    uint32_t cp;
    size_t len;
    if (c >= 0xc2 && c <= 0xdf && n >= 2 && (p[1] & 0xc0) == 0x80) {
        cp = ((c & 0x1fu) << 6) | (p[1] & 0x3fu), len = 2;
    } else if (c >= 0xe0 && c <= 0xef && n >= 3 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80) {
        cp = ((c & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu), len = 3;
    } else {
        return 0;
    }
    int sp = cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
             cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
    return sp ? len : 0;
}

/* Python's s.strip(): [*b, *e) narrowed. */
static void py_strip(const char **b, const char **e)
{
    const unsigned char *s = (const unsigned char *)*b, *t = (const unsigned char *)*e;
    size_t k;
    while (s < t && (k = py_space_len(s, (size_t)(t - s))) > 0) s += k;
    while (t > s) {
        size_t found = 0;
        for (size_t back = 1; back <= 3 && back <= (size_t)(t - s); back++)
            if (py_space_len(t - back, back) == back) {
                found = back;
                break;
            }
        if (!found) break;
        t -= found;
    }
    *b = (const char *)s;
    *e = (const char *)t;
}

char *vlm_chat_place_images(const char *question, int n_images)
{
    if (!question) question = "";
    size_t extra = strstr(question, "<image>") || n_images < 0 ? 0 : (size_t)n_images * 8;
    char *s = malloc(strlen(question) + extra + 1);
    if (!s) return NULL;
    s[0] = '\0';
    for (size_t i = 0; extra && i < (size_t)n_images; i++) strcat(s, "<image>\n");
    strcat(s, question);
    return s;
}

int vlm_chat_count_images(const vlm_chat_message *msgs, int n_msgs)
{
    int count = 0;
    for (int i = 0; i < n_msgs; i++)
        for (const char *s = msgs[i].content ? msgs[i].content : ""; (s = strstr(s, IMAGE_TAG)); s += strlen(IMAGE_TAG))
            count++;
    return count;
}

int vlm_chat_render(const vlm_chat_message *msgs, int n_msgs, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    if (n_msgs < 0 || (n_msgs > 0 && !msgs)) return vlm_errorf(VLM_ERR_INVALID, "chat: bad message list");
    vlm_strbuf b = {0};
    vlm_strbuf_add(&b, "", 0);
    int first = 0;
    if (n_msgs > 0 && msgs[0].role && strcmp(msgs[0].role, "system") == 0) {
        const char *c = msgs[0].content ? msgs[0].content : "";
        if (*c) { /* get_prompt(): system_prompt + sep */
            vlm_strbuf_add(&b, c, strlen(c));
            vlm_strbuf_add(&b, "\n\n", 2);
        }
        first = 1;
    }
    for (int i = first; i < n_msgs; i++) {
        const char *role = msgs[i].role ? msgs[i].role : "";
        int user = (i - first) % 2 == 0;
        if (strcmp(role, user ? "user" : "assistant") != 0) {
            free(b.s);
            return vlm_errorf(VLM_ERR_INVALID, "chat: message %d has role '%.32s'; expected '%s' (an optional "
                              "system message, then user and assistant turns alternating)",
                              i, role, user ? "user" : "assistant");
        }
        const char *c = msgs[i].content ? msgs[i].content : "", *e = c + strlen(c);
        py_strip(&c, &e);
        const char *tag = user ? "<|User|>" : "<|Assistant|>";
        vlm_strbuf_add(&b, tag, strlen(tag));
        if (c == e) { /* empty message: "role:" (the generation prompt) */
            vlm_strbuf_add(&b, ":", 1);
            continue;
        }
        vlm_strbuf_add(&b, ": ", 2);
        vlm_strbuf_add(&b, c, (size_t)(e - c));
        if (user) vlm_strbuf_add(&b, "\n\n", 2);
        else vlm_strbuf_add(&b, EOS_TEXT, strlen(EOS_TEXT));
    }
    if (b.failed) {
        free(b.s);
        return vlm_errorf(VLM_ERR_NOMEM, "chat: out of memory");
    }
    /* format_messages(): the whole prompt is stripped too */
    const char *s = b.s, *e = b.s + b.len;
    py_strip(&s, &e);
    memmove(b.s, s, (size_t)(e - s));
    b.len = (size_t)(e - s);
    b.s[b.len] = 0;
    *text = b.s;
    *len = b.len;
    return VLM_OK;
}

static int append(int32_t **ids, size_t *n, size_t *cap, const int32_t *src, size_t k)
{
    if (*n + k > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *n + k) c *= 2;
        int32_t *p = realloc(*ids, c * sizeof *p);
        if (!p) return vlm_errorf(VLM_ERR_NOMEM, "chat: out of memory");
        *ids = p;
        *cap = c;
    }
    if (k) memcpy(*ids + *n, src, k * sizeof *src);
    *n += k;
    return VLM_OK;
}

int vlm_chat_encode(const vlm_tokenizer *t, const vlm_chat_message *msgs, int n_msgs,
                    const int *image_token_counts, int n_images, int32_t **ids, size_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    const vlm_special_ids *sp = vlm_tokenizer_special(t);
    if (sp->bos < 0) return vlm_errorf(VLM_ERR_MISMATCH, "chat: the tokenizer has no bos token");
    char *text;
    size_t len;
    int rc = vlm_chat_render(msgs, n_msgs, &text, &len);
    if (rc) return rc;
    int want = 0; /* counted in the rendered text, which is what gets cut */
    for (const char *p = text; (p = strstr(p, IMAGE_TAG)); p += strlen(IMAGE_TAG)) want++;
    if (n_images != want)
        rc = vlm_errorf(VLM_ERR_INVALID, "chat: the messages have %d <image> placeholders but %d images were given",
                        want, n_images);
    else if (n_images > 0 && sp->image < 0)
        rc = vlm_errorf(VLM_ERR_MISMATCH, "chat: the tokenizer has no <image> token");
    for (int k = 0; rc == VLM_OK && k < n_images; k++)
        if (!image_token_counts || image_token_counts[k] < 0)
            rc = vlm_errorf(VLM_ERR_INVALID, "chat: bad token count for image %d", k);
    if (rc) {
        free(text);
        return rc;
    }
    int32_t *out = NULL;
    size_t n = 0, cap = 0;
    rc = append(&out, &n, &cap, &sp->bos, 1);
    const char *s = text, *end = text + len;
    for (int k = 0; rc == VLM_OK && k <= n_images; k++) {
        const char *tag = k < n_images ? strstr(s, IMAGE_TAG) : end;
        int32_t *piece;
        size_t np;
        rc = vlm_tokenizer_encode(t, s, (size_t)(tag - s), &piece, &np);
        if (rc) break;
        rc = append(&out, &n, &cap, piece, np);
        free(piece);
        for (int j = 0; rc == VLM_OK && k < n_images && j < image_token_counts[k]; j++)
            rc = append(&out, &n, &cap, &sp->image, 1);
        s = tag + (k < n_images ? strlen(IMAGE_TAG) : 0);
    }
    free(text);
    if (rc) {
        free(out);
        return rc;
    }
    *ids = out;
    *n_ids = n;
    return VLM_OK;
}
