/* vlm quantize: write a checkpoint folder whose weights are stored already converted to the
 * formats a --quant value asks for, so that loading it maps them in place (no conversion, no
 * copy). The folder holds config.json and the other small files copied, safetensors shards with
 * model.safetensors.index.json, and vlm_quant.json listing the converted weights:
 *   {"version": 1, "quant": "<options>", "tensors": {"<name>": {"format": "q4", "group": 32,
 *    "rows": R, "cols": C}, ...}}
 * A q8 / q4 weight X is stored as X (I8 / U8 [R, row_bytes], the kernels' padded rows, core/ops.h)
 * and X_scale (F16 [R, n_groups]); bf16 (only for F32/F16 sources) as BF16 of the original shape.
 * Everything else is copied as stored. core/checkpoint.h reads it back. */
#ifndef VLM_FUSION_QUANTIZE_H
#define VLM_FUSION_QUANTIZE_H

#include "fusion/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    vlm_quant_options quant; /* formats per component, as --quant (vlm_quant_options_parse) */
    double shard_gb;         /* output shard size limit in GiB; 0 = 4 */
    int n_threads;           /* 0 = one per CPU */
    int quiet;               /* no progress lines on stderr */
} vlm_quantize_options;

/* Converts the checkpoint in in_dir into out_dir, which must not exist or be an empty folder
 * (never in_dir itself). Weights are converted one at a time and written straight to their
 * place in the shard, so memory stays about one converted matrix. The weights converted are
 * exactly those vlm_model_load would convert with the same options (the loaders themselves
 * are run in a planning mode to list them), with the same code, so a model loaded from out_dir
 * computes bit-identical results to in_dir loaded with the same options. On failure the files
 * written so far are removed. */
int vlm_quantize_checkpoint(const char *in_dir, const char *out_dir, const vlm_quantize_options *opt);

#ifdef __cplusplus
}
#endif
#endif
