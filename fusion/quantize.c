/* vlm quantize (fusion/quantize.h): plan with the loaders, then write shards whose layout is
 * fixed up front, converting each weight once and writing its data and scales to their offsets. */
#include "fusion/quantize.h"
#include "core/checkpoint.h"
#include "core/error.h"
#include "core/threadpool.h"
#include "fusion/projector.h"
#include "text/decoder.h"
#include "vision/siglip.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the plan: which weights get which format --------------------------------------------- */

typedef struct {
    char *name;
    vlm_quant_spec spec;
    int64_t rows, cols;
} plan_item;

typedef struct {
    plan_item *items;
    int n, cap;
} plan;

static int plan_add(void *user, const char *name, const vlm_tensor_view *v, int64_t rows, int64_t cols,
                    const vlm_quant_spec *spec)
{
    plan *p = user;
    /* as stored, or BF16 asked of a BF16 tensor: nothing to convert, the tensor is copied */
    if (spec->fmt == VLM_WQ_NONE || (spec->fmt == VLM_WQ_BF16 && v->dtype == VLM_DT_BF16)) return VLM_OK;
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 256;
        plan_item *it = realloc(p->items, (size_t)cap * sizeof *it);
        if (!it) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        p->items = it;
        p->cap = cap;
    }
    plan_item *it = &p->items[p->n];
    if (!(it->name = strdup(name))) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    it->spec = *spec;
    if (it->spec.fmt != VLM_WQ_BF16 && !it->spec.group) it->spec.group = 32;
    it->rows = rows;
    it->cols = cols;
    p->n++;
    return VLM_OK;
}

static int cmp_item(const void *a, const void *b) { return strcmp(((const plan_item *)a)->name, ((const plan_item *)b)->name); }

static const plan_item *plan_find(const plan *p, const char *name)
{
    plan_item key = {.name = (char *)name};
    return p->n ? bsearch(&key, p->items, (size_t)p->n, sizeof key, cmp_item) : NULL;
}

static void plan_free(plan *p)
{
    for (int i = 0; i < p->n; i++) free(p->items[i].name);
    free(p->items);
}

/* Runs the loaders exactly as vlm_model_load does, with the checkpoint in planning mode. */
static int make_plan(vlm_checkpoint *ck, const vlm_vl2_config *cfg, const vlm_quant_options *q, plan *p)
{
    vlm_checkpoint_set_plan(ck, plan_add, p);
    vlm_siglip *vit = NULL;
    vlm_projector *proj = NULL;
    vlm_lm *lm = NULL;
    const vlm_lm_quant lq = {q->attention, q->experts, q->lm_head};
    int rc = vlm_siglip_load_q(ck, "vision.", &cfg->vision, &q->vision, &vit);
    if (rc == VLM_OK) rc = vlm_projector_load_q(ck, "projector.", &cfg->projector, &q->projector, &proj);
    if (rc == VLM_OK) rc = vlm_lm_load_q(ck, "language.", &cfg->lm, &lq, &lm);
    vlm_lm_free(lm);
    vlm_projector_free(proj);
    vlm_siglip_free(vit);
    vlm_checkpoint_set_plan(ck, NULL, NULL);
    if (rc == VLM_OK) qsort(p->items, (size_t)p->n, sizeof *p->items, cmp_item);
    for (int i = 1; rc == VLM_OK && i < p->n; i++)
        if (!strcmp(p->items[i - 1].name, p->items[i].name))
            rc = vlm_errorf(VLM_ERR_INVALID, "quantize: weight '%s' is loaded twice", p->items[i].name);
    return rc;
}

/* ---- output tensors and shards ----------------------------------------------------------- */

typedef struct {
    char name[600];
    vlm_dtype dtype;
    int ndim;
    int64_t shape[VLM_MAX_DIMS];
    uint64_t nbytes, offset;
    const vlm_tensor_view *src; /* the source tensor (also for a scale: its weight's) */
    const plan_item *conv;      /* NULL: copied as stored */
    int is_scale;
    int shard;
} out_tensor;

typedef struct {
    out_tensor *t;
    int n;
    int n_shards;
} layout;

static int build_layout(const vlm_checkpoint *ck, const plan *p, uint64_t limit, layout *L)
{
    const int n = vlm_checkpoint_count(ck);
    L->t = calloc(2 * (size_t)n + 1, sizeof *L->t);
    if (!L->t) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    uint64_t size = 0;
    for (int i = 0; i < n; i++) {
        const vlm_tensor_view *v = vlm_checkpoint_at(ck, i);
        if (vlm_checkpoint_find(ck, v->name) != v) continue; /* a name in two shards: the loaders see the first */
        if (strlen(v->name) + 7 > sizeof L->t->name)
            return vlm_errorf(VLM_ERR_INVALID, "quantize: tensor name '%.64s...' is too long", v->name);
        const plan_item *c = plan_find(p, v->name);
        out_tensor *o = &L->t[L->n++];
        snprintf(o->name, sizeof o->name, "%s", v->name);
        o->src = v;
        o->conv = c;
        o->shard = L->n_shards;
        o->dtype = v->dtype;
        o->ndim = v->ndim;
        memcpy(o->shape, v->shape, sizeof o->shape);
        o->nbytes = v->nbytes;
        if (c && c->spec.fmt == VLM_WQ_BF16) {
            o->dtype = VLM_DT_BF16;
            o->nbytes = (uint64_t)c->rows * (uint64_t)c->cols * 2;
        } else if (c) {
            int64_t rb, ng;
            int rc = vlm_quant_layout(c->spec.fmt, c->cols, c->spec.group, &rb, &ng);
            if (rc != VLM_OK) return vlm_error_prefix(rc, "%s", v->name);
            o->dtype = c->spec.fmt == VLM_WQ_Q8 ? VLM_DT_I8 : VLM_DT_U8;
            o->ndim = 2;
            o->shape[0] = c->rows;
            o->shape[1] = rb;
            o->nbytes = (uint64_t)c->rows * (uint64_t)rb;
            out_tensor *s = &L->t[L->n++];
            *s = *o;
            snprintf(s->name, sizeof s->name, "%s_scale", v->name);
            if (vlm_checkpoint_find(ck, s->name))
                return vlm_errorf(VLM_ERR_INVALID, "quantize: '%s' needs the name '%s' for its scales, but the checkpoint "
                                  "already has a tensor of that name", v->name, s->name);
            s->is_scale = 1;
            s->dtype = VLM_DT_F16;
            s->shape[1] = ng;
            s->nbytes = (uint64_t)c->rows * (uint64_t)ng * 2;
            size += s->nbytes;
        }
        size += o->nbytes;
        /* close a shard once it reaches the limit (a weight and its scales stay together) */
        if (size >= limit && i + 1 < n) {
            L->n_shards++;
            size = 0;
        }
    }
    L->n_shards = L->n ? L->t[L->n - 1].shard + 1 : 0;
    return VLM_OK;
}

/* Within a shard, tensors whose byte size has the most trailing zero bits (up to 64) come
 * first: with the data section starting 64-byte aligned, every tensor then starts aligned
 * to at least the power of two dividing its size (q8 rows: 32, q4 rows: 16, elements: their
 * size), with no gaps between tensors as the safetensors format requires. */
static int align_class(uint64_t n)
{
    int c = 0;
    while (c < 6 && n && !(n & ((uint64_t)1 << c))) c++;
    return n ? c : 6;
}

typedef struct {
    out_tensor **order;
    int n;
} shard_view;

static int cmp_align(const void *a, const void *b)
{
    const out_tensor *x = *(out_tensor *const *)a, *y = *(out_tensor *const *)b;
    int cx = align_class(x->nbytes), cy = align_class(y->nbytes);
    if (cx != cy) return cy - cx;
    return x < y ? -1 : x > y;
}

static char *shard_header(shard_view *s, uint64_t *data_start)
{
    qsort(s->order, (size_t)s->n, sizeof *s->order, cmp_align);
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int i = 0; i < s->n; i++) {
        out_tensor *t = s->order[i];
        cJSON *o = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(o, "dtype", vlm_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + t->nbytes)));
        t->offset = off;
        off += t->nbytes;
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!js) return NULL;
    /* 8 length bytes + the header padded with spaces: the data starts 64-byte aligned */
    size_t hl = strlen(js), padded = (8 + hl + 63) / 64 * 64 - 8;
    char *buf = malloc(8 + padded);
    if (buf) {
        for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)padded >> (8 * i));
        memcpy(buf + 8, js, hl);
        memset(buf + 8 + hl, ' ', padded - hl);
        *data_start = 8 + padded;
    }
    free(js);
    return buf;
}

/* ---- writing ----------------------------------------------------------------------------- */

static int pwrite_all(int fd, const void *p, uint64_t n, uint64_t off, const char *path)
{
    const char *b = p;
    while (n) {
        size_t chunk = n > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)n;
        ssize_t w = pwrite(fd, b, chunk, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return vlm_errorf(VLM_ERR_IO, "writing '%s' failed: %s", path, w < 0 ? strerror(errno) : "no space?");
        b += w;
        n -= (uint64_t)w;
        off += (uint64_t)w;
    }
    return VLM_OK;
}

/* The source pages of a copied tensor are file-backed: forget them once written (keeps RSS low). */
static void drop_pages(const void *p, size_t n)
{
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)ps - 1) & ~((uintptr_t)ps - 1), e = ((uintptr_t)p + n) & ~((uintptr_t)ps - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

/* Source bytes handled per step: copies and conversions go by blocks of rows, each block's
 * source pages dropped once written, so memory stays small even for the embedding table. */
#define STEP_BYTES ((uint64_t)64 << 20)

/* Writes one source tensor: copied, or converted (rows are independent in every format, so
 * converting a block of rows gives the bytes converting the whole matrix gives). */
static int write_tensor(int fd, uint64_t base, const out_tensor *o, const out_tensor *scale, const char *path)
{
    const vlm_tensor_view *v = o->src;
    int rc = VLM_OK;
    if (!o->conv) {
        for (uint64_t off = 0; rc == VLM_OK && off < o->nbytes; off += STEP_BYTES) {
            uint64_t n = o->nbytes - off < STEP_BYTES ? o->nbytes - off : STEP_BYTES;
            rc = pwrite_all(fd, (const char *)v->data + off, n, base + o->offset + off, path);
            drop_pages((const char *)v->data + off, (size_t)n);
        }
        return rc;
    }
    const plan_item *c = o->conv;
    const size_t es = vlm_dtype_size(v->dtype);
    const uint64_t src_row = (uint64_t)c->cols * es, out_row = o->nbytes / (uint64_t)c->rows;
    const uint64_t scale_row = scale ? scale->nbytes / (uint64_t)c->rows : 0;
    int64_t step = (int64_t)(STEP_BYTES / src_row);
    if (step < 1) step = 1;
    for (int64_t r0 = 0; rc == VLM_OK && r0 < c->rows; r0 += step) {
        const int64_t n = c->rows - r0 < step ? c->rows - r0 : step;
        vlm_weight w = {.dtype = v->dtype, .rows = n, .cols = c->cols, .data = (const char *)v->data + (uint64_t)r0 * src_row};
        rc = vlm_weight_convert_mapped(&w, &c->spec, 1);
        if (rc != VLM_OK) return vlm_error_prefix(rc, "%s", v->name);
        /* the conversion's layout must be the one the header promised */
        int ok = w.quant == c->spec.fmt;
        if (ok && c->spec.fmt == VLM_WQ_BF16) ok = w.dtype == VLM_DT_BF16 && out_row == (uint64_t)c->cols * 2;
        else if (ok) ok = scale && w.group == c->spec.group && (uint64_t)w.row_bytes == out_row &&
                          vlm_weight_bytes(&w) == (uint64_t)n * (out_row + scale_row);
        if (!ok) rc = vlm_errorf(VLM_ERR_INVALID, "quantize: '%s' converted to an unexpected layout", v->name);
        if (rc == VLM_OK) rc = pwrite_all(fd, w.data, (uint64_t)n * out_row, base + o->offset + (uint64_t)r0 * out_row, path);
        if (rc == VLM_OK && scale)
            rc = pwrite_all(fd, w.scales, (uint64_t)n * scale_row, base + scale->offset + (uint64_t)r0 * scale_row, path);
        vlm_weight_release(&w);
    }
    return rc;
}

typedef struct {
    char **paths;
    int n;
} created;

static int remember(created *cr, const char *path)
{
    char **p = realloc(cr->paths, (size_t)(cr->n + 1) * sizeof *p);
    if (!p) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    cr->paths = p;
    if (!(p[cr->n] = strdup(path))) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    cr->n++;
    return VLM_OK;
}

static int write_shard(const char *out_dir, const char *fname, layout *L, int s, created *cr, int quiet)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, fname);
    shard_view sv = {malloc(((size_t)L->n + 1) * sizeof *sv.order), 0};
    if (!sv.order) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < L->n; i++)
        if (L->t[i].shard == s) sv.order[sv.n++] = &L->t[i];
    uint64_t base = 0;
    char *hdr = shard_header(&sv, &base);
    free(sv.order);
    if (!hdr) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    int rc = VLM_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) rc = vlm_errorf(VLM_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    if (rc == VLM_OK) rc = remember(cr, path);
    if (rc == VLM_OK) rc = pwrite_all(fd, hdr, base, 0, path);
    free(hdr);
    uint64_t bytes = 0;
    for (int i = 0; rc == VLM_OK && i < L->n; i++) {
        const out_tensor *o = &L->t[i];
        if (o->shard != s || o->is_scale) continue;
        const out_tensor *scale = i + 1 < L->n && L->t[i + 1].is_scale ? &L->t[i + 1] : NULL;
        rc = write_tensor(fd, base, o, scale, path);
        bytes += o->nbytes + (scale ? scale->nbytes : 0);
    }
    if (fd >= 0 && close(fd) != 0 && rc == VLM_OK) rc = vlm_errorf(VLM_ERR_IO, "writing '%s' failed: %s", path, strerror(errno));
    if (rc == VLM_OK && !quiet) fprintf(stderr, "quantize: wrote %s (%.1f MB)\n", path, (double)bytes / 1e6);
    return rc;
}

static int write_json(const char *dir, const char *name, cJSON *root, created *cr)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!s) return vlm_errorf(VLM_ERR_NOMEM, "out of memory writing %s", name);
    int rc = VLM_OK;
    FILE *f = fopen(path, "wbx");
    if (!f) rc = vlm_errorf(VLM_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    if (rc == VLM_OK) rc = remember(cr, path);
    if (f) {
        size_t n = strlen(s);
        int ok = fwrite(s, 1, n, f) == n && fputc('\n', f) != EOF;
        ok &= fclose(f) == 0;
        if (!ok && rc == VLM_OK) rc = vlm_errorf(VLM_ERR_IO, "writing '%s' failed", path);
    }
    free(s);
    return rc;
}

/* Small files the loaders and other tools read beside the weights. */
static const char *const k_copied[] = {"config.json",          "processor_config.json",   "preprocessor_config.json",
                                       "tokenizer.json",       "tokenizer_config.json",   "special_tokens_map.json",
                                       "generation_config.json", "chat_template.json",    "README.md",
                                       "LICENSE"};

static int copy_file(const char *in_dir, const char *out_dir, const char *name, created *cr)
{
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/%s", in_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", out_dir, name);
    struct stat st;
    if (stat(src, &st) != 0 || !S_ISREG(st.st_mode)) return VLM_OK; /* optional */
    FILE *in = fopen(src, "rb");
    if (!in) return vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", src, strerror(errno));
    FILE *out = fopen(dst, "wbx");
    int rc = out ? remember(cr, dst) : vlm_errorf(VLM_ERR_IO, "cannot create '%s': %s", dst, strerror(errno));
    char buf[1 << 16];
    size_t n;
    while (rc == VLM_OK && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = vlm_errorf(VLM_ERR_IO, "writing '%s' failed: %s", dst, strerror(errno));
    if (rc == VLM_OK && ferror(in)) rc = vlm_errorf(VLM_ERR_IO, "reading '%s' failed", src);
    fclose(in);
    if (out && fclose(out) != 0 && rc == VLM_OK) rc = vlm_errorf(VLM_ERR_IO, "writing '%s' failed", dst);
    return rc;
}

/* out_dir: created, or an existing empty folder that is not in_dir. *made: 1 if created here. */
static int prepare_out(const char *in_dir, const char *out_dir, int *made)
{
    struct stat si, so;
    *made = 0;
    if (stat(in_dir, &si) != 0 || !S_ISDIR(si.st_mode))
        return vlm_errorf(VLM_ERR_IO, "model folder '%s' does not exist or is not a folder", in_dir);
    if (stat(out_dir, &so) != 0) {
        if (errno != ENOENT || mkdir(out_dir, 0777) != 0)
            return vlm_errorf(VLM_ERR_IO, "cannot create '%s': %s", out_dir, strerror(errno));
        *made = 1;
        return VLM_OK;
    }
    if (!S_ISDIR(so.st_mode)) return vlm_errorf(VLM_ERR_INVALID, "'%s' exists and is not a folder", out_dir);
    if (so.st_dev == si.st_dev && so.st_ino == si.st_ino)
        return vlm_errorf(VLM_ERR_INVALID, "'%s' is the input folder itself; quantize into a new folder", out_dir);
    DIR *d = opendir(out_dir);
    if (!d) return vlm_errorf(VLM_ERR_IO, "cannot read '%s': %s", out_dir, strerror(errno));
    int empty = 1;
    for (struct dirent *e; empty && (e = readdir(d));) empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    if (!empty) return vlm_errorf(VLM_ERR_INVALID, "'%s' is not empty; quantize into a new or empty folder", out_dir);
    return VLM_OK;
}

static cJSON *quant_json(const plan *p, const vlm_quant_options *q)
{
    char qs[256];
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "quant", vlm_quant_options_str(q, qs, sizeof qs));
    cJSON *t = cJSON_AddObjectToObject(root, "tensors");
    for (int i = 0; i < p->n; i++) {
        const plan_item *c = &p->items[i];
        cJSON *e = cJSON_AddObjectToObject(t, c->name);
        cJSON_AddStringToObject(e, "format", vlm_wquant_name(c->spec.fmt));
        if (c->spec.fmt != VLM_WQ_BF16) cJSON_AddNumberToObject(e, "group", c->spec.group);
        cJSON_AddNumberToObject(e, "rows", (double)c->rows);
        cJSON_AddNumberToObject(e, "cols", (double)c->cols);
    }
    return root;
}

static int write_all(const char *in_dir, const char *out_dir, const vlm_quantize_options *opt, vlm_checkpoint *ck,
                     const vlm_vl2_config *cfg, created *cr)
{
    plan p = {0};
    layout L = {0};
    int rc = make_plan(ck, cfg, &opt->quant, &p);
    const uint64_t limit = (uint64_t)((opt->shard_gb > 0 ? opt->shard_gb : 4.0) * 1073741824.0);
    if (rc == VLM_OK) rc = build_layout(ck, &p, limit ? limit : 1, &L);
    cJSON *index = cJSON_CreateObject(), *map = NULL;
    if (!index) rc = rc ? rc : vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    uint64_t total = 0;
    if (rc == VLM_OK) {
        cJSON *meta = cJSON_AddObjectToObject(index, "metadata");
        for (int i = 0; i < L.n; i++) total += L.t[i].nbytes;
        cJSON_AddNumberToObject(meta, "total_size", (double)total);
        map = cJSON_AddObjectToObject(index, "weight_map");
    }
    for (int s = 0; rc == VLM_OK && s < L.n_shards; s++) {
        char fname[64];
        snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, L.n_shards);
        rc = write_shard(out_dir, fname, &L, s, cr, opt->quiet);
        for (int i = 0; rc == VLM_OK && i < L.n; i++)
            if (L.t[i].shard == s) cJSON_AddStringToObject(map, L.t[i].name, fname);
    }
    for (size_t i = 0; rc == VLM_OK && i < sizeof k_copied / sizeof *k_copied; i++)
        rc = copy_file(in_dir, out_dir, k_copied[i], cr);
    if (rc == VLM_OK) rc = write_json(out_dir, "vlm_quant.json", quant_json(&p, &opt->quant), cr);
    /* the index last: until it exists the folder is not a checkpoint */
    if (rc == VLM_OK) {
        rc = write_json(out_dir, "model.safetensors.index.json", index, cr);
        index = NULL;
    }
    cJSON_Delete(index);
    if (rc == VLM_OK && !opt->quiet)
        fprintf(stderr, "quantize: %d weights converted, %.2f GB of tensors in %d shard%s\n", p.n, (double)total / 1e9,
                L.n_shards, L.n_shards == 1 ? "" : "s");
    free(L.t);
    plan_free(&p);
    return rc;
}

int vlm_quantize_checkpoint(const char *in_dir, const char *out_dir, const vlm_quantize_options *opt)
{
    const vlm_quantize_options defaults = {0};
    if (!opt) opt = &defaults;
    if (!in_dir || !out_dir) return vlm_errorf(VLM_ERR_INVALID, "quantize: no input or output folder");
    if (opt->n_threads > 0) vlm_pool_default_set_threads(opt->n_threads);
    vlm_vl2_config cfg;
    vlm_checkpoint *ck = NULL;
    int rc = vlm_vl2_config_load(in_dir, &cfg);
    if (rc == VLM_OK) rc = vlm_checkpoint_open(in_dir, &ck);
    if (rc == VLM_OK && vlm_checkpoint_n_converted(ck))
        rc = vlm_errorf(VLM_ERR_INVALID, "'%s' is already quantized (it has vlm_quant.json); quantize the original "
                        "checkpoint instead", in_dir);
    int made = 0;
    if (rc == VLM_OK) rc = prepare_out(in_dir, out_dir, &made);
    if (rc != VLM_OK) {
        vlm_checkpoint_close(ck);
        return rc;
    }
    created cr = {0};
    rc = write_all(in_dir, out_dir, opt, ck, &cfg, &cr);
    vlm_checkpoint_close(ck);
    for (int i = 0; i < cr.n; i++) {
        if (rc != VLM_OK) unlink(cr.paths[i]);
        free(cr.paths[i]);
    }
    free(cr.paths);
    if (rc != VLM_OK && made) rmdir(out_dir);
    return rc;
}
