/* vlm mkmodel: random-weight checkpoints of DeepSeek-VL2's real shapes (fusion/mkmodel.h).
 * The tensor list is derived from the parsed config, the same way the loaders read it,
 * so every tensor the loaders ask for is present with the shape they check. */
#include "fusion/mkmodel.h"
#include "core/error.h"
#include "core/file.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "fusion/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- built-in shapes (spec §1.3) --------------------------------------------- */

typedef struct {
    const char *name;
    int vocab, hidden, inter, moe_inter, layers, heads, kv_heads, experts, shared, top_k;
    int use_mla, kv_lora, nope, rope, v_dim;
    const char *topk_method, *scoring;
    int norm_topk;
    double scaling;
    int bos, eos;
} shape_def;

static const shape_def k_shapes[] = {
    {"tiny", 129280, 1280, 6848, 896, 12, 10, 10, 64, 2, 6, 0, 0, 0, 0, 0, "greedy", "softmax", 0, 1.0, 0, 1},
    {"small", 102400, 2048, 10944, 1408, 27, 16, 16, 64, 2, 6, 1, 512, 128, 64, 128, "greedy", "softmax", 0, 1.0,
     100000, 100001},
    {"base", 129280, 2560, 12288, 1536, 30, 32, 32, 72, 2, 6, 1, 512, 128, 64, 128, "noaux_tc", "sigmoid", 1, 2.0, 0, 1},
};

static const int k_candidates[][2] = {{384, 384},   {384, 768},   {768, 384},   {384, 1152},  {1152, 384}, {384, 1536},
                                      {1536, 384},  {768, 768},   {384, 1920},  {1920, 384},  {384, 2304}, {2304, 384},
                                      {768, 1152},  {1152, 768},  {384, 2688},  {2688, 384},  {384, 3072}, {3072, 384},
                                      {768, 1536},  {1536, 768},  {384, 3456},  {3456, 384},  {1152, 1152}};

static cJSON *candidates_json(void)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < sizeof k_candidates / sizeof k_candidates[0]; i++)
        cJSON_AddItemToArray(a, cJSON_CreateIntArray(k_candidates[i], 2));
    return a;
}

int vlm_mkmodel_shape_config(const char *shape, char **json_out)
{
    *json_out = NULL;
    const shape_def *s = NULL;
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
        if (!strcmp(shape, k_shapes[i].name)) s = &k_shapes[i];
    if (!s) return vlm_errorf(VLM_ERR_INVALID, "unknown model shape '%s' (tiny, small, base or a config.json path)", shape);
    cJSON *root = cJSON_CreateObject(), *v, *p, *l;
    cJSON_AddStringToObject(root, "model_type", "deepseek_vl_v2");
    cJSON_AddItemToObject(root, "candidate_resolutions", candidates_json());
    cJSON_AddStringToObject(root, "global_view_pos", "head");
    cJSON_AddStringToObject(root, "tile_tag", "2D");
    cJSON_AddItemToObject(root, "vision_config", v = cJSON_CreateObject());
    cJSON_AddStringToObject(v, "model_name", "siglip_so400m_patch14_384");
    cJSON_AddNumberToObject(v, "image_size", 384);
    cJSON_AddNumberToObject(v, "patch_size", 14);
    cJSON_AddNumberToObject(v, "width", 1152);
    cJSON_AddNumberToObject(v, "layers", 27);
    cJSON_AddNumberToObject(v, "heads", 16);
    cJSON_AddNumberToObject(v, "mlp_ratio", 3.7362);
    cJSON_AddStringToObject(v, "global_pool", "map");
    cJSON_AddBoolToObject(v, "ignore_head", 1);
    cJSON_AddBoolToObject(v, "class_token", 0);
    cJSON_AddNumberToObject(v, "num_classes", 0);
    cJSON_AddItemToObject(root, "projector_config", p = cJSON_CreateObject());
    cJSON_AddStringToObject(p, "projector_type", "downsample_mlp_gelu");
    cJSON_AddNumberToObject(p, "input_dim", 1152);
    cJSON_AddNumberToObject(p, "n_embed", s->hidden);
    cJSON_AddNumberToObject(p, "depth", 2);
    cJSON_AddNumberToObject(p, "mlp_ratio", 1);
    cJSON_AddNumberToObject(p, "downsample_ratio", 2);
    cJSON_AddItemToObject(root, "language_config", l = cJSON_CreateObject());
    cJSON_AddStringToObject(l, "model_type", "deepseek_v2");
    cJSON_AddNumberToObject(l, "vocab_size", s->vocab);
    cJSON_AddNumberToObject(l, "hidden_size", s->hidden);
    cJSON_AddNumberToObject(l, "intermediate_size", s->inter);
    cJSON_AddNumberToObject(l, "moe_intermediate_size", s->moe_inter);
    cJSON_AddNumberToObject(l, "num_hidden_layers", s->layers);
    cJSON_AddNumberToObject(l, "num_attention_heads", s->heads);
    cJSON_AddNumberToObject(l, "num_key_value_heads", s->kv_heads);
    cJSON_AddNumberToObject(l, "n_routed_experts", s->experts);
    cJSON_AddNumberToObject(l, "n_shared_experts", s->shared);
    cJSON_AddNumberToObject(l, "num_experts_per_tok", s->top_k);
    cJSON_AddBoolToObject(l, "use_mla", s->use_mla);
    if (s->use_mla) {
        cJSON_AddNullToObject(l, "q_lora_rank");
        cJSON_AddNumberToObject(l, "kv_lora_rank", s->kv_lora);
        cJSON_AddNumberToObject(l, "qk_nope_head_dim", s->nope);
        cJSON_AddNumberToObject(l, "qk_rope_head_dim", s->rope);
        cJSON_AddNumberToObject(l, "v_head_dim", s->v_dim);
    } else {
        cJSON_AddNullToObject(l, "q_lora_rank");
        cJSON_AddNullToObject(l, "kv_lora_rank");
        cJSON_AddNumberToObject(l, "qk_nope_head_dim", 0);
        cJSON_AddNumberToObject(l, "qk_rope_head_dim", 0);
        cJSON_AddNumberToObject(l, "v_head_dim", 0);
    }
    cJSON_AddStringToObject(l, "topk_method", s->topk_method);
    cJSON_AddStringToObject(l, "scoring_func", s->scoring);
    cJSON_AddBoolToObject(l, "norm_topk_prob", s->norm_topk);
    cJSON_AddNumberToObject(l, "routed_scaling_factor", s->scaling);
    cJSON_AddNumberToObject(l, "first_k_dense_replace", 1);
    cJSON_AddNumberToObject(l, "moe_layer_freq", 1);
    cJSON_AddNumberToObject(l, "n_group", 1);
    cJSON_AddNumberToObject(l, "topk_group", 1);
    cJSON_AddNumberToObject(l, "max_position_embeddings", 4096);
    cJSON_AddNumberToObject(l, "rms_norm_eps", 1e-6);
    cJSON_AddNumberToObject(l, "rope_theta", 10000.0);
    cJSON_AddStringToObject(l, "hidden_act", "silu");
    cJSON_AddNumberToObject(l, "bos_token_id", s->bos);
    cJSON_AddNumberToObject(l, "eos_token_id", s->eos);
    *json_out = cJSON_Print(root);
    cJSON_Delete(root);
    return *json_out ? VLM_OK : vlm_errorf(VLM_ERR_NOMEM, "out of memory");
}

/* ---- the tensor list ---------------------------------------------------------- */

typedef enum { INIT_WEIGHT, INIT_ONES, INIT_BIAS } init_kind;

typedef struct {
    char name[112];
    int ndim;
    int64_t shape[4];
    init_kind init;
} tensor_def;

typedef struct {
    tensor_def *t;
    size_t n, cap;
    int failed;
} tensor_list;

static void add(tensor_list *l, init_kind init, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void add(tensor_list *l, init_kind init, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (l->failed) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        tensor_def *t = realloc(l->t, cap * sizeof *t);
        if (!t) {
            l->failed = 1;
            return;
        }
        l->t = t;
        l->cap = cap;
    }
    tensor_def *d = &l->t[l->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->name, sizeof d->name, fmt, ap);
    va_end(ap);
    d->ndim = ndim;
    memcpy(d->shape, shape, (size_t)ndim * sizeof(int64_t));
    d->init = init;
}

#define MAT(r, c) (const int64_t[]){(r), (c)}
#define VEC(n) (const int64_t[]){(n)}

static void add_mlp(tensor_list *l, const char *p, int64_t H, int64_t I)
{
    add(l, INIT_WEIGHT, 2, MAT(I, H), "%s.gate_proj.weight", p);
    add(l, INIT_WEIGHT, 2, MAT(I, H), "%s.up_proj.weight", p);
    add(l, INIT_WEIGHT, 2, MAT(H, I), "%s.down_proj.weight", p);
}

static void build_list(const vlm_vl2_config *c, tensor_list *l)
{
    const vlm_vision_config *v = &c->vision;
    const int64_t C = v->width, P = v->patch_size, G = vlm_vision_grid(v), Hd = v->mlp_hidden;
    add(l, INIT_WEIGHT, 4, ((const int64_t[]){C, 3, P, P}), "vision.patch_embed.proj.weight");
    add(l, INIT_BIAS, 1, VEC(C), "vision.patch_embed.proj.bias");
    add(l, INIT_BIAS, 3, ((const int64_t[]){1, G * G, C}), "vision.pos_embed");
    for (int b = 0; b < v->layers; b++) {
        add(l, INIT_ONES, 1, VEC(C), "vision.blocks.%d.norm1.weight", b);
        add(l, INIT_BIAS, 1, VEC(C), "vision.blocks.%d.norm1.bias", b);
        add(l, INIT_WEIGHT, 2, MAT(3 * C, C), "vision.blocks.%d.attn.qkv.weight", b);
        add(l, INIT_BIAS, 1, VEC(3 * C), "vision.blocks.%d.attn.qkv.bias", b);
        add(l, INIT_WEIGHT, 2, MAT(C, C), "vision.blocks.%d.attn.proj.weight", b);
        add(l, INIT_BIAS, 1, VEC(C), "vision.blocks.%d.attn.proj.bias", b);
        add(l, INIT_ONES, 1, VEC(C), "vision.blocks.%d.norm2.weight", b);
        add(l, INIT_BIAS, 1, VEC(C), "vision.blocks.%d.norm2.bias", b);
        add(l, INIT_WEIGHT, 2, MAT(Hd, C), "vision.blocks.%d.mlp.fc1.weight", b);
        add(l, INIT_BIAS, 1, VEC(Hd), "vision.blocks.%d.mlp.fc1.bias", b);
        add(l, INIT_WEIGHT, 2, MAT(C, Hd), "vision.blocks.%d.mlp.fc2.weight", b);
        add(l, INIT_BIAS, 1, VEC(C), "vision.blocks.%d.mlp.fc2.bias", b);
    }
    add(l, INIT_ONES, 1, VEC(C), "vision.norm.weight");
    add(l, INIT_BIAS, 1, VEC(C), "vision.norm.bias");
    const vlm_projector_config *pc = &c->projector;
    const int64_t r = pc->downsample_ratio, hidden = (int64_t)pc->n_embed * pc->mlp_ratio;
    for (int i = 0; i < pc->depth; i++) {
        int64_t in = i == 0 ? (int64_t)pc->input_dim * r * r : hidden, out = i == pc->depth - 1 ? pc->n_embed : hidden;
        add(l, INIT_WEIGHT, 2, MAT(out, in), "projector.layers.%d.weight", 2 * i);
        add(l, INIT_BIAS, 1, VEC(out), "projector.layers.%d.bias", 2 * i);
    }
    const vlm_lm_config *lc = &c->lm;
    const int64_t H = lc->hidden_size, V = lc->vocab_size, nh = lc->num_attention_heads;
    add(l, INIT_BIAS, 1, VEC(H), "image_newline");
    add(l, INIT_BIAS, 1, VEC(H), "view_seperator");
    add(l, INIT_WEIGHT, 2, MAT(V, H), "language.model.embed_tokens.weight");
    for (int li = 0; li < lc->num_hidden_layers; li++) {
        char p[96];
        add(l, INIT_ONES, 1, VEC(H), "language.model.layers.%d.input_layernorm.weight", li);
        add(l, INIT_ONES, 1, VEC(H), "language.model.layers.%d.post_attention_layernorm.weight", li);
        snprintf(p, sizeof p, "language.model.layers.%d.self_attn", li);
        if (lc->use_mla) {
            const int64_t qk = lc->qk_nope_head_dim + lc->qk_rope_head_dim, kr = lc->kv_lora_rank;
            if (lc->q_lora_rank > 0) {
                add(l, INIT_WEIGHT, 2, MAT(lc->q_lora_rank, H), "%s.q_a_proj.weight", p);
                add(l, INIT_ONES, 1, VEC(lc->q_lora_rank), "%s.q_a_layernorm.weight", p);
                add(l, INIT_WEIGHT, 2, MAT(nh * qk, lc->q_lora_rank), "%s.q_b_proj.weight", p);
            } else {
                add(l, INIT_WEIGHT, 2, MAT(nh * qk, H), "%s.q_proj.weight", p);
            }
            add(l, INIT_WEIGHT, 2, MAT(kr + lc->qk_rope_head_dim, H), "%s.kv_a_proj_with_mqa.weight", p);
            add(l, INIT_ONES, 1, VEC(kr), "%s.kv_a_layernorm.weight", p);
            add(l, INIT_WEIGHT, 2, MAT(nh * (lc->qk_nope_head_dim + lc->v_head_dim), kr), "%s.kv_b_proj.weight", p);
            add(l, INIT_WEIGHT, 2, MAT(H, nh * lc->v_head_dim), "%s.o_proj.weight", p);
        } else {
            const int64_t hd = H / nh, kvd = (int64_t)lc->num_key_value_heads * hd;
            add(l, INIT_WEIGHT, 2, MAT(nh * hd, H), "%s.q_proj.weight", p);
            add(l, INIT_WEIGHT, 2, MAT(kvd, H), "%s.k_proj.weight", p);
            add(l, INIT_WEIGHT, 2, MAT(kvd, H), "%s.v_proj.weight", p);
            add(l, INIT_WEIGHT, 2, MAT(H, nh * hd), "%s.o_proj.weight", p);
        }
        snprintf(p, sizeof p, "language.model.layers.%d.mlp", li);
        if (!vlm_lm_layer_is_moe(lc, li)) {
            add_mlp(l, p, H, lc->intermediate_size);
            continue;
        }
        add(l, INIT_WEIGHT, 2, MAT(lc->n_routed_experts, H), "%s.gate.weight", p);
        if (lc->topk_method == VLM_TOPK_NOAUX_TC)
            add(l, INIT_BIAS, 1, VEC(lc->n_routed_experts), "%s.gate.e_score_correction_bias", p);
        for (int e = 0; e < lc->n_routed_experts; e++) {
            char q[128];
            snprintf(q, sizeof q, "%s.experts.%d", p, e);
            add_mlp(l, q, H, lc->moe_intermediate_size);
        }
        if (lc->n_shared_experts > 0) {
            char q[128];
            snprintf(q, sizeof q, "%s.shared_experts", p);
            add_mlp(l, q, H, (int64_t)lc->moe_intermediate_size * lc->n_shared_experts);
        }
    }
    add(l, INIT_ONES, 1, VEC(H), "language.model.norm.weight");
    add(l, INIT_WEIGHT, 2, MAT(V, H), "language.lm_head.weight");
}

static int64_t numel(const tensor_def *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* ---- random BF16 data ------------------------------------------------------------
 * Uniform values with the standard deviation 1/sqrt(fan_in) (weights) or 0.01 (biases);
 * norm weights are 1. Each chunk of 2^20 values has its own generator state derived from
 * (seed, tensor name, chunk index), so the bytes do not depend on threads or sharding. */

#define CHUNK ((int64_t)1 << 20)

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(const char *s, uint64_t seed)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

typedef struct {
    const tensor_def *t;
    uint64_t key;
    int64_t first, n; /* element range of this buffer */
    uint16_t *out;
} fill_job;

static void fill_task(void *ctx, int64_t b, int64_t e)
{
    const fill_job *j = ctx;
    const tensor_def *t = j->t;
    float amp = 0;
    if (t->init == INIT_WEIGHT) {
        int64_t fan_in = 1;
        for (int i = 1; i < t->ndim; i++) fan_in *= t->shape[i];
        amp = (float)(sqrt(3.0) / sqrt((double)(fan_in > 0 ? fan_in : 1)));
    } else if (t->init == INIT_BIAS) {
        amp = (float)(sqrt(3.0) * 0.01);
    }
    for (int64_t c = b; c < e; c++) {
        int64_t i0 = c * CHUNK, i1 = i0 + CHUNK < j->n ? i0 + CHUNK : j->n;
        uint64_t s = j->key ^ (uint64_t)((j->first + i0) / CHUNK) * 0xd1342543de82ef95ull;
        for (int64_t i = i0; i < i1; i++) {
            float v = 1.0f;
            if (t->init != INIT_ONES) {
                uint64_t r = splitmix(&s);
                v = amp * ((float)(r >> 40) * (2.0f / 16777216.0f) - 1.0f);
            }
            j->out[i] = vlm_f32_to_bf16(v);
        }
    }
}

static int write_tensor(FILE *f, const tensor_def *t, uint64_t seed, uint16_t *buf, int64_t buf_elems, const char *path)
{
    const int64_t n = numel(t);
    const uint64_t key = hash_name(t->name, seed);
    for (int64_t first = 0; first < n; first += buf_elems) {
        int64_t cnt = n - first < buf_elems ? n - first : buf_elems;
        fill_job j = {t, key, first, cnt, buf};
        vlm_pool_for(vlm_pool_default(), (cnt + CHUNK - 1) / CHUNK, 1, fill_task, &j);
        if (fwrite(buf, 2, (size_t)cnt, f) != (size_t)cnt)
            return vlm_errorf(VLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return VLM_OK;
}

/* ---- files ------------------------------------------------------------------------ */

static int write_text(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return vlm_errorf(VLM_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok &= fclose(f) == 0;
    return ok ? VLM_OK : vlm_errorf(VLM_ERR_IO, "writing '%s' failed", path);
}

static int write_json(const char *dir, const char *name, cJSON *root)
{
    char *s = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!s) return vlm_errorf(VLM_ERR_NOMEM, "out of memory writing %s", name);
    int rc = write_text(dir, name, s);
    free(s);
    return rc;
}

static int write_processor_config(const char *dir, const vlm_vl2_config *c)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "add_special_token", 0);
    cJSON_AddItemToObject(r, "candidate_resolutions", candidates_json());
    cJSON_AddNumberToObject(r, "downsample_ratio", c->projector.downsample_ratio);
    cJSON_AddNumberToObject(r, "ignore_id", -100);
    const float half[3] = {0.5f, 0.5f, 0.5f};
    cJSON_AddItemToObject(r, "image_mean", cJSON_CreateFloatArray(half, 3));
    cJSON_AddItemToObject(r, "image_std", cJSON_CreateFloatArray(half, 3));
    cJSON_AddStringToObject(r, "image_token", "<image>");
    cJSON_AddBoolToObject(r, "mask_prompt", 0);
    cJSON_AddBoolToObject(r, "normalize", 1);
    cJSON_AddStringToObject(r, "pad_token", "<\xef\xbd\x9c\xe2\x96\x81pad\xe2\x96\x81\xef\xbd\x9c>");
    cJSON_AddNumberToObject(r, "patch_size", c->vision.patch_size);
    cJSON_AddStringToObject(r, "processor_class", "DeepseekVLV2Processor");
    cJSON_AddStringToObject(r, "sft_format", "deepseek");
    return write_json(dir, "processor_config.json", r);
}

#define BOS_TEXT "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define EOS_TEXT "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define PAD_TEXT "<\xef\xbd\x9c\xe2\x96\x81pad\xe2\x96\x81\xef\xbd\x9c>"

/* GPT-2 byte-level alphabet: printable bytes map to themselves, the rest to U+0100.. */
static void byte_char(int b, char *out)
{
    static int map[256], init;
    if (!init) {
        int n = 0;
        for (int i = 0; i < 256; i++) {
            int printable = (i >= 0x21 && i <= 0x7e) || (i >= 0xa1 && i <= 0xac) || (i >= 0xae);
            map[i] = printable ? i : 256 + n++;
        }
        init = 1;
    }
    int cp = map[b];
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

/* The special tokens at the real model's ids (spec §3): Tiny/Base layout when the vocabulary
 * holds it, Small's when bos is 100000, else packed at 0..10 for small test vocabularies.
 * Byte tokens take ids 16..271 (ids 3..15 stay free in the Tiny layout). */
static int write_tokenizer(const char *dir, const vlm_lm_config *lc)
{
    static const char *const names[] = {BOS_TEXT, EOS_TEXT, PAD_TEXT, "<image>", "<|ref|>", "<|/ref|>",
                                        "<|det|>", "<|/det|>", "<|grounding|>", "<|User|>", "<|Assistant|>"};
    int ids[11];
    if (lc->bos_token_id == 100000 && lc->vocab_size > 100010) {
        for (int i = 0; i < 11; i++) ids[i] = 100000 + i;
    } else if (lc->vocab_size > 128822) {
        ids[0] = 0, ids[1] = 1, ids[2] = 2;
        for (int i = 3; i < 11; i++) ids[i] = 128815 + (i - 3);
    } else if (lc->vocab_size >= 272) {
        for (int i = 0; i < 11; i++) ids[i] = i;
    } else {
        return vlm_errorf(VLM_ERR_INVALID, "mkmodel: a vocabulary of %d is too small for the byte-level stand-in tokenizer "
                                           "(needs 272)", lc->vocab_size);
    }
    cJSON *root = cJSON_CreateObject(), *added = cJSON_CreateArray(), *model = cJSON_CreateObject();
    cJSON *vocab = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddItemToObject(root, "added_tokens", added);
    for (int i = 0; i < 11; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", ids[i]);
        cJSON_AddStringToObject(t, "content", names[i]);
        cJSON_AddBoolToObject(t, "single_word", 0);
        cJSON_AddBoolToObject(t, "lstrip", 0);
        cJSON_AddBoolToObject(t, "rstrip", 0);
        cJSON_AddBoolToObject(t, "normalized", 0);
        cJSON_AddBoolToObject(t, "special", 1);
        cJSON_AddItemToArray(added, t);
        cJSON_AddNumberToObject(vocab, names[i], ids[i]);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    cJSON_AddBoolToObject(pre, "trim_offsets", 1);
    cJSON_AddBoolToObject(pre, "use_regex", 0);
    cJSON_AddNullToObject(root, "post_processor");
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", 1);
    cJSON_AddBoolToObject(dec, "trim_offsets", 1);
    cJSON_AddBoolToObject(dec, "use_regex", 1);
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    unsigned char *used = calloc((size_t)lc->vocab_size, 1);
    if (!used) {
        cJSON_Delete(root);
        cJSON_Delete(vocab);
        return vlm_errorf(VLM_ERR_NOMEM, "mkmodel: out of memory");
    }
    for (int i = 0; i < 11; i++) used[ids[i]] = 1;
    for (int b = 0; b < 256; b++) {
        char s[4];
        byte_char(b, s);
        cJSON_AddNumberToObject(vocab, s, 16 + b);
        used[16 + b] = 1;
    }
    /* Every other id is a placeholder word " w<id>" (no merge makes one, so encoding is unchanged): the
     * random weights' answers then decode to visible text, a piece per token, as a real vocabulary's
     * would (the server streams and the captioner writes text, not ids). */
    for (int id = 0; id < lc->vocab_size; id++) {
        if (used[id]) continue;
        char w[24];
        snprintf(w, sizeof w, "\xc4\xa0w%d", id); /* U+0120: the byte-level form of a space */
        cJSON_AddNumberToObject(vocab, w, id);
    }
    free(used);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", cJSON_CreateArray());
    int rc = write_json(dir, "tokenizer.json", root);
    if (rc) return rc;
    cJSON *tc = cJSON_CreateObject();
    cJSON_AddStringToObject(tc, "tokenizer_class", "LlamaTokenizerFast");
    cJSON_AddBoolToObject(tc, "add_bos_token", 0);
    cJSON_AddBoolToObject(tc, "add_eos_token", 0);
    cJSON_AddStringToObject(tc, "bos_token", BOS_TEXT);
    cJSON_AddStringToObject(tc, "eos_token", EOS_TEXT);
    cJSON_AddStringToObject(tc, "pad_token", PAD_TEXT);
    cJSON_AddNumberToObject(tc, "model_max_length", 4096);
    return write_json(dir, "tokenizer_config.json", tc);
}

static int write_shard(const char *path, const tensor_list *l, size_t b, size_t e, uint64_t seed, uint16_t *buf,
                       int64_t buf_elems)
{
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (size_t i = b; i < e; i++) {
        const tensor_def *t = &l->t[i];
        cJSON *o = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(o, "dtype", "BF16");
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        uint64_t n = (uint64_t)numel(t) * 2;
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + n)));
        off += n;
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!js) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    size_t hl = strlen(js), padded = (hl + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(js);
        return vlm_errorf(VLM_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int rc = VLM_OK;
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(js, 1, hl, f) != hl) rc = vlm_errorf(VLM_ERR_IO, "%s: write failed", path);
    for (size_t i = hl; rc == VLM_OK && i < padded; i++)
        if (fputc(' ', f) == EOF) rc = vlm_errorf(VLM_ERR_IO, "%s: write failed", path);
    free(js);
    for (size_t i = b; rc == VLM_OK && i < e; i++) rc = write_tensor(f, &l->t[i], seed, buf, buf_elems, path);
    if (fclose(f) != 0 && rc == VLM_OK) rc = vlm_errorf(VLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return rc;
}

int vlm_mkmodel(const char *shape, const char *out_dir, const vlm_mkmodel_options *opt)
{
    const vlm_mkmodel_options defaults = {0};
    if (!opt) opt = &defaults;
    char *cfg_text = NULL;
    int rc;
    if (vlm_file_exists(shape)) {
        size_t len;
        if ((rc = vlm_read_file(shape, 16 << 20, &cfg_text, &len))) return rc;
    } else if ((rc = vlm_mkmodel_shape_config(shape, &cfg_text))) {
        return rc;
    }
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        free(cfg_text);
        return vlm_errorf(VLM_ERR_IO, "cannot create '%s': %s", out_dir, strerror(errno));
    }
    rc = write_text(out_dir, "config.json", cfg_text);
    free(cfg_text);
    if (rc) return rc;
    vlm_vl2_config cfg;
    if ((rc = vlm_vl2_config_load(out_dir, &cfg))) return vlm_error_prefix(rc, "mkmodel");
    if ((rc = write_processor_config(out_dir, &cfg)) || (rc = write_tokenizer(out_dir, &cfg.lm))) return rc;

    tensor_list l = {0};
    build_list(&cfg, &l);
    if (l.failed) {
        free(l.t);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    const uint64_t limit = (uint64_t)((opt->shard_gb > 0 ? opt->shard_gb : 4.0) * 1073741824.0);
    /* shard boundaries: close a shard once it reaches the limit */
    size_t *bounds = malloc((l.n + 1) * sizeof *bounds), n_shards = 0;
    const int64_t buf_elems = 16 * CHUNK;
    uint16_t *buf = malloc((size_t)buf_elems * 2);
    if (!bounds || !buf) {
        free(bounds);
        free(buf);
        free(l.t);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    bounds[0] = 0;
    uint64_t size = 0, total = 0;
    for (size_t i = 0; i < l.n; i++) {
        size += (uint64_t)numel(&l.t[i]) * 2;
        total += (uint64_t)numel(&l.t[i]) * 2;
        if (size >= limit || i + 1 == l.n) {
            bounds[++n_shards] = i + 1;
            size = 0;
        }
    }
    cJSON *index = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(index, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON *map = cJSON_AddObjectToObject(index, "weight_map");
    for (size_t s = 0; s < n_shards && rc == VLM_OK; s++) {
        char fname[64], path[4096];
        snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", s + 1, n_shards);
        snprintf(path, sizeof path, "%s/%s", out_dir, fname);
        rc = write_shard(path, &l, bounds[s], bounds[s + 1], opt->seed, buf, buf_elems);
        for (size_t i = bounds[s]; i < bounds[s + 1]; i++) cJSON_AddStringToObject(map, l.t[i].name, fname);
        if (rc == VLM_OK && !opt->quiet) fprintf(stderr, "mkmodel: wrote %s\n", path);
    }
    if (rc == VLM_OK) rc = write_json(out_dir, "model.safetensors.index.json", index);
    else cJSON_Delete(index);
    free(bounds);
    free(buf);
    free(l.t);
    return rc;
}
