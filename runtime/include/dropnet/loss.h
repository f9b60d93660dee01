/*
** Loss functions (differentiable, float32). Class targets are int32 and
** start at `base` (0 in C, 1 from Lua).
*/
#ifndef DROPNET_LOSS_H
#define DROPNET_LOSS_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

typedef enum dn_reduction { DN_REDUCTION_MEAN = 0, DN_REDUCTION_SUM, DN_REDUCTION_NONE } dn_reduction;

/* Parses "mean"/"sum"/"none". */
DN_API bool dn_reduction_parse(const char *name, dn_reduction *reduction);

/*
** Cross entropy of logits [N, C] (or [C]) against class indices target [N]
** (or 0-dim): log-softmax and NLL fused in one pass, stable for logits of any
** size. label_smoothing in [0, 1] mixes the one-hot target with the uniform
** distribution (1: the uniform alone), as PyTorch does. Result: 0-dim (mean, sum) or [N] (none).
*/
DN_API dn_status dn_cross_entropy(dn_tensor **out, dn_tensor *logits, const dn_tensor *target, int64_t base,
                                  double label_smoothing, dn_reduction reduction);
/* Negative log-likelihood of log-probabilities [N, C] (or [C]). */
DN_API dn_status dn_nll_loss(dn_tensor **out, dn_tensor *log_probs, const dn_tensor *target, int64_t base,
                             dn_reduction reduction);
/* Mean squared error; input and target of the same shape (target may require grad too). */
DN_API dn_status dn_mse_loss(dn_tensor **out, dn_tensor *input, dn_tensor *target, dn_reduction reduction);
/* Binary cross entropy on logits, stable (log-sum-exp form); target in [0, 1], same shape. */
DN_API dn_status dn_bce_with_logits(dn_tensor **out, dn_tensor *logits, const dn_tensor *target,
                                    dn_reduction reduction);

DN_END_DECLS

#endif
