#!/usr/bin/env bash
# Checks the dynamic symbol tables of the shared libraries: every exported
# symbol is public API (ad_* or nn_*, never an internal ad__* / nn__*), and
# every function declared AD_API / NN_API in the public headers is exported.
# Usage: check_exports.sh SOURCE_DIR LIB.so...
set -euo pipefail
src=$1
shift
exported=$(nm -D --defined-only "$@" | awk 'NF == 3 && $2 ~ /^[TDBRVW]$/ {print $3}' | sort -u)
bad=$(printf '%s\n' "$exported" | grep -v -E '^(ad|nn)_' || true)
bad+=$(printf '%s\n' "$exported" | grep -E '^(ad|nn)__' || true)
if [ -n "$bad" ]; then
  echo "exported symbols that are not public API:"
  printf '  %s\n' $bad
  exit 1
fi
declared=$(grep -h -E '^(AD|NN)_API ' "$src"/autodiff/*.h "$src"/nn/*.h |
           grep -o -E '\b(ad|nn)_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$declared") <(printf '%s\n' "$exported"))
if [ -n "$missing" ]; then
  echo "declared in the public headers but not exported:"
  printf '  %s\n' $missing
  exit 1
fi
echo "exports: $(printf '%s\n' "$exported" | wc -l) public symbols, no internal ones"
