// Devices, memory and streams; the error mapping shared by the other files.
#include "cuda/cuda_internal.cuh"

#include <string.h>

int vlm_cuda_code(cudaError_t e)
{
    int code = VLM_ERR_IO;
    switch (e) {
    case cudaErrorMemoryAllocation:
        code = VLM_ERR_NOMEM;
        break;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidDevice:
    case cudaErrorInvalidConfiguration:
        code = VLM_ERR_INVALID;
        break;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorNotSupported:
        code = VLM_ERR_UNSUPPORTED;
        break;
    default:
        break;
    }
    return code;
}

int vlm_cuda_fail(cudaError_t e, const char *what)
{
    return vlm_errorf(vlm_cuda_code(e), "cuda: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int vlm_cuda_check_launch(const char *what)
{
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? VLM_OK : vlm_cuda_fail(e, what);
}

extern "C" int vlm_cuda_device_count(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); // "no device" is not sticky; clear it for later calls
        vlm_cuda_fail(e, "no usable CUDA device");
        return 0;
    }
    if (n == 0) vlm_errorf(VLM_ERR_UNSUPPORTED, "cuda: no CUDA device");
    return n;
}

extern "C" int vlm_cuda_device_name(int dev, char *buf, size_t n)
{
    if (!buf || n == 0) return vlm_errorf(VLM_ERR_INVALID, "cuda: device name needs a buffer");
    buf[0] = '\0';
    cudaDeviceProp prop;
    VLM_CUDA_TRY(cudaGetDeviceProperties(&prop, dev), "device properties");
    size_t len = strnlen(prop.name, sizeof prop.name);
    if (len >= n) len = n - 1;
    memcpy(buf, prop.name, len);
    buf[len] = '\0';
    return VLM_OK;
}

extern "C" int vlm_cuda_set_device(int dev)
{
    VLM_CUDA_TRY(cudaSetDevice(dev), "set device");
    return VLM_OK;
}

extern "C" int vlm_cuda_sync(void)
{
    VLM_CUDA_TRY(cudaDeviceSynchronize(), "synchronize");
    return VLM_OK;
}

extern "C" void vlm_cuda_shutdown(void) { vlm_cuda_linear_shutdown(); }

extern "C" int vlm_cuda_stream_create(vlm_cuda_stream *out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "cuda: stream_create needs an output");
    *out = NULL;
    cudaStream_t s;
    VLM_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "create stream");
    *out = (vlm_cuda_stream)s;
    return VLM_OK;
}

extern "C" void vlm_cuda_stream_destroy(vlm_cuda_stream stream)
{
    if (stream) (void)cudaStreamDestroy(vlm_stream(stream));
}

extern "C" int vlm_cuda_stream_sync(vlm_cuda_stream stream)
{
    VLM_CUDA_TRY(cudaStreamSynchronize(vlm_stream(stream)), "synchronize stream");
    return VLM_OK;
}

extern "C" int vlm_cuda_malloc(void **ptr, size_t bytes)
{
    if (!ptr) return vlm_errorf(VLM_ERR_INVALID, "cuda: malloc needs an output pointer");
    *ptr = NULL;
    if (bytes == 0) return VLM_OK;
    cudaError_t e = cudaMalloc(ptr, bytes);
    if (e != cudaSuccess) {
        *ptr = NULL;
        (void)cudaGetLastError();
        return vlm_errorf(vlm_cuda_code(e), "cuda: allocating %zu bytes: %s", bytes, cudaGetErrorString(e));
    }
    return VLM_OK;
}

extern "C" void vlm_cuda_free(void *ptr)
{
    if (ptr) (void)cudaFree(ptr);
}

static int copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *what)
{
    if (bytes == 0) return VLM_OK;
    if (!dst || !src) return vlm_errorf(VLM_ERR_INVALID, "cuda: %s of %zu bytes with a NULL pointer", what, bytes);
    VLM_CUDA_TRY(cudaMemcpy(dst, src, bytes, kind), what);
    return VLM_OK;
}

extern "C" int vlm_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes)
{
    return copy(dst, src, bytes, cudaMemcpyHostToDevice, "copy to device");
}

extern "C" int vlm_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes)
{
    return copy(dst, src, bytes, cudaMemcpyDeviceToHost, "copy from device");
}

extern "C" int vlm_cuda_memcpy_d2d(void *dst, const void *src, size_t bytes)
{
    return copy(dst, src, bytes, cudaMemcpyDeviceToDevice, "copy on device");
}

extern "C" int vlm_cuda_memset0(void *dst, size_t bytes, vlm_cuda_stream stream)
{
    if (bytes == 0) return VLM_OK;
    if (!dst) return vlm_errorf(VLM_ERR_INVALID, "cuda: memset of a NULL pointer");
    VLM_CUDA_TRY(cudaMemsetAsync(dst, 0, bytes, vlm_stream(stream)), "memset");
    return VLM_OK;
}

extern "C" int vlm_cuda_is_device_pointer(const void *p)
{
    if (!p) return 0;
    cudaPointerAttributes a;
    cudaError_t e = cudaPointerGetAttributes(&a, p);
    if (e != cudaSuccess) { // e.g. no device: then nothing is device memory
        (void)cudaGetLastError();
        return 0;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

extern "C" int vlm_cuda_weight_upload(const vlm_weight *W, vlm_cuda_weight *out)
{
    if (!W || !out || !W->data) return vlm_errorf(VLM_ERR_INVALID, "cuda: weight upload needs a weight");
    memset(out, 0, sizeof *out);
    if (W->quant != VLM_WQ_NONE && W->quant != VLM_WQ_BF16)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "cuda: %s weights are not supported on CUDA (use bf16 or none)",
                          vlm_wquant_name(W->quant));
    if (W->dtype != VLM_DT_F32 && W->dtype != VLM_DT_BF16 && W->dtype != VLM_DT_F16)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "cuda: %s weights are not supported (F32, BF16 or F16)",
                          vlm_dtype_name(W->dtype));
    if (W->rows < 0 || W->cols < 0) return vlm_errorf(VLM_ERR_INVALID, "cuda: weight with a negative shape");
    size_t bytes = (size_t)W->rows * (size_t)W->cols * vlm_dtype_size(W->dtype);
    void *d = NULL;
    int rc = vlm_cuda_malloc(&d, bytes);
    if (rc != VLM_OK) return rc;
    rc = vlm_cuda_memcpy_h2d(d, W->data, bytes);
    if (rc != VLM_OK) {
        vlm_cuda_free(d);
        return rc;
    }
    out->dtype = W->dtype;
    out->rows = W->rows;
    out->cols = W->cols;
    out->data = d;
    return VLM_OK;
}

extern "C" void vlm_cuda_weight_free(vlm_cuda_weight *W)
{
    if (!W) return;
    vlm_cuda_free(W->data);
    memset(W, 0, sizeof *W);
}
