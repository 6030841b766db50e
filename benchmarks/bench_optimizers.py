"""Optimizers and POET side by side on the same tiny language model (CPU): step time and memory.

Setup: ``TinyLang(n_ctx=64, batch_size=32)`` (a generated grammar, vocabulary 60) and ``tiny_lm(task, d_model=128,
n_heads=4, n_layers=2, d_mlp=512)``: a causal pre-LN transformer with 12 hidden matrices (q, k, v, o 128×128; up
128×512; down 512×128), ~0.42 M parameters. Every method trains the same model from the same init and batches:
AdamW; Muon (NS5); Pion (bilateral, and alternating); AdamH and MuonH (Hyperball); FOCUS; POET-BS with block 32 on
every hidden matrix (the head and embeddings stay AdamW), plain and in memory mode, with the default
``centric="auto"`` (here weight-centric: 2,048 tokens per call ≫ 2mn/(m+n)) and forced input-centric (POET-X's
algorithm, which rotates every token).

One step = ``zero_grad`` → forward → cross-entropy → backward → interventions (POET's merge every 400 steps) →
``optimizer.step`` — ``Run.step`` without its non-finite guard, probes and callbacks, so the table compares the
methods, not the harness. orthoscope's optimizers include their own non-finite-gradient check (one ``isfinite``
pass over the gradients); torch's AdamW has none.

Method. Every (method, round) runs in a fresh process with ``torch.set_num_threads(THREADS)`` (default 1: on a
shared 2-core machine one thread gives far steadier timings): warm-up steps, then timed steps. Step time is the
**process CPU time** of a step (``time.process_time``; with one thread it is the work done, and a process waiting for
a core on a loaded machine does not inflate it); wall-clock medians are printed next to it. The reported time is
the median over rounds of each round's median. Rounds interleave the methods in a shuffled order, so slow phases of a
noisy machine hit every method alike. Memory, per process:
* Δ RSS — peak RSS (``ru_maxrss``) minus the RSS just before the first step: the training's own peak, noisy;
* saved — bytes of activations autograd keeps for backward in one step (unique storages that are not parameters or
  buffers, via ``torch.autograd.graph.saved_tensors_hooks``): deterministic;
* state — bytes of parameters + buffers, gradients and optimizer state after the timed steps: deterministic.

    .venv/bin/python benchmarks/bench_optimizers.py            # 5 rounds × 30 timed steps
    .venv/bin/python benchmarks/bench_optimizers.py --quick    # 1 round × 5 steps (smoke)
    .venv/bin/python benchmarks/bench_optimizers.py --width 256 --methods adamw,poet,pion   # a wider model, a subset

The last line holds the headline ratio: POET step time / AdamW step time (target ≤ 1.5).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

METHODS = {
    "AdamW": "adamw",
    "Muon (NS5)": "muon",
    "Pion (both sides)": "pion",
    "Pion (alternating)": "pion-alt",
    "AdamH": "adamh",
    "MuonH": "muonh",
    "FOCUS": "focus",
    "POET-BS b=32": "poet",
    "POET-BS b=32 memory mode": "poet-mem",
    "POET-BS b=32 input-centric": "poet-input",
    "POET-BS b=32 input-c., mem": "poet-input-mem",
}


def make_method(key: str):
    from orthoscope import AdamW
    from orthoscope.optim.methods import FOCUS, Hyperball, Muon, Pion

    if key.startswith("poet"):
        from orthoscope.adapters.poet import POET

        return POET(block=32, merge_every=400, lr=3e-3, memory_mode=key.endswith("-mem"),
                    centric="input" if key.startswith("poet-input") else "auto")
    # Embeddings, head and vectors train with AdamW at the AdamW baseline's lr in every method (adamw_lr=3e-3), so
    # the comparison isolates the matrix update; the optimizers' own defaults differ (Muon's reference aux Adam 3e-4).
    aux = {"adamw_lr": 3e-3}
    return {"adamw": lambda: AdamW(lr=3e-3), "muon": lambda: Muon(lr=0.02, **aux), "pion": lambda: Pion(lr=3e-3, **aux),
            "pion-alt": lambda: Pion(lr=3e-3, side="alternate", **aux), "adamh": lambda: Hyperball(base="adam", **aux),
            "muonh": lambda: Hyperball(base="muon", **aux), "focus": lambda: FOCUS(lr=1e-3)}[key]()


def train_step(run) -> float:
    """One step as ``Run.step`` does it, minus guard/probes/callbacks; returns the batch loss."""
    x, y = run.task.batch(run.generator)
    run.optimizer.zero_grad(set_to_none=True)
    loss = run.loss_fn(run.model(x), y)
    loss.backward()
    for iv in run.interventions:
        iv.before_step(run)
    run.optimizer.step()
    run.step_count += 1
    for iv in run.interventions:
        iv.after_step(run)
    return loss.item()


def saved_activation_bytes(run) -> int:
    import torch

    from orthoscope.core.memory import model_state, saved_tensor_bytes

    x, y = run.task.batch(torch.Generator().manual_seed(123))
    nbytes, loss = saved_tensor_bytes(lambda: run.loss_fn(run.model(x), y), exclude=model_state(run.model))
    loss.backward()
    run.optimizer.zero_grad(set_to_none=True)
    return nbytes


def state_bytes(run) -> dict:
    import torch

    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)              # noqa: E731
    weights = nbytes(list(run.model.parameters()) + list(run.model.buffers()))
    grads = nbytes(p.grad for p in run.model.parameters() if p.grad is not None)
    optim = nbytes(v for s in run.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor))
    return {"weights": weights, "grads": grads, "optim": optim}


def current_rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def worker(key: str, steps: int, warmup: int, threads: int, width: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from orthoscope import Run
    from orthoscope.tasks.tinylang import TinyLang, tiny_lm

    task = TinyLang(n_ctx=64, batch_size=32)
    model = tiny_lm(task, d_model=width, n_heads=4, n_layers=2, d_mlp=4 * width, seed=0)
    run = Run(model, task, make_method(key), probes=[], seed=0)
    saved = saved_activation_bytes(run)
    rss0 = current_rss_kb()
    for _ in range(warmup):
        train_step(run)
    times, cpu, losses = [], [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(train_step(run))
        cpu.append(time.process_time() - c0)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_params = sum(p.numel() for p in run.model.parameters())
    return {"times": cpu, "median": statistics.median(cpu), "wall": statistics.median(times),
            "delta_rss_kb": peak - rss0, "saved": saved, **state_bytes(run), "loss": losses[-1], "params": n_params}


def table(results: dict, threads: int, width: int) -> str:
    base = statistics.median(results["adamw"]["medians"])
    head = (f"{'method':28s} {'cpu ms':>7s} {'×AdamW':>7s} {'mean':>7s} {'wall ms':>8s} {'saved MB':>9s} "
            f"{'state MB':>9s} {'optim MB':>9s} {'ΔRSS MB':>8s} {'loss':>6s}")
    lines = [f"tiny LM (d_model {width}, d_mlp {4 * width}), CPU, {threads} thread(s); step time = process CPU time "
             "per step, median over rounds of per-round medians (mean: over all steps); wall: the same median of "
             "wall-clock time", head, "-" * len(head)]
    for label, key in METHODS.items():
        if key not in results:
            continue
        r = results[key]
        med = statistics.median(r["medians"])
        state = (r["weights"] + r["grads"] + r["optim"]) / 2**20
        lines.append(f"{label:28s} {1e3 * med:7.2f} {med / base:7.2f} {1e3 * statistics.mean(r['all']):7.2f} "
                     f"{1e3 * statistics.median(r['wall']):8.2f} "
                     f"{r['saved'] / 2**20:9.2f} {state:9.2f} {r['optim'] / 2**20:9.2f} "
                     f"{statistics.median(r['rss']) / 1024:8.1f} {r['loss']:6.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=128, help="d_model (d_mlp = 4·width; a multiple of 32)")
    ap.add_argument("--methods", default=None, help="comma-separated subset of " + ",".join(METHODS.values()))
    ap.add_argument("--quick", action="store_true", help="1 round × 5 steps")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.warmup, args.threads, args.width)))
        return
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 5, 2
    order = list(METHODS.values()) if args.methods is None else args.methods.split(",")
    unknown = [k for k in order if k not in METHODS.values()] + [k for k in ("adamw",) if k not in order]
    if unknown:
        raise SystemExit(f"--methods must include adamw and name only {list(METHODS.values())}; got {args.methods}")
    results = {key: {"medians": [], "all": [], "rss": [], "wall": []} for key in order}
    rng = random.Random(0)
    for rnd in range(args.rounds):
        rng.shuffle(order)
        for key in order:
            out = subprocess.run([sys.executable, __file__, "--worker", key, "--steps", str(args.steps), "--warmup",
                                  str(args.warmup), "--threads", str(args.threads), "--width", str(args.width)],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"worker {key!r} failed:\n{out.stderr}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            res = results[key]
            res["medians"].append(r["median"])
            res["all"] += r["times"]
            res["rss"].append(r["delta_rss_kb"])
            res["wall"].append(r["wall"])
            res.update({k: r[k] for k in ("saved", "weights", "grads", "optim", "loss", "params")})
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    print(table(results, args.threads, args.width))
    med = {k: statistics.median(v["medians"]) for k, v in results.items()}
    ratios = {"POET": "poet", "POET memory mode": "poet-mem", "POET input-centric": "poet-input", "Pion": "pion",
              "Muon": "muon"}
    parts = [f"{label}/AdamW step time: {med[key] / med['adamw']:.2f}×"
             + (" (target ≤ 1.5×)" if key == "poet" else "") for label, key in ratios.items() if key in med]
    print("; ".join(parts))


if __name__ == "__main__":
    main()
