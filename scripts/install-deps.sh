#!/bin/sh
# Installs the Debian packages dropnet needs, only those that are missing.
# Uses sudo when not root. Safe to run again.
set -eu

# libopenmpi-dev and openmpi-bin (mpirun) give the distributed layer, dn.distributed (optional: without them it says "built without MPI").
# libreadline-dev gives the dropnet prompt line editing (optional: without it the prompt reads plain lines).
# clang and libclang-rt-dev (libFuzzer and the sanitizers' runtimes) serve `make fuzz` only; the -dev metapackages follow the clang that `clang` installs.
PACKAGES="build-essential cmake pkg-config liblua5.4-dev lua5.4 libopenblas-dev libopenblas-openmp-dev
libreadline-dev zlib1g-dev libcmocka-dev lua-busted lua-check luarocks dataset-fashion-mnist libxml2-utils groff-base
clang libclang-rt-dev libopenmpi-dev openmpi-bin"

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "dropnet: installing missing packages:$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
