"""Training cost with 0, 1, 2 and 3 Dashboards on the same run (issue 27): each Dashboard adds ≤ 10 %.

    .venv/bin/python benchmarks/bench_dashboards.py            # 3 rounds × 1500 steps per count
    .venv/bin/python benchmarks/bench_dashboards.py --quick    # 1 round × 600 steps (CI)

The scene of the issue: a small MLP on modular addition trained by ``run.train`` (what a notebook cell does while
Dashboards on the same run follow it live), the Agg backend, no browser. Before issue 27 each Dashboard throttled its
own live redraws, so two took turns and starved training (0.55 s → 5.1 s for 100 steps; three: 100 s). Now the
Dashboards' live redraws are scheduled together (``orthoscope.viz.live``): one round draws every Dashboard of the
run, and rounds take at most ``LIVE_SHARE`` of the time. What is timed is ``run.train(steps)`` only, with the
Dashboards created (and drawn once) before the clock starts; the counts are alternated within each round so machine
load hits them alike. The median over rounds is reported, with the live rounds and redraws that happened and the
seconds spent inside those redraws (on a shared, loaded machine the wall times vary by more than the redraws cost:
the redraw share is the Dashboards' own part).

Prints a table and, last, one headline line.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET = 0.10          # each Dashboard may add at most this share of the training time
COUNTS = (0, 1, 2, 3)


def make_run(p: int = 23):
    import torch

    from orthoscope import AdamW, Run
    from orthoscope.models import MLP
    from orthoscope.probes import default_probes
    from orthoscope.tasks import ModularArithmetic

    torch.manual_seed(0)
    model = MLP(vocab_size=p, n_tokens=2, d_embed=16, hidden=(32,), d_out=p)
    run = Run(model, ModularArithmetic(p=p, train_frac=0.5), AdamW(lr=3e-3, weight_decay=1.0),
              probes=default_probes(10), seed=0, name="mlp")
    run.train(10, progress=False)
    return run


def one(n_dashboards: int, steps: int) -> tuple[float, int, int, float]:
    """(seconds for ``steps`` training steps, live rounds, Dashboard redraws, seconds inside those redraws) with
    ``n_dashboards`` on the run."""
    from orthoscope.viz import Dashboard, live

    run = make_run()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # the static-PNG fallback warning: Agg is the point here
        dashes = [Dashboard(run) for _ in range(n_dashboards)]
    draws, drawing = [0], [0.0]

    def counted(redraw):
        def timed():
            t = time.perf_counter()
            redraw()
            draws[0] += 1
            drawing[0] += time.perf_counter() - t
        return timed

    for d in dashes:
        d.redraw = counted(d.redraw)
    rounds0 = live.SCHEDULER.rounds
    t0 = time.perf_counter()
    run.train(steps, progress=False)
    seconds = time.perf_counter() - t0
    rounds = live.SCHEDULER.rounds - rounds0
    for d in dashes:
        d.close()
    return seconds, rounds, draws[0], drawing[0]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round × 600 steps")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    steps = args.steps or (600 if args.quick else 1500)
    results = {n: [] for n in COUNTS}
    for r in range(rounds):
        for n in (COUNTS if r % 2 == 0 else COUNTS[::-1]):
            results[n].append(one(n, steps))
    base = statistics.median(r[0] for r in results[0])
    print(f"{steps} training steps of a 23-token modular-addition MLP (default probes every 10 steps), Agg, "
          f"median of {rounds} round(s)")
    print(f"{'Dashboards':>10} {'seconds':>8} {'vs none':>8} {'added by this one':>18} {'live rounds':>12} "
          f"{'redraws':>8} {'in redraws':>11} {'redraw share':>13}")
    previous, worst = base, 0.0
    for n in COUNTS:
        t = statistics.median(r[0] for r in results[n])
        live_rounds = statistics.median(r[1] for r in results[n])
        redraws = statistics.median(r[2] for r in results[n])
        in_redraws = statistics.median(r[3] for r in results[n])     # the cost the Dashboards themselves put in
        added = (t - previous) / base if n else 0.0      # this Dashboard's cost, as a share of training alone
        worst = max(worst, added)
        print(f"{n:>10} {t:>8.2f} {t / base - 1:>+8.1%} {added:>+18.1%} {live_rounds:>12.0f} {redraws:>8.0f} "
              f"{in_redraws:>10.2f}s {in_redraws / t:>13.1%}")
        previous = t
    verdict = "ok" if worst <= TARGET else "OVER"
    if not any(statistics.median(r[1] for r in results[n]) for n in COUNTS if n):
        verdict = "not measured: no live redraw happened in a run this short (use more --steps)"
    print(f"each Dashboard adds ≤ {worst:.1%} to the training time (target ≤ {TARGET:.0%}): {verdict}")


if __name__ == "__main__":
    main()
