#!/usr/bin/env bash
# Installs what unroll needs to build and test on Debian 12, if it is missing.
set -euo pipefail
# libclang-rt-14-dev: the sanitizer runtimes of Debian 12's clang (the clang package does not pull them in)
# libopenblas-dev: the UNROLL_WITH_BLAS build; libopenmpi-dev, openmpi-bin: UNROLL_WITH_MPI;
# gnuplot-nox: the examples' plots (their tests skip visibly without it);
# doxygen, python3: the API reference and its completeness check (scripts/check_docs.sh);
# gcovr, cppcheck, clang-tools (scan-build) and valgrind: scripts/reliability.sh
pkgs=(cmake make gcc clang libclang-rt-14-dev pkg-config libcriterion-dev uthash-dev libopenblas-dev
      libopenmpi-dev openmpi-bin gnuplot-nox doxygen python3 gcovr cppcheck clang-tools valgrind)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
