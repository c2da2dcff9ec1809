#!/usr/bin/env bash
# Installs what is missing, builds unroll in several configurations and runs
# every test:
#   build           the default build: every test, example and bench target
#   build-omp       OpenMP: the kernel and thread tests
#   build-san       clang AddressSanitizer + UndefinedBehaviorSanitizer: every test
#   build-shared    shared libraries: every test, and the exported symbols
#   build-blas      OpenBLAS for the products: every test
#   build-portable  UNROLL_NATIVE=OFF: the kernel tests
#   build-mpi       Open MPI: the data-parallel tests under mpiexec -n 2
#   build-consumer  the five ways a project consumes unroll (tests/consumer/run.sh)
#   build-docs      the API reference: doxygen with zero warnings (scripts/check_docs.sh)
#   reliability     fuzzers, coverage, static analysis, valgrind (scripts/reliability.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
start=$SECONDS
stage() { printf '\n== %s (%ds so far)\n' "$*" $((SECONDS - start)); }
run_ctest() { (cd "$1" && shift && ctest --output-on-failure -j "$jobs" "$@"); }

stage "default build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$jobs"
run_ctest build

stage "OpenMP build: kernel and thread tests"
# gcc's OpenMP runtime (libgomp) comes with gcc itself.
cmake -S . -B build-omp -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNROLL_WITH_OPENMP=ON \
  -DUNROLL_BUILD_EXAMPLES=OFF
cmake --build build-omp -j "$jobs" --target test_kernels test_threads unroll_bench
run_ctest build-omp -R '^test_(kernels|threads)$'

stage "sanitizer build"
CC=clang cmake -S . -B build-san -DCMAKE_BUILD_TYPE=Debug -DUNROLL_SANITIZE=ON \
  -DUNROLL_BUILD_BENCH=OFF
cmake --build build-san -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_ctest build-san

stage "shared build"
cmake -S . -B build-shared -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_SHARED_LIBS=ON \
  -DUNROLL_BUILD_BENCH=OFF
cmake --build build-shared -j "$jobs"
run_ctest build-shared

stage "OpenBLAS build"
cmake -S . -B build-blas -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNROLL_WITH_BLAS=ON \
  -DUNROLL_BUILD_EXAMPLES=OFF -DUNROLL_BUILD_BENCH=OFF
cmake --build build-blas -j "$jobs"
# One BLAS thread: the products' results must not depend on OpenBLAS's own threads.
OPENBLAS_NUM_THREADS=1 run_ctest build-blas

stage "portable build (UNROLL_NATIVE=OFF): kernel tests"
cmake -S . -B build-portable -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNROLL_NATIVE=OFF \
  -DUNROLL_BUILD_EXAMPLES=OFF -DUNROLL_BUILD_BENCH=OFF
cmake --build build-portable -j "$jobs" --target test_cpu test_kernels test_threads test_ops_math test_ops_fused
# every CPU variant of the kernels (run-time dispatch), then the generic one alone
run_ctest build-portable -R '^test_(cpu|kernels|threads|ops_math|ops_fused)$'
UNROLL_CPU=generic build-portable/tests/test_kernels --jobs "$jobs"

stage "MPI build: data-parallel tests under mpiexec -n 2"
cmake -S . -B build-mpi -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNROLL_WITH_MPI=ON \
  -DUNROLL_BUILD_EXAMPLES=OFF -DUNROLL_BUILD_BENCH=OFF
cmake --build build-mpi -j "$jobs" --target test_dist test_errors
run_ctest build-mpi -R '^(mpi_dist|test_errors)$'

stage "consumers: find_package, pkg-config, add_subdirectory, .deb"
bash tests/consumer/run.sh build-consumer

stage "API reference: doxygen, zero warnings"
bash scripts/check_docs.sh

stage "reliability: fuzzing, coverage, static analysis, valgrind"
bash scripts/reliability.sh

stage "done"
