#include "fusion/model.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/file.h"
#include "core/threadpool.h"
#include "cuda/backend_cuda.h"
#include "fusion/image_tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vlm_model {
    vlm_vl2_config cfg;
    vlm_preprocess_config pre;
    vlm_checkpoint *ck;
    vlm_siglip *vit;
    vlm_projector *proj;
    float *image_newline, *view_separator;
    vlm_lm *lm;
    vlm_tokenizer *tok;
    int32_t image_id;
    int64_t context;
    const vlm_backend *be; /* the decoder's backend when not the CPU (attached: see cuda/backend_cuda.h) */
    char device_note[512]; /* why the asked device is not used ("" when it is) */
};

/* The asked device's backend, looked up before the weights load (a bad name fails fast). *be stays
 * NULL for the CPU and when CUDA is not usable at all: that is a fallback, not an error. */
static int find_device(vlm_model *m, const char *device, const vlm_backend **be)
{
    *be = NULL;
    if (!device || !strcmp(device, "cpu")) return VLM_OK;
    vlm_cuda_backend_register();
    int rc = vlm_backend_by_name(device, be);
    if (rc == VLM_ERR_UNSUPPORTED) {
        snprintf(m->device_note, sizeof m->device_note, "device %.32s: CUDA not available (%s); running on the CPU",
                 device, vlm_last_error());
        vlm_clear_error();
        *be = NULL;
        return VLM_OK;
    }
    if (rc == VLM_OK && (*be)->host_memory) *be = NULL;
    return rc;
}

int vlm_model_load(const char *dir, const vlm_model_options *opt, vlm_model **out)
{
    *out = NULL;
    if (opt && opt->n_threads > 0) vlm_pool_default_set_threads(opt->n_threads);
    vlm_model *m = calloc(1, sizeof *m);
    if (!m) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    int rc;
    const vlm_backend *be = NULL;
    if ((rc = find_device(m, opt ? opt->device : NULL, &be))) goto fail;
    if ((rc = vlm_vl2_config_load(dir, &m->cfg))) goto fail;
    vlm_vl2_preprocess_config(&m->cfg, &m->pre);
    if ((rc = vlm_checkpoint_open(dir, &m->ck))) goto fail;
    const int64_t H = m->cfg.lm.hidden_size;
    static const vlm_quant_options q0;
    const vlm_quant_options *q = opt ? &opt->quant : &q0;
    /* a folder from `vlm quantize` loaded without --quant runs as if given the --quant it was written with */
    vlm_quant_options stored;
    const char *sq = vlm_checkpoint_converted_quant(m->ck);
    if (sq && !memcmp(q, &q0, sizeof q0)) {
        if ((rc = vlm_quant_options_parse(sq, &stored))) {
            rc = vlm_error_prefix(rc, "%s/vlm_quant.json", dir);
            goto fail;
        }
        q = &stored;
    }
    const vlm_lm_quant lq = {q->attention, q->experts, q->lm_head};
    if ((rc = vlm_siglip_load_q(m->ck, "vision.", &m->cfg.vision, &q->vision, &m->vit)) ||
        (rc = vlm_projector_load_q(m->ck, "projector.", &m->cfg.projector, &q->projector, &m->proj)) ||
        (rc = vlm_checkpoint_vector(m->ck, "image_newline", H, &m->image_newline)) ||
        (rc = vlm_checkpoint_vector(m->ck, "view_seperator", H, &m->view_separator)) ||
        (rc = vlm_lm_load_q(m->ck, "language.", &m->cfg.lm, &lq, &m->lm)))
        goto fail;
    /* only the decoder moves: the ViT and the projector run on the CPU for now (their ops do not go
     * through core/backend.h yet); the KV caches are made on the decoder's backend */
    if (be) {
        if ((rc = vlm_lm_set_backend(m->lm, be))) goto fail;
        vlm_cuda_backend_attach(be);
        m->be = be;
    }
    if (opt && (rc = vlm_lm_set_kv_type(m->lm, opt->kv_cache))) goto fail;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    m->image_id = -1;
    if (vlm_file_exists(path)) {
        if ((rc = vlm_tokenizer_load(dir, &m->tok))) goto fail;
        m->image_id = vlm_tokenizer_special(m->tok)->image;
        if (m->image_id < 0 || m->image_id >= m->cfg.lm.vocab_size) {
            rc = vlm_errorf(VLM_ERR_MISMATCH, "%s: the tokenizer's <image> id %d is outside the model's vocabulary of %d",
                            dir, m->image_id, m->cfg.lm.vocab_size);
            goto fail;
        }
    }
    m->context = m->cfg.lm.max_position_embeddings;
    if (opt && opt->max_context > 0 && opt->max_context < m->context) m->context = opt->max_context;
    *out = m;
    return VLM_OK;
fail:
    vlm_model_free(m);
    return rc;
}

void vlm_model_free(vlm_model *m)
{
    if (!m) return;
    vlm_tokenizer_free(m->tok);
    vlm_cuda_backend_detach(m->be); /* before the host weights its resident copies were made from go */
    vlm_lm_free(m->lm);
    free(m->image_newline);
    free(m->view_separator);
    vlm_projector_free(m->proj);
    vlm_siglip_free(m->vit);
    vlm_checkpoint_close(m->ck);
    free(m);
}

const vlm_vl2_config *vlm_model_config(const vlm_model *m) { return &m->cfg; }
const vlm_tokenizer *vlm_model_tokenizer(const vlm_model *m) { return m->tok; }
const vlm_lm *vlm_model_lm(const vlm_model *m) { return m->lm; }
int64_t vlm_model_context(const vlm_model *m) { return m->context; }
const char *vlm_model_device_note(const vlm_model *m) { return m->device_note[0] ? m->device_note : NULL; }
const char *vlm_model_device(const vlm_model *m) { return m->be ? m->be->name : "cpu"; }

void vlm_request_free(vlm_request *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_images; i++) vlm_image_tiles_free(&r->images[i]);
    free(r->images);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

int64_t vlm_request_tiles(const vlm_request *r)
{
    int64_t n = 0;
    for (int i = 0; i < r->n_images; i++) n += r->images[i].n_tiles;
    return n;
}

static int image_side(const vlm_model *m)
{
    return vlm_projector_side(&m->cfg.projector, vlm_vision_grid(&m->cfg.vision));
}

int vlm_model_prepare_images(const vlm_model *m, const vlm_image *images, int n_images, vlm_request *r)
{
    memset(r, 0, sizeof *r);
    if (n_images <= 0) return VLM_OK;
    r->images = calloc((size_t)n_images, sizeof *r->images);
    if (!r->images) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    const int cropping = n_images <= 2; /* the official processor tiles only small requests */
    for (int i = 0; i < n_images; i++) {
        int rc = vlm_preprocess_image(&m->pre, &images[i], cropping, &r->images[i]);
        if (rc) {
            vlm_request_free(r);
            return vlm_error_prefix(rc, "image %d", i + 1);
        }
        r->n_images = i + 1;
    }
    return VLM_OK;
}

int vlm_model_build_request(const vlm_model *m, const vlm_chat_message *msgs, int n_msgs, const vlm_image *images,
                            int n_images, vlm_request *out)
{
    memset(out, 0, sizeof *out);
    if (!m->tok) return vlm_errorf(VLM_ERR_INVALID, "the model folder has no tokenizer.json, so text prompts cannot be encoded");
    int markers = vlm_chat_count_images(msgs, n_msgs);
    if (markers != n_images)
        return vlm_errorf(VLM_ERR_INVALID, "the prompt has %d <image> marker%s but %d image%s given", markers,
                          markers == 1 ? "" : "s", n_images, n_images == 1 ? " was" : "s were");
    int rc = vlm_model_prepare_images(m, images, n_images, out);
    if (rc) return rc;
    int counts[256];
    if (n_images > 256) {
        vlm_request_free(out);
        return vlm_errorf(VLM_ERR_LIMIT, "%d images in one request; at most 256 are supported", n_images);
    }
    for (int i = 0; i < n_images; i++)
        counts[i] = (int)vlm_image_embed_count(image_side(m), out->images[i].nw, out->images[i].nh);
    size_t n_ids = 0;
    rc = vlm_chat_encode(m->tok, msgs, n_msgs, counts, n_images, &out->ids, &n_ids);
    if (rc) {
        vlm_request_free(out);
        return rc;
    }
    out->n_ids = (int64_t)n_ids;
    return VLM_OK;
}

int32_t vlm_model_image_id(const vlm_model *m) { return m->image_id; }

int64_t vlm_model_image_tokens(const vlm_model *m, const vlm_image_tiles *it)
{
    return vlm_image_embed_count(image_side(m), it->nw, it->nh);
}

int vlm_model_image_embeds(const vlm_model *m, const vlm_image_tiles *it, float *block, float *vision_output,
                           float *projector_output)
{
    const int64_t H = m->cfg.lm.hidden_size, n_tiles = it->n_tiles;
    const int G = vlm_vision_grid(&m->cfg.vision), side = image_side(m), S = m->cfg.vision.image_size;
    const int64_t C = m->cfg.vision.width;
    float *pixels = malloc((size_t)n_tiles * 3 * S * S * sizeof(float));
    float *vis = vision_output ? vision_output : malloc((size_t)n_tiles * G * G * C * sizeof(float));
    float *proj = projector_output ? projector_output : malloc((size_t)n_tiles * side * side * H * sizeof(float));
    int rc = VLM_OK;
    if (!pixels || !vis || !proj) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory for %lld image tiles", (long long)n_tiles);
        goto done;
    }
    vlm_tiles_normalize(&m->pre, it->tiles, (size_t)n_tiles, pixels);
    if ((rc = vlm_siglip_forward(m->vit, pixels, (int)n_tiles, vis))) goto done;
    if ((rc = vlm_projector_forward(m->proj, vis, (int)n_tiles, G, proj))) goto done;
    vlm_image_embeds_assemble(proj, side, it->nw, it->nh, m->image_newline, m->view_separator, H, block);
done:
    free(pixels);
    if (!vision_output) free(vis);
    if (!projector_output) free(proj);
    return rc;
}

int64_t vlm_model_place_image(const vlm_model *m, const int32_t *ids, int64_t n_ids, int64_t pos, const float *block,
                              int64_t count, float *embeds)
{
    const int64_t H = m->cfg.lm.hidden_size;
    for (int64_t k = 0; k < count; k++) {
        while (pos < n_ids && ids[pos] != m->image_id) pos++;
        if (pos == n_ids) return -1;
        memcpy(embeds + pos * H, block + k * H, (size_t)H * sizeof(float));
        pos++;
    }
    return pos;
}

int vlm_model_check_image_tokens(const vlm_model *m, const vlm_request *r)
{
    int64_t expected = 0, found = 0;
    for (int i = 0; i < r->n_images; i++) expected += vlm_model_image_tokens(m, &r->images[i]);
    for (int64_t t = 0; t < r->n_ids; t++) found += r->ids[t] == m->image_id;
    if (expected != found)
        return vlm_errorf(VLM_ERR_INVALID, "the prompt has %lld image-token positions but its %d image(s) need %lld",
                          (long long)found, r->n_images, (long long)expected);
    return VLM_OK;
}

int vlm_model_embed(const vlm_model *m, const vlm_request *r, float *embeds, vlm_vision_trace *trace)
{
    const int64_t H = m->cfg.lm.hidden_size;
    const int G = vlm_vision_grid(&m->cfg.vision), side = image_side(m);
    const int64_t C = m->cfg.vision.width;
    int rc = vlm_lm_embed(m->lm, r->ids, r->n_ids, embeds);
    /* every image-token position must be covered exactly by the images' blocks */
    if (rc == VLM_OK) rc = vlm_model_check_image_tokens(m, r);
    float *block = NULL;
    int64_t pos = 0, tile = 0;
    /* each image through the ViT and the projector, its block written over its run of image tokens */
    for (int i = 0; i < r->n_images && rc == VLM_OK; i++) {
        const vlm_image_tiles *it = &r->images[i];
        const int64_t cnt = vlm_model_image_tokens(m, it);
        float *nb = realloc(block, (size_t)cnt * H * sizeof(float));
        if (!nb) {
            rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
            break;
        }
        block = nb;
        rc = vlm_model_image_embeds(m, it, block,
                                    trace && trace->vision_output ? trace->vision_output + tile * G * G * C : NULL,
                                    trace && trace->projector_output ? trace->projector_output + tile * side * side * H
                                                                     : NULL);
        if (rc == VLM_OK) pos = vlm_model_place_image(m, r->ids, r->n_ids, pos, block, cnt, embeds);
        tile += it->n_tiles;
    }
    free(block);
    return rc;
}

void vlm_generation_free(vlm_generation *g)
{
    if (!g) return;
    free(g->ids);
    memset(g, 0, sizeof *g);
}

int vlm_model_generate(const vlm_model *m, const vlm_request *r, const vlm_generate_options *opt, vlm_generation *out)
{
    memset(out, 0, sizeof *out);
    const int64_t H = m->cfg.lm.hidden_size, V = m->cfg.lm.vocab_size, T = r->n_ids;
    if (T <= 0) return vlm_errorf(VLM_ERR_INVALID, "empty prompt");
    if (T >= m->context)
        return vlm_errorf(VLM_ERR_LIMIT, "the prompt is %lld tokens (text and image tokens), but the context holds %lld",
                          (long long)T, (long long)m->context);
    int64_t max_new = opt->max_new_tokens > 0 ? opt->max_new_tokens : 0;
    int64_t cap = T + max_new < m->context ? T + max_new : m->context;
    out->prompt_tokens = T;
    for (int64_t t = 0; t < T; t++) out->image_tokens += r->ids[t] == m->image_id;
    float *embeds = NULL, *logits = malloc((size_t)V * sizeof(float)), *x = malloc((size_t)H * sizeof(float));
    int32_t *history = malloc((size_t)(T + max_new + 1) * sizeof(int32_t));
    out->ids = malloc((size_t)(max_new + 1) * sizeof(int32_t));
    vlm_kv_cache *cache = NULL;
    vlm_sampler *sampler = NULL;
    int rc = VLM_OK;
    if (!logits || !x || !history || !out->ids) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = vlm_kv_cache_create(m->lm, cap, &cache)) || (rc = vlm_sampler_create(&opt->sampler, (int)V, &sampler)))
        goto done;
    double t0 = vlm_now_ms();
    if (opt->inputs_embeds) {
        embeds = opt->inputs_embeds;
    } else {
        if (!(embeds = malloc((size_t)T * H * sizeof(float)))) {
            rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory for %lld prompt embeddings", (long long)T);
            goto done;
        }
        if ((rc = vlm_model_embed(m, r, embeds, opt->vision_trace))) goto done;
    }
    double t1 = vlm_now_ms();
    out->vision_ms = t1 - t0;
    if (opt->prompt_logits) {
        rc = vlm_lm_forward(m->lm, cache, embeds, T, opt->prompt_logits, 1, opt->prompt_trace);
        if (rc == VLM_OK) memcpy(logits, opt->prompt_logits + (T - 1) * V, (size_t)V * sizeof(float));
    } else {
        rc = vlm_lm_forward(m->lm, cache, embeds, T, logits, 0, opt->prompt_trace);
    }
    if (rc) goto done;
    double t2 = vlm_now_ms();
    out->prefill_ms = t2 - t1;
    memcpy(history, r->ids, (size_t)T * sizeof(int32_t));
    int64_t n_hist = T;
    out->stop = VLM_STOP_LENGTH;
    for (int64_t i = 0; i < max_new; i++) {
        if (opt->step_logits) memcpy(opt->step_logits + i * V, logits, (size_t)V * sizeof(float));
        int32_t id = vlm_sampler_sample(sampler, logits, history, n_hist);
        if (id < 0) { /* NaN or infinite logits (a damaged checkpoint), named with the step */
            rc = id;
            goto done;
        }
        history[n_hist++] = id;
        out->ids[out->n_ids++] = id;
        if (opt->on_token && opt->on_token(opt->user, id)) { out->stop = VLM_STOP_CALLBACK; break; }
        if (!opt->ignore_eos && id == m->cfg.lm.eos_token_id) { out->stop = VLM_STOP_EOS; break; }
        if (i + 1 == max_new) break;
        if (vlm_kv_cache_len(cache) >= cap) { out->stop = VLM_STOP_CONTEXT; break; }
        if ((rc = vlm_lm_embed(m->lm, &id, 1, x)) || (rc = vlm_lm_forward(m->lm, cache, x, 1, logits, 0, NULL))) goto done;
    }
    out->decode_ms = vlm_now_ms() - t2;
done:
    if (embeds != opt->inputs_embeds) free(embeds);
    free(logits);
    free(x);
    free(history);
    vlm_kv_cache_free(cache);
    vlm_sampler_free(sampler);
    if (rc) vlm_generation_free(out);
    return rc;
}
