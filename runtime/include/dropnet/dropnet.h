/*
** dropnet: a neural-network runtime in C. Include this one header.
*/
#ifndef DROPNET_H
#define DROPNET_H

#include "dropnet/version.h"
#include "dropnet/error.h"
#include "dropnet/alloc.h"
#include "dropnet/tensor.h"
#include "dropnet/elementwise.h"
#include "dropnet/reduce.h"
#include "dropnet/matmul.h"
#include "dropnet/index.h"
#include "dropnet/join.h"
#include "dropnet/sort.h"
#include "dropnet/rng.h"
#include "dropnet/parallel.h"
#include "dropnet/autograd.h"
#include "dropnet/nn.h"
#include "dropnet/conv.h"
#include "dropnet/pooling.h"
#include "dropnet/norm.h"
#include "dropnet/loss.h"
#include "dropnet/optim.h"
#include "dropnet/dropout.h"
#include "dropnet/dropblock.h"
#include "dropnet/augment.h"
#include "dropnet/io.h"
#include "dropnet/dist.h"

#endif
