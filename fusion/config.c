#include "fusion/config.h"
#include "core/error.h"
#include "core/file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Numbers: absent or null -> default; a non-number is an error. */
static int get_num(const cJSON *obj, const char *key, double def, double *out, const char *where)
{
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!v || cJSON_IsNull(v)) { *out = def; return VLM_OK; }
    if (cJSON_IsBool(v)) { *out = cJSON_IsTrue(v) ? 1 : 0; return VLM_OK; }
    if (!cJSON_IsNumber(v)) return vlm_errorf(VLM_ERR_FORMAT, "config.json: %s.%s is not a number", where, key);
    *out = v->valuedouble;
    return VLM_OK;
}

static int get_int(const cJSON *obj, const char *key, int def, int *out, const char *where)
{
    double d;
    int rc = get_num(obj, key, def, &d, where);
    if (rc) return rc;
    if (d != floor(d) || d < -1e9 || d > 1e9)
        return vlm_errorf(VLM_ERR_FORMAT, "config.json: %s.%s = %g is not an integer", where, key, d);
    *out = (int)d;
    return VLM_OK;
}

static int get_float(const cJSON *obj, const char *key, double def, float *out, const char *where)
{
    double d;
    int rc = get_num(obj, key, def, &d, where);
    *out = (float)d;
    return rc;
}

static const char *get_str(const cJSON *obj, const char *key, const char *def)
{
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : def;
}

static int parse_vision(const cJSON *v, vlm_vision_config *c)
{
    const char *w = "vision_config";
    double ratio;
    int rc;
    /* defaults: VisionEncoderConfig */
    if ((rc = get_int(v, "image_size", 384, &c->image_size, w)) || (rc = get_int(v, "patch_size", 16, &c->patch_size, w)) ||
        (rc = get_int(v, "width", 1024, &c->width, w)) || (rc = get_int(v, "layers", 24, &c->layers, w)) ||
        (rc = get_int(v, "heads", 16, &c->heads, w)) || (rc = get_num(v, "mlp_ratio", 4, &ratio, w)))
        return rc;
    c->mlp_hidden = (int)(c->width * ratio); /* timm: int(embed_dim * mlp_ratio) */
    c->ln_eps = 1e-6f;
    const cJSON *ct = v ? cJSON_GetObjectItemCaseSensitive(v, "class_token") : NULL;
    if (cJSON_IsTrue(ct)) return vlm_errorf(VLM_ERR_UNSUPPORTED, "config.json: vision class_token=true is not supported");
    if (c->image_size <= 0 || c->patch_size <= 0 || c->image_size < c->patch_size || c->width <= 0 || c->heads <= 0 ||
        c->width % c->heads || c->layers <= 0 || c->mlp_hidden <= 0)
        return vlm_errorf(VLM_ERR_FORMAT, "config.json: vision_config is inconsistent (width %d, heads %d, layers %d)",
                          c->width, c->heads, c->layers);
    return VLM_OK;
}

static int parse_projector(const cJSON *p, vlm_projector_config *c)
{
    const char *w = "projector_config";
    const char *type = get_str(p, "projector_type", "linear");
    if (strcmp(type, "downsample_mlp_gelu") != 0)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "config.json: projector_type '%s' is not supported (only downsample_mlp_gelu)", type);
    if (cJSON_IsTrue(p ? cJSON_GetObjectItemCaseSensitive(p, "token_pooling") : NULL))
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "config.json: projector token_pooling is not supported");
    int rc;
    if ((rc = get_int(p, "input_dim", 1152, &c->input_dim, w)) || (rc = get_int(p, "n_embed", 2048, &c->n_embed, w)) ||
        (rc = get_int(p, "depth", 2, &c->depth, w)) || (rc = get_int(p, "mlp_ratio", 1, &c->mlp_ratio, w)) ||
        (rc = get_int(p, "downsample_ratio", 2, &c->downsample_ratio, w)))
        return rc;
    if (c->depth < 1 || c->mlp_ratio < 1 || c->downsample_ratio < 1 || c->n_embed < 1 || c->input_dim < 1)
        return vlm_errorf(VLM_ERR_FORMAT, "config.json: projector_config is inconsistent");
    return VLM_OK;
}

static int parse_language(const cJSON *l, vlm_lm_config *c)
{
    const char *w = "language_config";
    int rc;
    /* defaults: DeepseekV2Config in the official configuration_deepseek.py */
    if ((rc = get_int(l, "vocab_size", 102400, &c->vocab_size, w)) ||
        (rc = get_int(l, "hidden_size", 4096, &c->hidden_size, w)) ||
        (rc = get_int(l, "intermediate_size", 11008, &c->intermediate_size, w)) ||
        (rc = get_int(l, "moe_intermediate_size", 1407, &c->moe_intermediate_size, w)) ||
        (rc = get_int(l, "num_hidden_layers", 30, &c->num_hidden_layers, w)) ||
        (rc = get_int(l, "num_attention_heads", 32, &c->num_attention_heads, w)) ||
        (rc = get_int(l, "num_key_value_heads", c->num_attention_heads, &c->num_key_value_heads, w)) ||
        (rc = get_int(l, "n_shared_experts", 0, &c->n_shared_experts, w)) ||
        (rc = get_int(l, "n_routed_experts", 0, &c->n_routed_experts, w)) ||
        (rc = get_int(l, "num_experts_per_tok", 0, &c->num_experts_per_tok, w)) ||
        (rc = get_int(l, "first_k_dense_replace", 0, &c->first_k_dense_replace, w)) ||
        (rc = get_int(l, "moe_layer_freq", 1, &c->moe_layer_freq, w)) ||
        (rc = get_int(l, "n_group", 1, &c->n_group, w)) || (rc = get_int(l, "topk_group", 1, &c->topk_group, w)) ||
        (rc = get_float(l, "routed_scaling_factor", 1.0, &c->routed_scaling_factor, w)) ||
        (rc = get_int(l, "norm_topk_prob", 0, &c->norm_topk_prob, w)) ||
        (rc = get_int(l, "use_mla", 1, &c->use_mla, w)) || (rc = get_int(l, "q_lora_rank", 1536, &c->q_lora_rank, w)) ||
        (rc = get_int(l, "kv_lora_rank", 512, &c->kv_lora_rank, w)) ||
        (rc = get_int(l, "qk_nope_head_dim", 128, &c->qk_nope_head_dim, w)) ||
        (rc = get_int(l, "qk_rope_head_dim", 64, &c->qk_rope_head_dim, w)) ||
        (rc = get_int(l, "v_head_dim", 128, &c->v_head_dim, w)) ||
        (rc = get_int(l, "max_position_embeddings", 2048, &c->max_position_embeddings, w)) ||
        (rc = get_float(l, "rms_norm_eps", 1e-6, &c->rms_norm_eps, w)) ||
        (rc = get_float(l, "rope_theta", 10000.0, &c->rope_theta, w)) ||
        (rc = get_int(l, "bos_token_id", 100000, &c->bos_token_id, w)) ||
        (rc = get_int(l, "eos_token_id", 100001, &c->eos_token_id, w)))
        return rc;
    /* an explicit null means "absent" for these, not the class default */
    const cJSON *q = l ? cJSON_GetObjectItemCaseSensitive(l, "q_lora_rank") : NULL;
    if (cJSON_IsNull(q)) c->q_lora_rank = 0;
    const cJSON *kv = l ? cJSON_GetObjectItemCaseSensitive(l, "kv_lora_rank") : NULL;
    if (cJSON_IsNull(kv)) c->kv_lora_rank = 0;
    const char *tm = get_str(l, "topk_method", "greedy"), *sf = get_str(l, "scoring_func", "softmax");
    if (strcmp(tm, "greedy") == 0) c->topk_method = VLM_TOPK_GREEDY;
    else if (strcmp(tm, "group_limited_greedy") == 0) c->topk_method = VLM_TOPK_GROUP_LIMITED_GREEDY;
    else if (strcmp(tm, "noaux_tc") == 0) c->topk_method = VLM_TOPK_NOAUX_TC;
    else return vlm_errorf(VLM_ERR_UNSUPPORTED, "config.json: topk_method '%s' is not supported", tm);
    if (strcmp(sf, "softmax") == 0) c->scoring_func = VLM_SCORE_SOFTMAX;
    else if (strcmp(sf, "sigmoid") == 0) c->scoring_func = VLM_SCORE_SIGMOID;
    else return vlm_errorf(VLM_ERR_UNSUPPORTED, "config.json: scoring_func '%s' is not supported", sf);
    const char *act = get_str(l, "hidden_act", "silu");
    if (strcmp(act, "silu") != 0) return vlm_errorf(VLM_ERR_UNSUPPORTED, "config.json: hidden_act '%s' is not supported", act);
    const cJSON *rs = l ? cJSON_GetObjectItemCaseSensitive(l, "rope_scaling") : NULL;
    if (rs && !cJSON_IsNull(rs)) return vlm_errorf(VLM_ERR_UNSUPPORTED, "config.json: rope_scaling is not supported yet");
    if (c->hidden_size <= 0 || c->num_hidden_layers <= 0 || c->num_attention_heads <= 0 || c->vocab_size <= 0 ||
        c->num_key_value_heads <= 0 || c->num_attention_heads % c->num_key_value_heads || c->moe_layer_freq <= 0 ||
        c->max_position_embeddings <= 0)
        return vlm_errorf(VLM_ERR_FORMAT, "config.json: language_config is inconsistent");
    if (!c->use_mla && c->hidden_size % c->num_attention_heads)
        return vlm_errorf(VLM_ERR_FORMAT, "config.json: hidden_size %d is not a multiple of num_attention_heads %d",
                          c->hidden_size, c->num_attention_heads);
    if (c->use_mla && (c->kv_lora_rank <= 0 || c->qk_rope_head_dim <= 0 || c->qk_rope_head_dim % 2 || c->v_head_dim <= 0))
        return vlm_errorf(VLM_ERR_FORMAT, "config.json: MLA attention needs kv_lora_rank, qk_rope_head_dim (even) and v_head_dim");
    if (c->n_routed_experts > 0 &&
        (c->num_experts_per_tok <= 0 || c->num_experts_per_tok > c->n_routed_experts || c->n_group <= 0 ||
         c->n_routed_experts % c->n_group || c->topk_group <= 0 || c->topk_group > c->n_group))
        return vlm_errorf(VLM_ERR_FORMAT, "config.json: MoE settings are inconsistent (%d experts, %d per token, %d groups)",
                          c->n_routed_experts, c->num_experts_per_tok, c->n_group);
    return VLM_OK;
}

static int parse_candidates(const cJSON *arr, vlm_vl2_config *c)
{
    if (!arr) return VLM_OK;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1 || cJSON_GetArraySize(arr) > VLM_MAX_CANDIDATES)
        return vlm_errorf(VLM_ERR_FORMAT, "config: candidate_resolutions must be a list of 1..%d [width, height] pairs",
                          VLM_MAX_CANDIDATES);
    int n = 0;
    for (const cJSON *e = arr->child; e; e = e->next) {
        const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
            a->valuedouble < 1 || b->valuedouble < 1 || a->valuedouble > 65536 || b->valuedouble > 65536)
            return vlm_errorf(VLM_ERR_FORMAT, "config: candidate_resolutions entry %d is not a [width, height] pair", n);
        c->candidates[n].width = (int)a->valuedouble;
        c->candidates[n].height = (int)b->valuedouble;
        n++;
    }
    c->n_candidates = n;
    return VLM_OK;
}

int vlm_vl2_config_parse(const char *json, size_t len, vlm_vl2_config *out)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vlm_errorf(VLM_ERR_FORMAT, "config.json is not a valid JSON object");
    }
    int rc;
    const char *mt = get_str(root, "model_type", "deepseek_vl_v2");
    if (strcmp(mt, "deepseek_vl_v2") != 0) {
        rc = vlm_errorf(VLM_ERR_UNSUPPORTED, "config.json: model_type '%s' is not supported (expected deepseek_vl_v2)", mt);
        goto done;
    }
    if ((rc = parse_vision(cJSON_GetObjectItemCaseSensitive(root, "vision_config"), &out->vision)) ||
        (rc = parse_projector(cJSON_GetObjectItemCaseSensitive(root, "projector_config"), &out->projector)) ||
        (rc = parse_language(cJSON_GetObjectItemCaseSensitive(root, "language_config"), &out->lm)))
        goto done;
    out->candidates[0] = (vlm_resolution){384, 384};
    out->n_candidates = 1;
    if ((rc = parse_candidates(cJSON_GetObjectItemCaseSensitive(root, "candidate_resolutions"), out))) goto done;
    const char *tag = get_str(root, "tile_tag", "2D"), *gv = get_str(root, "global_view_pos", "head");
    if (strcmp(tag, "2D") != 0 || strcmp(gv, "head") != 0) {
        rc = vlm_errorf(VLM_ERR_UNSUPPORTED, "config.json: tile_tag '%s' / global_view_pos '%s' not supported (2D/head)", tag, gv);
        goto done;
    }
    if (out->projector.input_dim != out->vision.width || out->projector.n_embed != out->lm.hidden_size) {
        rc = vlm_errorf(VLM_ERR_MISMATCH, "config.json: projector maps %d -> %d but the vision width is %d and the LM hidden size %d",
                        out->projector.input_dim, out->projector.n_embed, out->vision.width, out->lm.hidden_size);
        goto done;
    }
    if (out->candidates[0].width != out->vision.image_size) {
        rc = vlm_errorf(VLM_ERR_MISMATCH, "config.json: the first candidate resolution (%d) must equal the vision image_size (%d)",
                        out->candidates[0].width, out->vision.image_size);
        goto done;
    }
    for (int i = 0; i < 3; i++) {
        out->image_mean[i] = 0.5f;
        out->image_std[i] = 0.5f;
    }
done:
    cJSON_Delete(root);
    return rc;
}

static int parse_processor(const char *json, size_t len, vlm_vl2_config *c)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vlm_errorf(VLM_ERR_FORMAT, "processor_config.json is not a valid JSON object");
    }
    int rc = VLM_OK;
    const char *keys[2] = {"image_mean", "image_std"};
    float *dst[2] = {c->image_mean, c->image_std};
    for (int k = 0; k < 2 && rc == VLM_OK; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, keys[k]);
        if (!a) continue;
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3) {
            rc = vlm_errorf(VLM_ERR_FORMAT, "processor_config.json: %s must be a list of 3 numbers", keys[k]);
            break;
        }
        for (int i = 0; i < 3; i++) {
            const cJSON *v = cJSON_GetArrayItem(a, i);
            if (!cJSON_IsNumber(v) || (k == 1 && v->valuedouble <= 0)) {
                rc = vlm_errorf(VLM_ERR_FORMAT, "processor_config.json: %s[%d] is not a valid number", keys[k], i);
                break;
            }
            dst[k][i] = (float)v->valuedouble;
        }
    }
    double ps, dr;
    if (rc == VLM_OK && (rc = get_num(root, "patch_size", c->vision.patch_size, &ps, "processor_config")) == VLM_OK &&
        (rc = get_num(root, "downsample_ratio", c->projector.downsample_ratio, &dr, "processor_config")) == VLM_OK &&
        ((int)ps != c->vision.patch_size || (int)dr != c->projector.downsample_ratio))
        rc = vlm_errorf(VLM_ERR_MISMATCH, "processor_config.json (patch %d, downsample %d) disagrees with config.json (%d, %d)",
                        (int)ps, (int)dr, c->vision.patch_size, c->projector.downsample_ratio);
    if (rc == VLM_OK) rc = parse_candidates(cJSON_GetObjectItemCaseSensitive(root, "candidate_resolutions"), c);
    cJSON_Delete(root);
    return rc;
}

int vlm_vl2_config_load(const char *dir, vlm_vl2_config *out)
{
    char path[4096], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = vlm_read_file(path, 16u << 20, &text, &len);
    if (rc) return rc;
    rc = vlm_vl2_config_parse(text, len, out);
    free(text);
    if (rc) return vlm_error_prefix(rc, "%s", dir);
    snprintf(path, sizeof path, "%s/processor_config.json", dir);
    if (!vlm_file_exists(path)) return VLM_OK;
    if ((rc = vlm_read_file(path, 16u << 20, &text, &len))) return rc;
    rc = parse_processor(text, len, out);
    free(text);
    if (rc) return vlm_error_prefix(rc, "%s", dir);
    return VLM_OK;
}

void vlm_vl2_preprocess_config(const vlm_vl2_config *c, vlm_preprocess_config *out)
{
    vlm_preprocess_config_default(out);
    out->tile_size = c->candidates[0].width;
    out->candidates = c->candidates;
    out->n_candidates = c->n_candidates;
    for (int i = 0; i < 3; i++) {
        out->mean[i] = c->image_mean[i];
        out->std[i] = c->image_std[i];
        out->pad_color[i] = (uint8_t)(int)(c->image_mean[i] * 255);
    }
}
