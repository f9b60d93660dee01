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
/* 30 minutes, PyTorch's default. */
#define DN_DIST_DEFAULT_TIMEOUT 1800.0
/* How long a rank waits for the others in any collective (and in the gradients' exchange) before it gives up
   with DN_EDIST: a rank that hangs becomes an error on the others. After a timeout the ranks are out of step:
   every later call fails (finalize too) and the process should end. seconds > 0 (at most 1e9); the default is
   DN_DIST_DEFAULT_TIMEOUT. Local to the rank; may be set before dn_dist_init. */
DN_API dn_status dn_dist_set_timeout(double seconds);
DN_API double dn_dist_timeout(void);
/* This rank's place in a batch split over the ranks in rank order: given its own sample count, *skip = the
   samples of the ranks before it, *total = the samples of all ranks and, when counts is not NULL, counts[r] =
   rank r's (world size entries). One small all-gather. */
DN_API dn_status dn_dist_batch_shard(int64_t count, int64_t *skip, int64_t *total, int64_t *counts);

/*
** Data-parallel gradient reduction (PyTorch DDP's design, with a fixed
** order of sums). The reducer watches a model's parameters (the same list,
** in the same order, on every rank) through leaf gradient hooks. Buckets
** hold the parameters in reverse order (the order backward produces them),
** about bucket_bytes each; once a bucket's gradients are all computed its
** exchange starts (non-blocking point-to-point messages), so the sums travel
** while backward computes the earlier layers. When the backward ends
** (dn_queue_backward_callback) every bucket is finished and each parameter's
** .grad holds the sum over the ranks of weight[r] x rank r's gradient, added
** to the .grad it had before the backward (gradient accumulation works as
** without the reducer); a parameter no rank used gets zeros.
** Sums run in rank order (w0 g0 + w1 g1 + ...): every rank gets the same bits
** and repeated runs with the same world size give the same bits. Each rank
** sums one slice of each gradient and sends it to the others (a reduce-scatter
** then an all-gather), so the work and the traffic are spread over the ranks;
** a gradient that becomes .grad is exchanged in place, with no copy.
** A backward that fails on one rank leaves the ranks out of step: the
** reducer then refuses to run again (the run must restart).
** Creating one is collective (the ranks check that their lists agree).
*/
typedef struct dn_dist_reducer dn_dist_reducer;
typedef struct dn_dist_reducer_stats {
  int buckets;             /* buckets of the parameter list */
  int64_t elements;        /* float32 elements reduced per step */
  int64_t steps;           /* backward passes reduced */
  double wait_seconds;     /* time spent at the end of backward waiting for the exchange */
  double reduce_seconds;   /* time spent in the reducer altogether (posting, sums, waits) */
} dn_dist_reducer_stats;

/* A reducer over count float32 parameters (leaves that require grad); bucket_bytes >= 1. In a world of one
   rank nothing is exchanged: a gradient is only scaled by its weight when that is not 1. */
DN_API dn_status dn_dist_reducer_new(dn_dist_reducer **out, dn_tensor *const *params, int count, int64_t bucket_bytes);
/* Removes the hooks and frees the reducer (NULL is a no-op). Not during a backward. */
DN_API void dn_dist_reducer_free(dn_dist_reducer *r);
/* Every rank's weight in the sum (n = world size, each finite and >= 0; the same on every rank): count[r]/total
   for a loss that is a mean over a global batch; 1/world size each to average (the default). */
DN_API dn_status dn_dist_reducer_set_weights(dn_dist_reducer *r, const double *weights, int n);
/* Counters since the reducer was made. */
DN_API void dn_dist_reducer_get_stats(const dn_dist_reducer *r, dn_dist_reducer_stats *stats);

DN_END_DECLS

#endif
