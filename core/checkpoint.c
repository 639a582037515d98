#include "core/checkpoint.h"
#include "core/error.h"
#include "core/file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vlm_checkpoint {
    char *dir;
    int n_shards;
    vlm_st_file **shards;
};

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

/* Sharded checkpoints: open each distinct file named in weight_map, in first-seen order. */
static int open_index(vlm_checkpoint *c, const char *index_path)
{
    char *text = NULL;
    size_t len = 0;
    int rc = vlm_read_file(index_path, 64u << 20, &text, &len);
    if (rc != VLM_OK) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
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
