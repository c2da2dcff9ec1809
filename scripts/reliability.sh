#!/usr/bin/env bash
# The reliability steps of the test command (docs/reliability.md), each in
# its own build folder, each printing its figures:
#   1. fuzzing: libFuzzer builds of tests/fuzz, each target run for
#      FUZZ_SECONDS (default 30) from the committed corpus;
#   2. coverage: a gcc --coverage -O0 build runs the suite; gcovr reports
#      line and branch % over autodiff/ and nn/ (a goal, not a gate);
#   3. static analysis: cppcheck and clang's analyzer (scan-build) over
#      autodiff/ and nn/, zero findings (false positives are suppressed
#      inline with their reason);
#   4. valgrind memcheck over the examples at their test settings: no error,
#      nothing definitely or indirectly lost.
# A missing tool is an error (scripts/deps.sh installs them); any failure
# makes the script exit non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${FUZZ_SECONDS:-30}
# The checkpoint and folder targets write a file per input: on a tmpfs that
# is several times faster than on disk.
fuzz_tmp=${TMPDIR:-/tmp}
[ -d /dev/shm ] && [ -w /dev/shm ] && fuzz_tmp=/dev/shm
for tool in clang gcc gcovr cppcheck scan-build valgrind; do
  command -v "$tool" >/dev/null || { echo "reliability: $tool is missing" >&2; exit 1; }
done
summary=()

# ---- 1. fuzzing ------------------------------------------------------------------------
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNROLL_BUILD_FUZZ=ON \
  -DUNROLL_BUILD_EXAMPLES=OFF -DUNROLL_BUILD_BENCH=OFF >/dev/null
targets=(npy checkpoint checkpoint_crc npy_dir safetensors)
cmake --build build-fuzz -j "$jobs" --target "${targets[@]/#/fuzz_}" >/dev/null
for t in "${targets[@]}"; do
  # The committed corpus is read only; new inputs go to a scratch copy.
  work=build-fuzz/corpus/$t
  rm -rf "$work" && mkdir -p "$work" && cp tests/fuzz/corpus/$t/* "$work"/
  log=build-fuzz/fuzz_$t.log
  if ! TMPDIR=$fuzz_tmp build-fuzz/tests/fuzz/fuzz_$t -max_total_time="$fuzz_seconds" -print_final_stats=1 \
       -artifact_prefix=build-fuzz/crash_$t- "$work" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "reliability: fuzz_$t found a failure (see $log)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  summary+=("fuzz $t: $runs runs in ${fuzz_seconds} s, corpus $(ls "$work" | wc -l) inputs, no failure")
  echo "${summary[-1]}"
done

# ---- 2. coverage -----------------------------------------------------------------------
cmake -S . -B build-cov -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=gcc -DUNROLL_NATIVE=OFF \
  -DUNROLL_BUILD_BENCH=OFF -DCMAKE_C_FLAGS="--coverage -O0" \
  -DCMAKE_EXE_LINKER_FLAGS=--coverage -DCMAKE_SHARED_LINKER_FLAGS=--coverage >/dev/null
cmake --build build-cov -j "$jobs" >/dev/null
find build-cov -name '*.gcda' -delete
(cd build-cov && ctest --output-on-failure -j "$jobs" >ctest.log 2>&1) || {
  tail -60 build-cov/ctest.log >&2; echo "reliability: the coverage build's tests failed" >&2; exit 1; }
cov=$(gcovr -r . --object-directory build-cov --filter 'autodiff/' --filter 'nn/' --print-summary \
      -o build-cov/coverage.txt)
lines=$(sed -n 's/^lines: *\([0-9.]*%\).*/\1/p' <<<"$cov")
branches=$(sed -n 's/^branches: *\([0-9.]*%\).*/\1/p' <<<"$cov")
summary+=("coverage of autodiff/ and nn/: lines $lines, branches $branches (goal: 97 %, 90 %)")
echo "${summary[-1]}"

# ---- 3. static analysis ----------------------------------------------------------------
cppcheck_log=build-cov/cppcheck.txt
cppcheck --enable=warning,portability,performance --std=c11 --inline-suppr --quiet \
  --max-configs=1 -I autodiff -I nn --suppress=missingIncludeSystem --suppress=toomanyconfigs \
  --template='{file}:{line}: {id}: {message}' autodiff nn 2>"$cppcheck_log"
cppcheck_n=$(grep -c ': ' "$cppcheck_log" || true)
rm -rf build-scan
scan-build cmake -S . -B build-scan -DCMAKE_BUILD_TYPE=Debug -DUNROLL_BUILD_TESTS=OFF \
  -DUNROLL_BUILD_EXAMPLES=OFF -DUNROLL_BUILD_BENCH=OFF -DUNROLL_NATIVE=OFF >/dev/null
scan_log=build-scan/scan.log
scan-build -o build-scan/report cmake --build build-scan -j "$jobs" --target unroll_nn >"$scan_log" 2>&1
scan_n=$(grep -c ' warning: .*\[' "$scan_log" || true)
# Findings listed with their reason in scripts/analysis_known.txt are
# printed and counted; any other fails the step.
scan_new=0
while IFS= read -r line; do
  file=${line%%:*}; file=${file#"$PWD"/}
  check=$(sed -n 's/.*\[\([A-Za-z.]*\)\]$/\1/p' <<<"$line")
  if grep -qxF "$file: $check" scripts/analysis_known.txt; then
    echo "known: $line"
  else
    echo "NEW: $line" >&2
    scan_new=$((scan_new + 1))
  fi
done < <(grep ' warning: .*\[' "$scan_log" | sort -u)
summary+=("static analysis: cppcheck $cppcheck_n findings, clang analyzer $scan_n findings ($scan_new not in scripts/analysis_known.txt)")
echo "${summary[-1]}"
if [ "$cppcheck_n" -ne 0 ] || [ "$scan_new" -ne 0 ]; then
  cat "$cppcheck_log" >&2
  echo "reliability: static analysis findings without an explanation (see above)" >&2
  exit 1
fi

# ---- 4. valgrind -----------------------------------------------------------------------
# No -march=native: valgrind does not decode every instruction set extension.
cmake -S . -B build-vg -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNROLL_NATIVE=OFF \
  -DUNROLL_BUILD_TESTS=OFF -DUNROLL_BUILD_BENCH=OFF >/dev/null
cmake --build build-vg -j "$jobs" >/dev/null
vg_errors=0
vg_runs=0
run_vg() { # name, arguments...
  local name=$1; shift
  local log=build-vg/valgrind_$name.log
  if ! (cd build-vg && valgrind --error-exitcode=99 --leak-check=full \
        --errors-for-leak-kinds=definite,indirect --log-file="valgrind_$name.log" \
        "./$name" "$@" >/dev/null); then
    cat "$log" >&2
    vg_errors=$((vg_errors + 1))
  fi
  vg_runs=$((vg_runs + 1))
  echo "valgrind $name: $(grep -o 'ERROR SUMMARY: [0-9]* errors' "$log"), $(grep -o 'definitely lost: [0-9,]* bytes' "$log" || echo 'definitely lost: 0 bytes'), $(grep -o 'indirectly lost: [0-9,]* bytes' "$log" || echo 'indirectly lost: 0 bytes')"
}
# The settings of tests/CMakeLists.txt's example tests (small ones where the
# defaults are meant for a longer run).
run_vg char_rnn --steps 12 --hidden 32 --layers 2 --seq 16 --batch 4 --sample 40 --every 5 \
  --checkpoint char_rnn_vg.ckpt --csv char_rnn_vg.csv
run_vg adding_problem --T 20 --steps 30
run_vg min_char_rnn --steps 40
run_vg long_sequence 300
for ex in custom_cell fit_sine sentiment train_lstm; do run_vg "$ex"; done
summary+=("valgrind: $vg_runs examples, $vg_errors with errors or leaks")
echo "${summary[-1]}"

echo "---- reliability summary"
printf '%s\n' "${summary[@]}"
[ "$vg_errors" -eq 0 ] || { echo "reliability: valgrind found errors or leaks" >&2; exit 1; }
