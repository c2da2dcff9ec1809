#!/usr/bin/env python3
"""Runs the benchmark workloads in unroll and in PyTorch, interleaved, and
prints a markdown table of medians and ratios.

    /usr/bin/python3 bench/side_by_side.py --data ../shared/data/tinyshakespeare.txt

unroll's figures come from build/bench/unroll_bench. PyTorch runs in the same
machine with 1 intra-op thread, twice per workload: an op-by-op loop that
mirrors the workload's equations ("torch-ops") and, for W3/W4/W4g, the
library's nn.RNN/LSTM/GRU + Linear ("torch-nn"). Each measurement is a fresh
process: 3 warm-up steps, then single steps timed for --seconds, median. The
whole round is repeated --rounds times and the medians of the rounds are
reported. PyTorch is optional: without it the script says so and exits 0.

Like is compared with like: unroll's dense-onehot variant (the products
torch-ops and torch-nn run) and its gather variant are printed apart, and the
ratios use dense-onehot; "best" (the faster of the two) is printed beside.

With a GEMM ceiling (bench/gemm_ceiling; --ceiling PATH, or build/bench/
gemm_ceiling when it is built) the script runs it once and prints each
W3/W4/W4g figure as a fraction of the ceiling, for every kernel the tool
timed (builtin; openblas in a build with UNROLL_BENCH_CBLAS=ON).

--kann DIR names a KANN checkout as a further peer: bench/kann_peer.c is
compiled against DIR's kann.c + kautodiff.c (cc -O3 -march=native, into a
temporary folder) twice, "kann-plain" and "kann-openblas" (KANN's HAVE_CBLAS,
-lopenblas; skipped when it does not build), and both run in every round,
pinned like the rest. The table then gains their columns and the per-round
ratios "unroll vs KANN plain" (median and range). KANN runs without PyTorch.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = ["W1", "W2", "W3", "W4", "W4g"]


# ---- the PyTorch side (run in a child process) ---------------------------------------------

def load_ids(path):
    data = open(path, "rb").read()
    vocab = sorted(set(data))
    rank = {b: i for i, b in enumerate(vocab)}
    return [rank[b] for b in data], len(vocab)


def torch_worker(workload, variant, data, seconds):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    torch.manual_seed(1)
    ids, V = load_ids(data)
    ids_t = torch.tensor(ids)
    kind = {"W1": "rnn", "W2": "rnn", "W3": "rnn", "W4": "lstm", "W4g": "gru"}[workload]
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    if workload == "W1":
        V, H, T, B, n_out = 3, 3, 3, 1, 1
    elif workload == "W2":
        H, T, B, n_out = 100, 25, 1, V
    else:
        H, T, B, n_out = 256, 64, 32, V
    k = 1 / H ** 0.5

    def param(*shape):
        return torch.empty(*shape).uniform_(-k, k).requires_grad_()

    if variant == "torch-nn":
        rnn = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](V, H)
        head = torch.nn.Linear(H, n_out)
        params = list(rnn.parameters()) + list(head.parameters())
    else:
        Wx, Wh, b = param(V, G * H), param(H, G * H), param(G * H)
        bhn = param(H) if kind == "gru" else None
        Wy, by = param(H, n_out), param(n_out)
        params = [p for p in (Wx, Wh, b, bhn, Wy, by) if p is not None]
    if workload == "W1":
        opt = torch.optim.SGD(params, lr=0.1)
    elif workload == "W2":
        opt = torch.optim.Adagrad(params, lr=0.1, eps=1e-8)
    else:
        opt = torch.optim.Adam(params, lr=2e-3)

    def cell(x, h, c):
        gx, gh = x @ Wx, h @ Wh
        if kind == "rnn":
            return torch.tanh(gx + gh + b), None
        if kind == "lstm":
            i, f, g, o = (gx + gh + b).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        xr, xz, xn = (gx + b).chunk(3, 1)
        hr, hz, hn = gh.chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * (hn + bhn))
        return n + z * (h - n), None

    state = {"pos": 0, "h": torch.zeros(1, H)}

    def batch():
        if workload == "W1":
            return torch.tensor([[0], [1], [2], [0]])
        if workload == "W2":
            if state["pos"] + T + 1 > len(ids):
                state["pos"], state["h"] = 0, torch.zeros(1, H)
            seq = ids_t[state["pos"]:state["pos"] + T + 1].view(T + 1, 1)
            state["pos"] += T
            return seq
        offs = torch.randint(0, len(ids) - T - 1, (B,))
        return torch.stack([ids_t[o:o + T + 1] for o in offs.tolist()], 1)  # [T+1, B]

    def step():
        seq = batch()
        x = F.one_hot(seq[:T], V).float()  # [T, B, V]
        opt.zero_grad()
        if variant == "torch-nn":
            h0 = state["h"].view(1, 1, H) if workload == "W2" else None
            out, hT = rnn(x, h0) if kind != "lstm" else rnn(x)
            z = head(out.reshape(T * B, H))
            if workload == "W2":
                state["h"] = hT.detach().view(1, H)
        else:
            h = state["h"] if workload == "W2" else torch.zeros(B, H)
            c = torch.zeros(B, H) if kind == "lstm" else None
            hs = []
            for t in range(T):
                h, c = cell(x[t], h, c)
                hs.append(h)
            z = torch.cat(hs, 0) @ Wy + by
            if workload == "W2":
                state["h"] = h.detach()
        if workload == "W1":
            loss = F.binary_cross_entropy(torch.sigmoid(z), torch.tensor([[1.0], [0.0], [1.0]]),
                                          reduction="sum")
        else:
            tg = seq[1:].reshape(T * B)
            loss = F.cross_entropy(z, tg, reduction="sum" if workload == "W2" else "mean")
        loss.backward()
        if workload == "W2":
            for p in params:
                p.grad.clamp_(-5, 5)
        opt.step()

    for _ in range(3):
        step()
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e6)
    med = statistics.median(times)
    print(f"{workload},{variant},f32,1,{med:.2f},{T * B / (med * 1e-6):.0f},0")


def rss_kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def torch_w6(variant, data, seconds, T):
    """W6 in PyTorch: one forward + backward of the op-by-op W3 (rnn) or W4
    (lstm) net at sequence length T, peak RSS above the pre-step RSS. The
    *-recompute variants wrap sqrt(T) segments in torch.utils.checkpoint, each
    segment holding its cell steps and the head + loss of those steps, as
    unroll's recompute variants do."""
    import math
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint
    torch.set_num_threads(1)
    torch.manual_seed(1)
    ids, V = load_ids(data)
    ids_t = torch.tensor(ids)
    kind = "lstm" if variant.startswith("lstm") else "rnn"
    recompute = variant.endswith("-recompute")
    G, H, B = (4 if kind == "lstm" else 1), 256, 32
    k = 1 / H ** 0.5

    def param(*shape):
        return torch.empty(*shape).uniform_(-k, k).requires_grad_()

    Wx, Wh, b, Wy, by = param(V, G * H), param(H, G * H), param(G * H), param(H, V), param(V)
    params = [Wx, Wh, b, Wy, by]
    opt = torch.optim.SGD(params, lr=1e-3)

    def segment(x, tg, h, c):
        # The steps of one segment and their loss terms (sum of cross-entropies / (T B)).
        loss = h.new_zeros(())
        for t in range(x.shape[0]):
            gates = x[t] @ Wx + h @ Wh + b
            if kind == "rnn":
                h = torch.tanh(gates)
            else:
                i, f, g, o = gates.chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            loss = loss + F.cross_entropy(h @ Wy + by, tg[t], reduction="sum") / (T * B)
        return loss, h, c

    def step():
        offs = torch.randint(0, len(ids), (B,))
        idx = (offs.view(1, B) + torch.arange(T + 1).view(T + 1, 1)) % len(ids)  # cyclic, as unroll's
        seq = ids_t[idx]
        x = F.one_hot(seq[:T], V).float()
        tg = seq[1:]
        opt.zero_grad()
        # The reentrant checkpoint (PyTorch 1.13's non-reentrant one kept every
        # segment's graph here: no memory saved) needs an input that requires grad.
        h, c = torch.zeros(B, H, requires_grad=recompute), torch.zeros(B, H, requires_grad=recompute)
        n_seg = math.ceil(math.sqrt(T)) if recompute else 1
        total = 0
        for s in range(n_seg):
            a, e = s * T // n_seg, (s + 1) * T // n_seg
            if recompute:
                l, h, c = checkpoint(segment, x[a:e], tg[a:e], h, c, use_reentrant=True)
            else:
                l, h, c = segment(x[a:e], tg[a:e], h, c)
            total = total + l
        total.backward()
        opt.step()

    rss0 = rss_kib("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    for _ in range(3):
        step()
    times = []
    for _ in range(3):  # as unroll_bench's W6: 3 warm-up steps, 3 timed ones
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e6)
    med = statistics.median(times)
    peak = max(0, rss_kib("VmHWM:") - rss0) / 1024
    print(f"W6,torch-{variant}-T{T},f32,1,{med:.2f},{T * B / (med * 1e-6):.0f},{peak:.1f}")


# ---- the driver ----------------------------------------------------------------------------

# One thread everywhere: PyTorch's intra-op pool and the BLAS it loads.
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, env=ONE_THREAD)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        return []
    return [line.split(",") for line in out.stdout.splitlines() if line and not line.startswith("workload")]


KANN_VARIANTS = [("kann-plain", []),
                 ("kann-openblas", ["-DHAVE_CBLAS", "-I/usr/include/x86_64-linux-gnu/openblas-pthread", "-lopenblas"])]


def build_kann(kann_dir, out_dir):
    """Compiles bench/kann_peer.c against the checkout kann_dir, one binary
    per KANN_VARIANTS entry that builds; returns [(variant, path)]."""
    if not os.path.exists(os.path.join(kann_dir, "kann.h")):
        print(f"side_by_side: --kann {kann_dir}: no kann.h there; KANN skipped")
        return []
    cc = os.environ.get("CC", "cc")
    built = []
    for variant, extra in KANN_VARIANTS:
        exe = os.path.join(out_dir, variant)
        cmd = [cc, "-O3", "-march=native", "-I" + kann_dir, os.path.join(HERE, "kann_peer.c"),
               os.path.join(kann_dir, "kann.c"), os.path.join(kann_dir, "kautodiff.c"), "-o", exe] + extra + ["-lm"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"side_by_side: {variant} does not build; skipped ({out.stderr.strip().splitlines()[-1:]})")
            continue
        built.append((variant, exe))
    if built:
        print(f"side_by_side: KANN built with {cc} -O3 -march=native: " + ", ".join(v for v, _ in built))
    return built


def print_kann_ratios(results, workloads):
    """Per round: KANN plain's step time over unroll dense-onehot's (above 1:
    unroll is faster), median and range over the rounds."""
    print("\nunroll vs KANN plain, per round (KANN plain step time / unroll dense-onehot step time):\n")
    print("| workload | median | range | rounds |")
    print("|---|---:|---:|---:|")
    for w in workloads:
        u, k = results.get((w, "dense-onehot"), []), results.get((w, "kann-plain"), [])
        r = [kt[0] / ut[0] for ut, kt in zip(u, k)]
        if r:
            print(f"| {w} | {statistics.median(r):.2f}× | {min(r):.2f}–{max(r):.2f}× | {len(r)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--bench", default=os.path.join(HERE, "..", "build", "bench", "unroll_bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--seq", type=int, default=1000, help="W6: the sequence length T")
    ap.add_argument("--ceiling", default=os.path.join(HERE, "..", "build", "bench", "gemm_ceiling"),
                    help="the gemm_ceiling tool (skipped when it does not exist)")
    ap.add_argument("--ceiling-seconds", type=float, default=0.5)
    ap.add_argument("--kann", metavar="DIR", help="a KANN checkout (optional peer)")
    ap.add_argument("--torch-worker", nargs=2, metavar=("WORKLOAD", "VARIANT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.seq < 1:
        ap.error(f"--seq {a.seq}: the W6 sequence length must be at least 1")
    if a.torch_worker:
        if a.torch_worker[0] == "W6":
            torch_w6(a.torch_worker[1], a.data, a.seconds, a.seq)
        else:
            torch_worker(a.torch_worker[0], a.torch_worker[1], a.data, a.seconds)
        return 0
    if "W6" in a.workloads.split(","):
        return side_by_side_w6(a)
    kann_dir = tempfile.mkdtemp(prefix="kann_peer.") if a.kann else None
    try:
        return side_by_side(a, build_kann(a.kann, kann_dir) if a.kann else [])
    finally:
        if kann_dir:
            shutil.rmtree(kann_dir, ignore_errors=True)


def side_by_side(a, kann):
    """The interleaved rounds of unroll, PyTorch (when installed) and the
    KANN binaries in kann ([(variant, path)]), then the tables."""
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
        print("side_by_side: PyTorch is not installed (Debian: python3-torch); "
              + ("PyTorch skipped." if kann else "nothing to compare."))
        if not kann:
            return 0
    if not os.path.exists(a.bench):
        print(f"side_by_side: {a.bench} not found; build unroll first (cmake --build build)")
        return 1
    results = {}
    for _ in range(a.rounds):
        for w in a.workloads.split(","):
            rows = run([a.bench, "--workload", w, "--data", a.data, "--seconds", str(a.seconds)])
            variants = (["torch-ops"] + (["torch-nn"] if w not in ("W1",) else [])) if have_torch else []
            for v in variants:
                rows += run([sys.executable, __file__, "--data", a.data, "--seconds", str(a.seconds),
                             "--torch-worker", w, v])
            for v, exe in kann:
                rows += run([exe, "--workload", w, "--data", a.data, "--seconds", str(a.seconds), "--label", v])
            for r in rows:
                results.setdefault((r[0], r[1]), []).append((float(r[4]), float(r[5])))
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for k, v in results.items()}
    if have_torch:
        import torch
        import re
        blas = re.findall(r"BLAS_INFO=\w+", torch.__config__.show())
        libblas = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
        about = (f"PyTorch {torch.__version__} ({blas[0] if blas else 'BLAS_INFO=?'}, "
                 f"libblas.so.3 -> {libblas})")
    else:
        about = "no PyTorch"
    if kann:
        about += f"; KANN {', '.join(v for v, _ in kann)} (cc -O3 -march=native), CPUs {sorted(os.sched_getaffinity(0))}"
    print(f"\n{time.strftime('%Y-%m-%d')}, {a.rounds} rounds, {a.seconds} s per measurement, f32, 1 thread; "
          f"{about}\n")
    kann_cols = [v for v, _ in kann]
    print("| workload | unroll dense-onehot | unroll gather | unroll best | torch-ops | torch-nn "
          "| dense / torch-ops | dense / torch-nn | best / torch-ops |"
          + "".join(f" {v} | dense / {v} |" for v in kann_cols))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * len(kann_cols))
    for w in a.workloads.split(","):
        ours = {var: v for (wl, var), v in med.items()
                if wl == w and not var.startswith("torch") and not var.startswith("kann")}
        if not ours:
            continue
        best = min(ours.values(), key=lambda x: x[0])
        dense, gather = ours.get("dense-onehot"), ours.get("gather")
        unit = "µs/step" if w == "W1" else "tokens/s"
        fmt = (lambda x: f"{x[0]:.2f} µs" if x else "–") if w == "W1" else (lambda x: f"{x[1]:,.0f}" if x else "–")
        tops, tnn = med.get((w, "torch-ops")), med.get((w, "torch-nn"))
        ratio = (lambda u, t: f"{t[0] / u[0]:.2f}×" if u and t else "–")
        cells = [fmt(dense), fmt(gather), fmt(best), fmt(tops), fmt(tnn),
                 ratio(dense, tops), ratio(dense, tnn), ratio(best, tops)]
        for v in kann_cols:
            cells += [fmt(med.get((w, v))), ratio(dense, med.get((w, v)))]
        print(f"| {w} ({unit}) | " + " | ".join(cells) + " |")
    if kann:
        print_kann_ratios(results, a.workloads.split(","))
    ceiling = {}
    if a.ceiling and os.path.exists(a.ceiling):
        for r in run([a.ceiling, "--seconds", str(a.ceiling_seconds)]):
            if r[0] == "ceiling":
                ceiling[(r[1], r[2])] = float(r[5])
    elif a.ceiling:
        print(f"\nside_by_side: {a.ceiling} not found; no ceiling (cmake --build build --target gemm_ceiling)")
    if ceiling:
        kernels = sorted({k for _, k in ceiling}, key=lambda k: (k != "builtin", k))
        print("\nFraction of the GEMM-bound ceiling (tokens/s at each kernel's measured rate per product shape):\n")
        print("| workload | variant | tokens/s | " + " | ".join(f"ceiling {k} | fraction {k}" for k in kernels) + " |")
        print("|---|---|---:|" + "---:|---:|" * len(kernels))
        for w in a.workloads.split(","):
            if not any((w, k) in ceiling for k in kernels):
                continue
            for (wl, var), v in sorted(med.items()):
                if wl != w:
                    continue
                cells = []
                for k in kernels:
                    c = ceiling.get((w, k))
                    cells += [f"{c:,.0f}" if c else "–", f"{v[1] / c:.2f}" if c else "–"]
                print(f"| {w} | {var} | {v[1]:,.0f} | " + " | ".join(cells) + " |")
    return 0


def side_by_side_w6(a):
    """W6 rows only: unroll_bench --workload W6 --seq T and the PyTorch W6
    variants (store-all and torch.utils.checkpoint over sqrt(T) segments),
    interleaved over --rounds; peak_mib and median µs per training step."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("side_by_side: PyTorch is not installed (Debian: python3-torch); nothing to compare.")
        return 0
    results = {}
    for _ in range(a.rounds):
        rows = run([a.bench, "--workload", "W6", "--seq", str(a.seq), "--data", a.data, "--repeat", "3"])
        for v in ("rnn", "lstm", "rnn-recompute", "lstm-recompute"):
            rows += run([sys.executable, __file__, "--data", a.data, "--seconds", "0", "--seq", str(a.seq),
                         "--torch-worker", "W6", v])
        for r in rows:
            results.setdefault(r[1], []).append((float(r[4]), float(r[6])))
    print(f"\n{time.strftime('%Y-%m-%d')}, W6 at T = {a.seq}, {a.rounds} rounds, f32, 1 thread\n")
    print("| variant | median µs per training step | peak MiB |")
    print("|---|---:|---:|")
    for v, x in sorted(results.items()):
        print(f"| {v} | {statistics.median(y[0] for y in x):,.0f} | {statistics.median(y[1] for y in x):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
