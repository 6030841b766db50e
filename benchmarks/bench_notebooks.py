"""How long every notebook takes, top to bottom, in smoke mode (limit 60 s) and full mode (limit 5 min).

    .venv/bin/python benchmarks/bench_notebooks.py                       # smoke mode, every notebook
    .venv/bin/python benchmarks/bench_notebooks.py --mode full           # full mode (tens of minutes in all)
    .venv/bin/python benchmarks/bench_notebooks.py --only 06 07          # notebooks whose name starts with these

Each notebook runs in a fresh ``python3`` kernel (nbclient, cwd = notebooks/), as a user's "Restart & Run All",
with ``MPLBACKEND=Agg`` and ``OMP_NUM_THREADS`` from ``--threads`` (default 1: these are small models, and on a
2-core machine a second OpenMP thread mostly waits). Time = wall time from the first cell's start to the last
cell's end, kernel start-up excluded; the longest cell is listed too. The first code cell reads ``ORTHOSCOPE_SMOKE``.

The last line names the slowest notebook and whether every notebook is inside the limit of its mode.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
LIMIT_S = {"smoke": 60.0, "full": 300.0}


def time_notebook(path: Path, mode: str, threads: int, timeout_s: float) -> tuple[float, float, int]:
    """(total seconds, longest cell seconds, index of that code cell) of one top-to-bottom run."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["ORTHOSCOPE_SMOKE"] = "1" if mode == "smoke" else "0"
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    nb = nbformat.read(path, as_version=4)
    cell_times: list[float] = []
    started: list[float] = []
    client = NotebookClient(nb, kernel_name="python3", timeout=int(timeout_s),
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.on_cell_execute = lambda cell, cell_index: started.append(time.perf_counter())
    client.on_cell_executed = lambda cell, cell_index, execute_reply: cell_times.append(
        time.perf_counter() - started[-1])
    client.execute()
    longest = max(range(len(cell_times)), key=cell_times.__getitem__)
    return sum(cell_times), cell_times[longest], longest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=sorted(LIMIT_S), default="smoke")
    parser.add_argument("--only", nargs="*", default=None, help="name prefixes, e.g. 04 06")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the kernels")
    parser.add_argument("--quick", action="store_true", help="smoke run: the first notebook only, in smoke mode")
    args = parser.parse_args()
    if args.quick:
        args.mode, args.only = "smoke", ["00"]
    paths = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if args.only:
        paths = [p for p in paths if any(p.name.startswith(prefix) for prefix in args.only)]
    if not paths:
        sys.exit(f"no notebook in {NOTEBOOK_DIR} matches {args.only}")
    limit = LIMIT_S[args.mode]
    print(f"{args.mode} mode, {args.threads} thread(s) per kernel, limit {limit:.0f} s per notebook")
    print(f"{'notebook':<34} {'total s':>8} {'longest cell s':>15} {'(code cell #)':>14}  within limit")
    totals = {}
    for path in paths:
        total, longest, index = time_notebook(path, args.mode, args.threads, timeout_s=4 * limit)
        totals[path.name] = total
        print(f"{path.name:<34} {total:>8.1f} {longest:>15.1f} {index:>14}  {'yes' if total <= limit else 'NO'}",
              flush=True)
    slowest = max(totals, key=totals.get)
    inside = sum(t <= limit for t in totals.values())
    print(f"{args.mode} mode: slowest {slowest} {totals[slowest]:.1f} s (limit {limit:.0f} s); "
          f"{inside}/{len(totals)} notebooks within the limit")


if __name__ == "__main__":
    main()
