/* Choosing a backend by name, the CUDA backend's registration hook, and the staging helpers
 * of core/backend.h (written once over the function table, so every backend gets them). */
#include "core/backend.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEVICE 1023

static vlm_backend_open_fn cuda_open; /* accessed with __atomic builtins */

void vlm_backend_register_cuda(vlm_backend_open_fn open) { __atomic_store_n(&cuda_open, open, __ATOMIC_RELEASE); }

/* "cuda" -> 0, "cuda:N" -> N (decimal, 0..MAX_DEVICE, nothing after it); -1 otherwise. */
static int parse_cuda(const char *name)
{
    if (strncmp(name, "cuda", 4) != 0) return -1;
    const char *p = name + 4;
    if (*p == '\0') return 0;
    if (*p++ != ':' || *p == '\0') return -1;
    int dev = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        dev = dev * 10 + (*p - '0');
        if (dev > MAX_DEVICE) return -1;
    }
    return dev;
}

int vlm_backend_by_name(const char *name, const vlm_backend **out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "vlm_backend_by_name: no output pointer");
    *out = NULL;
    if (!name) return vlm_errorf(VLM_ERR_INVALID, "no backend name (expected cpu, cuda or cuda:N)");
    if (strcmp(name, "cpu") == 0) {
        *out = vlm_backend_cpu();
        return VLM_OK;
    }
    const int dev = parse_cuda(name);
    if (dev < 0)
        return vlm_errorf(VLM_ERR_INVALID, "unknown device '%.64s' (expected cpu, cuda or cuda:N with N in 0..%d)", name,
                          MAX_DEVICE);
    vlm_backend_open_fn open = __atomic_load_n(&cuda_open, __ATOMIC_ACQUIRE);
    if (!open) {
#ifdef VLM_HAVE_CUDA
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "device '%s': the CUDA backend is not registered in this program", name);
#else
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "vlm was built without CUDA (rebuild with make CUDA=1)");
#endif
    }
    int rc = open(dev, out);
    if (rc != VLM_OK) *out = NULL;
    return rc;
}

int vlm_be_buffer_view(const vlm_backend *be, const void *host, size_t bytes, const void **out)
{
    *out = NULL;
    if (be->host_memory) {
        *out = host;
        return VLM_OK;
    }
    void *buf = NULL;
    int rc = be->alloc(be, bytes, &buf);
    if (rc == VLM_OK && bytes) rc = be->upload(be, buf, host, bytes);
    if (rc != VLM_OK) {
        be->free(be, buf);
        return rc;
    }
    *out = buf;
    return VLM_OK;
}

void vlm_be_buffer_view_release(const vlm_backend *be, const void *view)
{
    if (!be->host_memory) be->free(be, (void *)view);
}

int vlm_be_host_view(const vlm_backend *be, const void *buf, size_t bytes, const void **out)
{
    *out = NULL;
    if (be->host_memory) {
        *out = buf;
        return VLM_OK;
    }
    void *host = malloc(bytes ? bytes : 1);
    if (!host) return vlm_errorf(VLM_ERR_NOMEM, "out of memory (%.1f MiB)", (double)bytes / 1048576.0);
    int rc = bytes ? be->download(be, host, buf, bytes) : VLM_OK;
    if (rc != VLM_OK) {
        free(host);
        return rc;
    }
    *out = host;
    return VLM_OK;
}

void vlm_be_host_view_release(const vlm_backend *be, const void *view)
{
    if (!be->host_memory) free((void *)view);
}

int vlm_be_output_view(const vlm_backend *be, void *host, size_t bytes, void **out)
{
    *out = NULL;
    if (be->host_memory) {
        *out = host;
        return VLM_OK;
    }
    return be->alloc(be, bytes, out);
}

int vlm_be_output_finish(const vlm_backend *be, void *host, void *view, size_t bytes, int commit)
{
    if (be->host_memory) return VLM_OK;
    int rc = commit && bytes ? be->download(be, host, view, bytes) : VLM_OK;
    be->free(be, view);
    return rc;
}
