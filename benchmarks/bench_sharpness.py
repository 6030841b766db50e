"""Cost of one ``Sharpness`` probe call (λ_max by Lanczos, optionally Hutchinson's trace) against one training step.

    .venv/bin/python benchmarks/bench_sharpness.py              # both models, iters 20, trace 0 and 10 samples
    .venv/bin/python benchmarks/bench_sharpness.py --quick      # small models, a few repeats (the test suite's run)

Models (each with the batch its training step uses, which is also the probe's fixed batch):
* "EoS MLP": the edge-of-stability reproduction's tanh MLP 64-200-200-10 on 1,000 standardized digits (full batch,
  mse_onehot, SGD) — ``orthoscope.zoo.edge_of_stability``;
* "tiny LM": the tiny transformer (d_model 64, 2 layers) on TinyLang, batch 32 × 32 tokens, cross-entropy, AdamW.

For each: the median over ``--repeats`` of one training step (``run.step()`` without probes) and of one probe call,
in process CPU time (what the work costs, whatever else shares the machine). The cost model: one forward and
backward with ``create_graph`` plus ``iters + trace_samples`` Hessian-vector products. The last line is the headline:
probe call / training step for the EoS MLP and the tiny LM at ``iters = 20``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def cpu_median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def eos_mlp(quick: bool):
    from orthoscope import SGD, Run
    from orthoscope.zoo.edge_of_stability import StandardizedDigits, make_model

    task = StandardizedDigits(n_train=300 if quick else 1000)
    run = Run(make_model(64 if quick else 200), task, SGD(lr=0.05), loss="mse_onehot", probes=[], seed=0)
    return run, (task.x_train, task.y_train)


def tiny_lm_run(quick: bool):
    from orthoscope import AdamW, Run
    from orthoscope.models.transformer import tiny_lm
    from orthoscope.tasks.tinylang import TinyLang

    task = TinyLang(batch_size=32, n_sentences=500 if quick else 4000)
    run = Run(tiny_lm(task, d_model=32 if quick else 64), task, AdamW(lr=1e-3), probes=[], seed=0)
    return run, task.batch(torch.Generator().manual_seed(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=20, help="Lanczos steps per call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small models, 2 repeats, iters 5")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.iters = 2, 5
    torch.set_num_threads(args.threads)
    from orthoscope.probes import Sharpness

    print(f"Sharpness probe cost (CPU time, median of {args.repeats}, {torch.get_num_threads()} thread(s), "
          f"iters {args.iters})")
    print(f"{'model':<9} {'params':>8} {'step ms':>9} {'trace':>6} {'probe ms':>9} {'probe/step':>11} "
          f"{'per HVP/step':>13}")
    headline = {}
    for name, build in (("EoS MLP", eos_mlp), ("tiny LM", tiny_lm_run)):
        run, batch = build(args.quick)
        run.train(2, progress=False)                                  # warm up
        step = cpu_median(run.step, args.repeats)
        n = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
        for samples in (0, 10):
            probe = Sharpness(batch, run.loss_fn, iters=args.iters, trace_samples=samples)
            call = cpu_median(lambda: probe(run), args.repeats)
            per_hvp = call / (args.iters + samples) / step
            print(f"{name:<9} {n:>8} {step * 1e3:>9.2f} {samples:>6} {call * 1e3:>9.1f} {call / step:>11.1f} "
                  f"{per_hvp:>13.2f}")
            if samples == 0:
                headline[name] = call / step
    print(f"sharpness: one call (λ_max, {args.iters} Lanczos products) costs {headline['EoS MLP']:.1f} training "
          f"steps on the EoS MLP and {headline['tiny LM']:.1f} on the tiny LM")


if __name__ == "__main__":
    main()
