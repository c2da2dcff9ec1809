#!/usr/bin/env python3
"""Runs two or more builds of unroll_bench interleaved and prints a markdown
table of medians and ratios against the first.

    python3 bench/compare.py --data ../shared/data/tinyshakespeare.txt \\
        before=/tmp/before/build/bench/unroll_bench after=build/bench/unroll_bench

Each NAME=PATH[:ARGS] is one configuration; ARGS (comma-separated) are extra
options for that binary, e.g. "t2=build-omp/bench/unroll_bench:--threads,2,--shards,2".
With --chain each ratio is against the previous configuration instead.
--ranges adds to each ratio the range of the per-round ratios (each round's
two processes against each other), "1.57× (1.50–1.63)".
"--env NAME:VAR=VALUE" (repeatable) sets an environment variable for one
configuration's processes only, e.g. "--env two-active:OMP_WAIT_POLICY=active".
Every round runs each workload in each configuration, one fresh process per
measurement, in turn; the table shows the median over rounds of each
process's median step time. Machines are noisy: compare only figures from
one run of this script. Needs nothing beyond Python 3's standard library.
"""
import argparse
import os
import statistics
import subprocess
import sys


def measure(binary, extra, workload, data, seconds, env):
    cmd = [binary, "--workload", workload, "--seconds", str(seconds)] + extra
    if data:
        cmd += ["--data", data]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.stderr.write(f"compare: {' '.join(cmd)} failed:\n{out.stderr}")
        return []
    rows = [line.split(",") for line in out.stdout.splitlines() if line and not line.startswith("workload")]
    return [(r[0], r[1], float(r[4]), float(r[5]), float(r[6])) for r in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="+", help="NAME=PATH[:ARG,ARG...] of an unroll_bench build")
    ap.add_argument("--data")
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W4g")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--chain", action="store_true",
                    help="ratios against the previous configuration (a chain of commits) instead of the first")
    ap.add_argument("--ranges", action="store_true",
                    help="print each ratio's range over the rounds beside its median")
    ap.add_argument("--env", action="append", default=[], metavar="NAME:VAR=VALUE",
                    help="an environment variable for configuration NAME's processes only")
    a = ap.parse_args()
    envs = {}
    for e in a.env:
        name, _, assign = e.partition(":")
        var, eq, value = assign.partition("=")
        if not eq or not var:
            ap.error(f"--env {e}: expected NAME:VAR=VALUE")
        envs.setdefault(name, dict(os.environ))[var] = value
    configs = []
    for c in a.configs:
        name, _, rest = c.partition("=")
        path, _, args = rest.partition(":")
        configs.append((name, path, [x for x in args.split(",") if x]))
    unknown = set(envs) - {c[0] for c in configs}
    if unknown:
        ap.error(f"--env names no configuration: {', '.join(sorted(unknown))}")
    times = {}  # (workload, variant, config) -> [us per step]
    by_round = {}  # (workload, variant, config) -> {round: us per step}
    tokens = {}
    for rnd in range(a.rounds):
        for w in a.workloads.split(","):
            for name, path, extra in configs:
                for wl, var, us, tps, _mib in measure(path, extra, w, a.data, a.seconds, envs.get(name)):
                    base = var.split("-shards")[0]  # one row whatever the sharding
                    times.setdefault((wl, base, name), []).append(us)
                    by_round.setdefault((wl, base, name), {})[rnd] = us
                    tokens[(wl, base, name)] = tps
    names = [c[0] for c in configs]
    head = " | ".join(f"{n} µs/step" for n in names)
    ratios = " | ".join(f"{n} / {names[i] if a.chain else names[0]}" for i, n in enumerate(names[1:]))
    print(f"| workload | variant | {head} | {ratios} |")
    print("|---|---|" + "---:|" * (2 * len(names) - 1))
    keys = sorted({(w, v) for (w, v, _n) in times}, key=lambda k: (a.workloads.split(",").index(k[0]), k[1]))
    for w, v in keys:
        med = [statistics.median(times[(w, v, n)]) if (w, v, n) in times else None for n in names]
        cells = [f"{m:,.1f}" if m is not None else "–" for m in med]
        ref = [med[i] if a.chain else med[0] for i in range(len(med) - 1)]
        speed = [f"{r / m:.2f}×" if m and r else "–" for r, m in zip(ref, med[1:])]
        if a.ranges:
            for i, n in enumerate(names[1:]):
                mine, theirs = by_round.get((w, v, n), {}), by_round.get((w, v, names[i] if a.chain else names[0]), {})
                per = [theirs[r] / mine[r] for r in mine if r in theirs and mine[r] > 0]
                if per and speed[i] != "–":
                    speed[i] += f" ({min(per):.2f}–{max(per):.2f})"
        print(f"| {w} | {v} | " + " | ".join(cells + speed) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
