/* Random-weight DeepSeek-VL2 checkpoints of the real shapes, for benchmarks and
 * large-shape tests: config.json, processor_config.json, a byte-level stand-in
 * tokenizer (every byte a token, no merges; the special tokens at the ids the real
 * model uses), and BF16 safetensors shards with an index. Tensors are generated and
 * written in chunks, so memory stays small whatever the model size. */
#ifndef VLM_FUSION_MKMODEL_H
#define VLM_FUSION_MKMODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double shard_gb;  /* shard size limit in GiB; 0 = 4 */
    uint64_t seed;    /* the same seed writes the same bytes */
    int quiet;        /* no progress lines on stderr */
} vlm_mkmodel_options;

/* config.json text of a built-in shape ("tiny", "small", "base"; malloc'd, free() it),
 * or VLM_ERR_INVALID for another name. */
int vlm_mkmodel_shape_config(const char *shape, char **json_out);

/* shape: "tiny", "small", "base" or the path of a config.json (DeepseekVLV2Config schema).
 * Creates out_dir if needed; existing files of the same names are replaced. */
int vlm_mkmodel(const char *shape, const char *out_dir, const vlm_mkmodel_options *opt);

#ifdef __cplusplus
}
#endif
#endif
