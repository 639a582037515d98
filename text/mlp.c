/* The SwiGLU MLP used for dense layers, routed experts and shared experts. */
#include "text/lm_internal.h"

void vlm_mlp_forward(const vlm_mlp_w *m, const float *x, int64_t M, float *y, float *g, float *u)
{
    vlm_op_linear(g, x, M, &m->gate, NULL);
    vlm_op_linear(u, x, M, &m->up, NULL);
    vlm_op_silu_mul(g, u, M * m->gate.rows);
    vlm_op_linear(y, g, M, &m->down, NULL);
}
