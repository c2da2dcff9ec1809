#!/bin/sh
# Smoke test of unroll_bench (no timing assertions): each workload prints one
# well-formed row per variant with positive figures, in f32 and f64, with the
# mechanisms the bench can turn off (--replay 0, --fused-sequence 0|2,
# --proj-block 0) and with shards; bad options exit non-zero with a message.
set -e
bench=$1
check() { # $1 rows wanted, $2 dtype wanted, the rest the options
    want=$1 dtype=$2; shift 2
    out=$("$bench" --repeat 3 --seconds 0.05 --seq 12 "$@" 2>/dev/null) || { echo "$*: exit status $?"; exit 1; }
    printf '%s\n' "$out" | awk -F, -v want="$want" -v dtype="$dtype" -v opts="$*" '
      NR == 1 { if ($0 != "workload,variant,dtype,threads,median_us_per_step,tokens_per_s,peak_mib") bad++; next }
      { n++; if (NF != 7 || $3 != dtype || !($5 > 0) || !($6 > 0) || !($7 >= 0)) { print "bad row: " $0; bad++ } }
      END { if (n != want || bad) { printf "%s: %d rows (want %d), %d bad\n", opts, n, want, bad; exit 1 } }'
}
check 13 f32 --workload all
check 2 f64 --workload W3 --dtype f64
check 1 f32 --workload W1 --replay 0
check 2 f32 --workload W3 --fused-sequence 0 --proj-block 0
check 2 f32 --workload W4g --fused-sequence 2
check 2 f32 --workload W4 --shards 2
refused() { # the options must fail with a message that names the problem ($1)
    msg=$1; shift
    if err=$("$bench" --repeat 2 "$@" 2>&1 >/dev/null); then echo "$*: accepted"; exit 1; fi
    case $err in *"$msg"*) ;; *) echo "$*: no '$msg' in: $err"; exit 1 ;; esac
}
refused usage --bogus 1
refused usage --dtype f16
refused "unknown workload 'W9'" --workload W9
refused "does not divide the batch" --workload W3 --shards 3
refused "at least 1" --threads 0
refused "cannot read '/nonexistent'" --data /nonexistent
refused "sequence length" --workload W6 --seq 0
echo ok
