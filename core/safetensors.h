/* Reading safetensors files: an 8-byte little-endian header length, a JSON
 * header naming each tensor's dtype, shape and byte range, then raw data.
 * The file is memory-mapped; every header entry is validated (known dtype,
 * shape product matching the byte range, range inside the file, no overlap
 * past the end) before a view is handed out. */
#ifndef VLM_CORE_SAFETENSORS_H
#define VLM_CORE_SAFETENSORS_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_st_file vlm_st_file;

/* Opens and validates path. On failure *out is NULL and the error names the file. */
int vlm_st_open(const char *path, vlm_st_file **out);
void vlm_st_close(vlm_st_file *f);
const char *vlm_st_path(const vlm_st_file *f);
/* NULL if absent. */
const vlm_tensor_view *vlm_st_find(const vlm_st_file *f, const char *name);
int vlm_st_count(const vlm_st_file *f);
const vlm_tensor_view *vlm_st_at(const vlm_st_file *f, int i);

/* Writing: tensors are given as views (name, dtype, shape, data). */
int vlm_st_write(const char *path, const vlm_tensor_view *tensors, int n);

#ifdef __cplusplus
}
#endif
#endif
