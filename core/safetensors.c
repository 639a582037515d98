#include "core/safetensors.h"
#include "core/error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header larger than this is certainly not a model (the biggest real ones are ~1 MB). */
#define ST_MAX_HEADER (256u << 20)

struct vlm_st_file {
    char *path;
    void *map;
    size_t map_size;
    int n;
    vlm_tensor_view *views; /* sorted by name */
    char *names;            /* storage for all names */
};

static int cmp_view_name(const void *a, const void *b)
{
    return strcmp(((const vlm_tensor_view *)a)->name, ((const vlm_tensor_view *)b)->name);
}

static int parse_entry(vlm_st_file *f, const cJSON *e, const uint8_t *data, size_t data_size,
                       vlm_tensor_view *v)
{
    const char *name = e->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' has a malformed header entry", f->path, name);
    if (vlm_dtype_from_name(dt->valuestring, &v->dtype) != VLM_OK)
        return vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", f->path, name, dt->valuestring);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > VLM_MAX_DIMS)
        return vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (max %d)", f->path, name, ndim, VLM_MAX_DIMS);
    v->ndim = ndim;
    /* numel * element size must equal the byte range; guard against overflow. */
    unsigned __int128 bytes = vlm_dtype_size(v->dtype);
    for (int i = 0; i < ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15 || d->valuedouble != (double)(int64_t)d->valuedouble)
            return vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' has an invalid shape", f->path, name);
        v->shape[i] = (int64_t)d->valuedouble;
        bytes *= (uint64_t)v->shape[i];
        if (bytes > (unsigned __int128)UINT64_MAX)
            return vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' shape is too large", f->path, name);
    }
    const cJSON *b0 = cJSON_GetArrayItem(offs, 0), *b1 = cJSON_GetArrayItem(offs, 1);
    if (!cJSON_IsNumber(b0) || !cJSON_IsNumber(b1) || b0->valuedouble < 0 || b1->valuedouble < b0->valuedouble)
        return vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' has invalid data_offsets", f->path, name);
    uint64_t begin = (uint64_t)b0->valuedouble, end = (uint64_t)b1->valuedouble;
    if (end > data_size)
        return vlm_errorf(VLM_ERR_FORMAT,
                          "%s: tensor '%s' ends at byte %llu but the file holds only %zu data bytes (truncated file?)",
                          f->path, name, (unsigned long long)end, data_size);
    if ((uint64_t)bytes != end - begin)
        return vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' has %llu data bytes but its shape and dtype need %llu",
                          f->path, name, (unsigned long long)(end - begin), (unsigned long long)bytes);
    v->data = data + begin;
    v->nbytes = (size_t)(end - begin);
    return VLM_OK;
}

static int parse_header(vlm_st_file *f, const char *json, size_t json_len, const uint8_t *data, size_t data_size)
{
    cJSON *root = cJSON_ParseWithLength(json, json_len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vlm_errorf(VLM_ERR_FORMAT, "%s: the safetensors header is not valid JSON", f->path);
    }
    int count = 0;
    size_t names_len = 0;
    for (cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        count++;
        names_len += strlen(e->string) + 1;
    }
    f->views = calloc(count ? (size_t)count : 1, sizeof *f->views);
    f->names = malloc(names_len ? names_len : 1);
    if (!f->views || !f->names) {
        cJSON_Delete(root);
        return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory reading the header", f->path);
    }
    char *np = f->names;
    int rc = VLM_OK;
    for (cJSON *e = root->child; e && rc == VLM_OK; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        if (!cJSON_IsObject(e)) {
            rc = vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' has a malformed header entry", f->path, e->string);
            break;
        }
        vlm_tensor_view *v = &f->views[f->n];
        size_t l = strlen(e->string) + 1;
        memcpy(np, e->string, l);
        v->name = np;
        np += l;
        rc = parse_entry(f, e, data, data_size, v);
        if (rc == VLM_OK) f->n++;
    }
    cJSON_Delete(root);
    if (rc != VLM_OK) return rc;
    qsort(f->views, (size_t)f->n, sizeof *f->views, cmp_view_name);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->views[i - 1].name, f->views[i].name) == 0)
            return vlm_errorf(VLM_ERR_FORMAT, "%s: tensor '%s' appears twice", f->path, f->views[i].name);
    return VLM_OK;
}

int vlm_st_open(const char *path, vlm_st_file **out)
{
    *out = NULL;
    vlm_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    int rc = VLM_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        rc = vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = vlm_errorf(VLM_ERR_IO, "'%s' is not a regular file", path);
        goto fail;
    }
    if (st.st_size < 8) {
        rc = vlm_errorf(VLM_ERR_FORMAT, "%s: file is %lld bytes, too short for a safetensors header", path,
                        (long long)st.st_size);
        goto fail;
    }
    f->map_size = (size_t)st.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        rc = vlm_errorf(VLM_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    const uint8_t *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > ST_MAX_HEADER || hlen > f->map_size - 8) {
        rc = vlm_errorf(VLM_ERR_FORMAT, "%s: header length %llu does not fit in a %zu-byte file (not a safetensors file, or truncated)",
                        path, (unsigned long long)hlen, f->map_size);
        goto fail;
    }
    rc = parse_header(f, (const char *)p + 8, (size_t)hlen, p + 8 + hlen, f->map_size - 8 - (size_t)hlen);
    if (rc != VLM_OK) goto fail;
    *out = f;
    return VLM_OK;
fail:
    if (fd >= 0) close(fd);
    vlm_st_close(f);
    return rc;
}

void vlm_st_close(vlm_st_file *f)
{
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    free(f->views);
    free(f->names);
    free(f->path);
    free(f);
}

const char *vlm_st_path(const vlm_st_file *f) { return f->path; }

const vlm_tensor_view *vlm_st_find(const vlm_st_file *f, const char *name)
{
    vlm_tensor_view key = {.name = name};
    return bsearch(&key, f->views, (size_t)f->n, sizeof key, cmp_view_name);
}

int vlm_st_count(const vlm_st_file *f) { return f->n; }

const vlm_tensor_view *vlm_st_at(const vlm_st_file *f, int i) { return (i >= 0 && i < f->n) ? &f->views[i] : NULL; }

int vlm_st_write(const char *path, const vlm_tensor_view *tensors, int n)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const vlm_tensor_view *t = &tensors[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(e, "dtype", vlm_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += t->nbytes;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    size_t jl = strlen(json), padded = (jl + 7) & ~(size_t)7;
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        free(json);
        return vlm_errorf(VLM_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(json, 1, jl, fp) == jl;
    for (size_t i = jl; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < n; i++)
        ok = tensors[i].nbytes == 0 || fwrite(tensors[i].data, 1, tensors[i].nbytes, fp) == tensors[i].nbytes;
    free(json);
    if (fclose(fp) != 0) ok = 0;
    if (!ok) return vlm_errorf(VLM_ERR_IO, "writing '%s' failed: %s", path, strerror(errno));
    return VLM_OK;
}
