/* Element types and a read-only view of an n-dimensional array (usually
 * pointing into a memory-mapped safetensors file). */
#ifndef VLM_CORE_TENSOR_H
#define VLM_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    VLM_DT_F32, VLM_DT_F16, VLM_DT_BF16, VLM_DT_F64,
    VLM_DT_I64, VLM_DT_I32, VLM_DT_I16, VLM_DT_I8, VLM_DT_U8, VLM_DT_BOOL,
    VLM_DT_COUNT
} vlm_dtype;

#define VLM_MAX_DIMS 8

typedef struct {
    const char *name;
    vlm_dtype dtype;
    int ndim;
    int64_t shape[VLM_MAX_DIMS];
    const void *data;
    size_t nbytes;
} vlm_tensor_view;

size_t vlm_dtype_size(vlm_dtype dt);
const char *vlm_dtype_name(vlm_dtype dt);        /* safetensors spelling: "F32", "BF16", ... */
int vlm_dtype_from_name(const char *name, vlm_dtype *out); /* 0 or VLM_ERR_FORMAT */
int64_t vlm_view_numel(const vlm_tensor_view *v);
/* "[3, 384, 384]" into buf. */
const char *vlm_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

/* Converts n floating-point elements (F32, F16, BF16, F64) starting at element
 * `first` of v into dst. Returns 0, or VLM_ERR_INVALID for a non-float dtype. */
int vlm_view_read_f32(const vlm_tensor_view *v, size_t first, size_t n, float *dst);

static inline float vlm_bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } c;
    c.u = (uint32_t)h << 16;
    return c.f;
}
/* Round-to-nearest-even, as torch does. */
static inline uint16_t vlm_f32_to_bf16(float f)
{
    union { uint32_t u; float f; } c;
    c.f = f;
    if ((c.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((c.u >> 16) | 0x40); /* NaN */
    c.u += 0x7fffu + ((c.u >> 16) & 1u);
    return (uint16_t)(c.u >> 16);
}
float vlm_f16_to_f32(uint16_t h);
uint16_t vlm_f32_to_f16(float f);

#ifdef __cplusplus
}
#endif
#endif
