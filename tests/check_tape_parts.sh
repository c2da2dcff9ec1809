#!/usr/bin/env bash
# Each part of struct ad_tape (autodiff/internal.h) is written and read only
# by the file that owns it; other files go through that file's functions or
# the accessors in internal.h. Fails naming the file and line that reaches
# into a part it does not own.
set -euo pipefail
src=${1:-$(cd "$(dirname "$0")/.." && pwd)}
status=0
# part owner-file
parts=(
  "arena arena.c"
  "nodes record.c"
  "pool release.c"
  "stack stacked_grads.c"
  "packs packed_cache.c"
  "fwd forward.c"
  "probe probe.c"
  "gram copy_grads.c"
  "scratch checkpoint.c"
  "replay replay.c"
)
for entry in "${parts[@]}"; do
  set -- $entry
  part=$1 owner=$2
  while IFS= read -r hit; do
    echo "check_tape_parts: $hit: reaches into the tape's '$part' part, owned by autodiff/$owner"
    status=1
  done < <(cd "$src" && grep -nE "\b(t|tape|s)->$part\b" autodiff/*.c nn/*.c | grep -v "^autodiff/$owner:" || true)
done
# tape.c's own fields
fields='status|pass|grad_enabled|anomaly|copy_grads|lean_copies|fast_off|msg'
while IFS= read -r hit; do
  echo "check_tape_parts: $hit: reaches into tape.c's fields (use the accessors in internal.h)"
  status=1
done < <(cd "$src" && grep -nE "\b(t|tape|s)->($fields)\b" autodiff/*.c nn/*.c | grep -v "^autodiff/tape.c:" || true)
[ $status -eq 0 ] && echo "check_tape_parts: every part of the tape is reached only by its owner"
exit $status
