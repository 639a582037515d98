#include "core/tensor.h"
#include "core/error.h"

#include <stdio.h>
#include <string.h>

static const struct { const char *name; size_t size; } k_dtypes[VLM_DT_COUNT] = {
    [VLM_DT_F32] = {"F32", 4}, [VLM_DT_F16] = {"F16", 2}, [VLM_DT_BF16] = {"BF16", 2},
    [VLM_DT_F64] = {"F64", 8}, [VLM_DT_I64] = {"I64", 8}, [VLM_DT_I32] = {"I32", 4},
    [VLM_DT_I16] = {"I16", 2}, [VLM_DT_I8] = {"I8", 1},   [VLM_DT_U8] = {"U8", 1},
    [VLM_DT_BOOL] = {"BOOL", 1},
};

size_t vlm_dtype_size(vlm_dtype dt) { return (unsigned)dt < VLM_DT_COUNT ? k_dtypes[dt].size : 0; }

const char *vlm_dtype_name(vlm_dtype dt) { return (unsigned)dt < VLM_DT_COUNT ? k_dtypes[dt].name : "?"; }

int vlm_dtype_from_name(const char *name, vlm_dtype *out)
{
    for (int i = 0; i < VLM_DT_COUNT; i++)
        if (strcmp(name, k_dtypes[i].name) == 0) { *out = (vlm_dtype)i; return VLM_OK; }
    return vlm_errorf(VLM_ERR_FORMAT, "unknown dtype \"%s\"", name);
}

int64_t vlm_view_numel(const vlm_tensor_view *v)
{
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++) n *= v->shape[i];
    return n;
}

const char *vlm_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, cap - off, "[");
    for (int i = 0; i < ndim && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (off < cap) snprintf(buf + off, cap - off, "]");
    return buf;
}

float vlm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            u = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    union { uint32_t u; float f; } c = {.u = u};
    return c.f;
}

uint16_t vlm_f32_to_f16(float f)
{
    union { uint32_t u; float f; } c = {.f = f};
    uint32_t u = c.u, sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t man = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp), half = 1u << (shift - 1);
        uint32_t r = man >> shift, rem = man & ((1u << shift) - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

int vlm_view_read_f32(const vlm_tensor_view *v, size_t first, size_t n, float *dst)
{
    switch (v->dtype) {
    case VLM_DT_F32: memcpy(dst, (const char *)v->data + 4 * first, n * sizeof(float)); return VLM_OK;
    /* element by element through memcpy: tensor data in a file need not be aligned */
    case VLM_DT_BF16:
    case VLM_DT_F16: {
        const char *s = (const char *)v->data + 2 * first;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = v->dtype == VLM_DT_BF16 ? vlm_bf16_to_f32(h) : vlm_f16_to_f32(h);
        }
        return VLM_OK;
    }
    case VLM_DT_F64: {
        const char *s = (const char *)v->data + 8 * first;
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return VLM_OK;
    }
    default:
        return vlm_errorf(VLM_ERR_INVALID, "tensor '%s' has dtype %s, expected a float type",
                          v->name ? v->name : "?", vlm_dtype_name(v->dtype));
    }
}
