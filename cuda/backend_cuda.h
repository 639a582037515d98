/* The CUDA implementation of the op backend (core/backend.h), on the kernels of cuda/cuda_ops.h.
 *
 * Buffers are device memory of one GPU; every op runs on the legacy default stream of that device,
 * so ops, uploads and downloads run in call order and a download returns finished results.
 *
 * Weights, norm gammas and biases. The decoder passes the loader's host copies (core/backend.h).
 * The backend keeps a resident device copy of each, made on first use and found again from the
 * host address, dtype and shape (a pointer that already is device memory is used as it is):
 *  - weights stored as in the checkpoint (quant none: the fp32 reference path) are widened to F32
 *    on the device, so products are fp32 SGEMMs like the CPU's reference kernels;
 *  - bf16 weights (--quant bf16) stay BF16: cuBLAS multiplies on the tensor cores after rounding
 *    the input to BF16 (cuda_ops.h states the error bound);
 *  - q8 / q4 weights do not run on CUDA: VLM_ERR_UNSUPPORTED, asking for --quant bf16 or none.
 * Because the copies are found by host address, a user must not free host weights while copies
 * of them may be used: a model attaches to the backend while it runs there and detaches before
 * freeing its weights; when the last user detaches, every resident copy is freed (a later model
 * may get the same host addresses for other weights). Two models on one device at a time share
 * the copies of weights they share; freeing one and loading another while the first still runs
 * is not supported (its copies would be kept and could be found again).
 *
 * Attention: cuda_ops.h's kernel takes head dims up to 256; wider heads (MLA's absorbed form on
 * DeepSeek-VL2-Small / Base: 576) run the CPU op on downloaded copies (correct, slow). */
#ifndef VLM_CUDA_BACKEND_CUDA_H
#define VLM_CUDA_BACKEND_CUDA_H

#include <stddef.h>

#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Makes vlm_backend_by_name("cuda[:N]") open this backend (vlm_backend_register_cuda). In a build
 * without CUDA it registers nothing, so lookups keep saying "vlm was built without CUDA".
 * Idempotent; call it before looking up a CUDA device. */
void vlm_cuda_backend_register(void);

/* The backend of device `device` (process lifetime, one per device). No usable CUDA device (no
 * GPU, no driver, no CUDA in this build): VLM_ERR_UNSUPPORTED "cuda: ..." with the reason; a
 * device number beyond the devices present: VLM_ERR_INVALID. */
int vlm_cuda_backend_open(int device, const vlm_backend **out);

/* Users of the resident copies (see above). Both are no-ops for a backend that is not CUDA. */
void vlm_cuda_backend_attach(const vlm_backend *be);
void vlm_cuda_backend_detach(const vlm_backend *be);

/* Number of resident copies and their device bytes (0 for a backend that is not CUDA). */
size_t vlm_cuda_backend_resident(const vlm_backend *be, size_t *bytes);

#ifdef __cplusplus
}
#endif
#endif
