"""Throughput: what the meter in every Run costs, and the small Llama's tokens/s on this machine, eager and compiled.

    .venv/bin/python benchmarks/bench_throughput.py                  # both parts
    .venv/bin/python benchmarks/bench_throughput.py --quick          # smoke run (tests/test_benchmarks.py)

(a) meter cost: the demo's run (``orthoscope.demo``, probes off so nothing hides the meter) twice — the default
    meter (``Throughput(every=10)``: two clock reads per step, a record every 10 steps, FLOPs counted on step 1) and
    no meter (``Throughput(every=None)``) — advanced in alternating blocks of 20 steps in one process, so both see
    the same load; overhead = on / off − 1, median over pairs, wall and CPU time. On a shared machine that ratio is
    mostly noise, so the meter's own calls in one step (begin, add_batch, counting, end, record) are also timed
    directly, 20,000 times (CPU time per step).
(b) tokens/s: the "small" Llama (hidden 256, 4 layers, ``orthoscope.recipes.llm``) on TinyLang, batch 8 × 128,
    AdamW, no probes; the numbers are the Run's own History (``throughput/tokens_per_s``, ``throughput/tflops``,
    recorded every 5 steps): median over the records after the first. With ``--compile``, the same run with
    ``compile_blocks(model)`` (Inductor) too; its first record includes compilation and is left out likewise.

The last line holds the meter's overhead and the small Llama's tokens/s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def meter_pair(steps: int, block: int = 20) -> dict:
    """The demo's run with and without the meter, in alternating blocks; wall and CPU seconds of each."""
    from orthoscope.demo import DemoConfig, build_run
    from orthoscope.training.throughput import Throughput

    on, off = build_run(DemoConfig(seed=0)), build_run(DemoConfig(seed=0))
    on.probes, off.probes = [], []
    off.throughput = Throughput(every=None)
    totals = {"on": [0.0, 0.0], "off": [0.0, 0.0]}
    for b in range(0, steps, block):
        order = (("on", on), ("off", off)) if (b // block) % 2 == 0 else (("off", off), ("on", on))
        for name, run in order:
            w, c = time.perf_counter(), time.process_time()
            run.train(min(block, steps - b), progress=False)
            totals[name][0] += time.perf_counter() - w
            totals[name][1] += time.process_time() - c
    assert on.history.keys("throughput") and not off.history.keys("throughput")
    return {"wall": totals["on"][0] / totals["off"][0] - 1, "cpu": totals["on"][1] / totals["off"][1] - 1,
            "on": totals["on"][0], "off": totals["off"][0]}


def meter_calls_us(n: int = 20000) -> float:
    """CPU microseconds of the meter's calls in one step (after its first, FLOP-counting step)."""
    import torch
    from torch import nn

    from orthoscope.training.throughput import Throughput

    model, meter = nn.Linear(4, 4), Throughput()
    x, y = torch.zeros(8, 2, dtype=torch.long), torch.zeros(8, dtype=torch.long)

    def step(i):
        meter.begin(model)
        meter.add_batch(x, y)
        with meter.counting(None):
            pass
        meter.end()
        meter.record(i)

    step(1)
    c = time.process_time()
    for i in range(2, n + 2):
        step(i)
    return 1e6 * (time.process_time() - c) / n


def llama_tokens(steps: int, batch: int, n_ctx: int, compile: bool) -> dict:
    """The small Llama's tokens/s and TFLOP/s from its own History (median of the records after the first)."""
    from orthoscope import AdamW, Run
    from orthoscope.models.compiled import compile_blocks
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config
    from orthoscope.tasks.tinylang import TinyLang
    from orthoscope.training.throughput import Throughput

    task = TokenTask(TinyLang(n_ctx=n_ctx, batch_size=batch), n_eval=8)
    model = build_llama(llama_config("small", task.vocab_size, task.n_ctx), seed=0)
    if compile:
        compile_blocks(model)
    run = Run(model, task, AdamW(lr=1e-3), probes=[], seed=0)
    run.throughput = Throughput(every=5)
    run.train(steps, progress=False)
    h = run.history
    tokens, tflops = h["throughput/tokens_per_s"].values[1:], h["throughput/tflops"].values[1:]
    return {"tokens": statistics.median(tokens), "tflops": statistics.median(tflops), "records": len(tokens),
            "step_s": statistics.median(h["throughput/step_s"].values[1:]),
            "gflop_step": run.throughput.flops_per_step / 1e9}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5, help="meter on/off pairs (median)")
    parser.add_argument("--steps", type=int, default=400, help="steps per meter on/off run")
    parser.add_argument("--llama-steps", type=int, default=40, help="steps of the small Llama (records every 5)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--n-ctx", type=int, default=128)
    parser.add_argument("--compile", action="store_true", help="also the small Llama with compiled blocks")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 pair of 40 steps, 15 Llama steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.steps, args.llama_steps, args.n_ctx = 1, 40, 15, 32
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; torch threads "
          f"{torch.get_num_threads()}", flush=True)
    meter_pair(40)                                               # warm-up: imports, allocator, LAPACK
    pairs = []
    for i in range(args.pairs):
        p = meter_pair(args.steps)
        pairs.append(p)
        print(f"  pair {i + 1}: meter on {p['on']:.2f} s, off {p['off']:.2f} s: {100 * p['wall']:+.1f}% wall, "
              f"{100 * p['cpu']:+.1f}% cpu", flush=True)
    wall, cpu = (statistics.median(p[k] for p in pairs) for k in ("wall", "cpu"))
    calls = meter_calls_us()
    rows = [("meter overhead (demo run, probes off)", f"{100 * wall:+.1f}% wall, {100 * cpu:+.1f}% cpu"),
            ("meter calls in one step (direct)", f"{calls:.1f} µs cpu")]
    results = {}
    for compiled in ((False, True) if args.compile else (False,)):
        r = llama_tokens(args.llama_steps, args.batch, args.n_ctx, compiled)
        results[compiled] = r
        label = "small Llama, compiled blocks" if compiled else "small Llama, eager"
        rows.append((f"{label}: tokens/s", f"{r['tokens']:.0f} (median of {r['records']} records, "
                     f"{1e3 * r['step_s']:.0f} ms/step, {r['tflops'] * 1e3:.1f} GFLOP/s, "
                     f"{r['gflop_step']:.2f} GFLOP/step)"))
    width = max(len(name) for name, _ in rows)
    print(f"\n{'measure':<{width}}  result")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    compiled = f", compiled {results[True]['tokens']:.0f}" if True in results else ""
    print(f"throughput: meter {calls:.1f} µs/step ({100 * wall:+.1f}% wall end to end); small Llama "
          f"{results[False]['tokens']:.0f} tokens/s eager{compiled} (batch {args.batch} × {args.n_ctx})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
