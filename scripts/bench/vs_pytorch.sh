#!/bin/sh
# scripts/bench/vs_pytorch.sh — training throughput of dropnet against PyTorch, side by side.
#
#   sh scripts/bench/vs_pytorch.sh [--pairs N] [--model a|b|c] [--epochs E] [--pause S] [--peers DIR]
#                                  [--dropnet BIN] [--peer-malloc keep|default]
#
# Runs scripts/bench/train_throughput.lua and the PyTorch reference script
# (torch_mlp_train.py in DIR, default ../shared/peers beside the checkout)
# alternately, N times each, and prints each pair's samples/s, their ratio
# and the median ratio. Alternating matters: this kind of machine drifts by
# 10-20% within minutes, so only ratios measured back to back compare.
# Every run starts after a pause of S seconds (default 20; 0: none): a run
# that starts as soon as the other framework's has exited is slower, on both
# sides (measured on model c, 2026-12-05, two rounds each: dropnet 6,165 and
# 6,353 samples/s right after PyTorch against 6,541 and 6,721 after 20 s;
# PyTorch 2,071 and 2,150 right after dropnet against 2,191 and 2,264).
# PyTorch runs as its README says: Debian's /usr/bin/python3 with
# python3-torch, OMP_WAIT_POLICY=PASSIVE, 2 threads; for the CNN (model c)
# with glibc keeping freed memory as well (--peer-malloc keep, the default
# there: why in scripts/bench/all.sh, pt_train_cnn). dropnet never needs
# PyTorch; this script is for measuring only.
set -eu

here=$(cd "$(dirname "$0")/../.." && pwd)
pairs=5 model=a epochs=3 pause=20 peers="$here/../shared/peers" bin="$here/build/dropnet" peer_malloc=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) pairs=$2 ;;
    --model) model=$2 ;;
    --epochs) epochs=$2 ;;
    --pause) pause=$2 ;;
    --peers) peers=$2 ;;
    --dropnet) bin=$2 ;;
    --peer-malloc) peer_malloc=$2 ;;
    *) echo "vs_pytorch.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
case "$pairs" in ''|*[!0-9]*|0) echo "vs_pytorch.sh: --pairs must be a positive integer (got $pairs)" >&2; exit 2 ;; esac
[ -n "$peer_malloc" ] || { [ "$model" = c ] && peer_malloc=keep || peer_malloc=default; }
case "$peer_malloc" in keep|default) ;; *) echo "vs_pytorch.sh: --peer-malloc must be keep or default (got $peer_malloc)" >&2; exit 2 ;; esac
case "$pause" in ''|*[!0-9]*) echo "vs_pytorch.sh: --pause must be a whole number of seconds (got $pause)" >&2; exit 2 ;; esac
[ -x "$bin" ] || { echo "vs_pytorch.sh: no dropnet command at $bin (run make first, or pass --dropnet)" >&2; exit 2; }
[ -f "$peers/torch_mlp_train.py" ] || {
  echo "vs_pytorch.sh: no torch_mlp_train.py in $peers (pass --peers DIR)" >&2; exit 2; }
/usr/bin/python3 -c "import torch" 2> /dev/null || {
  echo "vs_pytorch.sh: /usr/bin/python3 cannot import torch (Debian package python3-torch)" >&2; exit 2; }

# The samples/s of a SUMMARY line: "..., 12345 samples/s" (last number before "samples/s").
rate() { sed -n 's/^SUMMARY.* \([0-9][0-9]*\) samples\/s.*$/\1/p' | tail -n 1; }

echo "# model $model, $epochs epochs per run, $pairs pairs, ${pause} s before each run; sgemm: $("$bin" -e 'io.write(require("dropnet").matmul_backend())'); PyTorch's glibc malloc: $peer_malloc"
printf '%4s %12s %12s %7s\n' pair dropnet pytorch ratio
ratios=""
i=1
while [ "$i" -le "$pairs" ]; do
  sleep "$pause"
  ours=$("$bin" "$here/scripts/bench/train_throughput.lua" --model "$model" --epochs "$epochs" | rate)
  sleep "$pause"
  theirs=$(cd "$peers" && if [ "$peer_malloc" = keep ]; then
      export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296; fi
    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 torch_mlp_train.py --model "$model" --epochs "$epochs" --threads 2 | rate)
  [ -n "$ours" ] && [ -n "$theirs" ] || { echo "vs_pytorch.sh: a run printed no SUMMARY line" >&2; exit 1; }
  ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
  printf '%4d %12d %12d %7s\n' "$i" "$ours" "$theirs" "$ratio"
  ratios="$ratios $ratio"
  i=$((i + 1))
done
echo "$ratios" | tr ' ' '\n' | sed '/^$/d' | sort -n |
  awk '{ r[NR] = $1 } END { m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2;
        printf "median ratio %.2f (min %.2f, max %.2f)\n", m, r[1], r[NR] }'
