/* A checkpoint folder as published on Hugging Face: model.safetensors, or shards
 * model-0000N-of-0000M.safetensors listed by model.safetensors.index.json. All
 * shards are memory-mapped; lookups search every shard. The typed getters check
 * presence, dtype and shape and name the tensor, expected and found shape. */
#ifndef VLM_CORE_CHECKPOINT_H
#define VLM_CORE_CHECKPOINT_H

#include "core/ops.h"
#include "core/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_checkpoint vlm_checkpoint;

int vlm_checkpoint_open(const char *dir, vlm_checkpoint **out);
void vlm_checkpoint_close(vlm_checkpoint *c);
const char *vlm_checkpoint_dir(const vlm_checkpoint *c);
/* NULL if absent. */
const vlm_tensor_view *vlm_checkpoint_find(const vlm_checkpoint *c, const char *name);
/* Total bytes of tensor data over all shards. */
size_t vlm_checkpoint_bytes(const vlm_checkpoint *c);

/* Checks that `name` exists, has a float dtype (F32/BF16/F16) and exactly this shape. */
int vlm_checkpoint_get(const vlm_checkpoint *c, const char *name, int ndim, const int64_t *shape,
                       const vlm_tensor_view **out);
/* A [rows, cols] matrix as a vlm_weight pointing into the mapping (no copy). */
int vlm_checkpoint_weight(const vlm_checkpoint *c, const char *name, int64_t rows, int64_t cols, vlm_weight *out);
/* A 1-D tensor of n elements, widened into a newly malloc'd fp32 array (*out; free() it). */
int vlm_checkpoint_vector(const vlm_checkpoint *c, const char *name, int64_t n, float **out);
/* Any-shape float tensor with numel == n widened to fp32 (e.g. pos_embed [1,729,C] or a conv kernel). */
int vlm_checkpoint_f32(const vlm_checkpoint *c, const char *name, int ndim, const int64_t *shape, float **out);

#ifdef __cplusplus
}
#endif
#endif
