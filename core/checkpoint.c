#include "core/checkpoint.h"
#include "core/error.h"
#include "core/file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A weight vlm_quant.json lists as stored converted. */
typedef struct {
    char *name;
    vlm_wquant fmt;
    int group;
    int64_t rows, cols;
    const vlm_tensor_view *data, *scales; /* scales: q8/q4 only */
} ck_converted;

struct vlm_checkpoint {
    char *dir;
    int n_shards;
    vlm_st_file **shards;
    int n_conv;
    ck_converted *conv; /* sorted by name */
    char *conv_quant;   /* vlm_quant.json "quant" */
    vlm_checkpoint_plan_fn plan;
    void *plan_user;
};

static int open_converted(vlm_checkpoint *c, const char *path);

static int add_shard(vlm_checkpoint *c, const char *path)
{
    vlm_st_file **s = realloc(c->shards, (size_t)(c->n_shards + 1) * sizeof *s);
    if (!s) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    c->shards = s;
    int rc = vlm_st_open(path, &c->shards[c->n_shards]);
    if (rc != VLM_OK) return rc;
    c->n_shards++;
    return VLM_OK;
}

/* Reads and parses a small JSON file of the checkpoint folder; *root is NULL when it is not JSON. */
static int read_json(const char *path, cJSON **root)
{
    char *text = NULL;
    size_t len = 0;
    *root = NULL;
    int rc = vlm_read_file(path, 64u << 20, &text, &len);
    if (rc != VLM_OK) return rc;
    *root = cJSON_ParseWithLength(text, len);
    free(text);
    return VLM_OK;
}

/* Sharded checkpoints: open each distinct file named in weight_map, in first-seen order. */
static int open_index(vlm_checkpoint *c, const char *index_path)
{
    cJSON *root;
    int rc = read_json(index_path, &root);
    if (rc != VLM_OK) return rc;
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return vlm_errorf(VLM_ERR_FORMAT, "%s: not valid JSON with a \"weight_map\" object", index_path);
    }
    char **seen = NULL;
    int n_seen = 0;
    for (const cJSON *e = map->child; e && rc == VLM_OK; e = e->next) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || strcmp(e->valuestring, "..") == 0) {
            rc = vlm_errorf(VLM_ERR_FORMAT, "%s: entry '%s' does not name a shard file in the folder", index_path, e->string);
            break;
        }
        int dup = 0;
        for (int i = 0; i < n_seen && !dup; i++) dup = strcmp(seen[i], e->valuestring) == 0;
        if (dup) continue;
        char **ns = realloc(seen, (size_t)(n_seen + 1) * sizeof *ns);
        if (!ns) { rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory"); break; }
        seen = ns;
        seen[n_seen++] = e->valuestring;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", c->dir, e->valuestring);
        rc = add_shard(c, path);
    }
    /* every tensor the index names must be in the shard it names */
    for (const cJSON *e = map->child; e && rc == VLM_OK; e = e->next) {
        const vlm_tensor_view *v = vlm_checkpoint_find(c, e->string);
        if (!v) rc = vlm_errorf(VLM_ERR_FORMAT, "%s lists tensor '%s' in '%s', but no shard holds it", index_path,
                                e->string, e->valuestring);
    }
    free(seen);
    cJSON_Delete(root);
    return rc;
}

int vlm_checkpoint_open(const char *dir, vlm_checkpoint **out)
{
    *out = NULL;
    if (!vlm_dir_exists(dir))
        return vlm_errorf(VLM_ERR_IO, "model folder '%s' does not exist or is not a folder", dir);
    vlm_checkpoint *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    char path[4096];
    int rc;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (vlm_file_exists(path)) {
        rc = open_index(c, path);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (vlm_file_exists(path)) rc = add_shard(c, path);
        else
            rc = vlm_errorf(VLM_ERR_IO,
                            "'%s' holds neither model.safetensors nor model.safetensors.index.json: not a checkpoint folder",
                            dir);
    }
    snprintf(path, sizeof path, "%s/vlm_quant.json", dir);
    if (rc == VLM_OK && vlm_file_exists(path)) rc = open_converted(c, path);
    if (rc != VLM_OK) {
        vlm_checkpoint_close(c);
        return rc;
    }
    *out = c;
    return VLM_OK;
}

void vlm_checkpoint_close(vlm_checkpoint *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_shards; i++) vlm_st_close(c->shards[i]);
    free(c->shards);
    for (int i = 0; i < c->n_conv; i++) free(c->conv[i].name);
    free(c->conv);
    free(c->conv_quant);
    free(c->dir);
    free(c);
}

const char *vlm_checkpoint_dir(const vlm_checkpoint *c) { return c->dir; }

const vlm_tensor_view *vlm_checkpoint_find(const vlm_checkpoint *c, const char *name)
{
    for (int i = 0; i < c->n_shards; i++) {
        const vlm_tensor_view *v = vlm_st_find(c->shards[i], name);
        if (v) return v;
    }
    return NULL;
}

size_t vlm_checkpoint_bytes(const vlm_checkpoint *c)
{
    size_t total = 0;
    for (int i = 0; i < c->n_shards; i++)
        for (int j = 0; j < vlm_st_count(c->shards[i]); j++) total += vlm_st_at(c->shards[i], j)->nbytes;
    return total;
}

int vlm_checkpoint_get(const vlm_checkpoint *c, const char *name, int ndim, const int64_t *shape,
                       const vlm_tensor_view **out)
{
    const vlm_tensor_view *v = vlm_checkpoint_find(c, name);
    if (!v) return vlm_errorf(VLM_ERR_MISMATCH, "checkpoint '%s' has no tensor '%s'", c->dir, name);
    if (v->dtype != VLM_DT_F32 && v->dtype != VLM_DT_BF16 && v->dtype != VLM_DT_F16)
        return vlm_errorf(VLM_ERR_MISMATCH, "tensor '%s' has dtype %s; expected BF16, F16 or F32", name,
                          vlm_dtype_name(v->dtype));
    int same = v->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = v->shape[i] == shape[i];
    if (!same) {
        char want[128], got[128];
        return vlm_errorf(VLM_ERR_MISMATCH, "tensor '%s' has shape %s; the config implies %s", name,
                          vlm_shape_str(v->shape, v->ndim, got, sizeof got), vlm_shape_str(shape, ndim, want, sizeof want));
    }
    *out = v;
    return VLM_OK;
}

int vlm_checkpoint_weight(const vlm_checkpoint *c, const char *name, int64_t rows, int64_t cols, vlm_weight *out)
{
    const vlm_tensor_view *v;
    int64_t shape[2] = {rows, cols};
    int rc = vlm_checkpoint_get(c, name, 2, shape, &v);
    if (rc != VLM_OK) return rc;
    /* weights are read in place by the kernels, so they must be aligned to their element size */
    if ((uintptr_t)v->data % vlm_dtype_size(v->dtype))
        return vlm_errorf(VLM_ERR_FORMAT, "tensor '%s' is not aligned to its %zu-byte elements in the file", name,
                          vlm_dtype_size(v->dtype));
    *out = (vlm_weight){.dtype = v->dtype, .rows = rows, .cols = cols, .data = v->data};
    return VLM_OK;
}

int vlm_checkpoint_f32(const vlm_checkpoint *c, const char *name, int ndim, const int64_t *shape, float **out)
{
    *out = NULL;
    const vlm_tensor_view *v;
    int rc = vlm_checkpoint_get(c, name, ndim, shape, &v);
    if (rc != VLM_OK) return rc;
    size_t n = (size_t)vlm_view_numel(v);
    float *buf = malloc((n ? n : 1) * sizeof(float));
    if (!buf) return vlm_errorf(VLM_ERR_NOMEM, "out of memory loading '%s'", name);
    vlm_view_read_f32(v, 0, n, buf);
    *out = buf;
    return VLM_OK;
}

int vlm_checkpoint_vector(const vlm_checkpoint *c, const char *name, int64_t n, float **out)
{
    return vlm_checkpoint_f32(c, name, 1, &n, out);
}

/* ---- pre-converted weights (vlm_quant.json) ------------------------------------------------ */

int vlm_quant_layout(vlm_wquant fmt, int64_t cols, int group, int64_t *row_bytes, int64_t *n_groups)
{
    if (group == 0) group = 32;
    if ((fmt != VLM_WQ_Q8 && fmt != VLM_WQ_Q4) || group < 32 || group > 4096 || group % 32 || cols <= 0)
        return vlm_errorf(VLM_ERR_INVALID, "no q8/q4 layout for format %s, group %d, %lld columns", vlm_wquant_name(fmt),
                          group, (long long)cols);
    const int64_t kp = (cols + 31) / 32 * 32; /* rows are padded to whole blocks of 32 */
    *row_bytes = fmt == VLM_WQ_Q8 ? kp : kp / 2;
    *n_groups = (cols + group - 1) / group;
    return VLM_OK;
}

static int cmp_conv(const void *a, const void *b)
{
    return strcmp(((const ck_converted *)a)->name, ((const ck_converted *)b)->name);
}

static const ck_converted *find_converted(const vlm_checkpoint *c, const char *name)
{
    ck_converted key = {.name = (char *)name};
    return c->n_conv ? bsearch(&key, c->conv, (size_t)c->n_conv, sizeof key, cmp_conv) : NULL;
}

static int json_int(const cJSON *o, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < (double)lo || v->valuedouble > (double)hi ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return -1;
    *out = (int64_t)v->valuedouble;
    return 0;
}

/* One entry: its fields, then the stored tensors against them. */
static int check_converted(const vlm_checkpoint *c, const char *path, const cJSON *o, ck_converted *e)
{
    const char *n = e->name;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "format");
    int64_t group = 0;
    if (!cJSON_IsObject(o) || !cJSON_IsString(f) || json_int(o, "rows", 1, INT64_C(1) << 40, &e->rows) ||
        json_int(o, "cols", 1, INT64_C(1) << 40, &e->cols))
        return vlm_errorf(VLM_ERR_FORMAT, "%s: the entry of tensor '%s' needs \"format\", \"rows\" and \"cols\"", path, n);
    if (!strcmp(f->valuestring, "q8")) e->fmt = VLM_WQ_Q8;
    else if (!strcmp(f->valuestring, "q4")) e->fmt = VLM_WQ_Q4;
    else if (!strcmp(f->valuestring, "bf16")) e->fmt = VLM_WQ_BF16;
    else return vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' has unknown format '%s' (q8, q4 or bf16)", path, n, f->valuestring);
    const vlm_tensor_view *v = vlm_checkpoint_find(c, n);
    if (!v) return vlm_errorf(VLM_ERR_FORMAT, "%s lists tensor '%s', but no shard holds it", path, n);
    e->data = v;
    char want[128], got[128];
    if (e->fmt == VLM_WQ_BF16) {
        /* the original shape (a conv kernel stays 4-D): rows first, the rest making up cols */
        int64_t rest = 1;
        for (int i = 1; i < v->ndim; i++) rest *= v->shape[i];
        if (v->dtype != VLM_DT_BF16 || v->ndim < 2 || v->shape[0] != e->rows || rest != e->cols)
            return vlm_errorf(VLM_ERR_FORMAT, "tensor '%s' is %s %s; %s says bf16 [%lld, %lld]", n, vlm_dtype_name(v->dtype),
                              vlm_shape_str(v->shape, v->ndim, got, sizeof got), path, (long long)e->rows, (long long)e->cols);
        if ((uintptr_t)v->data % 2)
            return vlm_errorf(VLM_ERR_FORMAT, "tensor '%s' is not aligned to its 2-byte elements in the file", n);
        return VLM_OK;
    }
    if (json_int(o, "group", 32, 4096, &group) || group % 32)
        return vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' needs a \"group\" that is a multiple of 32 in 32..4096", path, n);
    e->group = (int)group;
    int64_t rb, ng;
    if (vlm_quant_layout(e->fmt, e->cols, e->group, &rb, &ng) != VLM_OK) return vlm_error_prefix(VLM_ERR_FORMAT, "%s", n);
    const vlm_dtype dt = e->fmt == VLM_WQ_Q8 ? VLM_DT_I8 : VLM_DT_U8;
    const int64_t dshape[2] = {e->rows, rb}, sshape[2] = {e->rows, ng};
    if (v->dtype != dt || v->ndim != 2 || v->shape[0] != e->rows || v->shape[1] != rb)
        return vlm_errorf(VLM_ERR_FORMAT,
                          "tensor '%s' is %s %s (%zu bytes); %s [%lld, %lld] group %d is stored as %s %s (%llu bytes)", n,
                          vlm_dtype_name(v->dtype), vlm_shape_str(v->shape, v->ndim, got, sizeof got), v->nbytes,
                          vlm_wquant_name(e->fmt), (long long)e->rows, (long long)e->cols, e->group, vlm_dtype_name(dt),
                          vlm_shape_str(dshape, 2, want, sizeof want),
                          (unsigned long long)e->rows * (unsigned long long)rb);
    char sname[600];
    snprintf(sname, sizeof sname, "%s_scale", n);
    const vlm_tensor_view *s = vlm_checkpoint_find(c, sname);
    if (!s) return vlm_errorf(VLM_ERR_FORMAT, "tensor '%s' is stored as %s, but its scales '%s' are missing", n,
                              vlm_wquant_name(e->fmt), sname);
    if (s->dtype != VLM_DT_F16 || s->ndim != 2 || s->shape[0] != e->rows || s->shape[1] != ng)
        return vlm_errorf(VLM_ERR_FORMAT, "scale tensor '%s' is %s %s (%zu bytes); %s [%lld, %lld] group %d needs F16 %s", sname,
                          vlm_dtype_name(s->dtype), vlm_shape_str(s->shape, s->ndim, got, sizeof got), s->nbytes,
                          vlm_wquant_name(e->fmt), (long long)e->rows, (long long)e->cols, e->group,
                          vlm_shape_str(sshape, 2, want, sizeof want));
    if ((uintptr_t)s->data % 2)
        return vlm_errorf(VLM_ERR_FORMAT, "scale tensor '%s' is not aligned to its 2-byte elements in the file", sname);
    e->scales = s;
    return VLM_OK;
}

static int open_converted(vlm_checkpoint *c, const char *path)
{
    cJSON *root;
    int rc = read_json(path, &root);
    if (rc != VLM_OK) return rc;
    const cJSON *ver = root ? cJSON_GetObjectItemCaseSensitive(root, "version") : NULL;
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "tensors") : NULL;
    if (!cJSON_IsObject(map) || !cJSON_IsNumber(ver)) {
        cJSON_Delete(root);
        return vlm_errorf(VLM_ERR_FORMAT, "%s: not valid JSON with \"version\" and a \"tensors\" object", path);
    }
    if (ver->valuedouble != 1) {
        cJSON_Delete(root);
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s: version %g; this build reads version 1 (quantize the original again)",
                          path, ver->valuedouble);
    }
    const cJSON *quant = cJSON_GetObjectItemCaseSensitive(root, "quant");
    int n = cJSON_GetArraySize(map);
    c->conv = calloc(n ? (size_t)n : 1, sizeof *c->conv);
    if (cJSON_IsString(quant) && !(c->conv_quant = strdup(quant->valuestring))) rc = VLM_ERR_NOMEM;
    if (!c->conv || rc) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    for (const cJSON *e = map->child; e && rc == VLM_OK; e = e->next) {
        ck_converted *q = &c->conv[c->n_conv];
        if (!(q->name = strdup(e->string))) {
            rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
            break;
        }
        c->n_conv++;
        rc = check_converted(c, path, e, q);
    }
    cJSON_Delete(root);
    if (rc != VLM_OK) return rc;
    qsort(c->conv, (size_t)c->n_conv, sizeof *c->conv, cmp_conv);
    for (int i = 1; i < c->n_conv; i++)
        if (!strcmp(c->conv[i - 1].name, c->conv[i].name))
            return vlm_errorf(VLM_ERR_FORMAT, "%s lists tensor '%s' twice", path, c->conv[i].name);
    return VLM_OK;
}

int vlm_checkpoint_n_converted(const vlm_checkpoint *c) { return c->n_conv; }
const char *vlm_checkpoint_converted_quant(const vlm_checkpoint *c) { return c->conv_quant; }

int vlm_checkpoint_count(const vlm_checkpoint *c)
{
    int n = 0;
    for (int i = 0; i < c->n_shards; i++) n += vlm_st_count(c->shards[i]);
    return n;
}

const vlm_tensor_view *vlm_checkpoint_at(const vlm_checkpoint *c, int i)
{
    for (int s = 0; s < c->n_shards && i >= 0; s++) {
        int n = vlm_st_count(c->shards[s]);
        if (i < n) return vlm_st_at(c->shards[s], i);
        i -= n;
    }
    return NULL;
}

void vlm_checkpoint_set_plan(vlm_checkpoint *c, vlm_checkpoint_plan_fn fn, void *user)
{
    c->plan = fn;
    c->plan_user = user;
}

static const char *spec_str(vlm_wquant fmt, int group, char *buf, size_t cap)
{
    if (fmt == VLM_WQ_Q8 || fmt == VLM_WQ_Q4) snprintf(buf, cap, "%s:%d", vlm_wquant_name(fmt), group ? group : 32);
    else snprintf(buf, cap, "%s", vlm_wquant_name(fmt));
    return buf;
}

/* A weight stored converted: viewed in place when spec agrees with what is stored. */
static int converted_weight(const vlm_checkpoint *c, const ck_converted *e, int64_t rows, int64_t cols,
                            const vlm_quant_spec *spec, vlm_weight *out)
{
    char stored[32], asked[32];
    spec_str(e->fmt, e->group, stored, sizeof stored);
    if (e->rows != rows || e->cols != cols)
        return vlm_errorf(VLM_ERR_MISMATCH, "tensor '%s' is stored as %s [%lld, %lld]; the config implies [%lld, %lld]",
                          e->name, stored, (long long)e->rows, (long long)e->cols, (long long)rows, (long long)cols);
    if (!spec)
        return vlm_errorf(VLM_ERR_MISMATCH, "tensor '%s' is stored as %s in '%s', but this weight is only read as stored "
                          "(BF16, F16 or F32)", e->name, stored, c->dir);
    const int same = spec->fmt == e->fmt && (e->fmt == VLM_WQ_BF16 || (spec->group ? spec->group : 32) == e->group);
    if (spec->fmt != VLM_WQ_NONE && !same)
        return vlm_errorf(VLM_ERR_MISMATCH, "tensor '%s' is stored as %s in '%s', but --quant asks for %s: load it with the "
                          "format it was quantized with (or without --quant), or quantize the original checkpoint again",
                          e->name, stored, c->dir, spec_str(spec->fmt, spec->group, asked, sizeof asked));
    if (e->fmt == VLM_WQ_BF16) {
        *out = (vlm_weight){.dtype = VLM_DT_BF16, .rows = rows, .cols = cols, .data = e->data->data, .quant = spec->fmt};
        return VLM_OK;
    }
    int64_t rb, ng;
    vlm_quant_layout(e->fmt, cols, e->group, &rb, &ng); /* checked at open */
    *out = (vlm_weight){.dtype = e->data->dtype, .rows = rows, .cols = cols, .data = e->data->data, .quant = e->fmt,
                        .group = e->group, .row_bytes = rb, .scales = (const uint16_t *)e->scales->data};
    return VLM_OK;
}

int vlm_checkpoint_weight_as(const vlm_checkpoint *c, const char *name, int ndim, const int64_t *shape, int64_t rows,
                             int64_t cols, const vlm_quant_spec *spec, vlm_weight *out)
{
    memset(out, 0, sizeof *out);
    const ck_converted *e = find_converted(c, name);
    if (e) return converted_weight(c, e, rows, cols, spec, out);
    const int64_t rc2[2] = {rows, cols};
    if (!shape) {
        ndim = 2;
        shape = rc2;
    }
    const vlm_tensor_view *v;
    int rc = vlm_checkpoint_get(c, name, ndim, shape, &v);
    if (rc != VLM_OK) return rc;
    if ((uintptr_t)v->data % vlm_dtype_size(v->dtype))
        return vlm_errorf(VLM_ERR_FORMAT, "tensor '%s' is not aligned to its %zu-byte elements in the file", name,
                          vlm_dtype_size(v->dtype));
    *out = (vlm_weight){.dtype = v->dtype, .rows = rows, .cols = cols, .data = v->data};
    if (!spec) return VLM_OK;
    if (c->plan) return c->plan(c->plan_user, name, v, rows, cols, spec);
    if ((rc = vlm_weight_convert_mapped(out, spec, 1)) != VLM_OK) return vlm_error_prefix(rc, "%s", name);
    return VLM_OK;
}
