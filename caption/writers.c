/* SRT, WebVTT and JSONL from segment records.
 *
 * SRT:  "N\nHH:MM:SS,mmm --> HH:MM:SS,mmm\ntext\n\n", numbered from 1.
 * VTT:  "WEBVTT\n\n" then "HH:MM:SS.mmm --> HH:MM:SS.mmm\ntext\n\n"; the text escapes &, < and > (cue text
 *       is markup there; it also keeps "-->" out of it).
 * Both hold each caption on one line (a blank line would end the cue early; a line of digits or an arrow could
 * be read as the next cue's header), so what a player shows is what the model said, white space aside.
 * JSONL keeps the caption exactly as generated. */
#include "caption/caption_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/utf8.h"

void vlm_cap_record_free(vlm_cap_record *r)
{
    free(r->frames);
    free(r->caption);
    r->frames = NULL;
    r->caption = NULL;
}

static int is_space_cp(long cp)
{
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == 0xA0 || cp == 0x2028 || cp == 0x2029 ||
           cp == 0xFEFF || (cp >= 0x2000 && cp <= 0x200B) || cp == 0x3000 || cp == ' ';
}

char *vlm_cap_one_line(const char *caption)
{
    vlm_strbuf b = {0};
    const unsigned char *p = (const unsigned char *)(caption ? caption : "");
    int pending_space = 0;
    while (*p) {
        uint32_t u;
        const int n = vlm_utf8_decode(p, 4, &u); /* (NUL-terminated: see core/utf8.h) */
        const int len = n ? n : 1;
        const long cp = n ? (long)u : -1;
        if (cp >= 0 && is_space_cp(cp)) {
            pending_space = 1;
        } else {
            if (pending_space && b.len) vlm_strbuf_add(&b, " ", 1);
            pending_space = 0;
            if (cp < 0)
                vlm_strbuf_adds(&b, "\xEF\xBF\xBD");
            else
                vlm_strbuf_add(&b, (const char *)p, (size_t)len);
        }
        p += len;
    }
    if (!b.len) vlm_strbuf_adds(&b, "(no caption)");
    if (b.failed) {
        vlm_strbuf_free(&b);
        return NULL;
    }
    return b.s;
}

static char *finish_buf(vlm_strbuf *b)
{
    if (b->failed) {
        vlm_strbuf_free(b);
        return NULL;
    }
    if (!b->s) vlm_strbuf_adds(b, "");
    return b->s;
}

char *vlm_cap_srt(const vlm_cap_record *r, int n)
{
    vlm_strbuf b = {0};
    for (int i = 0; i < n; i++) {
        char t0[24], t1[24];
        vlm_cap_format_time(r[i].start_ms, ',', t0);
        vlm_cap_format_time(r[i].end_ms, ',', t1);
        char *line = vlm_cap_one_line(r[i].caption);
        if (!line) {
            vlm_strbuf_free(&b);
            return NULL;
        }
        vlm_strbuf_printf(&b, "%d\n%s --> %s\n%s\n\n", i + 1, t0, t1, line);
        free(line);
    }
    return finish_buf(&b);
}

char *vlm_cap_vtt(const vlm_cap_record *r, int n)
{
    vlm_strbuf b = {0};
    vlm_strbuf_adds(&b, "WEBVTT\n\n");
    for (int i = 0; i < n; i++) {
        char t0[24], t1[24];
        vlm_cap_format_time(r[i].start_ms, '.', t0);
        vlm_cap_format_time(r[i].end_ms, '.', t1);
        char *line = vlm_cap_one_line(r[i].caption);
        if (!line) {
            vlm_strbuf_free(&b);
            return NULL;
        }
        vlm_strbuf_printf(&b, "%s --> %s\n", t0, t1);
        for (const char *c = line; *c; c++) {
            if (*c == '&')
                vlm_strbuf_adds(&b, "&amp;");
            else if (*c == '<')
                vlm_strbuf_adds(&b, "&lt;");
            else if (*c == '>')
                vlm_strbuf_adds(&b, "&gt;");
            else
                vlm_strbuf_add(&b, c, 1);
        }
        vlm_strbuf_adds(&b, "\n\n");
        free(line);
    }
    return finish_buf(&b);
}

static void put_seconds(vlm_strbuf *b, int64_t ms) { vlm_strbuf_printf(b, "%lld.%03lld", (long long)(ms / 1000), (long long)(ms % 1000)); }

void vlm_cap_jsonl_record(vlm_strbuf *b, const char *video, const vlm_cap_record *r, const char *settings_json)
{
    vlm_strbuf_adds(b, "{\"video\":");
    vlm_strbuf_json_str(b, video);
    vlm_strbuf_printf(b, ",\"segment\":%d,\"start\":", r->index);
    put_seconds(b, r->start_ms);
    vlm_strbuf_adds(b, ",\"end\":");
    put_seconds(b, r->end_ms);
    vlm_strbuf_adds(b, ",\"frames\":[");
    for (int i = 0; i < r->n_frames; i++) vlm_strbuf_printf(b, "%s%.3f", i ? "," : "", r->frames[i]);
    vlm_strbuf_adds(b, "],\"caption\":");
    vlm_strbuf_json_str(b, r->caption);
    vlm_strbuf_adds(b, ",\"finish\":");
    vlm_strbuf_json_str(b, r->finish);
    if (settings_json) {
        vlm_strbuf_adds(b, ",\"settings\":");
        vlm_strbuf_adds(b, settings_json);
    }
    vlm_strbuf_adds(b, "}\n");
}

void vlm_cap_jsonl_summary(vlm_strbuf *b, const char *video, const char *summary, const char *settings_json)
{
    vlm_strbuf_adds(b, "{\"video\":");
    vlm_strbuf_json_str(b, video);
    vlm_strbuf_adds(b, ",\"summary\":");
    vlm_strbuf_json_str(b, summary);
    if (settings_json) {
        vlm_strbuf_adds(b, ",\"settings\":");
        vlm_strbuf_adds(b, settings_json);
    }
    vlm_strbuf_adds(b, "}\n");
}

void vlm_cap_jsonl_error(vlm_strbuf *b, const char *video, const char *error)
{
    vlm_strbuf_adds(b, "{\"video\":");
    vlm_strbuf_json_str(b, video);
    vlm_strbuf_adds(b, ",\"error\":");
    vlm_strbuf_json_str(b, error);
    vlm_strbuf_adds(b, "}\n");
}

static int write_one(const char *stem, const char *ext, const char *data)
{
    size_t len = strlen(stem) + strlen(ext) + 1;
    char *path = malloc(len);
    if (!path) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    snprintf(path, len, "%s%s", stem, ext);
    int rc = vlm_cap_write_atomic(path, data, strlen(data));
    free(path);
    return rc;
}

int vlm_cap_write_video(const char *stem, unsigned formats, const char *video, const vlm_cap_record *r, int n,
                        const char *summary, const char *settings_json)
{
    if (!formats) formats = VLM_CAPTION_ALL;
    int rc = vlm_cap_mkdirs(stem, 1);
    if (rc) return rc;
    if (formats & VLM_CAPTION_SRT) {
        char *s = vlm_cap_srt(r, n);
        rc = s ? write_one(stem, ".srt", s) : vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        free(s);
        if (rc) return rc;
    }
    if (formats & VLM_CAPTION_VTT) {
        char *s = vlm_cap_vtt(r, n);
        rc = s ? write_one(stem, ".vtt", s) : vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        free(s);
        if (rc) return rc;
    }
    if (formats & VLM_CAPTION_JSONL) {
        vlm_strbuf b = {0};
        for (int i = 0; i < n; i++) vlm_cap_jsonl_record(&b, video, &r[i], settings_json);
        if (summary) vlm_cap_jsonl_summary(&b, video, summary, settings_json);
        if (!b.s && !b.failed) vlm_strbuf_adds(&b, "");
        rc = b.failed ? vlm_errorf(VLM_ERR_NOMEM, "out of memory") : write_one(stem, ".jsonl", b.s);
        vlm_strbuf_free(&b);
        if (rc) return rc;
    }
    return VLM_OK;
}
