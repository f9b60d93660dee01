#!/bin/sh
# scripts/bench/distributed.sh — data-parallel training throughput (issue 16): the reference MLP trained by
# 2 processes x 1 thread (mpirun, nn.DataParallel) against 1 process x 1 thread and 1 process x 2 threads.
#
#   sh scripts/bench/distributed.sh [--rounds N] [--model a|b|c] [--epochs E] [--batch N] [--bucket-mb X] [--dropnet BIN]
#                                   [--mpirun-args "..."]
#
# Each round runs the three alternately (this kind of machine drifts within minutes: only figures measured
# back to back compare), each scripts/bench/train_throughput.lua's steady state (median of epochs 2..E), and
# prints their samples/s, the ratios 2x1 / 1x1 and 2x1 / 1x2, and the share of the 2-process epoch that rank 0
# spent waiting for the gradients' exchange; then the median ratios with their range.
set -eu

here=$(cd "$(dirname "$0")/../.." && pwd)
rounds=3 model=a epochs=4 bucket=25 bin="$here/build/dropnet" extra="" batch=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2 ;;
    --model) model=$2 ;;
    --epochs) epochs=$2 ;;
    --batch) batch="--batch $2" ;;
    --bucket-mb) bucket=$2 ;;
    --dropnet) bin=$2 ;;
    --mpirun-args) extra=$2 ;;
    *) echo "distributed.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
case "$rounds" in ''|*[!0-9]*|0) echo "distributed.sh: --rounds must be a positive integer (got $rounds)" >&2; exit 2 ;; esac
[ -x "$bin" ] || { echo "distributed.sh: no dropnet command at $bin (run make first, or pass --dropnet)" >&2; exit 2; }
command -v mpirun > /dev/null || { echo "distributed.sh: no mpirun (Debian: openmpi-bin)" >&2; exit 2; }
"$bin" -e 'os.exit(require("dropnet").distributed.available() and 0 or 1)' ||
  { echo "distributed.sh: this dropnet is built without MPI" >&2; exit 2; }

# Open MPI refuses root without --allow-run-as-root; in a container that forbids cross-memory attach, also pass
# --mpirun-args "--mca btl_vader_single_copy_mechanism none" (slower: every message is copied twice)
root=""
[ "$(id -u)" = 0 ] && root="--allow-run-as-root"
mpirun="mpirun -np 2 --bind-to core $root $extra"
bench="$here/scripts/bench/train_throughput.lua"
rate() { sed -n 's/^SUMMARY.* \([0-9][0-9]*\) samples\/s.*$/\1/p' | tail -n 1; }

echo "# model $model${batch:+ ($batch)}, $epochs epochs per run, $rounds rounds, buckets of $bucket MB; $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p'); $mpirun"
printf '%5s %10s %10s %10s %9s %9s %8s\n' round 1x1 1x2 2x1 '2x1/1x1' '2x1/1x2' waiting
r1="" r2=""
i=1
while [ "$i" -le "$rounds" ]; do
  one=$("$bin" "$bench" --model "$model" --epochs "$epochs" $batch --threads 1 | rate)
  two_threads=$("$bin" "$bench" --model "$model" --epochs "$epochs" $batch --threads 2 | rate)
  summary=$($mpirun "$bin" "$bench" --model "$model" --epochs "$epochs" $batch --threads 1 --distributed \
    --bucket-mb "$bucket" | grep '^SUMMARY')
  two=$(echo "$summary" | rate)
  waiting=$(echo "$summary" | sed -n 's/.*waiting on the exchange \([0-9.]*%\).*/\1/p')
  [ -n "$one" ] && [ -n "$two_threads" ] && [ -n "$two" ] || { echo "distributed.sh: a run printed no SUMMARY" >&2; exit 1; }
  a=$(awk -v x="$two" -v y="$one" 'BEGIN { printf "%.2f", x / y }')
  b=$(awk -v x="$two" -v y="$two_threads" 'BEGIN { printf "%.2f", x / y }')
  printf '%5d %10d %10d %10d %9s %9s %8s\n' "$i" "$one" "$two_threads" "$two" "$a" "$b" "$waiting"
  r1="$r1 $a" r2="$r2 $b"
  i=$((i + 1))
done
median() {
  echo "$1" | tr ' ' '\n' | sed '/^$/d' | sort -n |
    awk -v what="$2" '{ r[NR] = $1 } END { m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2;
          printf "%s: median %.2f (min %.2f, max %.2f)\n", what, m, r[1], r[NR] }'
}
median "$r1" "2 processes x 1 thread / 1 process x 1 thread"
median "$r2" "2 processes x 1 thread / 1 process x 2 threads"
