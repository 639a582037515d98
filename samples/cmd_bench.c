/* vlm bench: CPU speed of a model folder (random weights from `vlm mkmodel` time like real ones).
 * Each figure is min / median / max over --reps repetitions:
 *   vit_ms_per_tile       vision tower + projector on a 384x384 image (global view + 1 tile), per tile
 *   prefill_tok_s         decoder prefill of 512 text tokens
 *   prefill_image_tok_s   decoder prefill of a 1,023-token prompt of image features
 *   decode_tok_s          128 greedy tokens after a 16-token prompt, one token per step
 *   decode_ctx1k_tok_s    the same after a 1,024-token prompt (as after an image: the KV cache is
 *                         read too; not counted in the decode bound)
 *   ttft_ms               640x480 image + one-line question to the first token (preprocessing,
 *                         5 tiles through the vision tower, prefill, lm_head, sampling)
 * and peak RSS. The decode bound is the measured memory read bandwidth (both cores, in a
 * child process so its buffer stays out of this one's RSS) over the weight bytes one decode
 * step reads (attention, dense or top-k + shared experts, router, lm_head). */
#include "core/checkpoint.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/threadpool.h"
#include "fusion/image_tokens.h"
#include "fusion/model.h"
#include "samples/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REPS 100

typedef struct {
    double v[MAX_REPS];
    int n;
} series;

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void stats(const series *s, double *mn, double *med, double *mx)
{
    double t[MAX_REPS];
    memcpy(t, s->v, (size_t)s->n * sizeof(double));
    qsort(t, (size_t)s->n, sizeof(double), cmp_d);
    *mn = s->n ? t[0] : 0;
    *mx = s->n ? t[s->n - 1] : 0;
    *med = s->n == 0 ? 0 : s->n % 2 ? t[s->n / 2] : 0.5 * (t[s->n / 2 - 1] + t[s->n / 2]);
}

/* ---- memory bandwidth ------------------------------------------------------------ */

typedef struct {
    const uint64_t *p;
    int64_t n;
    uint64_t sums[64];
} bw_job;

/* 16-byte vector adds (plain SSE2), four independent sums: the loads, not the adds, limit it */
typedef uint64_t v2u64 __attribute__((vector_size(16)));

static void bw_task(void *ctx, int64_t b, int64_t e)
{
    bw_job *j = ctx;
    const int64_t per = j->n / 64;
    for (int64_t c = b; c < e; c++) {
        const uint64_t *q = j->p + c * per;
        v2u64 s0 = {0, 0}, s1 = s0, s2 = s0, s3 = s0, t;
        for (int64_t i = 0; i + 8 <= per; i += 8) {
            memcpy(&t, q + i, 16), s0 += t;
            memcpy(&t, q + i + 2, 16), s1 += t;
            memcpy(&t, q + i + 4, 16), s2 += t;
            memcpy(&t, q + i + 6, 16), s3 += t;
        }
        t = s0 ^ s1 ^ s2 ^ s3;
        j->sums[c] = t[0] ^ t[1];
    }
}

/* Read bandwidth in GB/s over a 512 MiB buffer, best of 8, measured in a child process. */
static double measure_bandwidth(void)
{
    int fd[2];
    if (pipe(fd)) return 0;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return 0;
    }
    if (pid == 0) {
        close(fd[0]);
        const int64_t bytes = (int64_t)512 << 20;
        uint64_t *buf = malloc((size_t)bytes);
        double best = 0;
        if (buf) {
            memset(buf, 1, (size_t)bytes);
            for (int r = 0; r < 8; r++) {
                bw_job j = {buf, bytes / 8, {0}};
                double t0 = vlm_now_ms();
                vlm_pool_for(vlm_pool_default(), 64, 1, bw_task, &j);
                double ms = vlm_now_ms() - t0, gb = (double)bytes / 1e9 / (ms / 1e3);
                if (gb > best) best = gb;
            }
        }
        if (write(fd[1], &best, sizeof best) != sizeof best) _exit(1);
        _exit(0);
    }
    close(fd[1]);
    double bw = 0;
    if (read(fd[0], &bw, sizeof bw) != sizeof bw) bw = 0;
    close(fd[0]);
    waitpid(pid, NULL, 0);
    return bw;
}

/* ---- model bytes ------------------------------------------------------------------- */

/* Bytes of a [rows, cols] matrix in format q (checkpoint dtype: BF16). */
static double mat_bytes(const vlm_quant_spec *q, double rows, double cols)
{
    int g = q->group ? q->group : 32;
    double kp = ceil(cols / 32) * 32, ng = ceil(cols / g);
    switch (q->fmt) {
    case VLM_WQ_Q8: return rows * (kp + 2 * ng);
    case VLM_WQ_Q4: return rows * (kp / 2 + 2 * ng);
    default: return rows * cols * 2;
    }
}

typedef struct {
    double decode_bytes; /* read per decode token */
    double weight_bytes; /* all matrices as held (embedding table included, as stored) */
} model_bytes;

static model_bytes count_bytes(const vlm_vl2_config *c, const vlm_quant_options *q)
{
    model_bytes b = {0};
    const vlm_lm_config *l = &c->lm;
    const double H = l->hidden_size, nh = l->num_attention_heads;
    double attn;
    if (l->use_mla) {
        double qk = l->qk_nope_head_dim + l->qk_rope_head_dim, r = l->kv_lora_rank;
        attn = (l->q_lora_rank > 0 ? mat_bytes(&q->attention, l->q_lora_rank, H) +
                                         mat_bytes(&q->attention, nh * qk, l->q_lora_rank)
                                   : mat_bytes(&q->attention, nh * qk, H)) +
               mat_bytes(&q->attention, r + l->qk_rope_head_dim, H) + 2 * nh * (l->qk_nope_head_dim + l->v_head_dim) * r +
               mat_bytes(&q->attention, H, nh * l->v_head_dim);
    } else {
        double hd = H / nh, kvd = l->num_key_value_heads * hd;
        attn = mat_bytes(&q->attention, nh * hd, H) + 2 * mat_bytes(&q->attention, kvd, H) +
               mat_bytes(&q->attention, H, nh * hd);
    }
    const double expert = 2 * mat_bytes(&q->experts, l->moe_intermediate_size, H) +
                          mat_bytes(&q->experts, H, l->moe_intermediate_size);
    const double shared_i = (double)l->moe_intermediate_size * l->n_shared_experts;
    const double shared = shared_i > 0 ? 2 * mat_bytes(&q->experts, shared_i, H) + mat_bytes(&q->experts, H, shared_i) : 0;
    const double dense = 2 * mat_bytes(&q->experts, l->intermediate_size, H) + mat_bytes(&q->experts, H, l->intermediate_size);
    for (int i = 0; i < l->num_hidden_layers; i++) {
        b.decode_bytes += attn;
        b.weight_bytes += attn;
        if (vlm_lm_layer_is_moe(l, i)) {
            double gate = (double)l->n_routed_experts * H * 2;
            b.decode_bytes += gate + l->num_experts_per_tok * expert + shared;
            b.weight_bytes += gate + l->n_routed_experts * expert + shared;
        } else {
            b.decode_bytes += dense;
            b.weight_bytes += dense;
        }
    }
    const double head = mat_bytes(&q->lm_head, l->vocab_size, H);
    b.decode_bytes += head;
    b.weight_bytes += head + (double)l->vocab_size * H * 2;
    const vlm_vision_config *v = &c->vision;
    const double C = v->width, P = v->patch_size;
    b.weight_bytes += mat_bytes(&q->vision, C, 3 * P * P) +
                      v->layers * (mat_bytes(&q->vision, 3 * C, C) + mat_bytes(&q->vision, C, C) +
                                   mat_bytes(&q->vision, v->mlp_hidden, C) + mat_bytes(&q->vision, C, v->mlp_hidden));
    const vlm_projector_config *p = &c->projector;
    const double r2 = p->downsample_ratio * p->downsample_ratio, hid = (double)p->n_embed * p->mlp_ratio;
    for (int i = 0; i < p->depth; i++)
        b.weight_bytes += mat_bytes(&q->projector, i == p->depth - 1 ? p->n_embed : hid, i == 0 ? p->input_dim * r2 : hid);
    return b;
}

/* ---- the measurements ----------------------------------------------------------- */

static void synth_image(vlm_image *im, int w, int h)
{
    im->width = w;
    im->height = h;
    im->rgb = malloc((size_t)w * h * 3);
    if (!im->rgb) return;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im->rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / w);
            p[1] = (uint8_t)(y * 255 / h);
            p[2] = (uint8_t)(((x / 32) + (y / 32)) % 2 * 200);
        }
}

static int32_t argmax(const float *v, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return (int32_t)b;
}

static int bench_vit(vlm_model *m, series *out, int reps)
{
    const vlm_tokenizer *tok = vlm_model_tokenizer(m);
    if (!tok) return vlm_errorf(VLM_ERR_INVALID, "the model folder has no tokenizer.json (needed for the image token)");
    const vlm_vl2_config *c = vlm_model_config(m);
    vlm_image im;
    synth_image(&im, 384, 384);
    if (!im.rgb) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    vlm_request r;
    int rc = vlm_model_prepare_images(m, &im, 1, &r);
    free(im.rgb);
    if (rc) return rc;
    const int side = vlm_projector_side(&c->projector, vlm_vision_grid(&c->vision));
    const int64_t n = vlm_image_embed_count(side, r.images[0].nw, r.images[0].nh), tiles = vlm_request_tiles(&r);
    r.ids = malloc((size_t)n * sizeof(int32_t));
    float *emb = malloc((size_t)n * c->lm.hidden_size * sizeof(float));
    if (!r.ids || !emb) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; rc == VLM_OK && i < n; i++) r.ids[i] = vlm_tokenizer_special(tok)->image;
    r.n_ids = n;
    for (int i = 0; rc == VLM_OK && i < reps; i++) {
        double t0 = vlm_now_ms();
        rc = vlm_model_embed(m, &r, emb, NULL);
        out->v[out->n++] = (vlm_now_ms() - t0) / (double)tiles;
    }
    free(emb);
    vlm_request_free(&r);
    return rc;
}

/* Prefill of T tokens: text ids (image = 0) or random image-feature-like embeddings (image = 1). */
static int bench_prefill(vlm_model *m, int64_t T, int image, series *out, int reps)
{
    const vlm_lm *lm = vlm_model_lm(m);
    const vlm_lm_config *c = vlm_lm_get_config(lm);
    const int64_t H = c->hidden_size;
    float *emb = malloc((size_t)(T * H) * sizeof(float)), *logits = malloc((size_t)c->vocab_size * sizeof(float));
    int32_t *ids = malloc((size_t)T * sizeof(int32_t));
    vlm_kv_cache *cache = NULL;
    int rc = emb && logits && ids ? VLM_OK : vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    uint64_t s = 12345;
    for (int64_t t = 0; rc == VLM_OK && t < T; t++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[t] = (int32_t)(16 + (s >> 33) % 256); /* byte tokens of the stand-in tokenizer */
    }
    if (rc == VLM_OK) rc = vlm_lm_embed(lm, ids, T, emb);
    if (rc == VLM_OK && image)
        for (int64_t i = 0; i < T * H; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            emb[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5) * 0.2f;
        }
    if (rc == VLM_OK) rc = vlm_kv_cache_create(lm, T, &cache);
    for (int i = 0; rc == VLM_OK && i < reps; i++) {
        vlm_kv_cache_reset(cache);
        double t0 = vlm_now_ms();
        rc = vlm_lm_forward(lm, cache, emb, T, logits, 0, NULL);
        out->v[out->n++] = (double)T / ((vlm_now_ms() - t0) / 1e3);
    }
    vlm_kv_cache_free(cache);
    free(emb);
    free(logits);
    free(ids);
    return rc;
}

static int bench_decode(vlm_model *m, int64_t P, int64_t steps, series *out, int reps)
{
    const vlm_lm *lm = vlm_model_lm(m);
    const vlm_lm_config *c = vlm_lm_get_config(lm);
    const int64_t H = c->hidden_size;
    float *emb = malloc((size_t)(P * H) * sizeof(float)), *logits = malloc((size_t)c->vocab_size * sizeof(float));
    int32_t *ids = malloc((size_t)P * sizeof(int32_t));
    vlm_kv_cache *cache = NULL;
    int rc = emb && logits && ids ? VLM_OK : vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; rc == VLM_OK && i < P; i++) ids[i] = (int32_t)(16 + 'a' + i % 26);
    if (rc == VLM_OK) rc = vlm_kv_cache_create(lm, P + steps, &cache);
    for (int i = 0; rc == VLM_OK && i < reps; i++) {
        vlm_kv_cache_reset(cache);
        rc = vlm_lm_embed(lm, ids, P, emb);
        if (rc == VLM_OK) rc = vlm_lm_forward(lm, cache, emb, P, logits, 0, NULL);
        double t0 = vlm_now_ms();
        for (int64_t k = 0; rc == VLM_OK && k < steps; k++) {
            int32_t id = argmax(logits, c->vocab_size);
            if ((rc = vlm_lm_embed(lm, &id, 1, emb))) break;
            rc = vlm_lm_forward(lm, cache, emb, 1, logits, 0, NULL);
        }
        if (rc == VLM_OK) out->v[out->n++] = (double)steps / ((vlm_now_ms() - t0) / 1e3);
    }
    vlm_kv_cache_free(cache);
    free(emb);
    free(logits);
    free(ids);
    return rc;
}

typedef struct {
    double t0, first;
} ttft_state;

static int on_first(void *user, int32_t id)
{
    (void)id;
    ttft_state *s = user;
    s->first = vlm_now_ms() - s->t0;
    return 1; /* stop after the first token */
}

static int bench_ttft(vlm_model *m, series *out, int64_t *prompt_tokens, int reps)
{
    vlm_image im;
    synth_image(&im, 640, 480);
    if (!im.rgb) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    vlm_chat_message msgs[2] = {{"user", "<image>\nDescribe this image in one sentence."}, {"assistant", ""}};
    int rc = VLM_OK;
    for (int i = 0; rc == VLM_OK && i < reps; i++) {
        ttft_state st = {vlm_now_ms(), 0};
        vlm_request r;
        if ((rc = vlm_model_build_request(m, msgs, 2, &im, 1, &r))) break;
        vlm_generate_options go = {0};
        go.max_new_tokens = 1;
        go.on_token = on_first;
        go.user = &st;
        vlm_generation g;
        rc = vlm_model_generate(m, &r, &go, &g);
        *prompt_tokens = r.n_ids;
        if (rc == VLM_OK) vlm_generation_free(&g);
        vlm_request_free(&r);
        out->v[out->n++] = st.first;
    }
    free(im.rgb);
    return rc;
}

static void cpu_model(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ') p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(buf, cap, "%s", p);
            }
            break;
        }
    fclose(f);
}

static void usage(FILE *f)
{
    fputs("usage: vlm bench -m <model dir> [options]\n"
          "  -m, --model DIR   checkpoint folder (e.g. from `vlm mkmodel --shape tiny DIR`)\n"
          "  --quant Q         weight formats as in `ask`, e.g. q8, q4, q4:64, experts=q4,vision=bf16; `ref` = the\n"
          "                    fp32 reference kernels (default: a `vlm quantize` folder as stored, else bf16)\n"
          "  --device D        cpu (default), cuda or cuda:N for the text decoder (the vision encoder and\n"
          "                    projector stay on the CPU); without a usable GPU: a note on stderr and the CPU\n"
          "  --reps N          repetitions per figure (default 3)\n"
          "  --concurrency L   the request engine instead: for each N in L (e.g. 1,4,8,16,32), N requests\n"
          "                    of 128 prompt tokens and 64 new ones at once (aggregate decode tok/s: the\n"
          "                    median of --reps rounds; inter-token latency p50/p99), then N - 1 decoding\n"
          "                    while one arrives (its TTFT and the others' p99 gap meanwhile: medians of\n"
          "                    --reps arrivals); --reps at most 16 here\n"
          "  --threads N       CPU threads (default: all cores)\n"
          "  --int8-act A      int8 activations in prefill / ViT products on q8 / q4 weights: auto\n"
          "                    (default: on), on, or off (fp32 products on the dequantized weights)\n"
          "  --kv-cache T      KV cache values: auto (default: f16 on the CPU, f32 with --quant ref), f16, f32\n"
          "  --skip LIST       leave out some of vit,prefill,image,decode,ttft (comma-separated)\n"
          "  --json            one JSON object instead of the table\n",
          f);
}

static void print_series(FILE *f, const char *name, const series *s, int last)
{
    double mn, med, mx;
    stats(s, &mn, &med, &mx);
    fprintf(f, "\"%s\":{\"min\":%.3f,\"median\":%.3f,\"max\":%.3f}%s", name, mn, med, mx, last ? "" : ",");
}

int vlm_cmd_bench(int argc, char **argv)
{
    const char *dir = NULL, *quant = NULL, *skip = "", *device = NULL, *concurrency = NULL;
    long long reps = 3, threads = 0;
    int json = 0;
    vlm_kv_type kv = VLM_KV_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strcmp(a, "--quant") && i + 1 < argc) {
            quant = argv[++i];
        } else if (!strcmp(a, "--device") && i + 1 < argc) {
            device = argv[++i];
        } else if (!strcmp(a, "--int8-act") && i + 1 < argc) {
            if (cli_int8_act("bench", argv[++i])) return 2;
        } else if (!strcmp(a, "--kv-cache") && i + 1 < argc) {
            if (cli_kv_cache("bench", argv[++i], &kv)) return 2;
        } else if (!strcmp(a, "--concurrency") && i + 1 < argc) {
            concurrency = argv[++i];
        } else if (!strcmp(a, "--skip") && i + 1 < argc) {
            skip = argv[++i];
        } else if (!strcmp(a, "--reps") && i + 1 < argc) {
            if (cli_int("bench", a, argv[++i], 1, MAX_REPS, &reps)) return 2;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            if (cli_int("bench", a, argv[++i], 1, 1024, &threads)) return 2;
        } else {
            fprintf(stderr, "vlm bench: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    if (concurrency)
        return vlm_cmd_bench_concurrency(dir, quant, vlm_kv_type_name(kv), (int)threads, concurrency, (int)reps, json);
    vlm_model_options mo = {.n_threads = (int)threads, .device = device, .kv_cache = kv};
    /* without --quant: a folder from `vlm quantize` runs as it was stored, any other in bf16 */
    if (quant ? vlm_quant_options_parse(quant, &mo.quant) : vlm_quant_options_default(dir, &mo.quant))
        return cli_fail("bench");
    if (threads > 0) vlm_pool_default_set_threads((int)threads);
    const double bw = measure_bandwidth();
    double t0 = vlm_now_ms();
    vlm_model *m;
    if (vlm_model_load(dir, &mo, &m)) return cli_fail("bench");
    if (vlm_model_device_note(m)) fprintf(stderr, "vlm bench: %s\n", vlm_model_device_note(m));
    const double load_ms = vlm_now_ms() - t0;
    const vlm_vl2_config *cfg = vlm_model_config(m);
    const model_bytes mb = count_bytes(cfg, &mo.quant);
    series vit = {0}, pre = {0}, pre_img = {0}, dec = {0}, dec_ctx = {0}, ttft = {0};
    int64_t ttft_tokens = 0;
    int rc = VLM_OK;
    if (!strstr(skip, "vit") && rc == VLM_OK) rc = bench_vit(m, &vit, (int)reps);
    if (!strstr(skip, "prefill") && rc == VLM_OK) rc = bench_prefill(m, 512, 0, &pre, (int)reps);
    if (!strstr(skip, "image") && rc == VLM_OK) rc = bench_prefill(m, 1023, 1, &pre_img, (int)reps);
    if (!strstr(skip, "decode") && rc == VLM_OK) rc = bench_decode(m, 16, 128, &dec, (int)reps);
    const int64_t ctx = 1024 < vlm_lm_get_config(vlm_model_lm(m))->max_position_embeddings - 128
                            ? 1024 : 0; /* a model with a shorter context leaves the figure out */
    if (!strstr(skip, "decode") && rc == VLM_OK && ctx) rc = bench_decode(m, ctx, 128, &dec_ctx, (int)reps);
    if (!strstr(skip, "ttft") && rc == VLM_OK) rc = bench_ttft(m, &ttft, &ttft_tokens, (int)reps);
    if (rc) {
        vlm_model_free(m);
        return cli_fail("bench");
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double rss_mb = (double)ru.ru_maxrss / 1024.0;
    const double bound = bw > 0 ? bw * 1e9 / mb.decode_bytes : 0;
    double dmin, dmed, dmax;
    stats(&dec, &dmin, &dmed, &dmax);
    /* the largest cache used: 1,023 tokens (the ctx1k decode: 1,152) */
    const double kv_mb = (double)vlm_lm_kv_bytes_per_token(vlm_model_lm(m)) * (ctx ? ctx + 128 : 1024) / 1048576.0;
    char qs[256], cpu[256];
    vlm_quant_options_str(&mo.quant, qs, sizeof qs);
    cpu_model(cpu, sizeof cpu);
    const int nthreads = vlm_pool_threads(vlm_pool_default());
    const char *kv_name = vlm_kv_type_name(vlm_lm_kv_type(vlm_model_lm(m)));
    if (json) {
        printf("{\"model\":\"%s\",\"quant\":\"%s\",\"int8_act\":\"%s\",\"kv_cache\":\"%s\",\"device\":\"%s\","
               "\"threads\":%d,\"simd\":\"%s\",\"cpu\":\"%s\",\"reps\":%lld,",
               dir, qs, cli_int8_act_name(), kv_name, vlm_model_device(m), nthreads, vlm_ops_simd(), cpu, reps);
        print_series(stdout, "vit_ms_per_tile", &vit, 0);
        print_series(stdout, "prefill_tok_s", &pre, 0);
        print_series(stdout, "prefill_image_tok_s", &pre_img, 0);
        print_series(stdout, "decode_tok_s", &dec, 0);
        if (dec_ctx.n) print_series(stdout, "decode_ctx1k_tok_s", &dec_ctx, 0);
        print_series(stdout, "ttft_ms", &ttft, 0);
        printf("\"ttft_prompt_tokens\":%lld,\"peak_rss_mb\":%.1f,\"weight_mb\":%.1f,\"kv_cache_mb\":%.1f,"
               "\"decode_weight_mb_per_token\":%.1f,\"mem_bandwidth_gb_s\":%.2f,\"decode_bound_tok_s\":%.2f,"
               "\"decode_fraction_of_bound\":%.3f,\"load_ms\":%.0f}\n",
               (long long)ttft_tokens, rss_mb, mb.weight_bytes / 1048576.0, kv_mb, mb.decode_bytes / 1048576.0, bw, bound,
               bound > 0 ? dmed / bound : 0, load_ms);
    } else {
        printf("model %s\nquant %s (int8 activations: %s, KV cache %s)\ndevice %s (text decoder)\ncpu %s, %d threads, "
               "kernels %s, %lld reps (min / median / max)\n",
               dir, qs, cli_int8_act_name(), kv_name, vlm_model_device(m), cpu, nthreads, vlm_ops_simd(), reps);
        printf("load                 %.0f ms\n", load_ms);
        const struct {
            const char *name, *unit;
            const series *s;
        } rows[] = {{"vit per tile", "ms", &vit},
                    {"prefill 512 text", "tok/s", &pre},
                    {"prefill 1023 image", "tok/s", &pre_img},
                    {"decode 128", "tok/s", &dec},
                    {"decode 128 @1k ctx", "tok/s", &dec_ctx},
                    {"ttft 640x480+q", "ms", &ttft}};
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            double mn, med, mx;
            if (!rows[i].s->n) continue;
            stats(rows[i].s, &mn, &med, &mx);
            printf("%-20s %10.2f / %10.2f / %10.2f %s\n", rows[i].name, mn, med, mx, rows[i].unit);
        }
        if (ttft.n) printf("ttft prompt          %lld tokens\n", (long long)ttft_tokens);
        printf("peak RSS             %.0f MB (weights %.0f MB as held + KV cache %.0f MB at its largest)\n", rss_mb,
               mb.weight_bytes / 1048576.0, kv_mb);
        printf("memory bandwidth     %.2f GB/s read; a decode token reads %.0f MB of weights\n", bw,
               mb.decode_bytes / 1048576.0);
        if (dec.n && bound > 0)
            printf("decode bound         %.2f tok/s; median reached %.0f%% of it\n", bound, 100 * dmed / bound);
    }
    vlm_model_free(m);
    return 0;
}
