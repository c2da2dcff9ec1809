#!/usr/bin/env bash
# Checks the dynamic symbol tables of the shared libraries: every exported
# symbol is public API (ad_* or nn_*, never an internal ad__* / nn__*), and
# every function declared AD_API / NN_API in the public headers is exported.
# Usage: check_exports.sh SOURCE_DIR [--without HEADER]... LIB.so...
# (--without: a header of an optional part this build leaves out, e.g. nn/dist.h)
set -euo pipefail
src=$1
shift
without=()
while [ "${1:-}" = "--without" ]; do
  without+=("$src/$2")
  shift 2
done
exported=$(nm -D --defined-only "$@" | awk 'NF == 3 && $2 ~ /^[TDBRVW]$/ {print $3}' | sort -u)
bad=$(printf '%s\n' "$exported" | grep -v -E '^(ad|nn)_' || true)
bad+=$(printf '%s\n' "$exported" | grep -E '^(ad|nn)__' || true)
if [ -n "$bad" ]; then
  echo "exported symbols that are not public API:"
  printf '  %s\n' $bad
  exit 1
fi
headers=()
for h in "$src"/autodiff/*.h "$src"/nn/*.h; do
  skip=0
  for w in "${without[@]+"${without[@]}"}"; do [ "$h" = "$w" ] && skip=1; done
  [ $skip = 1 ] || headers+=("$h")
done
declared=$(grep -h -E '^(AD|NN)_API ' "${headers[@]}" |
           grep -o -E '\b(ad|nn)_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$declared") <(printf '%s\n' "$exported"))
if [ -n "$missing" ]; then
  echo "declared in the public headers but not exported:"
  printf '  %s\n' $missing
  exit 1
fi
echo "exports: $(printf '%s\n' "$exported" | wc -l) public symbols, no internal ones"
