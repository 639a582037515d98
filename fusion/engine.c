/* The public API of include/vlm.h on top of the model. */
#include "vlm.h"

#include "core/error.h"
#include "fusion/model.h"
#include "text/detok_stream.h"

#include <stdlib.h>
#include <string.h>

struct vlm_engine {
    vlm_model *model;
};

void vlm_ask_options_default(vlm_ask_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_new_tokens = 512;
    o->top_p = 1.0f;
    o->repetition_penalty = 1.0f;
    o->max_pixels = VLM_IMAGE_DEFAULT_MAX_PIXELS;
}

int vlm_engine_open(const char *model_dir, const vlm_engine_options *opt, vlm_engine **out)
{
    *out = NULL;
    vlm_engine *e = calloc(1, sizeof *e);
    if (!e) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    vlm_model_options mo = {0};
    if (opt) {
        mo.n_threads = opt->n_threads;
        mo.max_context = opt->max_context;
        mo.device = opt->device;
    }
    int rc = opt && opt->quant ? vlm_quant_options_parse(opt->quant, &mo.quant)
                               : vlm_quant_options_default(model_dir, &mo.quant);
    if (rc == VLM_OK && opt && opt->kv_cache) rc = vlm_kv_type_parse(opt->kv_cache, &mo.kv_cache);
    if (rc == VLM_OK) rc = vlm_model_load(model_dir, &mo, &e->model);
    if (rc) {
        free(e);
        return rc;
    }
    if (!vlm_model_tokenizer(e->model)) {
        vlm_engine_close(e);
        return vlm_errorf(VLM_ERR_INVALID, "'%s' has no tokenizer.json", model_dir);
    }
    *out = e;
    return VLM_OK;
}

const char *vlm_engine_device_note(const vlm_engine *e) { return e ? vlm_model_device_note(e->model) : NULL; }

void vlm_engine_close(vlm_engine *e)
{
    if (!e) return;
    vlm_model_free(e->model);
    free(e);
}

typedef struct {
    vlm_detok_stream *ds;
    const vlm_ask_options *opt;
    char *buf;
    size_t len, cap;
    int failed;
} answer_ctx;

static int append(answer_ctx *a, const char *s, size_t n)
{
    if (a->len + n + 1 > a->cap) {
        size_t cap = (a->len + n + 1) * 2;
        char *b = realloc(a->buf, cap);
        if (!b) return a->failed = 1;
        a->buf = b;
        a->cap = cap;
    }
    memcpy(a->buf + a->len, s, n);
    a->len += n;
    a->buf[a->len] = '\0';
    return 0;
}

static int on_token(void *user, int32_t id)
{
    answer_ctx *a = user;
    const char *piece;
    size_t n;
    if (vlm_detok_stream_push(a->ds, id, &piece, &n) != VLM_OK || !n) return 0;
    if (append(a, piece, n)) return 1;
    return a->opt->on_text ? a->opt->on_text(a->opt->user, piece, n) : 0;
}

int vlm_engine_ask(vlm_engine *e, const char *question, const char *const *image_paths, int n_images,
                   const vlm_ask_options *opt, char **answer)
{
    *answer = NULL;
    vlm_ask_options defaults;
    if (!opt) {
        vlm_ask_options_default(&defaults);
        opt = &defaults;
    }
    if (n_images < 0 || n_images > 256) return vlm_errorf(VLM_ERR_INVALID, "%d images: 0 to 256 are supported", n_images);
    vlm_image *imgs = calloc((size_t)(n_images ? n_images : 1), sizeof *imgs);
    char *user = vlm_chat_place_images(question, n_images);
    answer_ctx a = {.opt = opt};
    vlm_request req = {0};
    vlm_generation gen = {0};
    int rc = VLM_OK, n_loaded = 0;
    if (!imgs || !user) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    vlm_image_limits lim;
    vlm_image_limits_default(&lim);
    if (opt->max_pixels > 0) lim.max_pixels = opt->max_pixels;
    for (; n_loaded < n_images; n_loaded++)
        if ((rc = vlm_image_decode_file(image_paths[n_loaded], &lim, &imgs[n_loaded]))) goto done;
    vlm_chat_message msgs[2] = {{"user", user}, {"assistant", ""}};
    if ((rc = vlm_model_build_request(e->model, msgs, 2, imgs, n_images, &req))) goto done;
    if ((rc = vlm_detok_stream_new(vlm_model_tokenizer(e->model), 0, &a.ds))) goto done;
    vlm_generate_options go = {
        .max_new_tokens = opt->max_new_tokens,
        .sampler = {.temperature = opt->temperature, .top_k = opt->top_k, .top_p = opt->top_p,
                    .repetition_penalty = opt->repetition_penalty, .seed = opt->seed},
        .ignore_eos = opt->ignore_eos, .on_token = on_token, .user = &a,
    };
    if ((rc = vlm_model_generate(e->model, &req, &go, &gen))) goto done;
    const char *tail;
    size_t n;
    if (vlm_detok_stream_flush(a.ds, &tail, &n) == VLM_OK && n) append(&a, tail, n);
    if (a.failed || append(&a, "", 0)) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    *answer = a.buf;
    a.buf = NULL;
done:
    free(a.buf);
    vlm_detok_stream_free(a.ds);
    vlm_generation_free(&gen);
    vlm_request_free(&req);
    for (int i = 0; i < n_loaded; i++) vlm_image_free(&imgs[i]);
    free(imgs);
    free(user);
    return rc;
}
