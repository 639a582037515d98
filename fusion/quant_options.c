/* --quant values: one format for every component and/or component=format overrides. */
#include "fusion/model.h"
#include "core/checkpoint.h"
#include "core/error.h"

#include <stdio.h>
#include <string.h>

static const char *const k_names[] = {"vision", "projector", "experts", "attention", "lm_head"};

static vlm_quant_spec *component(vlm_quant_options *q, int i)
{
    vlm_quant_spec *c[] = {&q->vision, &q->projector, &q->experts, &q->attention, &q->lm_head};
    return c[i];
}

int vlm_quant_options_parse(const char *s, vlm_quant_options *out)
{
    memset(out, 0, sizeof *out);
    if (!s || !*s) return vlm_errorf(VLM_ERR_INVALID, "empty --quant value");
    char buf[512];
    if (strlen(s) >= sizeof buf) return vlm_errorf(VLM_ERR_INVALID, "--quant value too long");
    strcpy(buf, s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        const char *fmt = eq ? eq + 1 : tok;
        vlm_quant_spec spec;
        int rc = vlm_quant_spec_parse(fmt, &spec);
        if (rc) return rc;
        if (!eq || !strncmp(tok, "all=", 4)) {
            for (int i = 0; i < 5; i++) *component(out, i) = spec;
            continue;
        }
        *eq = 0;
        int found = 0;
        for (int i = 0; i < 5; i++)
            if (!strcmp(tok, k_names[i])) {
                *component(out, i) = spec;
                found = 1;
            }
        if (!found)
            return vlm_errorf(VLM_ERR_INVALID, "--quant: unknown component '%s' (vision, projector, experts, attention, "
                                               "lm_head or all)", tok);
    }
    return VLM_OK;
}

int vlm_quant_options_default(const char *dir, vlm_quant_options *out)
{
    vlm_checkpoint *ck;
    if (vlm_checkpoint_open(dir, &ck) != VLM_OK) /* loading the folder will say what is wrong with it */
        return vlm_quant_options_parse("bf16", out);
    const char *sq = vlm_checkpoint_converted_quant(ck);
    int rc = vlm_quant_options_parse(sq ? sq : "bf16", out);
    vlm_checkpoint_close(ck);
    return rc;
}

const char *vlm_quant_options_str(const vlm_quant_options *q, char *buf, size_t cap)
{
    size_t n = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < 5 && n < cap; i++) {
        const vlm_quant_spec *c = component((vlm_quant_options *)q, i);
        char g[16] = "";
        if (c->group && c->fmt >= VLM_WQ_Q8) snprintf(g, sizeof g, ":%d", c->group);
        int w = snprintf(buf + n, cap - n, "%s%s=%s%s", i ? "," : "", k_names[i], vlm_wquant_name(c->fmt), g);
        if (w < 0) break;
        n += (size_t)w;
    }
    return buf;
}
