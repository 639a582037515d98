/* DeepSeek-VL2 model configuration: config.json (DeepseekVLV2Config with its
 * vision_config, projector_config and language_config; absent fields take the
 * official class defaults) and processor_config.json. */
#ifndef VLM_FUSION_CONFIG_H
#define VLM_FUSION_CONFIG_H

#include "fusion/projector.h"
#include "text/lm_config.h"
#include "vision/preprocess.h"
#include "vision/siglip.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VLM_MAX_CANDIDATES 64

typedef struct {
    vlm_vision_config vision;
    vlm_projector_config projector;
    vlm_lm_config lm;
    vlm_resolution candidates[VLM_MAX_CANDIDATES];
    int n_candidates;
    float image_mean[3], image_std[3];
} vlm_vl2_config;

/* Reads <dir>/config.json (required) and <dir>/processor_config.json (optional). */
int vlm_vl2_config_load(const char *dir, vlm_vl2_config *out);
/* Parses config.json text (processor settings get their defaults). */
int vlm_vl2_config_parse(const char *json, size_t len, vlm_vl2_config *out);
/* The preprocessing settings implied by the config. */
void vlm_vl2_preprocess_config(const vlm_vl2_config *c, vlm_preprocess_config *out);

#ifdef __cplusplus
}
#endif
#endif
