#!/usr/bin/env bash
# Installs what is missing, builds unroll twice (a normal build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

CC=clang cmake -S . -B build-san -DCMAKE_BUILD_TYPE=Debug -DUNROLL_SANITIZE=ON \
  -DUNROLL_BUILD_BENCH=OFF
cmake --build build-san -j "$jobs"
(cd build-san && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j "$jobs")
