/* vlm: the public C API.
 *
 * Ask questions about images with a vision-language model (DeepSeek-VL2) loaded
 * from an official Hugging Face checkpoint folder:
 *
 *     vlm_engine *e;
 *     if (vlm_engine_open("deepseek-vl2-tiny", NULL, &e) != 0) { puts(vlm_last_error()); return 1; }
 *     vlm_ask_options o;
 *     vlm_ask_options_default(&o);
 *     const char *images[] = {"photo.jpg"};
 *     char *answer;
 *     if (vlm_engine_ask(e, "What is on the table?", images, 1, &o, &answer) == 0) { puts(answer); free(answer); }
 *     vlm_engine_close(e);
 *
 * Every function returns 0 on success or a negative error code; vlm_last_error()
 * then describes the problem (per thread). Link with `pkg-config --libs vlm`. */
#ifndef VLM_H
#define VLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_engine vlm_engine;

typedef struct {
    int n_threads;       /* CPU threads; 0 = one per core */
    int64_t max_context; /* 0 = the model's max_position_embeddings */
    const char *quant;   /* weight formats as `vlm ask --quant`: NULL = bf16, the fast kernels (a `vlm quantize`
                            folder: as written); "ref" = the exact fp32 reference; "q8", "q4,vision=bf16", ... */
    const char *device;  /* where the text decoder runs: NULL/"cpu", "cuda" or "cuda:N" (CUDA builds; without a
                            usable GPU the engine runs on the CPU and vlm_engine_device_note says so) */
    const char *kv_cache; /* KV cache values as `vlm ask --kv-cache`: NULL/"auto" (16-bit with converted
                             weights on the CPU, else fp32), "f16" or "f32" */
} vlm_engine_options;

typedef struct {
    int max_new_tokens;       /* default 512 */
    float temperature;        /* 0 = greedy (default) */
    float top_p;              /* 1 = off */
    int top_k;                /* 0 = off */
    float repetition_penalty; /* 1 = off */
    uint64_t seed;
    int ignore_eos;
    int64_t max_pixels;       /* images above this are refused before decoding; default 50 megapixels */
    /* Called with each new piece of answer text (complete UTF-8); return non-zero to stop. */
    int (*on_text)(void *user, const char *text, size_t len);
    void *user;
} vlm_ask_options;

void vlm_ask_options_default(vlm_ask_options *o);
int vlm_engine_open(const char *model_dir, const vlm_engine_options *opt, vlm_engine **out);
void vlm_engine_close(vlm_engine *e);
/* NULL, or one line saying the device asked for was not available and the CPU is used instead. */
const char *vlm_engine_device_note(const vlm_engine *e);
/* One question about n_images image files. The images go where the question says
 * <image>, or before the question when it has no markers. *answer is malloc'd. */
int vlm_engine_ask(vlm_engine *e, const char *question, const char *const *image_paths, int n_images,
                   const vlm_ask_options *opt, char **answer);
const char *vlm_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
