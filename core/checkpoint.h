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

/* ---- weights in the format the loader asks for (pre-converted checkpoints) ----
 * A folder written by `vlm quantize` (fusion/quantize.h) holds vlm_quant.json, which lists the
 * weights stored already converted: q8 as I8 [rows, row_bytes] and q4 as U8 [rows, row_bytes] in
 * the kernels' layout (core/ops.h) with the fp16 scales in "<name>_scale" F16 [rows, n_groups],
 * or bf16 (converted from F32/F16) as BF16 of the original shape. vlm_checkpoint_open reads and
 * checks it (dtype, shapes and byte sizes against rows/cols/group); such weights are then viewed
 * in the mapping, never copied or converted. */

/* Bytes per stored row and scale groups per row of a q8/q4 weight with `cols` in-features
 * (group 0 = 32). VLM_ERR_INVALID for other formats or a bad group. */
int vlm_quant_layout(vlm_wquant fmt, int64_t cols, int group, int64_t *row_bytes, int64_t *n_groups);

/* The weight `name` of `rows` x `cols` in the format spec asks for. spec NULL: a weight that is
 * always read as stored (float dtypes only). A plain tensor must have the shape ndim/shape
 * (NULL: [rows, cols]) and is converted to spec (vlm_weight_convert_mapped, dropping the pages
 * it read). A pre-converted tensor is viewed in place: spec's format must be the stored one
 * (same group) or VLM_WQ_NONE (take it as stored); anything else is VLM_ERR_MISMATCH naming
 * the tensor and both formats. */
int vlm_checkpoint_weight_as(const vlm_checkpoint *c, const char *name, int ndim, const int64_t *shape, int64_t rows,
                             int64_t cols, const vlm_quant_spec *spec, vlm_weight *out);
/* Number of weights vlm_quant.json lists (0 for an ordinary checkpoint). */
int vlm_checkpoint_n_converted(const vlm_checkpoint *c);
/* The --quant value the folder was written with (vlm_quant.json "quant"), or NULL. */
const char *vlm_checkpoint_converted_quant(const vlm_checkpoint *c);

/* Every tensor of every shard (shard by shard, by name within a shard). */
int vlm_checkpoint_count(const vlm_checkpoint *c);
const vlm_tensor_view *vlm_checkpoint_at(const vlm_checkpoint *c, int i);

/* Planning (vlm quantize): while set, vlm_checkpoint_weight_as checks each weight asked for with
 * a non-NULL spec, calls fn with the stored view and the requested spec instead of converting,
 * and returns the weight as stored. A non-zero return from fn is returned to the loader. */
typedef int (*vlm_checkpoint_plan_fn)(void *user, const char *name, const vlm_tensor_view *v, int64_t rows,
                                      int64_t cols, const vlm_quant_spec *spec);
void vlm_checkpoint_set_plan(vlm_checkpoint *c, vlm_checkpoint_plan_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif
