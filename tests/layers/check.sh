#!/bin/sh
# The runtime core calls one way only: a file may call functions of the
# files listed before it in LAYERS, never of those after it. Issue 12 found
# six core files calling each other in a loop; this test fails if such a
# loop comes back.
#
# How: the calls are read from the built static library, not from the
# sources. `nm` gives, per object file, the symbols it defines and the ones
# it needs from elsewhere; a needed symbol defined by another file listed
# here is a call from this file to that one. (Static and inline functions
# never show up: they are a file's own business. Calls through function
# pointers, such as a node's backward, do not show up either: they are the
# engine calling down into an op, which is the allowed direction.) Files
# not listed (error.c, alloc.c, shape.c, pool.c, ...) are utilities below
# the core and are not checked.
#
# usage: check.sh path/to/libdropnet.a
set -eu
lib=$1

# Lowest first. One line per file.
LAYERS='
tensor.c      lifetime, creation, queries, plain aliases
hook.c        gradient hooks: objects, lists, registration, running them
graph.c       grad mode, nodes (record, save, release)
copy.c        copies, writes, gradient accumulation
autograd.c    the engine (dn_backward)
reduce_engine.c the reduction engine: blocks, spans, lanes, columns, lane means
reduce.c      reductions (sum ... min, argmax, argmin), their backward, sum_to_shape
view.c        recording views
elementwise.c the element-wise driver: broadcasting, dtype checks, int32 overflows
unary.c       unary element-wise ops (neg ... tanh)
binary.c      binary element-wise ops (add ... minimum)
clamp_where.c clamp, where and masked_fill
join.c        cat and stack
scan.c        cumsum
vector_norm.c vector p-norms
matmul.c      matrix products
dropout_mask.c the dropout family: random kernels, thresholds, scales
linear.c      the fused linear layer (+ ReLU + dropout)
dropout.c     the dropout family: ops and nodes
dropblock.c   DropBlock: the block mask walk, its op and node
index.c       index ops: index_select, one_hot, gather, scatter_add (and the scatter other backwards use)
sort.c        sort, topk, median, quantile, histc (their backward scatters through index.c)
'
# The calls upwards, by name: a tensor owns its node and its hooks, so
# releasing a tensor releases them (and they release the tensors they hold).
ALLOWED='tensor.c graph.c dn_node_release tensor.c hook.c dn_hook_list_free'

rank() { printf '%s\n' "$LAYERS" | awk -v f="$1" 'NF && $1 == f { print NR; found = 1 } END { if (!found) print 0 }'; }

tmp=${TMPDIR:-/tmp}/dn_layers.$$
trap 'rm -f "$tmp".*' EXIT
# "file symbol" for every global symbol a member defines / needs
# (nm -A prints "lib.a:member.c.o:address TYPE name")
member='{ split($1, part, ":"); f = part[2]; sub(/\.o$/, "", f) }'
nm -A --defined-only -g "$lib" 2>/dev/null | awk "$member"' $(NF-1) ~ /^[TDBR]$/ { print f, $NF }' | sort -k2 > "$tmp.def"
nm -A -u "$lib" 2>/dev/null | awk "$member"' { print f, $NF }' | sort -k2 > "$tmp.use"
[ -s "$tmp.def" ] || { echo "layers: no symbols read from $lib"; exit 1; }

# caller callee symbol, for callers and callees both in LAYERS
join -1 2 -2 2 -o 1.1,2.1,0 "$tmp.use" "$tmp.def" | sort -u > "$tmp.calls"
status=0
checked=0
while read -r caller callee symbol; do
  rc=$(rank "$caller"); re=$(rank "$callee")
  [ "$rc" -gt 0 ] && [ "$re" -gt 0 ] && [ "$caller" != "$callee" ] || continue
  checked=$((checked + 1))
  [ "$re" -lt "$rc" ] && continue
  case " $ALLOWED " in *" $caller $callee $symbol "*) continue ;; esac
  echo "layers: $caller calls $symbol of $callee, which sits above it (see LAYERS in $0)"
  status=1
done < "$tmp.calls"
[ "$checked" -gt 0 ] || { echo "layers: found no calls between the core files (nm output changed?)"; exit 1; }
[ "$status" -eq 0 ] && echo "layers: $checked calls between core files, all downwards"
exit $status
