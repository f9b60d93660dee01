/*
** Data-parallel collectives over MPI (Open MPI): one process per rank, each
** with its own copy of the model, exchanging tensors in place.
**
** Optional at build time: without MPI every function but dn_dist_available
** fails with DN_EUNSUPPORTED ("built without MPI"). Started as a single
** process (no mpirun), MPI makes a world of size 1 and everything works.
**
** Collectives must be called by every rank in the same order with lists of
** the same total size; a rank whose input is rejected (or whose sizes differ
** from the others') makes the call fail on every rank rather than hang.
** Calls come from one thread (the one that called dn_dist_init).
*/
#ifndef DROPNET_DIST_H
#define DROPNET_DIST_H

#include <stdbool.h>

#include "dropnet/error.h"
#include "dropnet/export.h"
#include "dropnet/tensor.h"

DN_BEGIN_DECLS

typedef enum dn_dist_op {
  DN_DIST_SUM = 0,   /* element-wise sum over the ranks */
  DN_DIST_MEAN = 1   /* the sum divided by the world size */
} dn_dist_op;

/* True when the runtime was built with MPI. */
DN_API bool dn_dist_available(void);
/* Starts MPI (or adopts it when the program already did) on a private copy of MPI_COMM_WORLD whose errors
   come back as statuses. Idempotent; fails after dn_dist_finalize (MPI starts once per process). */
DN_API dn_status dn_dist_init(void);
/* Ends MPI if dn_dist_init started it (a program that started MPI itself also ends it). Idempotent. */
DN_API dn_status dn_dist_finalize(void);
/* True between dn_dist_init and dn_dist_finalize. */
DN_API bool dn_dist_is_initialized(void);
/* This process's rank, 0 .. world size - 1. */
DN_API dn_status dn_dist_rank(int *rank);
/* The number of processes. */
DN_API dn_status dn_dist_world_size(int *size);
/* Sums (or averages) each float32 contiguous tensor of the list over the ranks, in place, through one fused
   buffer. Deterministic: the sum runs in rank order on rank 0 whatever the MPI algorithms, so every rank gets
   the same bits and repeated runs with the same world size give the same bits. count 0 is a no-op. */
DN_API dn_status dn_dist_all_reduce(dn_tensor *const *tensors, int count, dn_dist_op op);
/* Copies root's tensors (contiguous, any dtype) into every rank's, in place, through one fused buffer. */
DN_API dn_status dn_dist_broadcast(dn_tensor *const *tensors, int count, int root);
/* Returns once every rank has called it. */
DN_API dn_status dn_dist_barrier(void);

DN_END_DECLS

#endif
