#!/usr/bin/env python3
"""The data-parallel scaling model of docs/distributed.md.

Given a measured compute time per step on one rank (the whole global batch) and the gradient
bytes, prints the predicted step time and parallel efficiency at N ranks for ring-style
all-reduce on a link of bandwidth beta and latency alpha:

    t_comm(N)  = 2 (N-1)/N * S / beta + 2 (N-1) * alpha
    strong:    t(N) = t_1 / N + t_comm(N)      (global batch fixed, split over the ranks)
    weak:      t(N) = t_1     + t_comm(N)      (per-rank batch fixed, the global batch grows)
    efficiency = ideal / t(N)

nn_dist_average_grads (all-to-all + all-gather, rank-order sums) moves the same bytes as a ring
all-reduce and has the same 2 (N-1) message latencies.

    bench/scaling_model.py --step-ms 20.1 --bytes 398336 --batch 32
"""
import argparse

LINKS = [("10 Gb/s", 10e9 / 8, 20e-6), ("100 Gb/s", 100e9 / 8, 3e-6)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--step-ms", type=float, required=True, help="one rank, whole batch")
    ap.add_argument("--bytes", type=float, required=True, help="gradient bytes per step")
    ap.add_argument("--batch", type=int, default=32, help="global batch (strong scaling limit)")
    ap.add_argument("--name", default="")
    a = ap.parse_args()
    t1 = a.step_ms * 1e-3
    print(f"{a.name}: t_1 = {a.step_ms:.2f} ms, S = {a.bytes / 1e6:.2f} MB, global batch {a.batch}")
    print("| link (alpha) | N | t_comm ms | strong: t(N) ms, efficiency | weak: efficiency |")
    print("|---|---:|---:|---:|---:|")
    for name, beta, alpha in LINKS:
        for n in (8, 64, 512):
            comm = 2 * (n - 1) / n * a.bytes / beta + 2 * (n - 1) * alpha
            if n <= a.batch:
                strong = t1 / n + comm
                s = f"{strong * 1e3:.3f} ms, {t1 / n / strong:.0%}"
            else:
                s = f"(a batch of {a.batch} splits over at most {a.batch} ranks)"
            print(f"| {name} ({alpha * 1e6:.0f} us) | {n} | {comm * 1e3:.3f} | {s} | {t1 / (t1 + comm):.0%} |")


if __name__ == "__main__":
    main()
