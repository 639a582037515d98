/* The CUDA backend (cuda/backend_cuda.h): the function table of core/backend.h over the kernels of
 * cuda/cuda_ops.h. Plain C on the cuda_ops.h API only, so it compiles in both builds (without CUDA
 * the stub's functions report "built without CUDA" and no device is ever opened). */
#include "cuda/backend_cuda.h"

#include "core/error.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "cuda/cuda_ops.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEVICES 1024   /* vlm_backend_by_name accepts cuda:0 .. cuda:1023 */
#define KERNEL_MAX_DIM 256 /* vlm_cuda_attention's head dim limit (cuda_ops.h) */

/* A resident device copy of host data: a weight, or a float vector (gamma, bias). */
typedef struct {
    const void *host; /* NULL: free slot */
    int widened;      /* weight: 1 = F32 copy of a BF16/F16 weight, 0 = as given */
    vlm_dtype dtype;  /* of the host data */
    int64_t rows, cols; /* vectors: rows = length, cols = 0 */
    vlm_cuda_weight dev;
} resident;

typedef struct {
    int device;
    char name[16];
    pthread_mutex_t lock; /* guards everything below */
    resident *tab;        /* open addressing, linear probing; capacity a power of two */
    size_t cap, count, bytes;
    int users;
} cuda_ctx;

static int cuda_alloc(const vlm_backend *be, size_t bytes, void **out);

static cuda_ctx *ctx_of(const vlm_backend *be) { return be && be->alloc == cuda_alloc ? be->ctx : NULL; }

/* Every entry point first makes the backend's device current for the calling thread. */
static int enter(const vlm_backend *be) { return vlm_cuda_set_device(((const cuda_ctx *)be->ctx)->device); }

/* ---- resident copies ---------------------------------------------------------------------- */

static size_t slot_of(const void *p, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)p;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h & (cap - 1);
}

static int same_key(const resident *r, const resident *k)
{
    return r->host == k->host && r->widened == k->widened && r->dtype == k->dtype && r->rows == k->rows &&
           r->cols == k->cols;
}

static const resident *find(const cuda_ctx *c, const resident *key)
{
    if (!c->cap) return NULL;
    for (size_t i = slot_of(key->host, c->cap);; i = (i + 1) & (c->cap - 1)) {
        const resident *r = &c->tab[i];
        if (!r->host) return NULL;
        if (same_key(r, key)) return r;
    }
}

static void put(resident *tab, size_t cap, const resident *e)
{
    size_t i = slot_of(e->host, cap);
    while (tab[i].host) i = (i + 1) & (cap - 1);
    tab[i] = *e;
}

/* Adds e (kept at most half full). */
static int insert(cuda_ctx *c, const resident *e, size_t dev_bytes)
{
    if (2 * (c->count + 1) > c->cap) {
        const size_t cap = c->cap ? 2 * c->cap : 256;
        resident *tab = calloc(cap, sizeof *tab);
        if (!tab) return vlm_errorf(VLM_ERR_NOMEM, "cuda backend: out of memory for the resident weight table");
        for (size_t i = 0; i < c->cap; i++)
            if (c->tab[i].host) put(tab, cap, &c->tab[i]);
        free(c->tab);
        c->tab = tab;
        c->cap = cap;
    }
    put(c->tab, c->cap, e);
    c->count++;
    c->bytes += dev_bytes;
    return VLM_OK;
}

static void flush(cuda_ctx *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->tab[i].host) vlm_cuda_weight_free(&c->tab[i].dev);
    free(c->tab);
    c->tab = NULL;
    c->cap = c->count = c->bytes = 0;
}

/* A BF16 / F16 host weight as an F32 device copy (exact), converted on the host 1 Mi elements at a time. */
static int upload_widened(const vlm_weight *W, vlm_cuda_weight *out)
{
    const int64_t n = W->rows * W->cols;
    enum { CHUNK = 1 << 20 };
    memset(out, 0, sizeof *out);
    void *d = NULL;
    int rc = vlm_cuda_malloc(&d, (size_t)n * sizeof(float));
    if (rc != VLM_OK) return rc;
    float *tmp = n ? malloc((size_t)(n < CHUNK ? n : CHUNK) * sizeof(float)) : NULL;
    if (n && !tmp) rc = vlm_errorf(VLM_ERR_NOMEM, "cuda backend: out of memory widening a weight");
    for (int64_t off = 0; off < n && rc == VLM_OK; off += CHUNK) {
        const int64_t cnt = n - off < CHUNK ? n - off : CHUNK;
        const unsigned char *src = (const unsigned char *)W->data + (size_t)off * 2;
        for (int64_t i = 0; i < cnt; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2); /* checkpoint data need not be aligned */
            tmp[i] = W->dtype == VLM_DT_BF16 ? vlm_bf16_to_f32(h) : vlm_f16_to_f32(h);
        }
        rc = vlm_cuda_memcpy_h2d((float *)d + off, tmp, (size_t)cnt * sizeof(float));
    }
    free(tmp);
    if (rc != VLM_OK) {
        vlm_cuda_free(d);
        return rc;
    }
    out->dtype = VLM_DT_F32;
    out->rows = W->rows;
    out->cols = W->cols;
    out->data = d;
    return VLM_OK;
}

/* *out = the device form of W (see backend_cuda.h). */
static int weight_on_device(const vlm_backend *be, const vlm_weight *W, vlm_cuda_weight *out)
{
    memset(out, 0, sizeof *out);
    if (!W || (!W->data && W->rows * W->cols > 0)) return vlm_errorf(VLM_ERR_INVALID, "%s: no weight", be->name);
    if (W->quant != VLM_WQ_NONE && W->quant != VLM_WQ_BF16)
        return vlm_errorf(VLM_ERR_UNSUPPORTED,
                          "%s: %s weights do not run on CUDA (load the model with --quant bf16 or --quant none)",
                          be->name, vlm_wquant_name(W->quant));
    if (W->dtype != VLM_DT_F32 && W->dtype != VLM_DT_BF16 && W->dtype != VLM_DT_F16)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s: %s weights do not run on CUDA (F32, BF16 or F16 only)", be->name,
                          vlm_dtype_name(W->dtype));
    if (W->rows < 0 || W->cols < 0) return vlm_errorf(VLM_ERR_INVALID, "%s: weight with a negative shape", be->name);
    const resident key = {W->data, W->quant == VLM_WQ_NONE && W->dtype != VLM_DT_F32, W->dtype, W->rows, W->cols,
                          {0, 0, 0, NULL}};
    cuda_ctx *c = be->ctx;
    pthread_mutex_lock(&c->lock);
    int rc = VLM_OK;
    const resident *r = find(c, &key);
    if (r) {
        *out = r->dev;
    } else if (!W->data) {
        out->dtype = W->dtype, out->rows = W->rows, out->cols = W->cols;
    } else if (vlm_cuda_is_device_pointer(W->data)) {
        if (key.widened) /* widening reads the elements on the host */
            rc = vlm_errorf(VLM_ERR_UNSUPPORTED, "%s: a %s weight in device memory runs only marked bf16 (VLM_WQ_BF16)",
                            be->name, vlm_dtype_name(W->dtype));
        out->dtype = W->dtype, out->rows = W->rows, out->cols = W->cols;
        out->data = (void *)W->data;
    } else {
        resident e = key;
        if (key.widened) {
            rc = upload_widened(W, &e.dev);
        } else {
            /* vlm_cuda_weight_upload copies the elements as they are (F32, or BF16 for --quant bf16) */
            vlm_weight plain = *W;
            plain.quant = VLM_WQ_NONE;
            rc = vlm_cuda_weight_upload(&plain, &e.dev);
        }
        if (rc == VLM_OK) {
            rc = insert(c, &e, (size_t)(W->rows * W->cols) * vlm_dtype_size(e.dev.dtype));
            if (rc != VLM_OK) vlm_cuda_weight_free(&e.dev);
        }
        if (rc == VLM_OK) *out = e.dev;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* *out = a device copy of n floats at p (a gamma or a bias): p itself when it is device memory. */
static int floats_on_device(const vlm_backend *be, const float *p, int64_t n, const float **out)
{
    *out = p;
    if (!p || n <= 0) return VLM_OK;
    const resident key = {p, 0, VLM_DT_F32, n, 0, {0, 0, 0, NULL}};
    cuda_ctx *c = be->ctx;
    pthread_mutex_lock(&c->lock);
    int rc = VLM_OK;
    const resident *r = find(c, &key);
    if (r) {
        *out = r->dev.data;
    } else if (!vlm_cuda_is_device_pointer(p)) {
        resident e = key;
        const size_t bytes = (size_t)n * sizeof(float);
        rc = vlm_cuda_malloc(&e.dev.data, bytes);
        if (rc == VLM_OK) rc = vlm_cuda_memcpy_h2d(e.dev.data, p, bytes);
        if (rc == VLM_OK) rc = insert(c, &e, bytes);
        if (rc != VLM_OK) vlm_cuda_free(e.dev.data);
        else *out = e.dev.data;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* ---- buffers ------------------------------------------------------------------------------ */

static int cuda_alloc(const vlm_backend *be, size_t bytes, void **out)
{
    *out = NULL;
    if (bytes == 0) return VLM_OK;
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_malloc(out, bytes);
}

static void cuda_free(const vlm_backend *be, void *buf)
{
    if (!buf) return;
    (void)enter(be);
    vlm_cuda_free(buf);
}

static int cuda_zero(const vlm_backend *be, void *buf, size_t bytes)
{
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_memset0(buf, bytes, NULL);
}

static int cuda_upload(const vlm_backend *be, void *dst, const void *host, size_t bytes)
{
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_memcpy_h2d(dst, host, bytes);
}

static int cuda_download(const vlm_backend *be, void *host, const void *src, size_t bytes)
{
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_memcpy_d2h(host, src, bytes);
}

/* memmove semantics, as the CPU backend's copy: overlapping ranges go through a scratch buffer */
static int cuda_copy(const vlm_backend *be, void *dst, const void *src, size_t bytes)
{
    if (bytes == 0 || dst == src) return VLM_OK;
    int rc = enter(be);
    if (rc != VLM_OK) return rc;
    const char *d = dst, *s = src;
    if (d + bytes <= s || s + bytes <= d) return vlm_cuda_memcpy_d2d(dst, src, bytes);
    void *tmp = NULL;
    rc = vlm_cuda_malloc(&tmp, bytes);
    if (rc == VLM_OK) rc = vlm_cuda_memcpy_d2d(tmp, src, bytes);
    if (rc == VLM_OK) rc = vlm_cuda_memcpy_d2d(dst, tmp, bytes);
    vlm_cuda_free(tmp);
    return rc;
}

static int cuda_copy_rows(const vlm_backend *be, float *dst, int64_t dst_stride, const float *src,
                          int64_t src_stride, int64_t rows, int64_t width)
{
    if (width <= 0 || rows <= 0) return VLM_OK;
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_copy_rows(dst, dst_stride, src, src_stride, rows, width, NULL);
}

/* ---- ops ---------------------------------------------------------------------------------- */

static int cuda_linear(const vlm_backend *be, float *y, const float *x, int64_t M, const vlm_weight *W,
                       const float *bias)
{
    vlm_cuda_weight dw;
    const float *db = NULL;
    int rc = enter(be);
    if (rc == VLM_OK) rc = weight_on_device(be, W, &dw);
    if (rc == VLM_OK) rc = floats_on_device(be, bias, W->rows, &db);
    if (rc == VLM_OK) rc = vlm_cuda_linear(y, x, M, &dw, db, NULL);
    return rc;
}

static int cuda_linear_many(const vlm_backend *be, const vlm_linear_job *jobs, int n)
{
    int rc = VLM_OK;
    for (int i = 0; i < n && rc == VLM_OK; i++)
        rc = cuda_linear(be, jobs[i].y, jobs[i].x, jobs[i].M, jobs[i].W, jobs[i].bias);
    return rc;
}

static int cuda_rmsnorm(const vlm_backend *be, float *y, const float *x, int64_t M, int64_t D, int64_t stride,
                        const float *gamma, float eps)
{
    const float *dg = NULL;
    int rc = enter(be);
    if (rc == VLM_OK) rc = floats_on_device(be, gamma, D, &dg);
    if (rc == VLM_OK) rc = vlm_cuda_rmsnorm_strided(y, x, M, D, stride, dg, eps, NULL);
    return rc;
}

static int cuda_silu_mul(const vlm_backend *be, float *g, const float *up, int64_t n)
{
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_silu_mul(g, up, n, NULL);
}

static int cuda_add(const vlm_backend *be, float *y, const float *x, int64_t n)
{
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_add(y, x, n, NULL);
}

static int cuda_softmax_rows(const vlm_backend *be, float *x, int64_t M, int64_t n)
{
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_softmax_rows(x, M, n, NULL);
}

static int cuda_rope_neox(const vlm_backend *be, float *x, int64_t n_tok, int64_t tok_stride, int n_heads,
                          int64_t head_stride, int dim, const float *cos, const float *sin)
{
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_rope_neox(x, n_tok, tok_stride, n_heads, head_stride, dim, cos, sin, NULL);
}

static int cuda_rope_interleaved(const vlm_backend *be, float *x, int64_t n_tok, int64_t tok_stride, int n_heads,
                                 int64_t head_stride, int dim, const float *cos, const float *sin)
{
    int rc = enter(be);
    return rc != VLM_OK ? rc
                        : vlm_cuda_rope_interleaved(x, n_tok, tok_stride, n_heads, head_stride, dim, cos, sin, NULL);
}

/* Floats spanned by n rows `stride` apart whose last row holds `width` values. */
static size_t span(int64_t n, int64_t stride, int64_t width) { return n > 0 ? (size_t)((n - 1) * stride + width) : 0; }

/* Heads wider than the kernel takes: the CPU op on host copies (out is read too, so that values
 * between its rows survive). */
static int attention_on_host(const vlm_backend *be, const vlm_attention_params *p, const float *q, const float *k,
                             const float *v, float *out, int allow_fast)
{
    const size_t nq = span(p->n_q, p->q_stride, (int64_t)p->n_heads * p->qk_dim),
                 nk = span(p->n_kv, p->k_stride, (int64_t)p->n_kv_heads * p->qk_dim),
                 nv = span(p->n_kv, p->v_stride, (int64_t)p->n_kv_heads * p->v_dim),
                 no = span(p->n_q, p->o_stride, (int64_t)p->n_heads * p->v_dim);
    float *hq = malloc((nq + 1) * sizeof(float)), *hk = malloc((nk + 1) * sizeof(float)),
          *hv = malloc((nv + 1) * sizeof(float)), *ho = malloc((no + 1) * sizeof(float));
    int rc = VLM_OK;
    if (!hq || !hk || !hv || !ho)
        rc = vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory for attention on the host", be->name);
    if (rc == VLM_OK) rc = vlm_cuda_memcpy_d2h(hq, q, nq * sizeof(float));
    if (rc == VLM_OK) rc = vlm_cuda_memcpy_d2h(hk, k, nk * sizeof(float));
    if (rc == VLM_OK) rc = vlm_cuda_memcpy_d2h(hv, v, nv * sizeof(float));
    if (rc == VLM_OK) rc = vlm_cuda_memcpy_d2h(ho, out, no * sizeof(float));
    if (rc == VLM_OK) rc = allow_fast ? vlm_op_attention_fast(p, hq, hk, hv, ho) : vlm_op_attention(p, hq, hk, hv, ho);
    if (rc == VLM_OK) rc = vlm_cuda_memcpy_h2d(out, ho, no * sizeof(float));
    free(hq);
    free(hk);
    free(hv);
    free(ho);
    return rc;
}

static int cuda_attention(const vlm_backend *be, const vlm_attention_params *p, const float *q, const void *k,
                          const void *v, float *out, int allow_fast)
{
    int rc = enter(be);
    if (rc != VLM_OK) return rc;
    if (p && p->kv_f16) /* kv_f16 is 0 here: the decoder keeps an fp32 cache on this backend */
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s: attention over an f16 KV cache is not implemented", be->name);
    if (p && p->n_q > 0 && p->n_heads > 0 && (p->qk_dim > KERNEL_MAX_DIM || p->v_dim > KERNEL_MAX_DIM))
        return attention_on_host(be, p, q, k, v, out, allow_fast);
    /* the kernel equals the reference up to rounding either way: allow_fast changes nothing here */
    return vlm_cuda_attention(p, q, k, v, out, NULL);
}

static int cuda_embed_rows(const vlm_backend *be, float *dst, const vlm_weight *W, const int32_t *ids, int64_t n)
{
    vlm_cuda_weight dw;
    int rc = enter(be);
    if (rc == VLM_OK) rc = weight_on_device(be, W, &dw);
    if (rc == VLM_OK) rc = vlm_cuda_embed_rows(dst, &dw, ids, n, NULL);
    return rc;
}

static int cuda_gather_rows(const vlm_backend *be, float *dst, const float *src, int64_t D, const int32_t *rows,
                            int64_t n, int div)
{
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_gather_rows(dst, src, D, rows, n, div, NULL);
}

static int cuda_scatter_add_rows(const vlm_backend *be, float *y, const float *src, int64_t D, const int32_t *rows,
                                 const float *w, int64_t n, int div)
{
    int rc = enter(be);
    return rc != VLM_OK ? rc : vlm_cuda_scatter_add_rows(y, src, D, rows, w, n, div, NULL);
}

/* ---- opening, registration, users ---------------------------------------------------------- */

static pthread_mutex_t g_open_lock = PTHREAD_MUTEX_INITIALIZER;
static vlm_backend *g_backends[MAX_DEVICES]; /* made on first open, kept for the process */

static vlm_backend *make_backend(int device)
{
    vlm_backend *b = calloc(1, sizeof *b);
    cuda_ctx *c = calloc(1, sizeof *c);
    if (!b || !c || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(b);
        free(c);
        return NULL;
    }
    c->device = device;
    snprintf(c->name, sizeof c->name, "cuda:%d", device);
    b->name = c->name;
    b->kind = VLM_BACKEND_CUDA;
    b->device = device;
    b->host_memory = 0;
    b->ctx = c;
    b->alloc = cuda_alloc;
    b->free = cuda_free;
    b->zero = cuda_zero;
    b->upload = cuda_upload;
    b->download = cuda_download;
    b->copy = cuda_copy;
    b->copy_rows = cuda_copy_rows;
    b->linear = cuda_linear;
    b->linear_many = cuda_linear_many;
    b->rmsnorm = cuda_rmsnorm;
    b->silu_mul = cuda_silu_mul;
    b->add = cuda_add;
    b->softmax_rows = cuda_softmax_rows;
    b->rope_neox = cuda_rope_neox;
    b->rope_interleaved = cuda_rope_interleaved;
    b->attention = cuda_attention;
    b->embed_rows = cuda_embed_rows;
    b->gather_rows = cuda_gather_rows;
    b->scatter_add_rows = cuda_scatter_add_rows;
    return b;
}

int vlm_cuda_backend_open(int device, const vlm_backend **out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "vlm_cuda_backend_open: no output pointer");
    *out = NULL;
    const int n = vlm_cuda_device_count();
    if (n <= 0) {
        char why[384];
        snprintf(why, sizeof why, "%s", vlm_last_error());
        if (!strncmp(why, "cuda: ", 6)) return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s", why);
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "cuda: no usable CUDA device: %s", why);
    }
    if (device < 0 || device >= n || device >= MAX_DEVICES)
        return vlm_errorf(VLM_ERR_INVALID, "device cuda:%d does not exist (%d CUDA device%s here: cuda:0 to cuda:%d)",
                          device, n, n == 1 ? "" : "s", n - 1);
    pthread_mutex_lock(&g_open_lock);
    int rc = VLM_OK;
    if (!g_backends[device]) {
        rc = vlm_cuda_set_device(device); /* fails early for a device that cannot be used */
        if (rc == VLM_OK && !(g_backends[device] = make_backend(device)))
            rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    if (rc == VLM_OK) *out = g_backends[device];
    pthread_mutex_unlock(&g_open_lock);
    return rc;
}

void vlm_cuda_backend_register(void)
{
#ifdef VLM_HAVE_CUDA
    vlm_backend_register_cuda(vlm_cuda_backend_open);
#endif
}

void vlm_cuda_backend_attach(const vlm_backend *be)
{
    cuda_ctx *c = ctx_of(be);
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    c->users++;
    pthread_mutex_unlock(&c->lock);
}

void vlm_cuda_backend_detach(const vlm_backend *be)
{
    cuda_ctx *c = ctx_of(be);
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    if (c->users > 0) c->users--;
    if (c->users == 0) {
        (void)enter(be);
        flush(c);
    }
    pthread_mutex_unlock(&c->lock);
}

size_t vlm_cuda_backend_resident(const vlm_backend *be, size_t *bytes)
{
    cuda_ctx *c = ctx_of(be);
    size_t n = 0, b = 0;
    if (c) {
        pthread_mutex_lock(&c->lock);
        n = c->count;
        b = c->bytes;
        pthread_mutex_unlock(&c->lock);
    }
    if (bytes) *bytes = b;
    return n;
}
