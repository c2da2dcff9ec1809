#!/usr/bin/env python3
"""Writes the reference fixtures under tests/data (run from anywhere).

    /usr/bin/python3 tests/data/make_fixtures.py

npy/  files written by NumPy (good ones, and ones the reader must refuse).
ops/  for each op case: its inputs in0.npy, in1.npy (when binary), the
      output out.npy computed by PyTorch in float64, an upstream gradient
      up.npy and the inputs' gradients g0.npy, g1.npy given that upstream.
Needs NumPy and PyTorch; the test suite only reads the files.
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261124)


def save(path, arr, version=None, c_order=True):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if c_order:
        arr = np.asarray(arr).copy(order="C")
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=version, allow_pickle=False)


def npy_fixtures():
    d = os.path.join(HERE, "npy")
    # Values the C test recomputes: v[i] = 0.5 * i - 1.
    def ramp(shape, dtype):
        n = int(np.prod(shape)) if shape else 1
        return (0.5 * np.arange(n) - 1).astype(dtype).reshape(shape)
    save(f"{d}/f32_2x3.npy", ramp((2, 3), "<f4"))
    save(f"{d}/f64_2x1x3x2.npy", ramp((2, 1, 3, 2), "<f8"))
    save(f"{d}/f64_scalar.npy", ramp((), "<f8"))
    save(f"{d}/f64_5.npy", ramp((5,), "<f8"))
    save(f"{d}/f32_0x3.npy", ramp((0, 3), "<f4"))
    save(f"{d}/f64_3x2_v2.npy", ramp((3, 2), "<f8"), version=(2, 0))
    # Refused: big-endian, Fortran order, an integer dtype, rank 5.
    save(f"{d}/bad_big_endian.npy", ramp((2, 2), ">f8"))
    save(f"{d}/bad_fortran.npy", np.asfortranarray(ramp((2, 3), "<f8")), c_order=False)
    save(f"{d}/bad_int32.npy", np.arange(4, dtype="<i4"))
    save(f"{d}/bad_rank5.npy", ramp((1, 2, 1, 2, 1), "<f8"))
    # Integer files (read as ad_itensor): the extremes of each type.
    save(f"{d}/i64_2x3.npy", np.array([[-2**63, -1, 0], [1, 2**40 + 3, 2**63 - 1]], dtype="<i8"))
    save(f"{d}/i32_4.npy", np.array([-2**31, -1, 7, 2**31 - 1], dtype="<i4"))
    save(f"{d}/u8_2x2.npy", np.array([[0, 1], [200, 255]], dtype="|u1"))
    save(f"{d}/b1_3.npy", np.array([True, False, True]))
    save(f"{d}/i64_0.npy", np.zeros((0,), dtype="<i8"))
    save(f"{d}/i64_scalar.npy", np.array(-42, dtype="<i8"))
    save(f"{d}/i64_2x2_v2.npy", np.array([[5, -6], [7, -8]], dtype="<i8"), version=(2, 0))
    # Refused by the integer reader: int16, big-endian int64.
    save(f"{d}/bad_int16.npy", np.arange(3, dtype="<i2"))
    save(f"{d}/bad_i8_big_endian.npy", np.arange(3, dtype=">i8"))


def t(a, grad=True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def rand(*shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, size=shape)


def op_case(name, fn, inputs, grads=None):
    """Runs fn on float64 tensors, backward with a random upstream, saves it all."""
    d = os.path.join(HERE, "ops", name)
    grads = grads if grads is not None else [True] * len(inputs)
    ts = [t(x, g) for x, g in zip(inputs, grads)]
    out = fn(*ts)
    up = rand(*out.shape) if out.dim() > 0 else np.array(rng.uniform(0.5, 2.0))
    out.backward(torch.tensor(up, dtype=torch.float64))
    for i, x in enumerate(inputs):
        save(f"{d}/in{i}.npy", np.asarray(x, dtype="<f8"))
        if grads[i]:
            save(f"{d}/g{i}.npy", ts[i].grad.numpy().astype("<f8"))
    save(f"{d}/out.npy", out.detach().numpy().astype("<f8"))
    save(f"{d}/up.npy", np.asarray(up, dtype="<f8"))


def op_fixtures():
    op_case("matmul", lambda a, b: a @ b, [rand(3, 4), rand(4, 2)])
    op_case("matmul_ta", lambda a, b: a.T @ b, [rand(4, 3), rand(4, 2)])
    op_case("matmul_tb", lambda a, b: a @ b.T, [rand(3, 4), rand(2, 4)])
    op_case("add", torch.add, [rand(2, 3), rand(3)])
    op_case("sub", torch.sub, [rand(2, 1), rand(1, 3)])
    op_case("mul", torch.mul, [rand(4, 1, 3), rand(2, 1)])
    op_case("div", torch.div, [rand(2, 3), rand(2, 3, lo=0.5, hi=2)])
    op_case("add_scalar", lambda x: x + 1.5, [rand(2, 3)])
    op_case("mul_scalar", lambda x: x * -2.5, [rand(2, 3)])
    op_case("pow_scalar", lambda x: x ** 2.7, [rand(3, 2, lo=0.3, hi=2)])
    op_case("neg", torch.neg, [rand(5)])
    op_case("exp", torch.exp, [rand(2, 3)])
    op_case("log", torch.log, [rand(2, 3, lo=0.2, hi=3)])
    op_case("sqrt", torch.sqrt, [rand(4, lo=0.2, hi=3)])
    op_case("abs", torch.abs, [rand(3, 3)])
    op_case("tanh", torch.tanh, [rand(2, 1, 2, 3)])
    op_case("sigmoid", torch.sigmoid, [np.array([[-40.0, -3, -0.5], [0.0, 2, 40]])])
    op_case("relu", torch.relu, [rand(2, 3)])
    op_case("sum_axis1", lambda x: x.sum(1), [rand(2, 3, 4)])
    op_case("mean_all", lambda x: x.mean(), [rand(3, 2)])
    op_case("softmax", lambda x: torch.softmax(x, 1), [rand(2, 5) * 10])
    op_case("log_softmax", lambda x: torch.log_softmax(x, 0), [rand(3, 4) * 10])
    op_case("reshape", lambda x: x.reshape(-1, 2), [rand(3, 4)])
    op_case("transpose", lambda x: x.transpose(0, 2), [rand(2, 3, 4)])
    op_case("permute", lambda x: x.permute(2, 0, 1, 3), [rand(2, 3, 1, 2)])
    op_case("concat", lambda a, b: torch.cat([a, b], 1), [rand(2, 3), rand(2, 2)])
    op_case("slice", lambda x: x[:, 1:3], [rand(4, 5)])
    idx = np.array([2, 0, 2, 1], dtype=np.int64)
    op_case("gather_rows", lambda w: F.embedding(torch.tensor(idx), w), [rand(3, 4)])
    cond = np.array([1.0, 0.0, 1.0])
    op_case("where", lambda a, b: torch.where(torch.tensor(cond) != 0, a, b),
            [rand(2, 3), rand(2, 3)])
    targets = np.array([1, -100, 4, 0], dtype=np.int64)
    op_case("cross_entropy", lambda x: F.cross_entropy(x, torch.tensor(targets),
                                                       ignore_index=-100), [rand(4, 5) * 3])
    op_case("cross_entropy_sum", lambda x: F.cross_entropy(x, torch.tensor(targets),
                                                           ignore_index=-100, reduction="sum"),
            [rand(4, 5) * 3])
    y = rng.uniform(0, 1, size=(3, 4))
    op_case("bce_with_logits", lambda x, yy: F.binary_cross_entropy_with_logits(x, yy),
            [rand(3, 4) * 5, y], grads=[True, False])
    op_case("bce", lambda p, yy: F.binary_cross_entropy(p, yy, reduction="sum"),
            [rand(3, 4, lo=0.02, hi=0.98), y], grads=[True, False])
    op_case("mse", lambda a, b: F.mse_loss(a, b), [rand(2, 3), rand(2, 3)])


def rnn_case(name, make, prefix, batch=2, steps=5, inp=3):
    """A PyTorch recurrent module in float64: parameters as <prefix>.<key>.npy,
    input x [B, T, I], initial state h0 (c0), output weights u; out.npy the
    output, loss = sum(out * u), and g.<prefix>.<key>.npy the gradients."""
    d = os.path.join(HERE, "rnn", name)
    torch.manual_seed(7)  # before building the module: its initial weights come from here
    m = make().double()
    dirs = 2 if m.bidirectional else 1
    out_size = getattr(m, "proj_size", 0) or m.hidden_size  # an LSTM with proj_size gives h [B, P]
    x = t(rand(batch, steps, inp))
    h0 = t(rand(m.num_layers * dirs, batch, out_size))
    c0 = t(rand(m.num_layers * dirs, batch, m.hidden_size))
    u = rand(batch, steps, dirs * out_size)
    if isinstance(m, torch.nn.LSTM):
        out, (hn, cn) = m(x, (h0, c0))
        save(f"{d}/c0.npy", c0.detach().numpy())
    else:
        out, hn = m(x, h0)
    loss = (out * torch.tensor(u)).sum()
    loss.backward()
    for key, p in m.named_parameters():
        save(f"{d}/{prefix}.{key}.npy", p.detach().numpy())
        save(f"{d}/g.{prefix}.{key}.npy", p.grad.numpy())
    save(f"{d}/x.npy", x.detach().numpy())
    save(f"{d}/gx.npy", x.grad.numpy())
    save(f"{d}/h0.npy", h0.detach().numpy())
    save(f"{d}/u.npy", u)
    save(f"{d}/out.npy", out.detach().numpy())
    save(f"{d}/loss.npy", np.array(loss.item()))


def rnn_fixtures():
    nn = torch.nn
    rnn_case("rnn_tanh", lambda: nn.RNN(3, 4, num_layers=2, batch_first=True), "rnn")
    rnn_case("rnn_relu", lambda: nn.RNN(3, 4, nonlinearity="relu", batch_first=True), "rnn")
    rnn_case("lstm", lambda: nn.LSTM(3, 4, num_layers=2, batch_first=True), "lstm")
    rnn_case("gru", lambda: nn.GRU(3, 4, num_layers=2, batch_first=True), "gru")
    rnn_case("gru_bidir", lambda: nn.GRU(3, 4, batch_first=True, bidirectional=True), "gru")
    rnn_case("lstm_nobias_b1", lambda: nn.LSTM(3, 2, bias=False, batch_first=True), "lstm",
             batch=1, steps=7)


def optim_case(name, make, steps=6):
    """Parameters w [3, 4] and b [5] with gradient a * (p - c) each step;
    traj.npy holds the flat parameters [w, b] after every step."""
    d = os.path.join(HERE, "optim")
    r = np.random.default_rng(99)
    a, c = r.uniform(0.5, 2.0, 17), r.uniform(-1, 1, 17)
    p0 = r.uniform(-1, 1, 17)
    w = torch.tensor(p0[:12].reshape(3, 4), requires_grad=True)
    b = torch.tensor(p0[12:].copy(), requires_grad=True)
    opt = make([w, b])
    traj = []
    for _ in range(steps):
        flat = torch.cat([w.detach().reshape(-1), b.detach()])
        g = torch.tensor(a) * (flat - torch.tensor(c))
        w.grad = g[:12].reshape(3, 4).clone()
        b.grad = g[12:].clone()
        opt.step()
        traj.append(torch.cat([w.detach().reshape(-1), b.detach()]).numpy().copy())
    save(f"{d}/{name}.npy", np.array(traj))
    save(f"{d}/a.npy", a)
    save(f"{d}/c.npy", c)
    save(f"{d}/p0.npy", p0)


def optim_fixtures():
    o = torch.optim
    optim_case("sgd", lambda p: o.SGD(p, lr=0.1))
    optim_case("sgd_momentum", lambda p: o.SGD(p, lr=0.1, momentum=0.9, dampening=0.1,
                                               weight_decay=0.01))
    optim_case("sgd_nesterov", lambda p: o.SGD(p, lr=0.05, momentum=0.9, nesterov=True))
    optim_case("adagrad", lambda p: o.Adagrad(p, lr=0.1, lr_decay=0.01, weight_decay=0.01,
                                              initial_accumulator_value=0.1))
    optim_case("rmsprop", lambda p: o.RMSprop(p, lr=0.01))
    optim_case("rmsprop_centered", lambda p: o.RMSprop(p, lr=0.01, momentum=0.9, centered=True,
                                                       weight_decay=0.01))
    optim_case("adam", lambda p: o.Adam(p, lr=0.01, weight_decay=0.01))
    optim_case("adamw", lambda p: o.AdamW(p, lr=0.01, weight_decay=0.1))
    # Schedules: the learning rate before each of 12 steps, base 0.1.
    d = os.path.join(HERE, "optim")
    scheds = {
        "sched_step": lambda op: o.lr_scheduler.StepLR(op, step_size=3, gamma=0.5),
        "sched_cosine": lambda op: o.lr_scheduler.CosineAnnealingLR(op, T_max=10, eta_min=0.001),
        "sched_warmup": lambda op: o.lr_scheduler.LinearLR(op, start_factor=1 / 3, total_iters=4),
    }
    for name, make in scheds.items():
        op = o.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sch = make(op)
        lrs = []
        for _ in range(12):
            lrs.append(op.param_groups[0]["lr"])
            op.step()
            sch.step()
        save(f"{d}/{name}.npy", np.array(lrs))


def tbptt_case(name, k1, k2, steps=11, B=2, I=3, H=4, V=3):
    """TBPTT(k1, k2) with SGD on an RNNCell + Linear head, cross-entropy summed
    over the k1 newest steps of each segment; the recorded segment starts
    from the state k2 steps back as a constant. Saves the initial and final
    weights (as <dir>/init and <dir>/final folders of .npy files named as in
    unroll), the inputs, targets and the loss of every segment."""
    d = os.path.join(HERE, "tbptt", name)
    torch.manual_seed(11)
    cell = torch.nn.RNNCell(I, H).double()
    head = torch.nn.Linear(H, V).double()
    names = {"rnn.weight_ih_l0": cell.weight_ih, "rnn.weight_hh_l0": cell.weight_hh,
             "rnn.bias_ih_l0": cell.bias_ih, "rnn.bias_hh_l0": cell.bias_hh,
             "head.weight": head.weight, "head.bias": head.bias}
    for n, p in names.items():
        save(f"{d}/init/{n}.npy", p.detach().numpy())
    r = np.random.default_rng(5)
    xs = r.uniform(-1, 1, (steps, B, I))
    tg = r.integers(0, V, (steps, B))
    save(f"{d}/x.npy", xs)
    save(f"{d}/targets.npy", tg.astype("<i8"))
    opt = torch.optim.SGD(list(cell.parameters()) + list(head.parameters()), lr=0.1)
    hist = {0: torch.zeros(B, H, dtype=torch.float64)}
    losses, seg, e = [], 0, min(k1, steps)
    while True:
        first = seg * k1
        s0 = max(first + k1 - k2, 0)
        h, total = hist[s0].clone(), None
        for s in range(s0, e):
            h = cell(torch.tensor(xs[s]), h)
            hist[s + 1] = h.detach().clone()
            if s >= first:
                l = F.cross_entropy(head(h), torch.tensor(tg[s]), reduction="sum")
                total = l if total is None else total + l
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
        if e == steps:
            break
        e, seg = min(e + k1, steps), seg + 1
    for n, p in names.items():
        save(f"{d}/final/{n}.npy", p.detach().numpy())
    save(f"{d}/losses.npy", np.array(losses))


def proj_fixtures():
    """LSTMs with proj_size; their own random stream, so the other fixtures do not move."""
    global rng
    saved, rng = rng, np.random.default_rng(2027)
    nn = torch.nn
    rnn_case("lstm_proj", lambda: nn.LSTM(3, 5, num_layers=2, proj_size=2, batch_first=True), "lstm")
    rnn_case("lstm_proj_bidir", lambda: nn.LSTM(3, 4, proj_size=3, bidirectional=True, batch_first=True),
             "lstm")
    rng = saved


def norm_fixtures():
    """Layer normalisation; its own random stream, so the other fixtures do not move."""
    global rng
    saved, rng = rng, np.random.default_rng(2026)
    op_case("layer_norm", lambda x: F.layer_norm(x, (x.shape[-1],), eps=1e-5), [rand(3, 2, 6)])
    rng = saved
def write_safetensors(path, tensors, metadata=None):
    """The published layout, with struct + json only: u64 LE header size N,
    N bytes of JSON (padded with spaces to a multiple of 8), the data."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    codes = {"<f4": "F32", "<f8": "F64", "<i8": "I64", "<i4": "I32", "|u1": "U8", "|b1": "BOOL"}
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (arr, code) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": code or codes[arr.dtype.str], "shape": list(arr.shape),
                        "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def safetensors_fixtures():
    d = os.path.join(HERE, "safetensors")
    ramp = lambda n: 0.5 * np.arange(n) - 1
    bf16 = np.array([1.0, -2.5, 3.140625, 1e-3], dtype="<f4")
    bf16_bits = (bf16.view("<u4") >> 16).astype("<u2")  # exact: chosen to fit in bf16
    f16 = np.array([0.5, -65504.0, 2.0 ** -24, np.inf, -0.0], dtype="<f2")
    write_safetensors(f"{d}/basic.safetensors", {
        "w.f32": (ramp(6).astype("<f4").reshape(2, 3), None),
        "w.f64": (ramp(3).astype("<f8"), None),
        "ids": (np.array([[3, -1], [2**40, 0]], dtype="<i8"), None),
        "h.bf16": (bf16_bits, "BF16"),
        "h.f16": (f16.view("<u2"), "F16"),
        "empty": (np.zeros((0, 3), dtype="<f4"), None),
        "esc\"aped.\u00e9": (np.array(7.0, dtype="<f8"), None),
    }, metadata={"format": "pt", "note": "caf\u00e9 \u2713"})


def state_dict_fixtures():
    """A bare torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True) and an
    nn.Linear(8, 2) applied to every step, in float64: their state dict
    (the LSTM's keys bare, the Linear's under "fc.") as one safetensors file
    and as a folder of .npy files, an input x [T=5, B=2, I=3] and PyTorch's
    outputs: out [T, B, 8], h_n and c_n [4, B, 4], y = fc(out) [T, B, 2]."""
    d = os.path.join(HERE, "state_dict")
    torch.manual_seed(17)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    fc = torch.nn.Linear(8, 2).double()
    sd = dict(lstm.state_dict())
    sd.update({f"fc.{k}": v for k, v in fc.state_dict().items()})
    write_safetensors(f"{d}/lstm_fc.safetensors", {k: (v.numpy(), None) for k, v in sd.items()},
                      metadata={"format": "pt"})
    for k, v in sd.items():
        save(f"{d}/lstm_fc_npy/{k}.npy", v.numpy())
    x = torch.tensor(rng.uniform(-1, 1, (5, 2, 3)))
    with torch.no_grad():
        out, (hn, cn) = lstm(x)
        y = fc(out)
    for name, a in {"x": x, "out": out, "hn": hn, "cn": cn, "y": y}.items():
        save(f"{d}/{name}.npy", a.numpy())


if __name__ == "__main__":
    torch.manual_seed(0)  # this build of PyTorch starts from a random seed
    torch.set_num_threads(1)
    npy_fixtures()
    op_fixtures()
    rnn_fixtures()
    optim_fixtures()
    tbptt_case("k3_k3", 3, 3)
    tbptt_case("k2_k4", 2, 4)
    norm_fixtures()
    proj_fixtures()
    safetensors_fixtures()
    state_dict_fixtures()
    print("fixtures written under", HERE)
