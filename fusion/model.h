/* The whole DeepSeek-VL2 model: load a checkpoint folder, turn a conversation
 * with images into token ids and input embeddings, run the decoder, generate. */
#ifndef VLM_FUSION_MODEL_H
#define VLM_FUSION_MODEL_H

#include "fusion/config.h"
#include "media/image.h"
#include "text/chat_template.h"
#include "text/decoder.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_model vlm_model;

/* Weight formats per component, converted at load (see core/ops.h for the formats).
 * A zeroed struct keeps every weight as stored and runs the fp32 reference kernels. */
typedef struct {
    vlm_quant_spec vision;    /* SigLIP patch embedding and block matrices */
    vlm_quant_spec projector; /* the MLP projector */
    vlm_quant_spec experts;   /* every decoder SwiGLU MLP: dense, routed and shared experts */
    vlm_quant_spec attention; /* decoder attention projections */
    vlm_quant_spec lm_head;
} vlm_quant_options;

/* Parses a --quant value: a format for every component ("bf16", "q8", "q4", "q4:64", "ref"), and/or
 * comma-separated component=format overrides: "q4,vision=bf16", "experts=q4,attention=q8".
 * Components: vision, projector, experts, attention, lm_head (also "all"). */
int vlm_quant_options_parse(const char *s, vlm_quant_options *out);
/* The formats the programs and vlm_engine use when none is asked for: a folder written by `vlm quantize`
 * as it was written, any other in bf16 (the fast kernels). (vlm_model_load's own default, zeroed
 * options, is the fp32 reference path, `ref`.) A folder that cannot be opened gets bf16: loading it
 * then reports what is wrong. Fails only on an unreadable format recorded in vlm_quant.json. */
int vlm_quant_options_default(const char *dir, vlm_quant_options *out);
/* "vision=bf16,projector=bf16,experts=q4,attention=q8,lm_head=q8" into buf. */
const char *vlm_quant_options_str(const vlm_quant_options *q, char *buf, size_t cap);

typedef struct {
    int n_threads;       /* 0 = one per CPU */
    int64_t max_context; /* 0 = max_position_embeddings */
    vlm_quant_options quant;
    /* Where the text decoder runs: NULL or "cpu" (default), "cuda" (device 0) or "cuda:N". The ViT
     * and the projector run on the CPU for now. */
    const char *device;
    /* KV cache element type (text/decoder.h): VLM_KV_AUTO (default: f16 for converted attention
     * weights on the CPU, else fp32), VLM_KV_F32, or VLM_KV_F16 (an error on a device without it) */
    vlm_kv_type kv_cache;
} vlm_model_options;

/* With a CUDA device asked for: a name that is not cpu / cuda / cuda:N, a device number that does
 * not exist, or weights CUDA cannot run (q8 / q4) are errors. No usable CUDA at all (a build
 * without it, no GPU, no driver) is not: the model loads on the CPU and vlm_model_device_note
 * says why. */
int vlm_model_load(const char *dir, const vlm_model_options *opt, vlm_model **out);
/* NULL, or one line saying the asked device was not available and the CPU is used instead
 * ("device cuda: CUDA not available (<reason>); running on the CPU"), for the program to show. */
const char *vlm_model_device_note(const vlm_model *m);
/* The backend the decoder runs on: "cpu", "cuda:0", ... */
const char *vlm_model_device(const vlm_model *m);
void vlm_model_free(vlm_model *m);
const vlm_vl2_config *vlm_model_config(const vlm_model *m);
const vlm_tokenizer *vlm_model_tokenizer(const vlm_model *m); /* NULL if the folder has no tokenizer.json */
const vlm_lm *vlm_model_lm(const vlm_model *m);
int64_t vlm_model_context(const vlm_model *m);

/* A request ready to run: each image's tiles and the prompt's token ids (image
 * tokens expanded to the image id). */
typedef struct {
    int n_images;
    vlm_image_tiles *images;
    int32_t *ids;
    int64_t n_ids;
} vlm_request;
void vlm_request_free(vlm_request *r);

/* Preprocesses images (tiling only when the request holds <= 2 images, as the official processor). */
int vlm_model_prepare_images(const vlm_model *m, const vlm_image *images, int n_images, vlm_request *r);
/* Preprocesses the images and applies the chat template; `<image>` markers in user
 * messages take the images in order and must match n_images. */
int vlm_model_build_request(const vlm_model *m, const vlm_chat_message *msgs, int n_msgs, const vlm_image *images,
                            int n_images, vlm_request *out);
int64_t vlm_request_tiles(const vlm_request *r);

/* The <image> token id (-1 without a tokenizer). */
int32_t vlm_model_image_id(const vlm_model *m);
/* Image tokens of one preprocessed image. */
int64_t vlm_model_image_tokens(const vlm_model *m, const vlm_image_tiles *it);
/* The image-token embeddings of one preprocessed image (ViT, projector, the official layout with the
 * newline and view-separator rows): block [vlm_model_image_tokens, H]. vision_output / projector_output:
 * NULL or where to keep the stages ([tiles, grid*grid, width] / [tiles, side*side, H]). */
int vlm_model_image_embeds(const vlm_model *m, const vlm_image_tiles *it, float *block, float *vision_output,
                           float *projector_output);
/* Writes block's count rows over the next count image-token positions of ids at or after pos
 * (embeds [n_ids, H]); returns the position after the last one, or -1 if the ids run out. */
int64_t vlm_model_place_image(const vlm_model *m, const int32_t *ids, int64_t n_ids, int64_t pos, const float *block,
                              int64_t count, float *embeds);
/* The request's image-token positions match its images' token counts (else VLM_ERR_INVALID). */
int vlm_model_check_image_tokens(const vlm_model *m, const vlm_request *r);

typedef struct {
    float *vision_output;    /* NULL or [tiles, grid*grid, vision width] */
    float *projector_output; /* NULL or [tiles, side*side, hidden] */
} vlm_vision_trace;
/* inputs_embeds: [r->n_ids, hidden]; the image-token positions get the image features. */
int vlm_model_embed(const vlm_model *m, const vlm_request *r, float *inputs_embeds, vlm_vision_trace *trace);

typedef struct {
    int max_new_tokens;
    vlm_sampler_params sampler;
    int ignore_eos;
    /* called after each new token; return non-zero to stop */
    int (*on_token)(void *user, int32_t id);
    void *user;
    /* optional captures (verification) */
    float *step_logits;     /* [max_new_tokens, vocab]: the logits each token was chosen from */
    float *prompt_logits;   /* [n_ids, vocab]: logits at every prompt position */
    vlm_lm_trace *prompt_trace;
    float *inputs_embeds;   /* if set, used instead of computing them (verify's stage isolation) */
    vlm_vision_trace *vision_trace;
} vlm_generate_options;

typedef enum { VLM_STOP_LENGTH, VLM_STOP_EOS, VLM_STOP_CALLBACK, VLM_STOP_CONTEXT } vlm_stop_reason;

typedef struct {
    int32_t *ids; /* generated ids (eos included when it stopped on eos) */
    int64_t n_ids;
    int64_t prompt_tokens, image_tokens;
    vlm_stop_reason stop;
    double vision_ms, prefill_ms, decode_ms;
} vlm_generation;
void vlm_generation_free(vlm_generation *g);

int vlm_model_generate(const vlm_model *m, const vlm_request *r, const vlm_generate_options *opt, vlm_generation *out);

#ifdef __cplusplus
}
#endif
#endif
