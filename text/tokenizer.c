/* Loading tokenizer.json (model, added tokens, normalizer, pre-tokenizer,
 * decoder), resolving the VL2 special tokens, and id <-> token look-ups. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "text/tok_internal.h"
#include "text/tok_regex.h"

#define TOK_MAX_JSON_BYTES ((size_t)256 << 20)

/* GPT-2's pre-tokenization regex, used by ByteLevel when use_regex is set. */
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const char *DEFAULT_BOS = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
static const char *DEFAULT_EOS = "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
static const char *DEFAULT_PAD = "<\xef\xbd\x9c\xe2\x96\x81pad\xe2\x96\x81\xef\xbd\x9c>";

/* ---------------- id table ---------------- */

static int ids_reserve(vlm_tokenizer *t, int32_t n)
{
    if (n <= t->ids_cap) return VLM_OK;
    int32_t cap = t->ids_cap ? t->ids_cap : 1024;
    while (cap < n) cap = cap > INT32_MAX / 2 ? n : cap * 2;
    const char **s = realloc(t->id_str, (size_t)cap * sizeof *s);
    if (s) t->id_str = s;
    uint32_t *l = realloc(t->id_len, (size_t)cap * sizeof *l);
    if (l) t->id_len = l;
    uint8_t *f = realloc(t->id_flags, (size_t)cap);
    if (f) t->id_flags = f;
    if (!s || !l || !f) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory for %d ids", n);
    for (int32_t i = t->ids_cap; i < cap; i++) {
        t->id_str[i] = NULL;
        t->id_len[i] = 0;
        t->id_flags[i] = 0;
    }
    t->ids_cap = cap;
    return VLM_OK;
}

static const char *arena_str(vlm_tokenizer *t, const char *s, size_t n)
{
    char *p = tok_arena_alloc(&t->arena, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---------------- JSON helpers ---------------- */

static int json_bool(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static const char *json_type(const cJSON *o)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_id(const cJSON *v, int32_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= TOK_MAX_ID) || d != (double)(int32_t)d) return -1;
    *out = (int32_t)d;
    return 0;
}

/* ---------------- model ---------------- */

static int load_vocab(vlm_tokenizer *t, const cJSON *vocab)
{
    if (!cJSON_IsObject(vocab))
        return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: model.vocab is not an object");
    int32_t max_id = -1, count = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id;
        if (json_id(e, &id) || !e->string)
            return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: vocab entry '%.64s' has no valid id",
                              e->string ? e->string : "?");
        if (id > max_id) max_id = id;
        count++;
    }
    int rc = ids_reserve(t, max_id + 1);
    if (rc) return rc;
    if (max_id + 1 > t->n_ids) t->n_ids = max_id + 1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        size_t len = strlen(e->string);
        const char *s = arena_str(t, e->string, len);
        if (!s) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
        if ((rc = tok_smap_put(&t->vocab, s, len, id))) return rc;
        t->id_str[id] = s;
        t->id_len[id] = (uint32_t)len;
        t->id_flags[id] |= TOK_ID_MODEL;
    }
    t->model_vocab_len = (int32_t)t->vocab.n;
    (void)count;
    return VLM_OK;
}

static int merge_side(const vlm_tokenizer *t, const char *s, size_t n, int32_t *id, size_t rank)
{
    *id = tok_smap_get(&t->vocab, s, n);
    if (*id < 0)
        return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: merge %zu uses '%.*s', not in the vocabulary",
                          rank, (int)(n > 64 ? 64 : n), s);
    return VLM_OK;
}

static int load_merges(vlm_tokenizer *t, const cJSON *merges)
{
    if (!merges || cJSON_IsNull(merges)) return VLM_OK;
    if (!cJSON_IsArray(merges)) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: model.merges is not an array");
    size_t n = (size_t)cJSON_GetArraySize(merges);
    int rc = tok_mmap_init(&t->merges, n);
    if (rc) return rc;
    char *cat = malloc(2 * TOK_MAX_TOKEN_BYTES + 1);
    if (!cat) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    size_t rank = 0;
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(m)) { /* "a b", split at the first space */
            a = m->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp) {
                rc = vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: merge %zu '%.64s' is not 'a b'", rank, a);
                break;
            }
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) { /* ["a", "b"] */
            a = m->child->valuestring;
            b = m->child->next->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            rc = vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: merge %zu is neither \"a b\" nor [a, b]", rank);
            break;
        }
        if (la > TOK_MAX_TOKEN_BYTES || lb > TOK_MAX_TOKEN_BYTES) {
            rc = vlm_errorf(VLM_ERR_LIMIT, "tokenizer.json: merge %zu is too long", rank);
            break;
        }
        int32_t ia, ib, inew;
        if ((rc = merge_side(t, a, la, &ia, rank)) || (rc = merge_side(t, b, lb, &ib, rank))) break;
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb);
        if ((rc = merge_side(t, cat, la + lb, &inew, rank))) break;
        tok_mmap_put(&t->merges, ia, ib, (int32_t)rank, inew);
    }
    free(cat);
    return rc;
}

static int load_model(vlm_tokenizer *t, const cJSON *model)
{
    if (!cJSON_IsObject(model)) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: no \"model\" object");
    const char *type = json_type(model);
    if (type && strcmp(type, "BPE") != 0)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "tokenizer.json: model type '%.32s' is not supported (BPE only)", type);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(v) && v->valuedouble > 0)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "tokenizer.json: BPE dropout is not supported");
    const char *unsupported[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        v = cJSON_GetObjectItemCaseSensitive(model, unsupported[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !v->valuestring[0]))
            return vlm_errorf(VLM_ERR_UNSUPPORTED, "tokenizer.json: BPE %s is not supported", unsupported[i]);
    }
    if (json_bool(model, "byte_fallback", 0))
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "tokenizer.json: BPE byte_fallback is not supported");
    t->ignore_merges = json_bool(model, "ignore_merges", 0);
    int rc = load_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"));
    if (rc) return rc;
    if ((rc = load_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges")))) return rc;
    if (!t->merges.e && (rc = tok_mmap_init(&t->merges, 0))) return rc;
    t->unk_id = -1;
    v = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(v)) {
        t->unk_id = tok_smap_get(&t->vocab, v->valuestring, strlen(v->valuestring));
        if (t->unk_id < 0)
            return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: unk_token '%.64s' is not in the vocabulary",
                              v->valuestring);
    }
    return VLM_OK;
}

/* ---------------- added tokens ---------------- */

static int add_token(vlm_tokenizer *t, const char *content, size_t len, int32_t id, int special,
                     int normalized, int lstrip, int rstrip, int single_word)
{
    if (t->n_added == t->added_cap) {
        int32_t cap = t->added_cap ? t->added_cap * 2 : 64;
        tok_added *a = realloc(t->added, (size_t)cap * sizeof *a);
        if (!a) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
        t->added = a;
        t->added_cap = cap;
    }
    const char *s = arena_str(t, content, len);
    if (!s) return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    int rc = ids_reserve(t, id + 1);
    if (rc) return rc;
    if (id + 1 > t->n_ids) t->n_ids = id + 1;
    if ((rc = tok_smap_put(&t->added_map, s, len, id))) return rc;
    tok_added *a = &t->added[t->n_added++];
    a->content = s;
    a->len = (uint32_t)len;
    a->id = id;
    a->special = (uint8_t)!!special;
    a->normalized = (uint8_t)!!normalized;
    a->lstrip = (uint8_t)!!lstrip;
    a->rstrip = (uint8_t)!!rstrip;
    a->single_word = (uint8_t)!!single_word;
    t->id_str[id] = s;
    t->id_len[id] = (uint32_t)len;
    t->id_flags[id] = (uint8_t)((t->id_flags[id] & TOK_ID_MODEL) | TOK_ID_ADDED | (special ? TOK_ID_SPECIAL : 0));
    return VLM_OK;
}

static int load_added(vlm_tokenizer *t, const cJSON *arr)
{
    if (!arr || cJSON_IsNull(arr)) return VLM_OK;
    if (!cJSON_IsArray(arr)) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: added_tokens is not an array");
    int k = 0;
    for (const cJSON *e = arr->child; e; e = e->next, k++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        int32_t id;
        if (!cJSON_IsString(c) || json_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id))
            return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: added_tokens[%d] needs a string content and an id", k);
        size_t len = strlen(c->valuestring);
        if (len == 0) continue; /* tokenizers ignores empty added tokens */
        if (len > TOK_MAX_TOKEN_BYTES)
            return vlm_errorf(VLM_ERR_LIMIT, "tokenizer.json: added_tokens[%d] is too long", k);
        int special = json_bool(e, "special", 0);
        int rc = add_token(t, c->valuestring, len, id, special, json_bool(e, "normalized", !special),
                           json_bool(e, "lstrip", 0), json_bool(e, "rstrip", 0), json_bool(e, "single_word", 0));
        if (rc) return rc;
    }
    return VLM_OK;
}

/* ---------------- normalizer / pre-tokenizer / decoder ---------------- */

static int check_normalizer(const cJSON *n)
{
    if (!n || cJSON_IsNull(n)) return VLM_OK;
    const char *type = json_type(n);
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list)) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: normalizer Sequence without a list");
        for (const cJSON *e = list->child; e; e = e->next) {
            int rc = check_normalizer(e);
            if (rc) return rc;
        }
        return VLM_OK;
    }
    return vlm_errorf(VLM_ERR_UNSUPPORTED, "tokenizer.json: normalizer '%.32s' is not supported",
                      type ? type : "(no type)");
}

static int push_pretok(vlm_tokenizer *t, tok_pretok *p)
{
    tok_pretok *a = realloc(t->pt, (size_t)(t->n_pt + 1) * sizeof *a);
    if (!a) {
        if (p->re) pcre2_code_free(p->re);
        return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->pt = a;
    t->pt[t->n_pt++] = *p;
    return VLM_OK;
}

static int parse_behavior(const cJSON *o, int *out)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "behavior");
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    if (!cJSON_IsString(b)) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: Split without a behavior");
    for (int i = 0; i < 5; i++)
        if (strcmp(b->valuestring, names[i]) == 0) {
            *out = i;
            return VLM_OK;
        }
    return vlm_errorf(VLM_ERR_UNSUPPORTED, "tokenizer.json: Split behavior '%.32s' is not supported", b->valuestring);
}

static int load_pretok(vlm_tokenizer *t, const cJSON *p, int depth)
{
    if (!p || cJSON_IsNull(p)) return VLM_OK;
    if (depth > 16) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: pre_tokenizer nested too deeply");
    const char *type = json_type(p);
    if (!type) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: pre_tokenizer without a type");
    tok_pretok st = {0};
    int rc;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list)) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: pre_tokenizer Sequence without a list");
        for (const cJSON *e = list->child; e; e = e->next)
            if ((rc = load_pretok(t, e, depth + 1))) return rc;
        return VLM_OK;
    } else if (strcmp(type, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *src = cJSON_IsString(rx) ? rx : str;
        if (!cJSON_IsString(src)) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: Split needs a Regex or String pattern");
        if ((rc = parse_behavior(p, &st.behavior))) return rc;
        st.kind = TOK_PT_SPLIT;
        st.invert = json_bool(p, "invert", 0);
        if ((rc = tok_regex_compile(src->valuestring, strlen(src->valuestring), src == str, &st.re, &st.jit)))
            return rc;
    } else if (strcmp(type, "Digits") == 0) {
        /* Digits splits off chars with char::is_numeric (categories Nd, Nl,
         * No): one by one (Isolated) or in runs (Contiguous). */
        st.kind = TOK_PT_SPLIT;
        st.behavior = json_bool(p, "individual_digits", 0) ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS;
        if ((rc = tok_regex_compile("\\p{N}", 5, 0, &st.re, &st.jit))) return rc;
    } else if (strcmp(type, "ByteLevel") == 0) {
        st.kind = TOK_PT_BYTELEVEL;
        st.add_prefix_space = json_bool(p, "add_prefix_space", 1);
        if (json_bool(p, "use_regex", 1)) {
            st.behavior = TOK_SPLIT_ISOLATED;
            if ((rc = tok_regex_compile(GPT2_REGEX, sizeof GPT2_REGEX - 1, 0, &st.re, &st.jit))) return rc;
        }
        t->byte_level = 1;
    } else {
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "tokenizer.json: pre-tokenizer '%.32s' is not supported", type);
    }
    return push_pretok(t, &st);
}

static int load_decoder(vlm_tokenizer *t, const cJSON *d, int depth)
{
    if (!d || cJSON_IsNull(d)) return VLM_OK;
    if (depth > 16) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: decoder nested too deeply");
    const char *type = json_type(d);
    if (type && strcmp(type, "ByteLevel") == 0) {
        t->decoder_bytelevel = 1;
        return VLM_OK;
    }
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders");
        if (!cJSON_IsArray(list)) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: decoder Sequence without a list");
        for (const cJSON *e = list->child; e; e = e->next) {
            int rc = load_decoder(t, e, depth + 1);
            if (rc) return rc;
        }
        return VLM_OK;
    }
    return vlm_errorf(VLM_ERR_UNSUPPORTED, "tokenizer.json: decoder '%.32s' is not supported",
                      type ? type : "(no type)");
}

/* ---------------- special tokens ---------------- */

static int32_t lookup(const vlm_tokenizer *t, const char *s)
{
    size_t n = strlen(s);
    int32_t id = tok_smap_get(&t->added_map, s, n);
    return id >= 0 ? id : tok_smap_get(&t->vocab, s, n);
}

/* As transformers' add_special_tokens: a token already known keeps its id
 * (and becomes a special added token); a new one gets the next id, chosen the
 * way tokenizers' AddedVocabulary does. */
static int append_special(vlm_tokenizer *t, const char *s)
{
    size_t n = strlen(s);
    if (tok_smap_get(&t->added_map, s, n) >= 0) return VLM_OK;
    int32_t id = tok_smap_get(&t->vocab, s, n);
    if (id < 0) {
        int32_t max_added = -1;
        for (int32_t i = 0; i < t->n_added; i++)
            if (t->added[i].id > max_added) max_added = t->added[i].id;
        if (max_added < 0) id = t->model_vocab_len;
        else if (max_added >= t->model_vocab_len || t->model_vocab_len == 0) id = max_added + 1;
        else id = t->model_vocab_len;
        if (id >= TOK_MAX_ID) return vlm_errorf(VLM_ERR_LIMIT, "tokenizer: too many ids");
    }
    return add_token(t, s, n, id, 1, 0, 0, 0, 0);
}

static int resolve_special(vlm_tokenizer *t, const vlm_tokenizer_opts *o)
{
    const char *bos = o && o->bos_token ? o->bos_token : DEFAULT_BOS;
    const char *eos = o && o->eos_token ? o->eos_token : DEFAULT_EOS;
    const char *pad = o && o->pad_token ? o->pad_token : DEFAULT_PAD;
    static const char *vl2[] = {"<image>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>",
                                "<|User|>", "<|Assistant|>"};
    int rc;
    if (o && o->add_vl2_tokens) {
        if (lookup(t, pad) < 0 && (rc = append_special(t, pad))) return rc;
        if (lookup(t, vl2[0]) < 0 && (rc = append_special(t, vl2[0]))) return rc;
        for (int i = 1; i < 8; i++)
            if ((rc = append_special(t, vl2[i]))) return rc;
    }
    vlm_special_ids *s = &t->special;
    s->bos = lookup(t, bos);
    s->eos = lookup(t, eos);
    s->pad = lookup(t, pad);
    int32_t *dst[] = {&s->image, &s->ref_open, &s->ref_close, &s->det_open, &s->det_close, &s->grounding,
                      &s->user, &s->assistant};
    for (int i = 0; i < 8; i++) *dst[i] = lookup(t, vl2[i]);
    return VLM_OK;
}

/* ---------------- load / free ---------------- */

void vlm_tokenizer_free(vlm_tokenizer *t)
{
    if (!t) return;
    for (int i = 0; i < t->n_pt; i++)
        if (t->pt[i].re) pcre2_code_free(t->pt[i].re);
    free(t->pt);
    if (t->word_re) pcre2_code_free(t->word_re);
    tok_trie_free(&t->trie_raw);
    tok_trie_free(&t->trie_norm);
    free(t->added);
    tok_smap_free(&t->vocab);
    tok_smap_free(&t->added_map);
    tok_mmap_free(&t->merges);
    free(t->id_str);
    free(t->id_len);
    free(t->id_flags);
    tok_arena_free(&t->arena);
    free(t);
}

static int build(vlm_tokenizer *t, const cJSON *root, const vlm_tokenizer_opts *o)
{
    if (!cJSON_IsObject(root)) return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: not a JSON object");
    int rc;
    if ((rc = load_model(t, cJSON_GetObjectItemCaseSensitive(root, "model")))) return rc;
    if ((rc = load_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")))) return rc;
    if ((rc = check_normalizer(cJSON_GetObjectItemCaseSensitive(root, "normalizer")))) return rc;
    if ((rc = load_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), 0))) return rc;
    if ((rc = load_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), 0))) return rc;
    if ((rc = resolve_special(t, o))) return rc;
    for (int b = 0; b < 256; b++) {
        if (t->byte_level) {
            char buf[4];
            uint32_t cp = tok_byte_to_cp((uint8_t)b);
            size_t n = cp < 0x80 ? 1 : 2; /* the alphabet stays below U+0800 */
            if (n == 1) buf[0] = (char)cp;
            else buf[0] = (char)(0xc0 | (cp >> 6)), buf[1] = (char)(0x80 | (cp & 0x3f));
            t->byte_id[b] = tok_smap_get(&t->vocab, buf, n);
        } else {
            char c = (char)b;
            t->byte_id[b] = b < 0x80 ? tok_smap_get(&t->vocab, &c, 1) : -1;
        }
    }
    for (int32_t i = 0; i < t->n_added && !t->word_re; i++) {
        if (!t->added[i].single_word) continue;
        /* Rust regex's Unicode \w, which tokenizers uses to tell word edges */
        static const char pat[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200c}\\x{200d}]";
        int err;
        PCRE2_SIZE off;
        t->word_re = pcre2_compile((PCRE2_SPTR)pat, sizeof pat - 1, PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED,
                                   &err, &off, NULL);
        if (!t->word_re) return vlm_errorf(VLM_ERR_UNSUPPORTED, "tokenizer: PCRE2 lacks Unicode properties");
    }
    if ((rc = tok_trie_build(&t->trie_raw, t->added, t->n_added, 0))) return rc;
    return tok_trie_build(&t->trie_norm, t->added, t->n_added, 1);
}

int vlm_tokenizer_load_json_opts(const char *json, size_t len, const vlm_tokenizer_opts *opts,
                                 vlm_tokenizer **out)
{
    *out = NULL;
    if (!json) return vlm_errorf(VLM_ERR_INVALID, "tokenizer: no JSON given");
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= json && at <= json + len ? (size_t)(at - json) : len;
        return vlm_errorf(VLM_ERR_FORMAT, "tokenizer.json: malformed JSON near byte %zu of %zu", off, len);
    }
    vlm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(root);
        return vlm_errorf(VLM_ERR_NOMEM, "tokenizer: out of memory");
    }
    for (int i = 0; i < 256; i++) t->trie_raw.root_child[i] = t->trie_norm.root_child[i] = -1;
    int rc = build(t, root, opts);
    cJSON_Delete(root);
    if (rc) {
        vlm_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return VLM_OK;
}

int vlm_tokenizer_load_json(const char *json, size_t len, vlm_tokenizer **out)
{
    vlm_tokenizer_opts o = {NULL, NULL, NULL, 1};
    return vlm_tokenizer_load_json_opts(json, len, &o, out);
}

/* tokenizer_config.json gives names either as "x" or {"content": "x", ...}. */
static char *config_name(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

int vlm_tokenizer_load(const char *model_dir, vlm_tokenizer **out)
{
    *out = NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/tokenizer.json", model_dir) >= (int)sizeof path)
        return vlm_errorf(VLM_ERR_INVALID, "tokenizer: model path too long");
    char *json;
    size_t len;
    int rc = vlm_read_file(path, TOK_MAX_JSON_BYTES, &json, &len);
    if (rc) return rc;

    vlm_tokenizer_opts o = {NULL, NULL, NULL, 1};
    char *names[3] = {NULL, NULL, NULL};
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    if (vlm_file_exists(path)) {
        char *cj;
        size_t cl;
        if ((rc = vlm_read_file(path, 64u << 20, &cj, &cl))) {
            free(json);
            return rc;
        }
        cJSON *cfg = cJSON_ParseWithLength(cj, cl);
        free(cj);
        if (!cfg) {
            free(json);
            return vlm_errorf(VLM_ERR_FORMAT, "tokenizer: malformed JSON in '%s'", path);
        }
        names[0] = config_name(cfg, "bos_token");
        names[1] = config_name(cfg, "eos_token");
        names[2] = config_name(cfg, "pad_token");
        cJSON_Delete(cfg);
        o.bos_token = names[0];
        o.eos_token = names[1];
        o.pad_token = names[2];
    }
    rc = vlm_tokenizer_load_json_opts(json, len, &o, out);
    free(json);
    for (int i = 0; i < 3; i++) free(names[i]);
    if (rc) return vlm_error_prefix(rc, "%s/tokenizer.json", model_dir);
    return VLM_OK;
}

/* ---------------- look-ups ---------------- */

int32_t vlm_tokenizer_token_to_id(const vlm_tokenizer *t, const char *token)
{
    return token ? lookup(t, token) : -1;
}

const char *vlm_tokenizer_id_to_token(const vlm_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_ids) return NULL;
    return t->id_str[id];
}

int32_t vlm_tokenizer_vocab_size(const vlm_tokenizer *t) { return t->n_ids; }

int vlm_tokenizer_is_special(const vlm_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && (t->id_flags[id] & TOK_ID_SPECIAL);
}

const vlm_special_ids *vlm_tokenizer_special(const vlm_tokenizer *t) { return &t->special; }
