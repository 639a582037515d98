/* The SwiGLU MLP used for dense layers, routed experts and shared experts. */
#include "text/lm_internal.h"

#include "core/error.h"

int vlm_mlp_forward(const vlm_backend *be, const vlm_mlp_w *m, const float *x, int64_t M, float *y, float *g, float *u)
{
    /* gate and up in one call: a decode step's few rows run as one parallel pass (vlm_op_linear_many) */
    vlm_linear_job gate_up[2] = {{g, x, M, &m->gate, NULL}, {u, x, M, &m->up, NULL}};
    int rc = be->linear_many(be, gate_up, 2);
    if (rc == VLM_OK) rc = be->silu_mul(be, g, u, M * m->gate.rows);
    if (rc == VLM_OK) rc = be->linear(be, y, g, M, &m->down, NULL);
    return rc;
}
