#!/usr/bin/env bash
# unroll-ckpt on a char_rnn checkpoint: info, conversion to a folder of .npy
# files and back (values bit for bit), and its bad inputs (exit 1 with one
# line on stderr, 2 for usage errors).
# Usage: check_unroll_ckpt.sh TOOL CHECKPOINT WORK_DIR
set -uo pipefail
tool=$1 ckpt=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
failures=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; failures=$((failures + 1)); }

out=$("$tool" info "$ckpt") && grep -q "checksums ok" <<< "$out" && grep -q "^optimizer: " <<< "$out" &&
  grep -q "^parameters: " <<< "$out" && ok "info on a checkpoint" || { bad "info on a checkpoint"; echo "$out"; }
n=$(sed -n 's/^parameters: \([0-9]*\).*/\1/p' <<< "$out")

"$tool" convert "$ckpt" "$work/params/" > /dev/null && [ "$(ls "$work/params" | wc -l)" = "$n" ] &&
  ok "checkpoint -> folder: $n arrays" || bad "checkpoint -> folder"
out=$("$tool" info "$work/params") && grep -q "folder of $n .npy arrays" <<< "$out" && ok "info on a folder" ||
  { bad "info on a folder"; echo "$out"; }
first=$(ls "$work/params" | head -n 1)
"$tool" info "$work/params/$first" | grep -q ".npy array" && ok "info on one .npy" || bad "info on one .npy"
"$tool" convert "$work/params" "$work/back.ckpt" > /dev/null && "$tool" convert "$work/back.ckpt" "$work/again/" > /dev/null &&
  diff -r "$work/params" "$work/again" > /dev/null && ok "folder -> checkpoint -> folder, bit for bit" ||
  bad "folder -> checkpoint -> folder"
"$tool" info "$work/back.ckpt" | grep -q "^optimizer: none" && ok "a converted checkpoint holds parameters only" ||
  bad "converted checkpoint contents"
"$tool" convert "$ckpt" "$work/w.safetensors" > /dev/null && "$tool" convert "$work/w.safetensors" "$work/st/" > /dev/null &&
  diff -r "$work/params" "$work/st" > /dev/null && ok "checkpoint -> safetensors -> folder, bit for bit" ||
  bad "checkpoint -> safetensors -> folder"
out=$("$tool" info "$work/w.safetensors") && grep -q "safetensors, $n tensors" <<< "$out" && ok "info on a safetensors file" ||
  { bad "info on a safetensors file"; echo "$out"; }

refuses() { # refuses STATUS WHAT ARGS...: the exit status and one line on stderr
  local want=$1 what=$2
  shift 2
  "$tool" "$@" > /dev/null 2> "$work/err"
  local got=$?
  if [ "$got" = "$want" ] && [ "$(wc -l < "$work/err")" -ge 1 ] && { [ "$want" = 2 ] || [ "$(wc -l < "$work/err")" = 1 ]; }; then
    ok "$what (exit $got: $(head -n 1 "$work/err"))"
  else
    bad "$what (exit $got, want $want)"
    cat "$work/err"
  fi
}
head -c 100 "$ckpt" > "$work/truncated.ckpt"
cp "$ckpt" "$work/flipped.ckpt"
printf '\xff' | dd of="$work/flipped.ckpt" bs=1 seek=200 conv=notrunc 2> /dev/null
mkdir -p "$work/empty"
refuses 1 "a missing file" info "$work/no_such.ckpt"
refuses 1 "a truncated checkpoint" info "$work/truncated.ckpt"
refuses 1 "a flipped byte" info "$work/flipped.ckpt"
refuses 1 "a text file" info "$0"
refuses 1 "an empty folder" info "$work/empty"
refuses 1 "a corrupt source" convert "$work/flipped.ckpt" "$work/out/"
refuses 1 "a single .npy as a parameter set" convert "$work/params/$first" "$work/x.ckpt"
head -c 40 "$work/w.safetensors" > "$work/cut.safetensors"
refuses 1 "a truncated safetensors file" info "$work/cut.safetensors"
refuses 1 "a truncated safetensors source" convert "$work/cut.safetensors" "$work/y.ckpt"
refuses 2 "no arguments"
refuses 2 "an unknown command" list "$ckpt"
echo "$((19 - failures)) passed, $failures failed"
[ "$failures" = 0 ]
