#!/bin/sh
# Smoke test of gemm_ceiling (no timing assertions): it runs, prints one gemm
# row per product of each workload with a positive rate and one positive
# ceiling row per workload and kernel.
set -e
out=$("$1" --seconds 0.01)
echo "$out" | awk -F, '
  $1 == "gemm"    { n++; if (!($12 > 0) || !($6 > 0) || !($11 > 0)) bad++ }
  $1 == "ceiling" { c++; if (!($6 > 0) || !($5 > 0)) bad++ }
  END { if (n < 24 || c < 3 || bad) { printf "gemm rows %d, ceiling rows %d, bad %d\n", n, c, bad; exit 1 } }'
"$1" --dtype f64 --seconds 0.01 --workloads W3 | grep -q '^ceiling,W3,builtin,f64,1.146,'
if "$1" --dtype f16 >/dev/null 2>&1; then echo "--dtype f16 accepted"; exit 1; fi
echo ok
