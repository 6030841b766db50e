"""Watch responsiveness (issue 15): how long a control click waits for its answer while a watched run writes.

    .venv/bin/python benchmarks/bench_watch.py            # 2 rounds × 12 clicks per wiring (a few minutes)
    .venv/bin/python benchmarks/bench_watch.py --quick    # 1 round × 5 clicks (CI runs this)

The scene of notebook 08: the tiny-Llama POET run in the notebook, beside a wider POET run that
``python -m orthoscope train`` writes in a background process (``poet-big``, probes every 5 steps, gradient norm
every step), shown by a Dashboard that refreshes every 0.5 s on the asyncio loop — the loop a Jupyter kernel runs
and handles widget messages on. A second thread plays the user: at random moments, alternately 0.3–0.9 s and 2.5–4 s
after the previous answer (scrubbing, then watching for a while), it posts a click to the loop
(``call_soon_threadsafe``, as a widget message arrives) that moves the step slider between its ends; the Dashboard answers by redrawing. *Latency* = from posting to the end of that redraw:
the wait behind whatever the loop was doing (refreshes, live redraws) plus the click's own redraw. The browser's
share (image transfer, paint) is not included: tests/test_browser_watch.py measures end to end, once.

Wirings, measured alternately while the same job writes:
* *previous*: ``WatchedRun`` read everything new per tick and called the Dashboard once per record (as
  ``Dashboard.watch`` did before: ``Dashboard(runs)`` + ``WatchedRun.start``, per-record subscribers), and a click
  rebuilt the whole figure;
* *full redraw*: ``Dashboard.watch`` (``orthoscope.viz.watch``: one redraw per refresh, none within ``quiet_s`` of a
  click, reads bounded per tick), but a click still rebuilds and re-renders every panel (``Dashboard.scrub`` off —
  the Dashboard before the scrub path);
* *now*: ``Dashboard.watch`` with ``Dashboard.scrub``: a slider move re-plots only the spectrum and ESD panels, moves
  the step markers and paints them over the background kept from the last full render;
* *idle*: *now* after the job has ended: the click's own answer, nothing to wait behind.

The canvas is ipympl's, as in the notebook (``%matplotlib widget``), with the browser replaced by a recorder of the
images it would be sent (``--png``: the static-PNG fallback instead): what is timed is the kernel's whole answer —
re-plot, render, and encoding the image ipympl sends (a whole image each time: ``Dashboard._send``); the transfer
and paint are not.

Prints a table (median and 90th percentile per wiring) and, last, one headline line.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))       # this checkout's orthoscope, also for the background job (PYTHONPATH below)
TARGET_MS = 200.0
EVERY, INTERVAL_S, LIVE_EVERY_S = 5, 0.5, 0.5


def setup(folder: Path):
    """(the notebook's POET run, the background job's config path) — notebook 08, cells 3–5, at smoke size."""
    import torch

    from orthoscope import Run
    from orthoscope.config import save_config
    from orthoscope.recipes.llm import build_llama, llama_config, llm_method, llm_probes
    from orthoscope.tasks import TokenFile
    from orthoscope.tasks.tokenfile import tokenize

    torch.set_num_threads(1)
    tokenize(ROOT / "data" / "tinylang.txt", folder / "tinylang.bin")
    task = TokenFile(str(folder / "tinylang.bin"), n_ctx=32, batch_size=8, n_eval=16)
    model = build_llama(llama_config("tiny", task.vocab_size, task.n_ctx), seed=0)
    poet = Run(model, task, llm_method("poet", block=16), probes=llm_probes(model, every=EVERY), seed=0,
               name="toy poet")
    poet.train(20, progress=False)
    cfg = poet.config
    cfg.update(steps=100_000, checkpoint={"every": 100_000, "keep": 1})    # runs until this script kills it
    return poet, save_config(cfg, folder / "poet.yaml")


def start_job(config: Path, folder: Path, name: str) -> subprocess.Popen:
    wide = ["model.config.hidden_size=96", "model.config.intermediate_size=384", "model.config.head_dim=24"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen([sys.executable, "-m", "orthoscope", "train", str(config), *wide, "--runs", str(folder),
                            "--name", name, "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (folder / name / "history.jsonl").exists():
        if job.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the background job did not start writing (exit code {job.poll()})")
        time.sleep(0.2)
    time.sleep(2.0)                          # a few records on disk before the Dashboard opens
    return job


def _without_browser(dash):
    """An ipympl canvas with the browser replaced by a recorder: the kernel renders and encodes every image it would
    send (``send_binary`` receives the PNG), as in a notebook whose view has initialized the canvas."""
    if dash.interactive:
        dash.canvas.syncing_data_url = False
        dash.canvas.send_binary = lambda data: dash.sent.append(len(data))
        dash.sent = []
        dash.redraw()      # the view's first draw request (the notebook's browser sends one when it shows the canvas)
    return dash


def previous_wiring(run_dir, poet):
    """Dashboard.watch as it was: every new byte read per tick, the Dashboard called once per record."""
    from orthoscope.viz import Dashboard
    from orthoscope.viz.watch import WatchedRun

    watched = WatchedRun(run_dir, max_bytes=None)
    watched.refresh()
    dash = Dashboard([watched, poet], every=EVERY, live_every_s=LIVE_EVERY_S)
    watched.start(INTERVAL_S)
    close = dash.close
    dash.close = lambda: (watched.stop(), close())
    dash.scrub = lambda: False                      # a click rebuilt the whole figure
    return _without_browser(dash)


def current_wiring(run_dir, poet):
    from orthoscope.viz import Dashboard

    return _without_browser(Dashboard.watch(run_dir, poet, every=EVERY, interval_s=INTERVAL_S,
                                            live_every_s=LIVE_EVERY_S))


def full_redraw_wiring(run_dir, poet):
    """Today's watcher, but a click answered by rebuilding every panel (the Dashboard before ``scrub``)."""
    dash = current_wiring(run_dir, poet)
    dash.scrub = lambda: False
    return dash


def clicks(make_dashboard, n_clicks: int, seed: int, max_s: float) -> list[tuple[float, float]]:
    """(latency, wait) in ms of ``n_clicks`` slider moves posted to the loop from a second thread (module docstring).
    After ``max_s`` seconds the phase ends: the Dashboard stops drawing (the previous wiring can fall behind the
    writer for good — each tick's k redraws let k more records land — and would otherwise never return)."""
    latencies: list[float] = []
    over = threading.Event()
    waits: list[float] = []

    async def scene():
        loop = asyncio.get_running_loop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")            # "ipympl is not the active backend": the PNG fallback
            dash = make_dashboard()
        redraw = dash.redraw
        dash.redraw = lambda: None if over.is_set() else redraw()
        answered = threading.Event()
        stop = threading.Event()

        def click(posted: float):
            started = time.perf_counter()
            dash.slider.value = 0 if dash.slider.value else dash.slider.max    # the Dashboard redraws
            latencies.append(1000 * (time.perf_counter() - posted))
            waits.append(1000 * (started - posted))
            answered.set()

        def user():
            rng = random.Random(seed)
            while len(latencies) < n_clicks and not over.is_set():
                time.sleep(rng.uniform(0.3, 0.9) if len(latencies) % 2 else rng.uniform(2.5, 4.0))
                answered.clear()
                loop.call_soon_threadsafe(click, time.perf_counter())
                answered.wait(timeout=max_s)

        thread = threading.Thread(target=user, daemon=True)
        thread.start()
        timer = threading.Timer(max_s, over.set)
        timer.start()
        while len(latencies) < n_clicks and not over.is_set():
            await asyncio.sleep(0.05)
        over.set()
        timer.cancel()
        stop.set()
        dash.close()
        thread.join(timeout=max_s)

    asyncio.run(scene())
    return list(zip(latencies, waits))


def redraw_breakdown(dash, n: int = 5) -> dict[str, float]:
    """Median ms of the Dashboard's two answers, idle: a full redraw (every panel re-plotted and rendered, no
    constrained layout: that re-runs at most every 5 s) and a scrub (a slider move: ``Dashboard.scrub``)."""
    full, scrub = [], []
    for i in range(n):
        dash._last_layout = time.perf_counter()       # no relayout due in this redraw
        t0 = time.perf_counter()
        dash.redraw()
        full.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dash.slider.value = 0 if dash.slider.value else dash.slider.max
        scrub.append(time.perf_counter() - t0)
    dash.close()
    return {"full redraw": 1000 * float(np.median(full)), "scrub": 1000 * float(np.median(scrub))}


def summary(ms: list[float]) -> tuple[float, float]:
    return float(np.median(ms)), float(np.percentile(ms, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 5 clicks per wiring")
    parser.add_argument("--png", action="store_true", help="the static-PNG fallback canvas instead of ipympl's")
    args = parser.parse_args()
    if not args.png:
        import matplotlib

        matplotlib.use("module://ipympl.backend_nbagg")
    rounds, n_clicks, max_s = (1, 5, 40.0) if args.quick else (2, 12, 90.0)
    wirings = {"previous": previous_wiring, "full redraw": full_redraw_wiring, "now": current_wiring}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in (*wirings, "idle")}
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        folder = Path(tmp)
        poet, config = setup(folder)
        job = start_job(config, folder, "poet-big")
        try:
            for r in range(rounds):
                for name, wiring in wirings.items():
                    results[name] += clicks(lambda: wiring(folder / "poet-big", poet), n_clicks, r, max_s)
        finally:
            job.kill()
            job.wait(timeout=30)
        results["idle"] = clicks(lambda: current_wiring(folder / "poet-big", poet), n_clicks, 0, max_s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            breakdown = redraw_breakdown(current_wiring(folder / "poet-big", poet))
    load = os.getloadavg()[0]
    canvas = "static PNG" if args.png else "ipympl"
    print(f"\nclick latency, ms (posted → answered); {canvas} canvas; {rounds} round(s) × {n_clicks} clicks; "
          f"load average {load:.1f}")
    print(f"{'wiring':<12} {'clicks':>6} {'median':>8} {'p90':>8} {'max':>8} {'waited':>8}   "
          f"target < {TARGET_MS:.0f} ms")
    for name, pairs in results.items():
        ms, waited = [p[0] for p in pairs], [p[1] for p in pairs]
        med, p90 = summary(ms)
        print(f"{name:<12} {len(ms):>6} {med:>8.0f} {p90:>8.0f} {max(ms):>8.0f} {np.median(waited):>8.0f}   "
              f"{'met' if med < TARGET_MS else 'not met'} (median)")
    print("(waited: median ms from posting a click to the start of its handler, the loop being busy before it)")
    print("\nidle, median of 5, ms: " + ", ".join(f"{k} {v:.0f}" for k, v in breakdown.items()))
    now, prev, full = (summary([p[0] for p in results[k]])[0] for k in ("now", "previous", "full redraw"))
    print(f"watch: a control click answered in {now:.0f} ms (median) while a run writes, {full / now:.1f}× faster "
          f"than a full redraw ({full:.0f} ms), previous wiring {prev:.0f} ms (target < {TARGET_MS:.0f} ms: "
          f"{'met' if now < TARGET_MS else 'not met'})")


if __name__ == "__main__":
    main()
