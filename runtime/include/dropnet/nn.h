/*
** Layer kernels: the fused linear layer and the activations.
** All are differentiable (they record autograd nodes) and float32 only.
*/
#ifndef DROPNET_NN_H
#define DROPNET_NN_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

typedef enum dn_activation { DN_ACT_NONE = 0, DN_ACT_RELU, DN_ACT_TANH, DN_ACT_SIGMOID } dn_activation;

/*
** y = act(x @ w^T + b): x [B, in] (or [in]), w [out, in] (PyTorch's layout),
** b [out] or NULL. One sgemm, then one pass that adds the bias and applies
** the activation; backward is one pass for act' and bias, then two sgemms.
*/
DN_API dn_status dn_linear(dn_tensor **out, dn_tensor *x, dn_tensor *w, dn_tensor *b, dn_activation act);

/* x for x > 0, else negative_slope * x (finite slope). */
DN_API dn_status dn_leaky_relu(dn_tensor **out, dn_tensor *x, double negative_slope);
/* x for x > 0, else alpha * (exp(x) - 1) (finite alpha). */
DN_API dn_status dn_elu(dn_tensor **out, dn_tensor *x, double alpha);
/* SELU with the constants of Klambauer et al. 2017. */
DN_API dn_status dn_selu(dn_tensor **out, dn_tensor *x);
/* GELU: exact (erf) or the tanh approximation. */
DN_API dn_status dn_gelu(dn_tensor **out, dn_tensor *x, bool tanh_approximation);
/* Over dim (negative counts from the end); numerically stable. */
DN_API dn_status dn_softmax(dn_tensor **out, dn_tensor *x, int dim);
DN_API dn_status dn_log_softmax(dn_tensor **out, dn_tensor *x, int dim);

DN_END_DECLS

#endif
