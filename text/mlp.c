/* The SwiGLU MLP used for dense layers, routed experts and shared experts. */
#include "text/lm_internal.h"

#include "core/error.h"

int vlm_mlp_forward(const vlm_backend *be, const vlm_mlp_w *m, const float *x, int64_t M, float *y, float *g, float *u)
{
    int rc = be->linear(be, g, x, M, &m->gate, NULL);
    if (rc == VLM_OK) rc = be->linear(be, u, x, M, &m->up, NULL);
    if (rc == VLM_OK) rc = be->silu_mul(be, g, u, M * m->gate.rows);
    if (rc == VLM_OK) rc = be->linear(be, y, g, M, &m->down, NULL);
    return rc;
}
