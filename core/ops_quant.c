/* Weight formats chosen at load time (core/ops.h): conversion of checkpoint
 * weights to BF16 / q8 / q4, views, and the scalar dequantization the fast
 * kernels and embedding lookups share. */
#include "core/ops.h"
#include "core/ops_internal.h"
#include "core/error.h"
#include "core/threadpool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *vlm_wquant_name(vlm_wquant q)
{
    switch (q) {
    case VLM_WQ_BF16: return "bf16";
    case VLM_WQ_Q8: return "q8";
    case VLM_WQ_Q4: return "q4";
    default: return "none";
    }
}

int vlm_quant_spec_parse(const char *s, vlm_quant_spec *out)
{
    memset(out, 0, sizeof *out);
    if (!s) return vlm_errorf(VLM_ERR_INVALID, "no weight format given");
    size_t n = strcspn(s, ":");
    if (n == 4 && !strncmp(s, "bf16", 4)) out->fmt = VLM_WQ_BF16;
    else if (n == 2 && !strncmp(s, "q8", 2)) out->fmt = VLM_WQ_Q8;
    else if (n == 2 && !strncmp(s, "q4", 2)) out->fmt = VLM_WQ_Q4;
    else if ((n == 4 && !strncmp(s, "none", 4)) || (n == 3 && !strncmp(s, "ref", 3))) out->fmt = VLM_WQ_NONE;
    else return vlm_errorf(VLM_ERR_INVALID, "unknown weight format '%s' (use bf16, q8, q4, q8:<group>, q4:<group> or ref)", s);
    if (s[n] == ':') {
        char *end;
        long g = strtol(s + n + 1, &end, 10);
        if (*end || end == s + n + 1 || g < 32 || g > 4096 || g % 32 || (out->fmt != VLM_WQ_Q8 && out->fmt != VLM_WQ_Q4))
            return vlm_errorf(VLM_ERR_INVALID, "weight format '%s': the group size must be a multiple of 32 in 32..4096 "
                                               "and only q8/q4 take one", s);
        out->group = (int)g;
    }
    return VLM_OK;
}

size_t vlm_weight_bytes(const vlm_weight *W)
{
    if (W->quant == VLM_WQ_Q8 || W->quant == VLM_WQ_Q4)
        return (size_t)W->rows * ((size_t)W->row_bytes + (size_t)vlm_q_groups(W) * sizeof(uint16_t));
    return (size_t)W->rows * (size_t)W->cols * vlm_dtype_size(W->dtype);
}

vlm_weight vlm_weight_slice(const vlm_weight *W, int64_t r0, int64_t rows)
{
    vlm_weight s = *W;
    s.rows = rows;
    s.owned = NULL;
    if (W->quant == VLM_WQ_Q8 || W->quant == VLM_WQ_Q4) {
        s.data = (const char *)W->data + (size_t)r0 * (size_t)W->row_bytes;
        s.scales = W->scales + (size_t)r0 * (size_t)vlm_q_groups(W);
    } else {
        s.data = (const char *)W->data + (size_t)r0 * (size_t)W->cols * vlm_dtype_size(W->dtype);
    }
    return s;
}

void vlm_weight_release(vlm_weight *W)
{
    if (!W) return;
    free(W->owned);
    W->owned = NULL;
}

/* One stored row of a plain (F32/BF16/F16) weight widened to fp32. */
static void plain_row(const vlm_weight *W, int64_t r, float *dst)
{
    const size_t K = (size_t)W->cols;
    switch (W->dtype) {
    case VLM_DT_BF16: {
        const uint16_t *s = (const uint16_t *)W->data + (size_t)r * K;
        if (vlm_bf16_row_fast(s, (int64_t)K, dst)) break;
        for (size_t i = 0; i < K; i++) dst[i] = vlm_bf16_to_f32(s[i]);
        break;
    }
    case VLM_DT_F16: {
        const uint16_t *s = (const uint16_t *)W->data + (size_t)r * K;
        for (size_t i = 0; i < K; i++) dst[i] = vlm_f16_to_f32(s[i]);
        break;
    }
    default: memcpy(dst, (const float *)W->data + (size_t)r * K, K * sizeof(float)); break;
    }
}

void vlm_q_dequant_row(const vlm_weight *W, int64_t r, float *dst)
{
    if (W->quant != VLM_WQ_Q8 && W->quant != VLM_WQ_Q4) {
        plain_row(W, r, dst);
        return;
    }
    const int64_t K = W->cols, ng = vlm_q_groups(W);
    const uint16_t *sc = W->scales + (size_t)r * (size_t)ng;
    const uint8_t *row = (const uint8_t *)W->data + (size_t)r * (size_t)W->row_bytes;
    for (int64_t k = 0; k < K; k++) {
        float d = vlm_f16_to_f32(sc[k / W->group]);
        int q;
        if (W->quant == VLM_WQ_Q8) {
            q = (int8_t)row[k];
        } else {
            uint8_t b = row[(k / 32) * 16 + (k % 16)];
            q = ((k % 32) < 16 ? (b & 15) : (b >> 4)) - 8;
        }
        dst[k] = (float)q * d;
    }
}

/* ---- conversion --------------------------------------------------------- */

typedef struct {
    const vlm_weight *src;
    vlm_weight *dst;
    uint8_t *data;
    uint16_t *scales;
    int failed;
    int simd; /* 0: scalar only (tests compare the two) */
} convert_job;

static void convert_task(void *ctx, int64_t b, int64_t e)
{
    convert_job *j = ctx;
    const vlm_weight *S = j->src, *D = j->dst;
    const int64_t K = S->cols;
    float *row = malloc((size_t)K * sizeof(float));
    if (!row) {
        j->failed = 1;
        return;
    }
    for (int64_t r = b; r < e; r++) {
        plain_row(S, r, row);
        if (D->quant == VLM_WQ_BF16) {
            uint16_t *o = (uint16_t *)j->data + (size_t)r * (size_t)K;
            for (int64_t k = 0; k < K; k++) o[k] = vlm_f32_to_bf16(row[k]);
            continue;
        }
        const int64_t ng = vlm_q_groups(D);
        const float qmax = D->quant == VLM_WQ_Q8 ? 127.0f : 7.0f;
        uint8_t *o = j->data + (size_t)r * (size_t)D->row_bytes;
        memset(o, D->quant == VLM_WQ_Q8 ? 0 : 0x88, (size_t)D->row_bytes); /* padding: q = 0 */
        if (j->simd && vlm_q_quantize_row_fast(row, K, D->quant, D->group, o, j->scales + (size_t)r * (size_t)ng)) continue;
        for (int64_t g = 0; g < ng; g++) {
            int64_t k0 = g * D->group, k1 = k0 + D->group < K ? k0 + D->group : K;
            float amax = 0;
            for (int64_t k = k0; k < k1; k++) amax = fabsf(row[k]) > amax ? fabsf(row[k]) : amax;
            uint16_t dh = vlm_f32_to_f16(amax / qmax);
            j->scales[(size_t)r * (size_t)ng + (size_t)g] = dh;
            float d = vlm_f16_to_f32(dh), inv = d > 0 ? 1.0f / d : 0.0f;
            for (int64_t k = k0; k < k1; k++) {
                float v = nearbyintf(row[k] * inv);
                int q = (int)(v > qmax ? qmax : v < -qmax ? -qmax : v);
                if (D->quant == VLM_WQ_Q8) {
                    o[k] = (uint8_t)(int8_t)q;
                } else {
                    uint8_t *p = o + (k / 32) * 16 + (k % 16);
                    *p = (k % 32) < 16 ? (uint8_t)((*p & 0xf0) | (q + 8)) : (uint8_t)((*p & 0x0f) | ((q + 8) << 4));
                }
            }
        }
    }
    free(row);
}

/* Drops the whole pages of [p, p + n) from the resident set (they are file-backed, so
 * this only forgets the copy; a later read faults them in again). */
static void drop_pages(const void *p, size_t n)
{
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)ps - 1) & ~((uintptr_t)ps - 1), e = ((uintptr_t)p + n) & ~((uintptr_t)ps - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

int vlm_weight_convert(vlm_weight *W, const vlm_quant_spec *spec) { return vlm_weight_convert_mapped(W, spec, 0); }

int vlm_weight_convert_mapped(vlm_weight *W, const vlm_quant_spec *spec, int drop_source)
{
    if (!spec || spec->fmt == VLM_WQ_NONE || W->quant == spec->fmt) return VLM_OK;
    if (W->quant != VLM_WQ_NONE)
        return vlm_errorf(VLM_ERR_INVALID, "weight [%lld, %lld] is already %s; cannot convert it to %s", (long long)W->rows,
                          (long long)W->cols, vlm_wquant_name(W->quant), vlm_wquant_name(spec->fmt));
    if (W->dtype != VLM_DT_F32 && W->dtype != VLM_DT_BF16 && W->dtype != VLM_DT_F16)
        return vlm_errorf(VLM_ERR_INVALID, "weight of dtype %s cannot be converted", vlm_dtype_name(W->dtype));
    if (spec->fmt == VLM_WQ_BF16 && W->dtype == VLM_DT_BF16) {
        W->quant = VLM_WQ_BF16; /* as stored: only the kernels change */
        return VLM_OK;
    }
    int group = spec->group ? spec->group : 32;
    if (group < 32 || group % 32)
        return vlm_errorf(VLM_ERR_INVALID, "quantization group %d is not a positive multiple of 32", group);
    vlm_weight D = {0};
    D.rows = W->rows;
    D.cols = W->cols;
    D.quant = spec->fmt;
    size_t data_bytes, scale_bytes = 0;
    if (spec->fmt == VLM_WQ_BF16) {
        D.dtype = VLM_DT_BF16;
        data_bytes = (size_t)W->rows * (size_t)W->cols * 2;
    } else {
        D.group = group;
        int64_t kp = (W->cols + 31) / 32 * 32;
        D.dtype = spec->fmt == VLM_WQ_Q8 ? VLM_DT_I8 : VLM_DT_U8;
        D.row_bytes = spec->fmt == VLM_WQ_Q8 ? kp : kp / 2;
        data_bytes = (size_t)W->rows * (size_t)D.row_bytes;
        scale_bytes = (size_t)W->rows * (size_t)vlm_q_groups(&D) * sizeof(uint16_t);
    }
    /* one allocation: data (64-byte aligned rows start) then scales */
    size_t off = (data_bytes + 63) / 64 * 64;
    uint8_t *buf = aligned_alloc(64, (off + scale_bytes + 63) / 64 * 64);
    if (!buf)
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory converting a [%lld, %lld] weight to %s", (long long)W->rows,
                          (long long)W->cols, vlm_wquant_name(spec->fmt));
    convert_job j = {W, &D, buf, scale_bytes ? (uint16_t *)(buf + off) : NULL, 0, 1};
    vlm_pool_for(vlm_pool_default(), W->rows, 64, convert_task, &j);
    if (j.failed) {
        free(buf);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory converting a weight");
    }
    if (drop_source && !W->owned) drop_pages(W->data, (size_t)W->rows * (size_t)W->cols * vlm_dtype_size(W->dtype));
    free(W->owned);
    D.data = buf;
    D.scales = j.scales;
    D.owned = buf;
    *W = D;
    return VLM_OK;
}
