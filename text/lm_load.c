/* Loading the decoder: config sanity checks, then every tensor the config
 * implies, checked for presence / dtype / shape. Matrices stay in the
 * checkpoint mapping; norm vectors are widened to fp32 copies. */
#include "text/lm_internal.h"

#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const vlm_checkpoint *ck;
    const char *prefix;
    char name[512];
    const vlm_quant_spec *conv; /* format for the next get_w (NULL: as stored) */
    vlm_lm_quant q;
} loader;

static const char *tname(loader *ld, const char *fmt, va_list ap)
{
    size_t n = (size_t)snprintf(ld->name, sizeof ld->name, "%s", ld->prefix);
    if (n < sizeof ld->name) vsnprintf(ld->name + n, sizeof ld->name - n, fmt, ap);
    return ld->name;
}

__attribute__((format(printf, 5, 6))) static int
get_w(loader *ld, vlm_weight *w, int64_t rows, int64_t cols, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *n = tname(ld, fmt, ap);
    va_end(ap);
    return vlm_checkpoint_weight_as(ld->ck, n, 2, NULL, rows, cols, ld->conv, w);
}

__attribute__((format(printf, 4, 5))) static int get_v(loader *ld, float **v, int64_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *n = tname(ld, fmt, ap);
    va_end(ap);
    return vlm_checkpoint_vector(ld->ck, n, len, v);
}

/* A tensor the config does not imply but the checkpoint may carry (attention biases). */
__attribute__((format(printf, 4, 5))) static int opt_v(loader *ld, float **v, int64_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *n = tname(ld, fmt, ap);
    va_end(ap);
    *v = NULL;
    if (!vlm_checkpoint_find(ld->ck, n)) return VLM_OK;
    return vlm_checkpoint_vector(ld->ck, n, len, v);
}

static int check_config(const vlm_lm_config *c)
{
#define REQ(cond, ...)                                                                                                 \
    do {                                                                                                               \
        if (!(cond)) return vlm_errorf(VLM_ERR_INVALID, "language config: " __VA_ARGS__);                             \
    } while (0)
    REQ(c->vocab_size > 0 && c->hidden_size > 0 && c->num_hidden_layers > 0 && c->num_attention_heads > 0,
        "vocab_size, hidden_size, num_hidden_layers and num_attention_heads must be positive");
    if (c->use_mla) {
        REQ(c->kv_lora_rank > 0, "use_mla needs kv_lora_rank > 0 (have %d)", c->kv_lora_rank);
        REQ(c->qk_rope_head_dim > 0 && c->qk_rope_head_dim % 2 == 0 && c->qk_rope_head_dim <= 512,
            "qk_rope_head_dim %d must be even and in 2..512", c->qk_rope_head_dim);
        REQ(c->qk_nope_head_dim >= 0 && c->v_head_dim > 0, "qk_nope_head_dim %d / v_head_dim %d invalid",
            c->qk_nope_head_dim, c->v_head_dim);
        REQ(c->q_lora_rank >= 0, "q_lora_rank %d is negative", c->q_lora_rank);
    } else {
        REQ(c->hidden_size % c->num_attention_heads == 0, "hidden_size %d not divisible by %d heads", c->hidden_size,
            c->num_attention_heads);
        int hd = c->hidden_size / c->num_attention_heads;
        REQ(hd % 2 == 0, "head_dim %d must be even for RoPE", hd);
        REQ(c->num_key_value_heads > 0 && c->num_attention_heads % c->num_key_value_heads == 0,
            "num_attention_heads %d not a multiple of num_key_value_heads %d", c->num_attention_heads,
            c->num_key_value_heads);
    }
    int any_dense = 0;
    if (c->n_routed_experts > 0) {
        REQ(c->moe_layer_freq > 0, "moe_layer_freq %d must be positive", c->moe_layer_freq);
        REQ(c->moe_intermediate_size > 0, "moe_intermediate_size %d must be positive", c->moe_intermediate_size);
        REQ(c->n_shared_experts >= 0, "n_shared_experts %d is negative", c->n_shared_experts);
        vlm_moe_router r;
        vlm_moe_router_from_config(c, &r);
        static const float dummy_bias[1] = {0};
        r.bias = dummy_bias; /* presence of the tensor is checked at load */
        int rc = vlm_moe_router_check(&r);
        if (rc != VLM_OK) return vlm_error_prefix(rc, "language config");
    }
    for (int l = 0; l < c->num_hidden_layers; l++) any_dense |= !vlm_lm_layer_is_moe(c, l);
    if (any_dense) REQ(c->intermediate_size > 0, "intermediate_size %d must be positive", c->intermediate_size);
    REQ(c->rms_norm_eps >= 0 && c->rope_theta > 0, "rms_norm_eps / rope_theta invalid");
#undef REQ
    return VLM_OK;
}

static int load_mlp(loader *ld, vlm_mlp_w *m, int64_t H, int64_t I, const char *what, int l)
{
    ld->conv = &ld->q.experts;
    int rc = get_w(ld, &m->gate, I, H, "model.layers.%d.%s.gate_proj.weight", l, what);
    if (rc == VLM_OK) rc = get_w(ld, &m->up, I, H, "model.layers.%d.%s.up_proj.weight", l, what);
    if (rc == VLM_OK) rc = get_w(ld, &m->down, H, I, "model.layers.%d.%s.down_proj.weight", l, what);
    ld->conv = NULL;
    return rc;
}

static void release_mlp(vlm_mlp_w *m)
{
    vlm_weight_release(&m->gate);
    vlm_weight_release(&m->up);
    vlm_weight_release(&m->down);
}

/* W_UK of every head transposed ([nh][kv_lora][nope]) so that q_nope -> latent is a plain linear. */
static int build_uk_t(const vlm_lm_config *c, vlm_attn_w *a)
{
    const int nh = c->num_attention_heads, nope = c->qk_nope_head_dim, vd = c->v_head_dim, r = c->kv_lora_rank;
    if (nope == 0) return VLM_OK;
    size_t es = vlm_dtype_size(a->kv_b.dtype);
    a->uk_t = malloc((size_t)nh * (size_t)r * (size_t)nope * es);
    if (!a->uk_t) return vlm_errorf(VLM_ERR_NOMEM, "out of memory building the absorbed MLA weights");
    const char *src = a->kv_b.data;
    char *dst = a->uk_t;
    for (int h = 0; h < nh; h++)
        for (int ci = 0; ci < r; ci++)
            for (int d = 0; d < nope; d++)
                memcpy(dst + (((size_t)h * r + ci) * nope + d) * es,
                       src + (((size_t)h * (nope + vd) + d) * (size_t)r + ci) * es, es);
    return VLM_OK;
}

static int load_attn_w(loader *ld, const vlm_lm_config *c, vlm_attn_w *a, int l);

static int load_attn(loader *ld, const vlm_lm_config *c, vlm_attn_w *a, int l)
{
    int rc = load_attn_w(ld, c, a, l);
    ld->conv = NULL;
    return rc;
}

/* Converted: every projection but kv_b (read per head through uk_t and row views). */
static int load_attn_w(loader *ld, const vlm_lm_config *c, vlm_attn_w *a, int l)
{
    const int64_t H = c->hidden_size, nh = c->num_attention_heads;
    int rc;
    ld->conv = &ld->q.attention;
    if (!c->use_mla) {
        const int64_t hd = H / nh, kvd = (int64_t)c->num_key_value_heads * hd;
        rc = get_w(ld, &a->q, nh * hd, H, "model.layers.%d.self_attn.q_proj.weight", l);
        if (rc == VLM_OK) rc = get_w(ld, &a->k, kvd, H, "model.layers.%d.self_attn.k_proj.weight", l);
        if (rc == VLM_OK) rc = get_w(ld, &a->v, kvd, H, "model.layers.%d.self_attn.v_proj.weight", l);
        if (rc == VLM_OK) rc = get_w(ld, &a->o, H, nh * hd, "model.layers.%d.self_attn.o_proj.weight", l);
        if (rc == VLM_OK) rc = opt_v(ld, &a->bq, nh * hd, "model.layers.%d.self_attn.q_proj.bias", l);
        if (rc == VLM_OK) rc = opt_v(ld, &a->bk, kvd, "model.layers.%d.self_attn.k_proj.bias", l);
        if (rc == VLM_OK) rc = opt_v(ld, &a->bv, kvd, "model.layers.%d.self_attn.v_proj.bias", l);
        if (rc == VLM_OK) rc = opt_v(ld, &a->bo, H, "model.layers.%d.self_attn.o_proj.bias", l);
        return rc;
    }
    const int64_t qhd = c->qk_nope_head_dim + c->qk_rope_head_dim, r = c->kv_lora_rank, rope = c->qk_rope_head_dim;
    if (c->q_lora_rank > 0) {
        rc = get_w(ld, &a->q_a, c->q_lora_rank, H, "model.layers.%d.self_attn.q_a_proj.weight", l);
        if (rc == VLM_OK) rc = get_v(ld, &a->q_a_norm, c->q_lora_rank, "model.layers.%d.self_attn.q_a_layernorm.weight", l);
        if (rc == VLM_OK) rc = get_w(ld, &a->q_b, nh * qhd, c->q_lora_rank, "model.layers.%d.self_attn.q_b_proj.weight", l);
        if (rc == VLM_OK) rc = opt_v(ld, &a->bq_a, c->q_lora_rank, "model.layers.%d.self_attn.q_a_proj.bias", l);
    } else {
        rc = get_w(ld, &a->q_proj, nh * qhd, H, "model.layers.%d.self_attn.q_proj.weight", l);
    }
    if (rc == VLM_OK) rc = get_w(ld, &a->kv_a, r + rope, H, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l);
    if (rc == VLM_OK) rc = opt_v(ld, &a->bkv_a, r + rope, "model.layers.%d.self_attn.kv_a_proj_with_mqa.bias", l);
    if (rc == VLM_OK) rc = get_v(ld, &a->kv_a_norm, r, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
    ld->conv = NULL;
    if (rc == VLM_OK)
        rc = get_w(ld, &a->kv_b, nh * (c->qk_nope_head_dim + c->v_head_dim), r,
                   "model.layers.%d.self_attn.kv_b_proj.weight", l);
    ld->conv = &ld->q.attention;
    if (rc == VLM_OK) rc = get_w(ld, &a->o, H, nh * c->v_head_dim, "model.layers.%d.self_attn.o_proj.weight", l);
    if (rc == VLM_OK) rc = opt_v(ld, &a->bo, H, "model.layers.%d.self_attn.o_proj.bias", l);
    if (rc == VLM_OK) rc = build_uk_t(c, a);
    return rc;
}

static int load_layer(loader *ld, const vlm_lm_config *c, vlm_lm_layer *L, int l)
{
    const int64_t H = c->hidden_size;
    int rc = get_v(ld, &L->in_norm, H, "model.layers.%d.input_layernorm.weight", l);
    if (rc == VLM_OK) rc = get_v(ld, &L->post_norm, H, "model.layers.%d.post_attention_layernorm.weight", l);
    if (rc == VLM_OK) rc = load_attn(ld, c, &L->attn, l);
    if (rc != VLM_OK) return rc;
    if (!L->is_moe) return load_mlp(ld, &L->mlp, H, c->intermediate_size, "mlp", l);

    const int E = c->n_routed_experts;
    rc = get_w(ld, &L->gate, E, H, "model.layers.%d.mlp.gate.weight", l);
    if (rc == VLM_OK && c->topk_method == VLM_TOPK_NOAUX_TC)
        rc = get_v(ld, &L->gate_bias, E, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    if (rc != VLM_OK) return rc;
    L->experts = calloc((size_t)E, sizeof *L->experts);
    if (!L->experts) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    char what[64];
    for (int e = 0; e < E && rc == VLM_OK; e++) {
        snprintf(what, sizeof what, "mlp.experts.%d", e);
        rc = load_mlp(ld, &L->experts[e], H, c->moe_intermediate_size, what, l);
    }
    L->has_shared = c->n_shared_experts > 0;
    if (rc == VLM_OK && L->has_shared)
        rc = load_mlp(ld, &L->shared, H, (int64_t)c->moe_intermediate_size * c->n_shared_experts, "mlp.shared_experts", l);
    return rc;
}

int vlm_lm_load(const vlm_checkpoint *ck, const char *prefix, const vlm_lm_config *cfg, vlm_lm **out)
{
    return vlm_lm_load_q(ck, prefix, cfg, NULL, out);
}

int vlm_lm_load_q(const vlm_checkpoint *ck, const char *prefix, const vlm_lm_config *cfg, const vlm_lm_quant *q,
                  vlm_lm **out)
{
    *out = NULL;
    if (!ck || !cfg) return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_load: no checkpoint or config");
    int rc = check_config(cfg);
    if (rc != VLM_OK) return rc;
    vlm_lm *lm = calloc(1, sizeof *lm);
    if (!lm) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    lm->cfg = *cfg;
    lm->mla_absorbed = 1;
    lm->be = vlm_backend_cpu();
    lm->head_dim = cfg->use_mla ? 0 : cfg->hidden_size / cfg->num_attention_heads;
    lm->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *lm->layers);
    if (!lm->layers) {
        free(lm);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    loader ld = {.ck = ck, .prefix = prefix ? prefix : ""};
    if (q) ld.q = *q;
    const int64_t H = cfg->hidden_size, V = cfg->vocab_size;
    rc = get_w(&ld, &lm->embed, V, H, "model.embed_tokens.weight");
    ld.conv = &ld.q.lm_head;
    if (rc == VLM_OK) rc = get_w(&ld, &lm->lm_head, V, H, "lm_head.weight");
    ld.conv = NULL;
    if (rc == VLM_OK) rc = get_v(&ld, &lm->final_norm, H, "model.norm.weight");
    for (int l = 0; l < cfg->num_hidden_layers && rc == VLM_OK; l++) {
        vlm_lm_layer *L = &lm->layers[l];
        L->is_moe = vlm_lm_layer_is_moe(cfg, l);
        L->moe_index = L->is_moe ? lm->n_moe++ : -1;
        rc = load_layer(&ld, cfg, L, l);
    }
    if (rc != VLM_OK) {
        vlm_lm_free(lm);
        return rc;
    }
    *out = lm;
    return VLM_OK;
}

void vlm_lm_free(vlm_lm *lm)
{
    if (!lm) return;
    for (int l = 0; lm->layers && l < lm->cfg.num_hidden_layers; l++) {
        vlm_lm_layer *L = &lm->layers[l];
        vlm_attn_w *a = &L->attn;
        free(L->in_norm);
        free(L->post_norm);
        free(a->bq);
        free(a->bk);
        free(a->bv);
        free(a->bo);
        free(a->q_a_norm);
        free(a->kv_a_norm);
        free(a->uk_t);
        free(a->bq_a);
        free(a->bkv_a);
        free(L->gate_bias);
        vlm_weight_release(&a->q);
        vlm_weight_release(&a->k);
        vlm_weight_release(&a->v);
        vlm_weight_release(&a->o);
        vlm_weight_release(&a->q_proj);
        vlm_weight_release(&a->q_a);
        vlm_weight_release(&a->q_b);
        vlm_weight_release(&a->kv_a);
        release_mlp(&L->mlp);
        release_mlp(&L->shared);
        for (int e = 0; L->experts && e < lm->cfg.n_routed_experts; e++) release_mlp(&L->experts[e]);
        free(L->experts);
    }
    free(lm->layers);
    vlm_weight_release(&lm->lm_head);
    free(lm->final_norm);
    free(lm);
}

const vlm_lm_config *vlm_lm_get_config(const vlm_lm *lm) { return &lm->cfg; }
int vlm_lm_n_moe_layers(const vlm_lm *lm) { return lm->n_moe; }
void vlm_lm_set_mla_absorbed(vlm_lm *lm, int absorbed) { lm->mla_absorbed = absorbed != 0; }

/* A weight a device backend runs: as stored (F32 / BF16 / F16) or converted to bf16; absent is fine. */
static int device_format(const vlm_weight *w)
{
    return !w->data || ((w->quant == VLM_WQ_NONE || w->quant == VLM_WQ_BF16) &&
                        (w->dtype == VLM_DT_F32 || w->dtype == VLM_DT_BF16 || w->dtype == VLM_DT_F16));
}

static const vlm_weight *mlp_not_device(const vlm_mlp_w *m)
{
    if (!device_format(&m->gate)) return &m->gate;
    if (!device_format(&m->up)) return &m->up;
    return device_format(&m->down) ? NULL : &m->down;
}

/* The first weight a device backend cannot run and its group (*group), or NULL. The embedding
 * table is not checked: token embeddings are looked up on the host (vlm_lm_embed). */
static const vlm_weight *first_not_device(const vlm_lm *lm, const char **group)
{
    const vlm_weight *w = NULL;
    *group = "lm_head";
    if (!device_format(&lm->lm_head)) return &lm->lm_head;
    for (int l = 0; l < lm->cfg.num_hidden_layers; l++) {
        const vlm_lm_layer *L = &lm->layers[l];
        const vlm_attn_w *a = &L->attn;
        const vlm_weight *att[] = {&a->q, &a->k, &a->v, &a->o, &a->q_proj, &a->q_a, &a->q_b, &a->kv_a, &a->kv_b};
        *group = "attention";
        for (size_t i = 0; i < sizeof att / sizeof att[0]; i++)
            if (!device_format(att[i])) return att[i];
        *group = "router gate";
        if (!device_format(&L->gate)) return &L->gate;
        *group = "experts";
        if ((w = mlp_not_device(&L->mlp)) || (w = mlp_not_device(&L->shared))) return w;
        for (int e = 0; L->experts && e < lm->cfg.n_routed_experts; e++)
            if ((w = mlp_not_device(&L->experts[e]))) return w;
    }
    return NULL;
}

int vlm_lm_set_backend(vlm_lm *lm, const vlm_backend *be)
{
    if (!lm) return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_set_backend: no model");
    if (!be) be = vlm_backend_cpu();
    const char *group = NULL;
    const vlm_weight *w = be->host_memory ? NULL : first_not_device(lm, &group);
    if (w) {
        const char *fmt = w->quant != VLM_WQ_NONE ? vlm_wquant_name(w->quant) : vlm_dtype_name(w->dtype);
        return vlm_errorf(VLM_ERR_UNSUPPORTED,
                          "the %s backend cannot run the decoder's %s weights in %s format (load the model with "
                          "--quant bf16 or --quant none to run it there)",
                          be->name, group, fmt);
    }
    lm->be = be;
    return VLM_OK;
}

int vlm_lm_embed(const vlm_lm *lm, const int32_t *ids, int64_t n, float *out)
{
    if (n < 0 || (n > 0 && (!ids || !out))) return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_embed: bad arguments");
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= lm->cfg.vocab_size)
            return vlm_errorf(VLM_ERR_INVALID, "token id %d at position %lld is outside the vocabulary (0..%d)",
                              (int)ids[i], (long long)i, lm->cfg.vocab_size - 1);
    for (int64_t i = 0; i < n; i++) vlm_op_weight_row(&lm->embed, ids[i], out + i * lm->cfg.hidden_size);
    return VLM_OK;
}
