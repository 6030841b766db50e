"""Spine benchmarks: the demo's time to grok, the cost of the default probes, and `import orthoscope`.

    .venv/bin/python benchmarks/bench_spine.py                 # all three, torch's default thread count
    .venv/bin/python benchmarks/bench_spine.py --threads 1     # pin torch to one thread (helps on a loaded machine)
    .venv/bin/python benchmarks/bench_spine.py --only import   # one part: demo | probes | import

(a) demo: ``python -m orthoscope demo``'s training (``orthoscope.demo.train_until_grok`` with the default config),
    each run in a fresh process; wall time from the first step until held-out accuracy first reached 99%.
(b) probes: the demo's run for a fixed number of steps with ``probes=default_probes()`` and with ``probes=[]``,
    the two runs advanced in alternating blocks of 20 steps in one process (so both see the same load on a shared
    machine); overhead = on / off − 1, median over pairs. The time spent inside the probes is also added up
    directly (it excludes any indirect cost, such as caches the probes evict).
(c) import: ``import orthoscope`` and ``import torch`` alone, each timed inside a fresh interpreter.

Wall and CPU (process) time are both printed: when other work shares the machine, CPU time shows what the run
itself cost. Prints a table and, last, one line with the headline numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEMO_CHILD = """
import json, sys, time, torch
if {threads} is not None:
    torch.set_num_threads({threads})
from orthoscope.demo import DemoConfig, train_until_grok
c0 = time.process_time()
r = train_until_grok(DemoConfig(seed={seed}))
print(json.dumps(dict(step=r.grok_step, wall=r.grok_seconds, total=r.seconds, steps=r.run.step_count,
                      cpu=time.process_time() - c0, threads=torch.get_num_threads())))
"""

IMPORT_CHILD = ("import time; t, c = time.perf_counter(), time.process_time(); import {module}; "
                "print(time.perf_counter() - t, time.process_time() - c)")


def child(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def bench_demo(runs: int, threads, seed: int) -> dict:
    results = []
    for i in range(runs):
        r = json.loads(child(DEMO_CHILD.format(threads=threads, seed=seed)))
        print(f"  demo run {i + 1}: held-out ≥ 99% at step {r['step']} after {r['wall']:.1f} s "
              f"(cpu {r['cpu']:.1f} s for {r['steps']} steps incl. tail, {r['threads']} thread(s))", flush=True)
        results.append(r)
    if any(r["step"] is None for r in results):
        raise SystemExit("the demo did not grok in one of the runs")
    return {"wall": statistics.median(r["wall"] for r in results), "step": statistics.median(r["step"] for r in results),
            "cpu_per_step_ms": statistics.median(1e3 * r["cpu"] / r["steps"] for r in results)}


class Timed:
    """Wraps a probe and adds up the wall and CPU time spent inside it (same ``every``, same output)."""

    def __init__(self, probe, spent: list):
        self.probe, self.every, self.spent = probe, probe.every, spent

    def __call__(self, run):
        w, c = time.perf_counter(), time.process_time()
        out = self.probe(run)
        self.spent[0] += time.perf_counter() - w
        self.spent[1] += time.process_time() - c
        return out


def interleaved_pair(steps: int, seed: int, block: int = 20) -> dict:
    """The demo's run twice — default probes on and off — advanced in alternating blocks of ``block`` steps, so
    both see the same load on a shared machine. Returns wall and CPU seconds of each, and the time inside probes."""
    from orthoscope.demo import DemoConfig, build_run
    from orthoscope.probes import default_probes

    spent = [0.0, 0.0]
    on, off = build_run(DemoConfig(seed=seed)), build_run(DemoConfig(seed=seed))
    on.probes = [Timed(p, spent) for p in default_probes()]     # the library's defaults, whatever the demo uses
    off.probes = []
    totals = {"on": [0.0, 0.0], "off": [0.0, 0.0]}
    for b in range(0, steps, block):
        order = (("on", on), ("off", off)) if (b // block) % 2 == 0 else (("off", off), ("on", on))
        for name, run in order:
            w, c = time.perf_counter(), time.process_time()
            run.train(min(block, steps - b), progress=False)
            totals[name][0] += time.perf_counter() - w
            totals[name][1] += time.process_time() - c
    return {"on": totals["on"][0], "cpu_on": totals["on"][1], "off": totals["off"][0], "cpu_off": totals["off"][1],
            "inside": spent[0], "inside_cpu": spent[1]}


def bench_probes(pairs: int, steps: int, threads, seed: int) -> dict:
    import torch

    from orthoscope.probes import default_probes

    if threads is not None:
        torch.set_num_threads(threads)
    interleaved_pair(40, seed)                       # warm-up: lazy initialisation of LAPACK, allocator, imports
    results = []
    for i in range(pairs):
        r = interleaved_pair(steps, seed)
        results.append(r)
        print(f"  pair {i + 1}: probes on {r['on']:.2f} s (cpu {r['cpu_on']:.2f}; inside probes {r['inside']:.2f} s, "
              f"cpu {r['inside_cpu']:.2f}), off {r['off']:.2f} s (cpu {r['cpu_off']:.2f})", flush=True)
    med = lambda key: statistics.median(r[key] for r in results)
    ratio = lambda a, b: statistics.median(r[a] / r[b] for r in results)
    return {"on": med("on"), "off": med("off"), "cpu_on": med("cpu_on"), "cpu_off": med("cpu_off"),
            "overhead": ratio("on", "off") - 1, "cpu_overhead": ratio("cpu_on", "cpu_off") - 1,
            "inside": ratio("inside", "off"), "inside_cpu": ratio("inside_cpu", "cpu_off"),
            "probes": ", ".join(map(repr, default_probes()))}


def bench_import(runs: int) -> dict:
    out = {}
    for module in ("torch", "orthoscope"):
        times = [tuple(map(float, child(IMPORT_CHILD.format(module=module)).split())) for _ in range(runs)]
        print(f"  import {module}: " + ", ".join(f"{w:.2f}" for w, _ in times) + " s wall; cpu "
              + ", ".join(f"{c:.2f}" for _, c in times) + " s", flush=True)
        out[module] = statistics.median(w for w, _ in times)
        out[module + "_cpu"] = statistics.median(c for _, c in times)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("demo", "probes", "import"), default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--runs", type=int, default=3, help="demo runs (median)")
    parser.add_argument("--pairs", type=int, default=5, help="probes on/off pairs (median)")
    parser.add_argument("--steps", type=int, default=560, help="steps per probes on/off run (the demo groks ~560)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 demo run, 1 probes pair of 60 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.pairs, args.steps = 1, 1, 60
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; "
          f"threads: {args.threads or 'torch default'}", flush=True)
    rows, headline = [], []
    if args.only in (None, "demo"):
        d = bench_demo(args.runs, args.threads, args.seed)
        rows.append(("demo: wall to held-out ≥ 99%", f"{d['wall']:.1f} s (step {d['step']:.0f})", "≤ 30 s"))
        rows.append(("demo: cpu per training step", f"{d['cpu_per_step_ms']:.1f} ms", ""))
        headline.append(f"demo groks at step {d['step']:.0f} in {d['wall']:.1f} s (median of {args.runs})")
    if args.only in (None, "probes"):
        p = bench_probes(args.pairs, args.steps, args.threads, args.seed)
        rows.append((f"{args.steps} steps, probes off", f"{p['off']:.2f} s (cpu {p['cpu_off']:.2f} s)", ""))
        rows.append((f"{args.steps} steps, default probes", f"{p['on']:.2f} s (cpu {p['cpu_on']:.2f} s)", ""))
        rows.append(("default probes overhead, end to end", f"{100 * p['overhead']:+.1f}% (cpu "
                     f"{100 * p['cpu_overhead']:+.1f}%)", "≤ 10%"))
        rows.append(("time inside probes / probes-off run", f"{100 * p['inside']:.1f}% (cpu {100 * p['inside_cpu']:.1f}%)",
                     "≤ 10%"))
        headline.append(f"default probes {100 * p['overhead']:+.1f}% wall end to end, {100 * p['inside_cpu']:.1f}% "
                        f"cpu inside probes")
        print(f"  default probes: {p['probes']}")
    if args.only in (None, "import"):
        i = bench_import(5)
        rows.append(("import torch (fresh process)", f"{i['torch']:.2f} s (cpu {i['torch_cpu']:.2f} s)", ""))
        rows.append(("import orthoscope (fresh process)", f"{i['orthoscope']:.2f} s (cpu {i['orthoscope_cpu']:.2f} s)",
                     "≤ 1.0 s"))
        headline.append(f"import orthoscope {i['orthoscope']:.2f} s (torch alone {i['torch']:.2f} s)")
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'result':<34}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<34}  {target}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print("spine: " + " · ".join(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
