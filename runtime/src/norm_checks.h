/*
** Batch norm's checks shared by the entry points that check their own input
** (norm.c's, conv_first_block.c's). Not installed.
*/
#ifndef DN_NORM_CHECKS_H
#define DN_NORM_CHECKS_H

#include <stdbool.h>

#include "dropnet/tensor.h"

/* A per-channel tensor `what`: float32 [c], or NULL; per: what each value is for, in the message ("channel of
   input [8, 16, 4, 4]"). */
dn_status dn_batch_norm_check_channels(const char *op, const char *what, const dn_tensor *t, int64_t c,
                                       const char *per);

/* The running statistics (both or neither; needed in eval; in training written in place: no grad, writable),
   momentum in [0, 1] and eps finite >= 0; errors name op. */
dn_status dn_batch_norm_check_state(const char *op, const dn_tensor *running_mean, const dn_tensor *running_var,
                                    bool training, double momentum, double eps);

#endif
