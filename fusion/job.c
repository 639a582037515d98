/* A request's life outside the scheduling: building it from messages, turning its tokens into
 * text, and its result. */
#include "fusion/job.h"

#include "core/error.h"
#include "core/strbuf.h"
#include "fusion/prefix_cache.h"
#include "media/resolve.h"
#include "media/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REQUEST_IMAGES 256
#define MAX_STOPS 16

int64_t vlm_prompt_chunk(int64_t left, int64_t cap, int64_t room)
{
    if (left <= 0 || cap <= 0 || room <= 0) return 0;
    const int64_t steps = (left + cap - 1) / cap, even = (left + steps - 1) / steps;
    return even < room ? even : room;
}

/* A picture of a request: a still image, or one frame of a video with its time. */
typedef struct {
    vlm_image img;
    int video;
    double t;
} picture;

/* One input to its pictures (a still image: one; a video: its sampled frames), appended to *pics. */
static int resolve_input(const vlm_engine_options *eo, const vlm_image_input *in, int64_t max_pixels, picture **pics,
                         int *n, int *cap)
{
    vlm_image_limits lim;
    vlm_image_limits_default(&lim);
    if (max_pixels > 0) lim.max_pixels = max_pixels;
    const int set = !!in->path + !!in->bytes + !!in->rgb;
    if (set != 1) return vlm_errorf(VLM_ERR_INVALID, "an image needs exactly one of a path, bytes or RGB pixels");
    vlm_resolved r = {0};
    int rc = VLM_OK, count = 1;
    if (!in->rgb) {
        vlm_url_policy pol;
        vlm_url_policy_default(&pol);
        pol.accept = VLM_URL_ACCEPT_IMAGE | VLM_URL_ACCEPT_VIDEO;
        pol.allow_private = eo->allow_private;
        pol.allow_addrs = eo->allow_addrs;
        pol.n_allow_addrs = eo->n_allow_addrs > 0 ? (size_t)eo->n_allow_addrs : 0;
        pol.media_dir = eo->media_dir;
        vlm_resolve_options ro;
        vlm_resolve_options_default(&ro);
        ro.url = &pol;
        ro.image = &lim;
        ro.sampling = eo->video_frames;
        ro.max_frames = eo->max_video_frames > 0 ? eo->max_video_frames : 64;
        ro.allow_paths = !eo->no_local_paths;
        rc = in->path ? vlm_media_resolve(in->path, &ro, &r) : vlm_media_resolve_memory(in->bytes, in->n_bytes, NULL, &ro, &r);
        if (rc == VLM_OK && r.cut)
            rc = vlm_errorf(VLM_ERR_LIMIT, "the video's sampling (%s) plans %lld frames, over the limit of %d: ask for fewer frames",
                            r.sampling, (long long)r.planned, ro.max_frames);
        if (rc == VLM_OK && r.n == 0) rc = vlm_errorf(VLM_ERR_FORMAT, "no picture in the input");
        count = r.n;
    } else if (in->width <= 0 || in->height <= 0) {
        rc = vlm_errorf(VLM_ERR_INVALID, "RGB image of %dx%d pixels", in->width, in->height);
    } else if ((int64_t)in->width * in->height > lim.max_pixels) {
        rc = vlm_errorf(VLM_ERR_LIMIT, "RGB image of %dx%d pixels is over the limit of %lld", in->width, in->height,
                        (long long)lim.max_pixels);
    }
    if (rc == VLM_OK && *n + count > *cap) {
        const int nc = (*n + count) * 2;
        picture *np = realloc(*pics, (size_t)nc * sizeof *np);
        if (!np) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        else *pics = np, *cap = nc;
    }
    if (rc) { /* the resolver's messages name the input already */
        vlm_resolved_free(&r);
        return rc;
    }
    if (in->rgb) {
        picture *p = &(*pics)[*n];
        const size_t bytes = (size_t)in->width * (size_t)in->height * 3;
        if (!(p->img.rgb = malloc(bytes))) return vlm_errorf(VLM_ERR_NOMEM, "out of memory for a %dx%d image", in->width, in->height);
        memcpy(p->img.rgb, in->rgb, bytes);
        p->img.width = in->width;
        p->img.height = in->height;
        p->video = in->video_frame;
        p->t = in->time_s;
        (*n)++;
        return VLM_OK;
    }
    for (int i = 0; i < r.n; i++) { /* the list's pictures change owner */
        (*pics)[*n + i] = (picture){r.items[i].image, r.items[i].from_video, r.items[i].pts};
        memset(&r.items[i].image, 0, sizeof r.items[i].image);
    }
    *n += r.n;
    vlm_resolved_free(&r);
    return VLM_OK;
}

/* The prompt text of pictures [first, first + n): "<image>" for a still image, "Frame k at t s: <image>"
 * for video frames (numbered from 1 in each run of frames), separated by newlines. */
static void tb_pictures(vlm_strbuf *b, const picture *p, int first, int n, int trailing_newline)
{
    int frame = 0;
    for (int i = first; i < first + n; i++) {
        char line[96];
        frame = p[i].video ? frame + 1 : 0;
        if (p[i].video) snprintf(line, sizeof line, "Frame %d at %.1f s: <image>", frame, p[i].t);
        else snprintf(line, sizeof line, "<image>");
        vlm_strbuf_add(b, line, strlen(line));
        if (trailing_newline || i + 1 < first + n) vlm_strbuf_add(b, "\n", 1);
    }
}

/* A message's text with its pictures placed: no markers: every picture in front, one per line (the
 * official examples' layout); one marker per picture: as written; one marker per input: each marker
 * stands for its input's pictures (a video's frames). */
static char *place_pictures(const char *content, int markers, const picture *p, int first, const int *counts,
                            int n_inputs, int total, int msg)
{
    vlm_strbuf b = {0};
    if (markers == 0) {
        tb_pictures(&b, p, first, total, 1);
        vlm_strbuf_add(&b, content, strlen(content));
    } else if (markers == total) {
        vlm_strbuf_add(&b, content, strlen(content));
    } else if (markers == n_inputs) {
        const char *c = content;
        int at = first;
        for (int k = 0; k < n_inputs; k++) {
            const char *m = strstr(c, "<image>");
            vlm_strbuf_add(&b, c, (size_t)(m - c));
            tb_pictures(&b, p, at, counts[k], 0);
            at += counts[k];
            c = m + 7;
        }
        vlm_strbuf_add(&b, c, strlen(c));
    } else {
        vlm_errorf(VLM_ERR_INVALID, "message %d has %d <image> marker%s for %d input%s (%d picture%s)", msg, markers,
                   markers == 1 ? "" : "s", n_inputs, n_inputs == 1 ? "" : "s", total, total == 1 ? "" : "s");
        free(b.s);
        return NULL;
    }
    if (b.failed || !b.s) {
        free(b.s);
        b.s = b.failed ? NULL : strdup(content);
        if (!b.s) vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    return b.s;
}

static int copy_options(struct vlm_job *j, const vlm_request_options *o)
{
    j->opt = *o;
    j->opt.prompt_ids = NULL;
    j->opt.prompt_images = NULL;
    if (o->gen.n_stop < 0 || o->gen.n_stop > MAX_STOPS || (o->gen.n_stop && !o->gen.stop))
        return vlm_errorf(VLM_ERR_INVALID, "%d stop strings: 0 to %d are supported", o->gen.n_stop, MAX_STOPS);
    if (o->gen.max_new_tokens < 0) return vlm_errorf(VLM_ERR_INVALID, "max_new_tokens %d is negative", o->gen.max_new_tokens);
    if (o->gen.n_stop) {
        if (!(j->stops = calloc((size_t)o->gen.n_stop, sizeof *j->stops))) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        for (int i = 0; i < o->gen.n_stop; i++) {
            if (!o->gen.stop[i] || !*o->gen.stop[i]) return vlm_errorf(VLM_ERR_INVALID, "stop string %d is empty", i + 1);
            if (!(j->stops[i] = strdup(o->gen.stop[i]))) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        }
        j->opt.gen.stop = (const char *const *)j->stops;
    }
    return VLM_OK;
}

/* The chat messages and images of a conversation (images in the order their markers come). */
static int build_prompt(const vlm_model *m, const vlm_engine_options *eo, const vlm_message *msgs, int n_msgs,
                        int64_t max_pixels, vlm_request *req)
{
    vlm_chat_message *cm = calloc((size_t)n_msgs + 1, sizeof *cm);
    char **texts = calloc((size_t)n_msgs + 1, sizeof *texts);
    picture *pics = NULL;
    int n_pics = 0, cap_pics = 0, rc = VLM_OK;
    if (!cm || !texts) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n_msgs && rc == VLM_OK; i++) {
        const vlm_message *msg = &msgs[i];
        if (!msg->role || (strcmp(msg->role, "system") && strcmp(msg->role, "user") && strcmp(msg->role, "assistant"))) {
            rc = vlm_errorf(VLM_ERR_INVALID, "message %d: role '%s': use system, user or assistant", i + 1,
                            msg->role ? msg->role : "(none)");
            break;
        }
        if (msg->n_images < 0 || (msg->n_images && !msg->images) || msg->n_images > MAX_REQUEST_IMAGES) {
            rc = vlm_errorf(VLM_ERR_LIMIT, "message %d: %d images; a request holds at most %d", i + 1, msg->n_images,
                            MAX_REQUEST_IMAGES);
            break;
        }
        const char *content = msg->content ? msg->content : "";
        const int first = n_pics;
        int counts[MAX_REQUEST_IMAGES];
        for (int k = 0; k < msg->n_images && rc == VLM_OK; k++) {
            const int before = n_pics;
            rc = resolve_input(eo, &msg->images[k], max_pixels, &pics, &n_pics, &cap_pics);
            if (rc) rc = vlm_error_prefix(rc, "message %d, image %d", i + 1, k + 1);
            counts[k] = n_pics - before;
        }
        if (rc == VLM_OK && n_pics > MAX_REQUEST_IMAGES)
            rc = vlm_errorf(VLM_ERR_LIMIT, "the request has %d pictures (video frames count one each); at most %d",
                            n_pics, MAX_REQUEST_IMAGES);
        if (rc) break;
        vlm_chat_message one = {msg->role, content};
        texts[i] = place_pictures(content, vlm_chat_count_images(&one, 1), pics, first, counts, msg->n_images,
                                  n_pics - first, i + 1);
        if (!texts[i]) {
            rc = VLM_ERR_INVALID;
            break;
        }
        cm[i] = (vlm_chat_message){msg->role, texts[i]};
    }
    if (rc == VLM_OK) {
        vlm_image *imgs = calloc((size_t)n_pics + 1, sizeof *imgs);
        if (!imgs) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
        for (int k = 0; imgs && k < n_pics; k++) imgs[k] = pics[k].img;
        cm[n_msgs] = (vlm_chat_message){"assistant", ""}; /* the generation prompt */
        if (rc == VLM_OK) rc = vlm_model_build_request(m, cm, n_msgs + 1, imgs, n_pics, req);
        free(imgs);
    }
done:
    for (int i = 0; texts && i <= n_msgs; i++) free(texts[i]);
    for (int k = 0; k < n_pics; k++) vlm_image_free(&pics[k].img);
    free(pics);
    free(texts);
    free(cm);
    return rc;
}

static int from_ids(const vlm_model *m, const vlm_engine_options *eo, const vlm_request_options *o, vlm_request *req)
{
    if (o->n_prompt_ids <= 0 || o->n_prompt_images < 0 || o->n_prompt_images > MAX_REQUEST_IMAGES)
        return vlm_errorf(VLM_ERR_INVALID, "a prompt of %lld ids and %d images", (long long)o->n_prompt_ids, o->n_prompt_images);
    picture *pics = NULL;
    int n = 0, cap = 0, rc = VLM_OK;
    for (int k = 0; k < o->n_prompt_images && rc == VLM_OK; k++) rc = resolve_input(eo, &o->prompt_images[k], o->gen.max_pixels, &pics, &n, &cap);
    vlm_image *imgs = calloc((size_t)n + 1, sizeof *imgs);
    if (rc == VLM_OK && !imgs) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    for (int k = 0; imgs && k < n; k++) imgs[k] = pics[k].img;
    if (rc == VLM_OK) rc = vlm_model_prepare_images(m, imgs, n, req);
    if (rc == VLM_OK && !(req->ids = malloc((size_t)o->n_prompt_ids * sizeof *req->ids))) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    if (rc == VLM_OK) {
        memcpy(req->ids, o->prompt_ids, (size_t)o->n_prompt_ids * sizeof *req->ids);
        req->n_ids = o->n_prompt_ids;
        const int64_t V = vlm_model_config(m)->lm.vocab_size;
        for (int64_t t = 0; t < req->n_ids && rc == VLM_OK; t++)
            if (req->ids[t] < 0 || req->ids[t] >= V)
                rc = vlm_errorf(VLM_ERR_INVALID, "prompt id %d at %lld is outside the vocabulary of %lld", req->ids[t],
                                (long long)t, (long long)V);
    }
    if (rc == VLM_OK) rc = vlm_model_check_image_tokens(m, req);
    for (int i = 0; i < n; i++) vlm_image_free(&pics[i].img);
    free(pics);
    free(imgs);
    return rc;
}

/* Prefix keys: ids, with each image token keyed by its image's content and its place in it. */
static int make_keys(struct vlm_job *j, const vlm_model *m)
{
    const vlm_request *r = &j->req;
    const int32_t image_id = vlm_model_image_id(m);
    j->keys = malloc((size_t)r->n_ids * sizeof *j->keys);
    j->img_keys = calloc((size_t)r->n_images + 1, sizeof *j->img_keys);
    j->img_start = calloc((size_t)r->n_images + 1, sizeof *j->img_start);
    if (!j->keys || !j->img_keys || !j->img_start) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    const int tile = vlm_model_config(m)->vision.image_size;
    int img = -1;
    int64_t left = 0, k = 0;
    for (int64_t t = 0; t < r->n_ids; t++) {
        if (r->ids[t] != image_id || image_id < 0) {
            j->keys[t] = (uint64_t)(uint32_t)r->ids[t];
            continue;
        }
        if (left == 0) { /* the next image's run starts */
            img++;
            j->img_keys[img] = vlm_image_key_of(&r->images[img], tile);
            j->img_start[img] = t;
            left = vlm_model_image_tokens(m, &r->images[img]);
            k = 0;
        }
        /* high bit set: never equal to a token id */
        j->keys[t] = vlm_hash_mix(j->img_keys[img].lo ^ j->img_keys[img].hi, (uint64_t)k++) | (1ULL << 63);
        left--;
        j->image_tokens++;
    }
    return VLM_OK;
}

int vlm_job_build(const vlm_model *m, const vlm_engine_options *eo, const vlm_message *msgs, int n_msgs,
                  const vlm_request_options *o, struct vlm_job **out)
{
    *out = NULL;
    struct vlm_job *j = calloc(1, sizeof *j);
    if (!j) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    j->t_submit = vlm_now_ms();
    atomic_init(&j->cancel, 0);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    int rc = copy_options(j, o);
    if (rc == VLM_OK) {
        if (o->prompt_ids) rc = from_ids(m, eo, o, &j->req);
        else if (n_msgs <= 0 || !msgs) rc = vlm_errorf(VLM_ERR_INVALID, "a request needs at least one message");
        else if (!vlm_model_tokenizer(m)) rc = vlm_errorf(VLM_ERR_INVALID, "the model folder has no tokenizer.json, so text prompts cannot be encoded");
        else rc = build_prompt(m, eo, msgs, n_msgs, o->gen.max_pixels, &j->req);
    }
    const int64_t T = j->req.n_ids, ctx = vlm_model_context(m);
    if (rc == VLM_OK && T >= ctx)
        rc = vlm_errorf(VLM_ERR_LIMIT, "the prompt is %lld tokens (text and image tokens), but the context holds %lld",
                        (long long)T, (long long)ctx);
    if (rc == VLM_OK) rc = make_keys(j, m);
    if (rc) {
        vlm_job_destroy(j);
        return rc;
    }
    const int64_t want = T + (int64_t)j->opt.gen.max_new_tokens;
    j->cap = want < ctx ? want : ctx;
    if (j->cap <= T) j->cap = T + 1;
    j->result.prompt_tokens = T;
    j->result.image_tokens = j->image_tokens;
    *out = j;
    return VLM_OK;
}

void vlm_job_release_state(struct vlm_job *j)
{
    vlm_kv_cache_free(j->cache);
    j->cache = NULL;
    free(j->embeds);
    j->embeds = NULL;
    vlm_sampler_free(j->sampler);
    j->sampler = NULL;
    free(j->history);
    j->history = NULL;
    vlm_detok_stream_free(j->ds);
    vlm_detok_stream_free(j->ds_sp);
    j->ds = j->ds_sp = NULL;
    vlm_stop_text_free(j->st);
    j->st = NULL;
}

void vlm_job_destroy(struct vlm_job *j)
{
    if (!j) return;
    vlm_job_release_state(j);
    vlm_request_free(&j->req);
    for (int i = 0; j->stops && i < j->opt.gen.n_stop; i++) free(j->stops[i]);
    free(j->stops);
    free(j->keys);
    free(j->img_keys);
    free(j->img_start);
    free(j->gen);
    free(j->text);
    free(j->full_text);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

int vlm_job_start(struct vlm_job *j, const vlm_model *m)
{
    const vlm_lm_config *c = &vlm_model_config(m)->lm;
    const vlm_ask_options *g = &j->opt.gen;
    const vlm_sampler_params sp = {.temperature = g->temperature, .top_k = g->top_k, .top_p = g->top_p,
                                   .repetition_penalty = g->repetition_penalty, .seed = g->seed};
    const int64_t max_new = g->max_new_tokens;
    j->history = malloc((size_t)(j->req.n_ids + max_new + 1) * sizeof *j->history);
    j->gen = malloc((size_t)(max_new + 1) * sizeof *j->gen);
    if (!j->history || !j->gen) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    memcpy(j->history, j->req.ids, (size_t)j->req.n_ids * sizeof *j->history);
    j->n_hist = j->req.n_ids;
    int rc = vlm_sampler_create(&sp, c->vocab_size, &j->sampler);
    if (rc == VLM_OK) rc = vlm_stop_text_new((const char *const *)j->opt.gen.stop, j->opt.gen.n_stop, &j->st);
    /* special tokens' text is kept (the full text, for the history) but not shown */
    if (rc == VLM_OK && vlm_model_tokenizer(m)) rc = vlm_detok_stream_new(vlm_model_tokenizer(m), 0, &j->ds);
    if (rc == VLM_OK && vlm_model_tokenizer(m)) rc = vlm_detok_stream_new(vlm_model_tokenizer(m), 1, &j->ds_sp);
    return rc;
}

/* Text of one more piece: through the stop strings, the visible part to on_text. 1: stop. */
static int feed(struct vlm_job *j, const char *text, size_t len, int visible)
{
    const char *out;
    size_t n;
    int r = vlm_stop_text_push(j->st, text, len, visible, &out, &n);
    if (r < 0) return r;
    if (n && j->opt.gen.on_text && j->opt.gen.on_text(j->opt.gen.user, out, n)) {
        atomic_store(&j->cancel, 1);
        return 1;
    }
    return r;
}

int vlm_job_accept(struct vlm_job *j, const vlm_model *m, int32_t id)
{
    const vlm_tokenizer *tok = vlm_model_tokenizer(m);
    const double now = vlm_now_ms();
    if (!j->n_gen) j->t_first = now;
    j->t_last = now;
    j->history[j->n_hist++] = id;
    j->gen[j->n_gen++] = id;
    if (j->opt.on_token && j->opt.on_token(j->opt.gen.user, id)) {
        vlm_job_finish(j, VLM_FINISH_CANCELLED, 0, NULL);
        return 1;
    }
    const int eos = id == vlm_model_config(m)->lm.eos_token_id && !j->opt.gen.ignore_eos;
    if (eos) { /* the end, not part of the answer */
        j->result.stop_detail = "eos";
        vlm_job_finish(j, VLM_FINISH_STOP, 0, NULL);
        return 1;
    }
    if (tok) {
        const char *piece;
        size_t len;
        int r = 0;
        /* visible text as the tokenizer decodes it with special tokens skipped (bytes of a character on
         * both sides of a special token still join); a special token's text goes in hidden */
        const int special = vlm_tokenizer_is_special(tok, id);
        if (vlm_detok_stream_push(special ? j->ds_sp : j->ds, id, &piece, &len) == VLM_OK && len) r = feed(j, piece, len, !special);
        if (r < 0) {
            vlm_job_finish(j, VLM_FINISH_ERROR, r, "out of memory");
            return 1;
        }
        if (r > 0) {
            j->result.stop_detail = atomic_load(&j->cancel) ? "cancelled" : "stop_string";
            vlm_job_finish(j, atomic_load(&j->cancel) ? VLM_FINISH_CANCELLED : VLM_FINISH_STOP, 0, NULL);
            return 1;
        }
    }
    /* the next step feeds this token: it must fit the cache (cap tokens) */
    if (j->n_gen >= j->opt.gen.max_new_tokens || j->n_hist > j->cap) {
        j->result.stop_detail = j->n_gen >= j->opt.gen.max_new_tokens ? "length" : "context";
        vlm_job_finish(j, VLM_FINISH_LENGTH, 0, NULL);
        return 1;
    }
    return 0;
}

void vlm_job_finish(struct vlm_job *j, vlm_finish_reason r, int error_code, const char *error)
{
    vlm_result *res = &j->result;
    res->finish = r;
    if (r == VLM_FINISH_CANCELLED) res->stop_detail = "cancelled";
    if (r == VLM_FINISH_ERROR) res->stop_detail = "error";
    if (r == VLM_FINISH_ERROR) {
        res->error_code = error_code ? error_code : VLM_ERR_INVALID;
        snprintf(res->error, sizeof res->error, "%s", error ? error : vlm_last_error());
    }
    /* what the detokenizer and the stop strings held back */
    if (j->st) {
        const char *piece;
        size_t len;
        if (j->ds && !vlm_stop_text_stopped(j->st) && vlm_detok_stream_flush(j->ds, &piece, &len) == VLM_OK && len) {
            const char *out;
            size_t n;
            if (vlm_stop_text_push(j->st, piece, len, 1, &out, &n) >= 0 && n && j->opt.gen.on_text && r != VLM_FINISH_CANCELLED)
                j->opt.gen.on_text(j->opt.gen.user, out, n);
        }
        vlm_stop_text_finish(j->st, &piece, &len);
        if (len && j->opt.gen.on_text && r != VLM_FINISH_CANCELLED) j->opt.gen.on_text(j->opt.gen.user, piece, len);
        j->text = strdup(vlm_stop_text_get(j->st, 1, NULL));
        j->full_text = strdup(vlm_stop_text_get(j->st, 0, NULL));
    }
    if (!j->text) j->text = strdup("");
    if (!j->full_text) j->full_text = strdup("");
    res->text = j->text ? j->text : "";
    res->full_text = j->full_text ? j->full_text : "";
    res->token_ids = j->gen;
    res->n_token_ids = j->n_gen;
    res->completion_tokens = j->n_gen;
    res->cached_tokens = j->n_cached;
    const double now = vlm_now_ms();
    res->total_ms = now - j->t_submit;
    res->queue_ms = (j->t_admit ? j->t_admit : now) - j->t_submit;
    if (j->n_gen) {
        res->ttft_ms = j->t_first - j->t_submit;
        res->decode_ms = j->t_last - j->t_first;
    }
    j->phase = JOB_DONE;
}
