#!/usr/bin/env bash
# check_guide_snippets.sh ROOT - every code block in docs/guide.md preceded by
# "<!-- snippet: FILE NAME -->" must equal the region of FILE between
# "guide-snippet begin NAME" and "guide-snippet end" (common indentation removed),
# so the guide's code cannot drift from the compiled examples.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
exec python3 - "$root" <<'PY'
import re, sys, textwrap, pathlib
root = pathlib.Path(sys.argv[1])
guide = (root / "docs/guide.md").read_text()
bad = 0
marks = list(re.finditer(r"<!-- snippet: (\S+) (\S+) -->\n```c\n(.*?)```\n", guide, re.S))
if not marks:
    print("check_guide_snippets: no marked snippet in docs/guide.md"); sys.exit(1)
for m in marks:
    path, name, block = m.group(1), m.group(2), m.group(3)
    src = (root / path).read_text().split("\n")
    try:
        b = next(i for i, l in enumerate(src) if "guide-snippet begin " + name in l)
        e = next(i for i in range(b + 1, len(src)) if "guide-snippet end" in src[i])
    except StopIteration:
        print(f"check_guide_snippets: {path} has no region '{name}'"); bad += 1; continue
    region = textwrap.dedent("\n".join(src[b + 1:e])) + "\n"
    if region != block:
        print(f"check_guide_snippets: docs/guide.md block '{name}' differs from {path}"); bad += 1
print(f"check_guide_snippets: {len(marks)} snippet(s), {bad} differing")
sys.exit(1 if bad else 0)
PY
