/* The journal: one JSON object per line, appended as results arrive and flushed each (write + fdatasync), so a
 * crash loses at most the segments still in the engine. Records carry the settings' key; those of another key
 * (another prompt, model, sampling, ...) are ignored, so changing the command starts those videos over.
 *
 *   {"type":"segment","key":K,"video":V,"segment":i,"start_ms":..,"end_ms":..,"frames":[..],"caption":..,"finish":..}
 *   {"type":"summary","key":K,"video":V,"summary":..}
 *   {"type":"video","key":K,"video":V,"segments":n}     all segments done and the video's files written
 *   {"type":"error","key":K,"video":V,"error":..}
 *
 * Reading keeps the first record of each segment; a last line without its newline (the process died inside the
 * write) is cut off before anything is appended. */
#include "caption/caption_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

static vlm_cap_jvideo *get_video(vlm_cap_journal *j, const char *video, int create)
{
    vlm_cap_jvideo *v = vlm_cap_journal_find(j, video);
    if (v || !create) return v;
    if (j->n == j->cap) {
        int cap = j->cap ? j->cap * 2 : 16;
        vlm_cap_jvideo *nv = realloc(j->v, (size_t)cap * sizeof *nv);
        if (!nv) return NULL;
        j->v = nv;
        j->cap = cap;
    }
    v = &j->v[j->n];
    memset(v, 0, sizeof *v);
    if (!(v->video = vlm_cap_strdup(video))) return NULL;
    j->n++;
    /* the index: rebuilt when it gets half full */
    if ((int64_t)j->n * 2 > j->icap) {
        int icap = j->icap ? j->icap * 2 : 64;
        while ((int64_t)j->n * 2 > icap) icap *= 2;
        int *idx = malloc((size_t)icap * sizeof *idx);
        if (!idx) {
            j->n--;
            free(v->video);
            return NULL;
        }
        for (int i = 0; i < icap; i++) idx[i] = -1;
        free(j->index);
        j->index = idx;
        j->icap = icap;
        for (int i = 0; i < j->n; i++) {
            uint64_t h = vlm_cap_fnv1a64(j->v[i].video, strlen(j->v[i].video));
            int s = (int)(h & (uint64_t)(icap - 1));
            while (idx[s] >= 0) s = (s + 1) & (icap - 1);
            idx[s] = i;
        }
    } else {
        uint64_t h = vlm_cap_fnv1a64(video, strlen(video));
        int s = (int)(h & (uint64_t)(j->icap - 1));
        while (j->index[s] >= 0) s = (s + 1) & (j->icap - 1);
        j->index[s] = j->n - 1;
    }
    return v;
}

vlm_cap_jvideo *vlm_cap_journal_find(vlm_cap_journal *j, const char *video)
{
    if (!j->icap) return NULL;
    uint64_t h = vlm_cap_fnv1a64(video, strlen(video));
    int s = (int)(h & (uint64_t)(j->icap - 1));
    while (j->index[s] >= 0) {
        if (!strcmp(j->v[j->index[s]].video, video)) return &j->v[j->index[s]];
        s = (s + 1) & (j->icap - 1);
    }
    return NULL;
}

/* Stores a copy of r (its first record only). */
static int put_segment(vlm_cap_jvideo *v, const vlm_cap_record *r)
{
    if (r->index < 0 || r->index > 10000000) return VLM_ERR_INVALID;
    if (r->index >= v->cap) {
        int cap = v->cap ? v->cap : 16;
        while (cap <= r->index) cap *= 2;
        vlm_cap_record *s = realloc(v->segs, (size_t)cap * sizeof *s);
        if (!s) return VLM_ERR_NOMEM;
        memset(s + v->cap, 0, (size_t)(cap - v->cap) * sizeof *s);
        v->segs = s;
        v->cap = cap;
    }
    vlm_cap_record *d = &v->segs[r->index];
    if (d->caption) return VLM_OK;
    *d = *r;
    d->caption = vlm_cap_strdup(r->caption ? r->caption : "");
    d->frames = malloc((size_t)(r->n_frames ? r->n_frames : 1) * sizeof *d->frames);
    if (!d->caption || !d->frames) {
        free(d->caption);
        free(d->frames);
        memset(d, 0, sizeof *d);
        return VLM_ERR_NOMEM;
    }
    if (r->n_frames) memcpy(d->frames, r->frames, (size_t)r->n_frames * sizeof *d->frames);
    return VLM_OK;
}

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? vlm_cap_strdup(s) : NULL;
}

static const char *jstr(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static int jnum(const cJSON *o, const char *name, double *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(it)) return -1;
    *out = it->valuedouble;
    return 0;
}

/* One line read back; 0 when used, -1 when malformed. */
static int apply_line(vlm_cap_journal *j, const char *line)
{
    cJSON *o = cJSON_Parse(line);
    if (!o) return -1;
    int rc = -1;
    char keyhex[24];
    snprintf(keyhex, sizeof keyhex, "%016llx", (unsigned long long)j->key);
    const char *type = jstr(o, "type"), *key = jstr(o, "key"), *video = jstr(o, "video");
    if (!type || !key || !video) goto done;
    rc = 0;
    if (strcmp(key, keyhex) != 0) goto done; /* another command's */
    vlm_cap_jvideo *v = get_video(j, video, 1);
    if (!v) goto done;
    if (!strcmp(type, "segment")) {
        vlm_cap_record r = {0};
        double i, s, e;
        const cJSON *frames = cJSON_GetObjectItemCaseSensitive(o, "frames");
        const char *cap = jstr(o, "caption"), *fin = jstr(o, "finish");
        if (jnum(o, "segment", &i) || jnum(o, "start_ms", &s) || jnum(o, "end_ms", &e) || !cJSON_IsArray(frames) ||
            !cap) {
            rc = -1;
            goto done;
        }
        r.index = (int)i;
        r.start_ms = (int64_t)s;
        r.end_ms = (int64_t)e;
        r.caption = (char *)cap;
        snprintf(r.finish, sizeof r.finish, "%s", fin ? fin : "");
        int nf = cJSON_GetArraySize(frames);
        double fr[64];
        double *fp = nf <= 64 ? fr : malloc((size_t)nf * sizeof *fp);
        if (!fp) goto done;
        int k = 0;
        for (const cJSON *f = frames->child; f && k < nf; f = f->next)
            if (cJSON_IsNumber(f)) fp[k++] = f->valuedouble;
        r.frames = fp;
        r.n_frames = k;
        put_segment(v, &r);
        if (fp != fr) free(fp);
    } else if (!strcmp(type, "summary")) {
        const char *s = jstr(o, "summary");
        if (s) set_str(&v->summary, s);
    } else if (!strcmp(type, "video")) {
        double n;
        if (!jnum(o, "segments", &n)) {
            v->complete = 1;
            v->n_segments = (int)n;
            set_str(&v->error, NULL);
        }
    } else if (!strcmp(type, "error")) {
        const char *e = jstr(o, "error");
        set_str(&v->error, e ? e : "error");
    }
done:
    cJSON_Delete(o);
    return rc;
}

int vlm_cap_journal_open(const char *path, uint64_t key, int force, vlm_cap_journal *j)
{
    memset(j, 0, sizeof *j);
    j->fd = -1;
    j->key = key;
    if (!(j->path = vlm_cap_strdup(path))) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    int rc = vlm_cap_mkdirs(path, 1);
    if (rc) goto fail;
    j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : 0), 0666);
    if (j->fd < 0) {
        rc = vlm_errorf(VLM_ERR_IO, "cannot open the journal '%s': %s", path, strerror(errno));
        goto fail;
    }
    char *data;
    size_t n;
    if ((rc = vlm_cap_read_whole(path, &data, &n))) goto fail;
    size_t keep = 0;
    char *p = data;
    while ((size_t)(p - data) < n) {
        char *nl = memchr(p, '\n', n - (size_t)(p - data));
        if (!nl) break; /* torn last line */
        *nl = '\0';
        if (apply_line(j, p)) j->bad_lines++;
        p = nl + 1;
        keep = (size_t)(p - data);
    }
    free(data);
    if (keep < n && ftruncate(j->fd, (off_t)keep) != 0) {
        rc = vlm_errorf(VLM_ERR_IO, "cannot repair the journal '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (lseek(j->fd, 0, SEEK_END) < 0) {
        rc = vlm_errorf(VLM_ERR_IO, "journal '%s': %s", path, strerror(errno));
        goto fail;
    }
    return VLM_OK;
fail:
    vlm_cap_journal_close(j);
    return rc;
}

void vlm_cap_journal_close(vlm_cap_journal *j)
{
    if (j->fd >= 0) close(j->fd);
    for (int i = 0; i < j->n; i++) {
        vlm_cap_jvideo *v = &j->v[i];
        for (int k = 0; k < v->cap; k++) vlm_cap_record_free(&v->segs[k]);
        free(v->segs);
        free(v->video);
        free(v->summary);
        free(v->error);
    }
    free(j->v);
    free(j->index);
    free(j->path);
    memset(j, 0, sizeof *j);
    j->fd = -1;
}

static int append(vlm_cap_journal *j, vlm_strbuf *b)
{
    if (b->failed) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    const char *p = b->s;
    size_t left = b->len;
    while (left) {
        ssize_t w = write(j->fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return vlm_errorf(VLM_ERR_IO, "cannot append to the journal '%s': %s", j->path, strerror(errno));
        p += w;
        left -= (size_t)w;
    }
    if (fdatasync(j->fd) != 0 && errno != EINVAL)
        return vlm_errorf(VLM_ERR_IO, "cannot flush the journal '%s': %s", j->path, strerror(errno));
    return VLM_OK;
}

static void head(vlm_strbuf *b, const vlm_cap_journal *j, const char *type, const char *video)
{
    vlm_strbuf_printf(b, "{\"type\":\"%s\",\"key\":\"%016llx\",\"video\":", type, (unsigned long long)j->key);
    vlm_strbuf_json_str(b, video);
}

/* Appends the record in b (and frees b), then returns the video's state to update; NULL with *rc set when
 * either fails. */
static vlm_cap_jvideo *commit_record(vlm_cap_journal *j, vlm_strbuf *b, const char *video, int *rc)
{
    *rc = append(j, b);
    vlm_strbuf_free(b);
    if (*rc) return NULL;
    vlm_cap_jvideo *v = get_video(j, video, 1);
    if (!v) *rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    return v;
}

int vlm_cap_journal_segment(vlm_cap_journal *j, const char *video, const vlm_cap_record *r)
{
    vlm_strbuf b = {0};
    head(&b, j, "segment", video);
    vlm_strbuf_printf(&b, ",\"segment\":%d,\"start_ms\":%lld,\"end_ms\":%lld,\"frames\":[", r->index,
                      (long long)r->start_ms, (long long)r->end_ms);
    for (int i = 0; i < r->n_frames; i++) vlm_strbuf_printf(&b, "%s%.17g", i ? "," : "", r->frames[i]);
    vlm_strbuf_adds(&b, "],\"caption\":");
    vlm_strbuf_json_str(&b, r->caption);
    vlm_strbuf_adds(&b, ",\"finish\":");
    vlm_strbuf_json_str(&b, r->finish);
    vlm_strbuf_adds(&b, "}\n");
    int rc;
    vlm_cap_jvideo *v = commit_record(j, &b, video, &rc);
    if (!v) return rc;
    if (put_segment(v, r)) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    return VLM_OK;
}

/* A record of one text field ("summary", "error") for video, appended, then kept in the video's state
 * (*field of it, chosen by the caller through the returned video). */
static vlm_cap_jvideo *text_record(vlm_cap_journal *j, const char *type, const char *video, const char *text, int *rc)
{
    vlm_strbuf b = {0};
    head(&b, j, type, video);
    vlm_strbuf_printf(&b, ",\"%s\":", type);
    vlm_strbuf_json_str(&b, text);
    vlm_strbuf_adds(&b, "}\n");
    return commit_record(j, &b, video, rc);
}

int vlm_cap_journal_summary(vlm_cap_journal *j, const char *video, const char *summary)
{
    int rc;
    vlm_cap_jvideo *v = text_record(j, "summary", video, summary, &rc);
    if (v) set_str(&v->summary, summary);
    return rc;
}

int vlm_cap_journal_video(vlm_cap_journal *j, const char *video, int n_segments)
{
    vlm_strbuf b = {0};
    head(&b, j, "video", video);
    vlm_strbuf_printf(&b, ",\"segments\":%d}\n", n_segments);
    int rc;
    vlm_cap_jvideo *v = commit_record(j, &b, video, &rc);
    if (!v) return rc;
    v->complete = 1;
    v->n_segments = n_segments;
    set_str(&v->error, NULL);
    return VLM_OK;
}

int vlm_cap_journal_error(vlm_cap_journal *j, const char *video, const char *error)
{
    int rc;
    vlm_cap_jvideo *v = text_record(j, "error", video, error, &rc);
    if (v) set_str(&v->error, error);
    return rc;
}
