#include "samples/cli.h"
#include "core/error.h"
#include "core/ops.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *cmd)
{
    fprintf(stderr, "vlm %s: %s\n", cmd, vlm_last_error());
    return 1;
}

int cli_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "vlm %s: %s needs an integer in [%lld, %lld], got '%s'\n", cmd, opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || isnan(v) || v < lo || v > hi) {
        fprintf(stderr, "vlm %s: %s needs a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_int8_act(const char *cmd, const char *s)
{
    const int mode = !strcmp(s, "auto") ? -1 : !strcmp(s, "on") ? 1 : !strcmp(s, "off") ? 0 : -2;
    if (mode == -2) {
        fprintf(stderr, "vlm %s: --int8-act takes auto, on or off, not '%s'\n", cmd, s);
        return -1;
    }
    vlm_ops_set_int8_activations(mode);
    return 0;
}

int cli_kv_cache(const char *cmd, const char *s, vlm_kv_type *out)
{
    if (vlm_kv_type_parse(s, out) == VLM_OK) return 0;
    fprintf(stderr, "vlm %s: --kv-cache takes auto, f16 or f32, not '%s'\n", cmd, s);
    return -1;
}

const char *cli_int8_act_name(void)
{
    const int mode = vlm_ops_int8_activations();
    return mode < 0 ? "auto" : mode ? "on" : "off";
}
