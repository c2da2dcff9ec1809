#!/usr/bin/env bash
# Installs what is missing, builds unroll four times (a normal build, an
# OpenMP build, a portable build and an AddressSanitizer + UndefinedBehaviorSanitizer build)
# and runs every test; the OpenMP build runs the kernel and thread tests, and a
# portable build (UNROLL_NATIVE=OFF) the kernel tests on each CPU variant.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

# gcc's OpenMP runtime (libgomp) comes with gcc itself.
cmake -S . -B build-omp -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNROLL_WITH_OPENMP=ON \
  -DUNROLL_BUILD_EXAMPLES=OFF
cmake --build build-omp -j "$jobs" --target test_kernels test_threads unroll_bench
(cd build-omp && ctest --output-on-failure -j "$jobs" -R '^test_(kernels|threads)$')

# A portable build (UNROLL_NATIVE=OFF): the kernel tests on every CPU variant
# of the kernels (run-time dispatch) and on the generic one alone.
cmake -S . -B build-port -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNROLL_NATIVE=OFF \
  -DUNROLL_BUILD_EXAMPLES=OFF
cmake --build build-port -j "$jobs" --target test_cpu test_kernels test_threads
(cd build-port && ctest --output-on-failure -j "$jobs" -R '^test_(cpu|kernels|threads)$')
UNROLL_CPU=generic build-port/tests/test_kernels --jobs "$jobs"

CC=clang cmake -S . -B build-san -DCMAKE_BUILD_TYPE=Debug -DUNROLL_SANITIZE=ON \
  -DUNROLL_BUILD_BENCH=OFF
cmake --build build-san -j "$jobs"
(cd build-san && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j "$jobs")
