/* Inputs of vlm caption: files, folders (videos found by their bytes), @lists and URLs, to videos with the
 * stems of their output files. */
#include "caption/caption_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "media/url.h"

int vlm_cap_is_video_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char head[512];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return vlm_media_sniff(head, n, NULL) == VLM_MEDIA_VIDEO;
}

/* The inputs while they are gathered: path + the part of it that names the output under out_dir. */
typedef struct {
    char *path, *rel, *error;
    int is_url;
} raw_input;

typedef struct {
    raw_input *v;
    int n, cap;
    int oom;
} raw_list;

static void raw_add(raw_list *l, const char *path, const char *rel, const char *error, int is_url)
{
    if (l->oom) return;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        raw_input *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) {
            l->oom = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    raw_input *r = &l->v[l->n];
    r->path = vlm_cap_strdup(path);
    r->rel = vlm_cap_strdup(rel);
    r->error = error ? vlm_cap_strdup(error) : NULL;
    r->is_url = is_url;
    if (!r->path || !r->rel || (error && !r->error)) {
        free(r->path);
        free(r->rel);
        free(r->error);
        l->oom = 1;
        return;
    }
    l->n++;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    while (na > 1 && a[na - 1] == '/') na--;
    char *s = malloc(na + nb + 2);
    if (!s) return NULL;
    memcpy(s, a, na);
    size_t k = na;
    if (!(na == 1 && a[0] == '/')) s[k++] = '/';
    memcpy(s + k, b, nb + 1);
    return s;
}

/* Videos below dir (sorted by name at each level); rel: the path inside the folder given. */
static void walk(raw_list *l, const char *dir, const char *rel, int depth)
{
    if (depth > 64) return;
    DIR *d = opendir(dir);
    if (!d) {
        char msg[512];
        snprintf(msg, sizeof msg, "cannot read folder '%s': %s", dir, strerror(errno));
        raw_add(l, dir, rel[0] ? rel : "folder", msg, 0);
        return;
    }
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) {
                l->oom = 1;
                break;
            }
            names = nn;
        }
        if (!(names[n] = vlm_cap_strdup(e->d_name))) {
            l->oom = 1;
            break;
        }
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n && !l->oom; i++) {
        char *p = join(dir, names[i]);
        char *r = rel[0] ? join(rel, names[i]) : vlm_cap_strdup(names[i]);
        if (!p || !r) {
            l->oom = 1;
        } else {
            struct stat lst, st;
            if (lstat(p, &lst) == 0) {
                if (S_ISDIR(lst.st_mode))
                    walk(l, p, r, depth + 1);
                else if ((S_ISREG(lst.st_mode) || (S_ISLNK(lst.st_mode) && stat(p, &st) == 0 && S_ISREG(st.st_mode))) &&
                         vlm_cap_is_video_file(p))
                    raw_add(l, p, r, NULL, 0);
            }
        }
        free(p);
        free(r);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* One input (not an @list). */
static void add_one(raw_list *l, const char *in)
{
    if (vlm_url_is_url(in)) {
        /* the last path part, without query or fragment */
        char part[256] = "";
        if (strncmp(in, "data:", 5) != 0) {
            const char *s = strstr(in, "://");
            s = s ? s + 3 : in;
            size_t n = strcspn(s, "?#");
            const char *last = s;
            for (size_t i = 0; i < n; i++)
                if (s[i] == '/') last = s + i + 1;
            size_t ln = (size_t)(s + n - last);
            if (last != s && ln > 0 && ln < sizeof part) {
                memcpy(part, last, ln);
                part[ln] = '\0';
            }
        }
        for (char *c = part; *c; c++)
            if (*c == '/' || *c == '\\' || (unsigned char)*c < 0x20 || *c == '%') *c = '_';
        if (!part[0] || !strcmp(part, ".") || !strcmp(part, "..")) snprintf(part, sizeof part, "video");
        raw_add(l, in, part, NULL, 1);
        return;
    }
    struct stat st;
    if (stat(in, &st) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "cannot open '%s': %s", in, strerror(errno));
        raw_add(l, in, base_name(in), msg, 0);
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        walk(l, in, "", 0);
        return;
    }
    /* A file named on its own is tried even if its first bytes are not a known container: the media layer says. */
    raw_add(l, in, base_name(in), NULL, 0);
}

static void add_list(raw_list *l, const char *list_path)
{
    char *data;
    size_t n;
    if (vlm_cap_read_whole(list_path, &data, &n) != VLM_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "input list: %s", vlm_last_error());
        raw_add(l, list_path, base_name(list_path), msg, 0);
        return;
    }
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t k = strlen(line);
        while (k && (line[k - 1] == '\r' || line[k - 1] == ' ' || line[k - 1] == '\t')) line[--k] = '\0';
        while (*line == ' ' || *line == '\t') line++;
        if (!*line || *line == '#') continue;
        add_one(l, line);
    }
    free(data);
}

/* Drops the extension of the last path part ("a/b.mp4" -> "a/b"; "a/.hidden" stays). */
static void drop_ext(char *s)
{
    char *slash = strrchr(s, '/');
    char *name = slash ? slash + 1 : s;
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
}

static char *make_stem(const raw_input *r, const char *out_dir)
{
    char *s;
    if (out_dir) {
        s = join(out_dir, r->rel);
    } else if (r->is_url) {
        s = vlm_cap_strdup(r->rel);
    } else {
        s = vlm_cap_strdup(r->path);
    }
    if (s) drop_ext(s);
    return s;
}

static int cmp_idx_path(const void *a, const void *b, void *ctx)
{
    const raw_list *l = ctx;
    int ia = *(const int *)a, ib = *(const int *)b;
    int c = strcmp(l->v[ia].path, l->v[ib].path);
    return c ? c : (ia > ib) - (ia < ib);
}

static int cmp_idx_stem(const void *a, const void *b, void *ctx)
{
    const vlm_cap_inputs *in = ctx;
    int ia = *(const int *)a, ib = *(const int *)b;
    int c = strcmp(in->v[ia].stem, in->v[ib].stem);
    return c ? c : (ia > ib) - (ia < ib);
}

int vlm_cap_inputs_expand(const char *const *inputs, int n, const char *out_dir, vlm_cap_inputs *out)
{
    memset(out, 0, sizeof *out);
    raw_list l = {0};
    for (int i = 0; i < n && !l.oom; i++) {
        if (inputs[i][0] == '@')
            add_list(&l, inputs[i] + 1);
        else
            add_one(&l, inputs[i]);
    }
    int rc = VLM_OK;
    if (l.oom) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory listing the inputs");
        goto done;
    }
    out->v = calloc((size_t)(l.n ? l.n : 1), sizeof *out->v);
    if (!out->v) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    out->cap = l.n;
    /* A path given twice (or found by two inputs) is captioned once, at its first place. */
    char *dup = calloc((size_t)(l.n ? l.n : 1), 1);
    int *order = malloc((size_t)(l.n ? l.n : 1) * sizeof *order);
    if (!dup || !order) {
        free(dup);
        free(order);
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < l.n; i++) order[i] = i;
    qsort_r(order, (size_t)l.n, sizeof *order, cmp_idx_path, &l);
    for (int i = 1; i < l.n; i++)
        if (!strcmp(l.v[order[i]].path, l.v[order[i - 1]].path)) dup[order[i]] = 1;
    free(order);
    for (int i = 0; i < l.n; i++) {
        raw_input *r = &l.v[i];
        if (dup[i]) continue;
        vlm_cap_input *o = &out->v[out->n];
        o->stem = make_stem(r, out_dir);
        if (!o->stem) {
            free(dup);
            rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
            goto done;
        }
        o->path = r->path;
        o->error = r->error;
        r->path = r->error = NULL;
        o->is_url = r->is_url;
        o->hash = vlm_cap_fnv1a64(o->path, strlen(o->path));
        out->n++;
    }
    free(dup);
    /* Stems that collide ("a.mp4" and "a.mkv", or two "clip.mp4" under one --out-dir) get the path's hash. */
    if (out->n > 1) {
        int *idx = malloc((size_t)out->n * sizeof *idx);
        if (!idx) {
            rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < out->n; i++) idx[i] = i;
        qsort_r(idx, (size_t)out->n, sizeof *idx, cmp_idx_stem, out);
        for (int a = 0; a < out->n;) {
            int b = a + 1;
            while (b < out->n && !strcmp(out->v[idx[a]].stem, out->v[idx[b]].stem)) b++;
            for (int k = a; b - a > 1 && k < b; k++) {
                vlm_cap_input *o = &out->v[idx[k]];
                size_t len = strlen(o->stem) + 20;
                char *s = malloc(len);
                if (!s) {
                    free(idx);
                    rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
                    goto done;
                }
                snprintf(s, len, "%s-%08x", o->stem, (unsigned)(o->hash >> 32));
                free(o->stem);
                o->stem = s;
            }
            a = b;
        }
        free(idx);
    }
done:
    for (int i = 0; i < l.n; i++) {
        free(l.v[i].path);
        free(l.v[i].rel);
        free(l.v[i].error);
    }
    free(l.v);
    if (rc) vlm_cap_inputs_free(out);
    return rc;
}

void vlm_cap_inputs_shard(vlm_cap_inputs *in, int index, int count)
{
    if (count <= 1) return;
    int k = 0;
    for (int i = 0; i < in->n; i++) {
        if ((int)(in->v[i].hash % (uint64_t)count) == index) {
            in->v[k++] = in->v[i];
        } else {
            free(in->v[i].path);
            free(in->v[i].stem);
            free(in->v[i].error);
        }
    }
    in->n = k;
}

void vlm_cap_inputs_free(vlm_cap_inputs *in)
{
    for (int i = 0; i < in->n; i++) {
        free(in->v[i].path);
        free(in->v[i].stem);
        free(in->v[i].error);
    }
    free(in->v);
    memset(in, 0, sizeof *in);
}
