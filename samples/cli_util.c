#include "samples/cli.h"
#include "core/error.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

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
