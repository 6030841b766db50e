"""Kernel seam benchmark: each op's torch twin (eager and ``torch.compile``) against its Triton kernel.

On a CUDA machine every row is measured at the issue's target shapes and the Triton column is filled:

* Cayley–Neumann fwd+bwd and block-diagonal rotation fwd+bwd: time vs eager and vs compile (targets ≥ 2× eager,
  ≥ 1× compile), achieved bandwidth as bytes that must move / time and its share of the GPU's peak HBM bandwidth
  (target ≥ 70 % for the rotation, which is bandwidth-bound at small b);
* POET-X layer at Llama-8B shapes (seq 2048, 4096 → 4096, b = 256), fwd+bwd, plain and memory mode, vs
  ``nn.Linear`` (target ≤ 1.4×; published 1.38 ms vs 1.11 ms on H100);
* fused harmonic loss at vocabulary 32k (8192 tokens, D 2048): time and peak memory vs the unfused twin (target
  ≤ 0.5× memory) and vs liger-kernel's fused linear cross-entropy when ``liger_kernel`` is installed (target
  ≤ 1.2× its time);
* hyperspherical energy (4096 × 4096) and KAN spline fwd+bwd, for reference.

Without CUDA (this project's CI machine) the same script runs the twins at reduced shapes on the CPU — Triton
columns say "no CUDA" — and measures memory as bytes autograd saves for backward; for the harmonic loss it also
runs the fused kernel once in Triton's CPU interpreter to count its saved bytes (the interpreter's *speed* means
nothing and is not reported). Times are medians over ``--reps`` repetitions after warm-up (CUDA events on a GPU;
on CPU the process CPU time with one thread by default — on a shared, loaded machine wall clock mostly measures the
neighbours; with one thread CPU time is the work done).

    .venv/bin/python benchmarks/bench_kernels.py                  # CPU: reduced shapes; GPU: target shapes
    .venv/bin/python benchmarks/bench_kernels.py --quick --no-compile

The last line holds the headline ratios (or says which are unmeasured).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

CUDA = torch.cuda.is_available()
if not CUDA:                                   # only for the saved-bytes count of the fused loss (never timed)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import logging  # noqa: E402

from torch import nn  # noqa: E402

torch._logging.set_logs(dynamo=logging.ERROR, graph_breaks=False)   # torch.compile's graph-break notes: not results

from orthoscope import kernels  # noqa: E402
from orthoscope.kernels import reference  # noqa: E402
from orthoscope.core.memory import saved_tensor_bytes  # noqa: E402

PEAK_HBM = {"H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}


def peak_bandwidth() -> float | None:
    if not CUDA:
        return None
    name = torch.cuda.get_device_name()
    for key in sorted(PEAK_HBM, key=len, reverse=True):
        if key.replace(" ", "") in name.replace(" ", ""):
            return PEAK_HBM[key]
    return None


def timed(fn, reps: int, warmup: int) -> float:
    """Median seconds of ``fn()``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if CUDA:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:                                  # CPU time of this process: steady on a shared, busy machine
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
    return statistics.median(times)


def fwd_bwd(op, inputs: list[torch.Tensor], *args):
    """A closure running ``op(*inputs, *args)`` forward and backward (upstream ones)."""
    def run():
        for t in inputs:
            t.grad = None
        out = op(*inputs, *args)
        out.backward(torch.ones_like(out))
    return run


def saved_bytes(fn) -> int:
    """Bytes of unique storages autograd saves during ``fn()`` (activations held between forward and backward)."""
    return saved_tensor_bytes(fn)[0]


def peak_memory(fn) -> int | None:
    if not CUDA:
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


class Table:
    def __init__(self, title: str, columns: list[str]):
        self.title, self.columns, self.rows = title, columns, []

    def add(self, *cells):
        self.rows.append([c if isinstance(c, str) else f"{c:.4g}" for c in cells])

    def show(self):
        print(f"\n### {self.title}\n")
        print("| " + " | ".join(self.columns) + " |")
        print("|" + "---|" * len(self.columns))
        for row in self.rows:
            print("| " + " | ".join(row) + " |")


def impls(name: str, compile_: bool) -> dict:
    """{label: callable} for an op: twin eager, twin compiled, Triton kernel (CUDA only)."""
    twin = getattr(reference, name)
    out = {"eager": twin}
    if compile_:
        out["compile"] = torch.compile(twin, dynamic=False)
    if CUDA:
        from orthoscope.kernels.triton import triton_ops

        out["triton"] = triton_ops.OPS[name]
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


# ---- the cases ------------------------------------------------------------------------------------------------

def bench_cnp(args, dtype, results):
    shapes = [(4096 // 32 * 8, 32), (4096 // 64 * 8, 64), (4096 // 256 * 8, 256)] if CUDA else \
        [(256, 16), (64, 32), (8, 64)]
    table = Table("Cayley–Neumann fwd+bwd (k = 3)", ["blocks r × b", "impl", "ms", "× eager", "GB/s", "% peak"])
    for r, b in shapes:
        q = (0.05 * torch.randn(r, b * (b - 1) // 2, device=args.device)).to(dtype).requires_grad_()
        moved = 2 * (q.numel() + r * b * b) * q.element_size()      # read q, write R; read dR, write dq
        base = None
        for label, fn in impls("cayley_neumann", args.compile).items():
            t = timed(fwd_bwd(fn, [q], b, 3), args.reps, args.warmup)
            base = base or t
            bw = moved / t
            pct = f"{100 * bw / args.peak:.0f}" if args.peak and label == "triton" else "—"
            table.add(f"{r} × {b}", label, ms(t), base / t, f"{bw / 1e9:.1f}", pct)
            results.setdefault("cnp", {})[(b, label)] = t
    table.show()


def bench_rotate(args, dtype, results):
    shapes = [(8 * 2048, 4096, 32), (8 * 2048, 4096, 256)] if CUDA else [(2048, 1024, 32), (2048, 1024, 128)]
    table = Table("Block rotation x[perm]·blockdiag(R) fwd+bwd", ["N × D, b", "impl", "ms", "× eager", "GB/s",
                                                                   "% peak"])
    for n, d, b in shapes:
        x = torch.randn(n, d, device=args.device, dtype=dtype, requires_grad=True)
        R = (torch.randn(d // b, b, b, device=args.device, dtype=dtype) / b ** 0.5).requires_grad_()
        perm = torch.randperm(d, device=args.device)
        moved = (5 * x.numel() + 3 * R.numel()) * x.element_size()   # x, y, dy, dx (+x again for dR); R, dR
        base = None
        for label, fn in impls("block_rotate", args.compile).items():
            t = timed(fwd_bwd(fn, [x, R], perm), args.reps, args.warmup)
            base = base or t
            bw = moved / t
            pct = f"{100 * bw / args.peak:.0f}" if args.peak and label == "triton" else "—"
            table.add(f"{n} × {d}, {b}", label, ms(t), base / t, f"{bw / 1e9:.1f}", pct)
            results.setdefault("rotate", {})[(b, label)] = t
    table.show()


def bench_poet_layer(args, dtype, results):
    from orthoscope.adapters.poet import POETLinear

    seq, d, b = (2048, 4096, 256) if CUDA else (512, 1024, 64)
    table = Table(f"POET-X layer vs nn.Linear, fwd+bwd (tokens {seq}, {d} → {d}, b = {b})",
                  ["layer", "ms", "× nn.Linear", "saved for backward (MB)"])
    x = torch.randn(seq, d, device=args.device, dtype=dtype, requires_grad=True)
    linear = nn.Linear(d, d, bias=False, device=args.device, dtype=dtype)
    t_lin = timed(fwd_bwd(linear, [x]), args.reps, args.warmup)
    table.add("nn.Linear", ms(t_lin), 1.0, saved_bytes(lambda: linear(x)) / 2 ** 20)
    for mem in (False, True):
        torch.manual_seed(0)
        layer = POETLinear(nn.Linear(d, d, bias=False), block=b, memory_mode=mem).to(args.device, dtype)
        with torch.no_grad():
            for p in layer.parameters():
                if p.requires_grad:
                    p.normal_(0, 0.01)
        t = timed(fwd_bwd(layer, [x]), args.reps, args.warmup)
        table.add(f"POET-X ({'mem' if mem else 'fast'})", ms(t), t / t_lin, saved_bytes(lambda: layer(x)) / 2 ** 20)
        results[f"poet_{'mem' if mem else 'fast'}"] = t / t_lin
    table.show()


def bench_harmonic(args, dtype, results):
    N, V, D = (8192, 32000, 2048) if CUDA else (1024, 8192, 256)
    table = Table(f"Harmonic loss fwd+bwd (tokens {N}, vocab {V}, D {D})",
                  ["impl", "ms", "peak memory (MB)", "saved for backward (MB)"])
    h = (torch.randn(N, D, device=args.device) / D ** 0.25).to(dtype).requires_grad_()
    c = (torch.randn(V, D, device=args.device) / D ** 0.25).to(dtype).requires_grad_()
    t = torch.randint(0, V, (N,), device=args.device)
    n = float(D) ** 0.5
    for label, fn in impls("harmonic_nll", False).items():
        run = fwd_bwd(fn, [h, c], t, n)
        sec = timed(run, args.reps, args.warmup)
        peak = peak_memory(run)
        table.add(label, ms(sec), "—" if peak is None else f"{peak / 2 ** 20:.1f}",
                  f"{saved_bytes(lambda: fn(h, c, t, n)) / 2 ** 20:.2f}")
        results.setdefault("harmonic", {})[label] = (sec, peak)
    if CUDA:
        liger = _liger_row(h, c, t, args)
        if liger is not None:
            table.add("liger FLCE (cross-entropy)", ms(liger[0]), f"{liger[1] / 2 ** 20:.1f}", "—")
            results["harmonic"]["liger"] = liger
    else:
        results["harmonic_saved"] = _interpreter_saved_bytes()
        fused, unfused = results["harmonic_saved"]
        table.add("triton (interpreter, N 256 V 2048 D 64)", "not timed", "—", f"{fused / 2 ** 20:.3f}")
        table.add("eager (same small shape)", "—", "—", f"{unfused / 2 ** 20:.3f}")
    table.show()


def _liger_row(h, c, t, args):
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        print("(liger-kernel not installed: `pip install liger-kernel` to add its fused linear cross-entropy row)")
        return None
    loss = LigerFusedLinearCrossEntropyLoss()
    run = fwd_bwd(lambda h_, c_: loss(c_, h_, t), [h, c])
    return timed(run, args.reps, args.warmup), peak_memory(run)


def _interpreter_saved_bytes() -> tuple[int, int]:
    """(fused, unfused) bytes saved for backward at a small shape; the fused one runs in the CPU interpreter."""
    from orthoscope.kernels.triton import triton_ops

    g = torch.Generator().manual_seed(0)
    h = torch.randn(256, 64, generator=g, requires_grad=True)
    c = torch.randn(2048, 64, generator=g, requires_grad=True)
    t = torch.randint(0, 2048, (256,), generator=g)
    return (saved_bytes(lambda: triton_ops.harmonic_nll(h, c, t, 8.0)),
            saved_bytes(lambda: reference.harmonic_nll(h, c, t, 8.0)))


def bench_energy_kan(args, dtype, results):
    from orthoscope.kernels.bspline import uniform_grid

    n, d = (4096, 4096) if CUDA else (1024, 256)
    table = Table("Hyperspherical energy (s = 1) and KAN spline, fwd+bwd", ["op, shape", "impl", "ms", "× eager"])
    w = torch.randn(n, d, device=args.device, dtype=dtype, requires_grad=True)
    base = None
    for label, fn in impls("pairwise_energy", False).items():
        sec = timed(fwd_bwd(fn, [w], 1.0), args.reps, args.warmup)
        base = base or sec
        table.add(f"energy {n} × {d}", label, ms(sec), base / sec)
    B, size = (4096, 256) if CUDA else (1024, 64)
    x = torch.rand(B, size, device=args.device, dtype=dtype).mul(2).sub(1).requires_grad_()
    grid = uniform_grid(size, 5, 3, device=args.device).to(dtype)
    coef = torch.randn(size, size, 8, device=args.device, dtype=dtype, requires_grad=True)
    base = None
    for label, fn in impls("kan_spline", args.compile).items():
        sec = timed(fwd_bwd(lambda x_, c_: fn(x_, grid, c_, 3), [x, coef]), args.reps, args.warmup)
        base = base or sec
        table.add(f"KAN {B} × {size} → {size}, G 5, k 3", label, ms(sec), base / sec)
    table.show()


def headline(results) -> str:
    if not CUDA:
        fused, unfused = results["harmonic_saved"]
        return (f"HEADLINE: no CUDA on this machine — Triton speed, bandwidth, POET-X/Linear and peak-memory targets "
                f"unmeasured; POET-X fast/mem vs nn.Linear on CPU {results['poet_fast']:.2f}× / "
                f"{results['poet_mem']:.2f}×; fused harmonic saved-for-backward {fused / unfused:.3f}× the twin's")
    cnp = {b: results["cnp"][(b, "eager")] / results["cnp"][(b, "triton")] for b, lab in results["cnp"]
           if lab == "triton"}
    rot = {b: results["rotate"][(b, "eager")] / results["rotate"][(b, "triton")] for b, lab in results["rotate"]
           if lab == "triton"}
    h = results["harmonic"]
    mem = h["triton"][1] / h["eager"][1]
    vs_liger = f"{h['triton'][0] / h['liger'][0]:.2f}×" if "liger" in h else "n/a"
    return (f"HEADLINE: CNP speedup vs eager {cnp}; rotation {rot}; POET-X fast/mem vs Linear "
            f"{results['poet_fast']:.2f}×/{results['poet_mem']:.2f}×; harmonic memory {mem:.2f}× unfused, time vs "
            f"liger {vs_liger}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 20 GPU, 5 CPU)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile columns")
    parser.add_argument("--quick", action="store_true", help="2 repetitions, 1 warm-up")
    args = parser.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 20 if CUDA else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.device = "cuda" if CUDA else "cpu"
    args.peak = peak_bandwidth()
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if CUDA else torch.float32)
    if not CUDA:
        torch.set_num_threads(args.threads)
    device = torch.cuda.get_device_name() if CUDA else f"CPU ({args.threads} thread{'s' * (args.threads > 1)})"
    print(f"device: {device}; dtype {dtype}; torch {torch.__version__}; medians of {args.reps} after {args.warmup} "
          f"warm-up; {sys.argv[0]} {' '.join(argv if argv is not None else sys.argv[1:])}")
    results: dict = {}
    for case in (bench_cnp, bench_rotate, bench_poet_layer, bench_harmonic, bench_energy_kan):
        case(args, dtype, results)
    print("\n" + headline(results))


if __name__ == "__main__":
    main()
