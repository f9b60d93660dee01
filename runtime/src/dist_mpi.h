/*
** What dist.c shares with dist_reducer.c when built with MPI (not
** installed): the layer's communicator and its checks.
*/
#ifndef DROPNET_DIST_MPI_H
#define DROPNET_DIST_MPI_H

#include <mpi.h>

#include "dropnet/error.h"

/* The layer's duplicate of MPI_COMM_WORLD (errors return), this rank, the number of ranks. */
MPI_Comm dn_dist_comm(void);
int dn_dist_my_rank(void);
int dn_dist_ranks(void);
/* A failed MPI call as DN_EDIST with MPI's own words. */
dn_status dn_dist_mpi_fail(const char *fn, const char *call, int err);
/* Seconds on the monotonic clock: the timeouts' and the reducer's counters. */
double dn_dist_now(void);
/* Waits for count requests, up to the layer's timeout (dist.c): DN_EDIST naming fn and call when it runs out,
   and the layer then refuses every later call. */
dn_status dn_dist_wait(const char *fn, const char *call, int count, MPI_Request *reqs);
/* DN_OK between init and finalize, else a message naming fn. */
dn_status dn_dist_need_running(const char *fn);
/* Every rank says whether its input was accepted (local), its size in unit and a parameter; DN_OK when they
   all agree, else local (this rank's own failure) or DN_EDIST naming what differed. */
dn_status dn_dist_agree(const char *fn, dn_status local, int64_t size, const char *unit, int64_t param,
                        const char *param_name);

#endif
