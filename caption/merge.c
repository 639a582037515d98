/* vlm caption --merge: the run files of several folders (shards) as one captions.jsonl.
 *
 * Each folder's captions.jsonl and captions.shard-*.jsonl are read; records are ordered as a single run writes
 * them (by video path; a video's segments by index, then its summary; an error record stands alone) and each
 * is kept once: a video captioned completely somewhere wins over an error record for it elsewhere. */
#include "caption/caption_internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    char *video;
    int kind;    /* 0 segment, 1 summary, 2 error */
    int segment;
    char *line;  /* as read, with its newline */
    int src;     /* file number: records of one video come from one file */
} rec;

typedef struct {
    rec *v;
    int n, cap;
} rec_list;

static int add(rec_list *l, rec r)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 256;
        rec *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = r;
    return 0;
}

static int cmp_rec(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    int c = strcmp(x->video, y->video);
    if (c) return c;
    if (x->src != y->src) return x->src - y->src;
    if (x->kind != y->kind) return x->kind - y->kind;
    return (x->segment > y->segment) - (x->segment < y->segment);
}

static int read_file(rec_list *l, const char *path, int src)
{
    char *data;
    size_t n;
    int rc = vlm_cap_read_whole(path, &data, &n);
    if (rc) return rc;
    int line_no = 0;
    for (char *p = data; *p;) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        line_no++;
        if (len == 0) {
            p += nl ? 1 : 0;
            if (!nl) break;
            continue;
        }
        char save = p[len];
        p[len] = '\0';
        cJSON *o = cJSON_Parse(p);
        const cJSON *video = o ? cJSON_GetObjectItemCaseSensitive(o, "video") : NULL;
        if (!cJSON_IsString(video)) {
            cJSON_Delete(o);
            free(data);
            return vlm_errorf(VLM_ERR_FORMAT, "merge: %s line %d is not a caption record", path, line_no);
        }
        rec r = {0};
        r.src = src;
        const cJSON *seg = cJSON_GetObjectItemCaseSensitive(o, "segment");
        if (cJSON_IsNumber(seg)) {
            r.kind = 0;
            r.segment = seg->valueint;
        } else if (cJSON_GetObjectItemCaseSensitive(o, "summary")) {
            r.kind = 1;
        } else {
            r.kind = 2;
        }
        r.video = vlm_cap_strdup(video->valuestring);
        r.line = malloc(len + 2);
        if (r.line) {
            memcpy(r.line, p, len);
            r.line[len] = '\n';
            r.line[len + 1] = '\0';
        }
        cJSON_Delete(o);
        p[len] = save;
        if (!r.video || !r.line || add(l, r)) {
            free(r.video);
            free(r.line);
            free(data);
            return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        }
        p += len + (nl ? 1 : 0);
    }
    free(data);
    return VLM_OK;
}

static int is_run_file(const char *name)
{
    size_t n = strlen(name);
    if (!strcmp(name, "captions.jsonl")) return 1;
    return !strncmp(name, "captions.shard-", 15) && n > 6 && !strcmp(name + n - 6, ".jsonl");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int vlm_caption_merge(const char *const *dirs, int n_dirs, const char *out_path, int64_t *n_records)
{
    if (n_records) *n_records = 0;
    rec_list l = {0};
    int rc = VLM_OK, src = 0, files = 0;
    for (int d = 0; d < n_dirs && rc == VLM_OK; d++) {
        DIR *dir = opendir(dirs[d]);
        if (!dir) {
            rc = vlm_errorf(VLM_ERR_IO, "merge: cannot read folder '%s'", dirs[d]);
            break;
        }
        char *names[4096];
        int nn = 0;
        struct dirent *e;
        while ((e = readdir(dir)) && nn < 4096) {
            if (!is_run_file(e->d_name)) continue;
            if ((names[nn] = vlm_cap_strdup(e->d_name))) nn++;
        }
        closedir(dir);
        qsort(names, (size_t)nn, sizeof *names, cmp_str);
        for (int i = 0; i < nn; i++) {
            if (rc == VLM_OK) {
                size_t len = strlen(dirs[d]) + strlen(names[i]) + 2;
                char *path = malloc(len);
                if (!path) {
                    rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
                } else {
                    snprintf(path, len, "%s/%s", dirs[d], names[i]);
                    rc = read_file(&l, path, src++);
                    files++;
                    free(path);
                }
            }
            free(names[i]);
        }
    }
    if (rc == VLM_OK && !files) rc = vlm_errorf(VLM_ERR_IO, "merge: no captions.jsonl in the folders given");
    vlm_strbuf b = {0};
    int64_t written = 0;
    if (rc == VLM_OK) {
        qsort(l.v, (size_t)l.n, sizeof *l.v, cmp_rec);
        for (int i = 0; i < l.n;) {
            /* one video: [i, j) sorted by source file; take the first file that captioned it, else its error */
            int j = i;
            while (j < l.n && !strcmp(l.v[j].video, l.v[i].video)) j++;
            int chosen = -1;
            for (int k = i; k < j && chosen < 0; k++)
                if (l.v[k].kind != 2) chosen = l.v[k].src;
            if (chosen < 0) chosen = l.v[i].src;
            int last_seg = -1, have_summary = 0, have_error = 0;
            for (int k = i; k < j; k++) {
                rec *r = &l.v[k];
                if (r->src != chosen) continue;
                if (r->kind == 0) {
                    if (r->segment == last_seg) continue;
                    last_seg = r->segment;
                } else if (r->kind == 1) {
                    if (have_summary++) continue;
                } else {
                    if (have_error++ || last_seg >= 0) continue;
                }
                vlm_strbuf_adds(&b, r->line);
                written++;
            }
            i = j;
        }
        if (b.failed) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    if (rc == VLM_OK) {
        if (out_path) {
            rc = vlm_cap_mkdirs(out_path, 1);
            if (rc == VLM_OK) rc = vlm_cap_write_atomic(out_path, b.s ? b.s : "", b.len);
        } else if (b.len && fwrite(b.s, 1, b.len, stdout) != b.len) {
            rc = vlm_errorf(VLM_ERR_IO, "merge: cannot write the output");
        }
    }
    vlm_strbuf_free(&b);
    for (int i = 0; i < l.n; i++) {
        free(l.v[i].video);
        free(l.v[i].line);
    }
    free(l.v);
    if (rc == VLM_OK && n_records) *n_records = written;
    return rc;
}
