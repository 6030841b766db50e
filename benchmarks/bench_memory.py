"""Per-rank memory of per-block FSDP2, measured (issue 26): the tiny Llama, CPU, gloo, torchrun.

    python benchmarks/bench_memory.py            # N = 1, 2, 3; AdamW, Muon, Pion, POET, OFT, LoRA
    python benchmarks/bench_memory.py --quick    # N = 1, 2; AdamW, Muon

Each world size N > 1 is one ``torchrun --standalone --nproc_per_node N`` launch of this script (``--worker``); N = 1
is one plain process (no process group, the whole model resident). Every rank builds the same seeded tiny Llama
(hidden 64, ``LAYERS`` = 4 decoder layers, TinyLang windows of ``SEQ`` = 16 tokens, global batch ``BATCH`` = 6) with
``llm_method(method)`` (POET merging every 2 steps) and trains 2 steps under ``distributed="fsdp"``, once per
``prefetch`` setting (``$ORTHOSCOPE_PREFETCH``, orthoscope/distributed/sharding.py). Columns, each the largest over
ranks:

* **params p0 / p1**: peak unsharded parameter bytes a rank holds at the forward/backward hooks of every sharding
  unit (``held_bytes.HeldBytes``: full bytes of each unit unsharded or being gathered, the shard of every other),
  as a fraction of the whole model's parameter bytes, with prefetch 0 and 1. Bounds: one block + 1/N of the rest
  (prefetch 0), two blocks + 1/N of the rest (prefetch 1); N = 1 holds the whole model (1.00).
* **peak MB / plan MB**: every live tensor storage during step 2 (``live_bytes.LiveBytes``, prefetch 1: what the
  plan assumes) and ``plan.memory_plan``'s predicted peak for the same model, method, world size, batch and length.
* **save KB / bound KB** (Muon, Pion): optimizer-state bytes a rank holds while its checkpoint save writes
  (``held_bytes.measured_save``), against 1.1/N of one process's optimizer state + one matrix's state (N = 1: the
  whole state, the reference).

The last line is the headline: the parameter fraction per rank at the largest N, prefetch 0 and 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench_distributed import run_and_read      # benchmarks/ is sys.path[0] when run as a script

METHODS = ("adamw", "muon", "pion", "poet", "oft", "lora")
QUICK_METHODS = ("adamw", "muon")
MATRIX = ("muon", "pion")
PREFETCHES = (0, 1)
BATCH, SEQ, LAYERS = 6, 16, 4            # batch 6: divisible by 1, 2 and 3


# ---- the worker (one rank, or the one process at N = 1) -------------------------------------------------------
def task_and_config():
    from orthoscope.recipes.llm import TokenTask, llama_config
    from orthoscope.tasks.tinylang import TinyLang

    task = TokenTask(TinyLang(n_ctx=SEQ, batch_size=BATCH, n_sentences=300), n_eval=6)
    return task, llama_config("tiny", task.vocab_size, task.n_ctx, num_hidden_layers=LAYERS)


def method_of(name: str):
    from orthoscope.recipes.llm import llm_method

    return llm_method(name, merge_every=2) if name == "poet" else llm_method(name)


def measure(name: str, prefetch: int, world: int, save_dir: str) -> dict:
    """Two steps of ``name`` at this world size: held parameter bytes, live-bytes peak of step 2, save bytes."""
    from orthoscope import Run
    from orthoscope.distributed.held_bytes import HeldBytes, measured_save, storage_bytes
    from orthoscope.distributed.live_bytes import second_step_peak
    from orthoscope.distributed.matrix_state import optimizer_tensors
    from orthoscope.recipes.llm import build_llama

    os.environ["ORTHOSCOPE_PREFETCH"] = str(prefetch)
    task, config = task_and_config()
    run = Run(build_llama(config, seed=0), task, method_of(name), probes=[], seed=0,
              distributed="fsdp" if world > 1 else None)
    held = HeldBytes(run.model) if world > 1 else None
    if held is not None:
        held.during_training_passes(run)
    live = second_step_peak(run)
    whole = sum(p.numel() * p.element_size() for p in run.model.parameters())     # a DTensor's global size
    row = {"method": name, "prefetch": prefetch, "world": world, "whole": whole, "live": live,
           "held": held.peak if held is not None else whole}
    if name in MATRIX and prefetch == 1:
        if world > 1:
            row["save"] = measured_save(run, f"{save_dir}/{name}")
        else:                                       # one process: the whole state is the reference
            row["save"] = storage_bytes(optimizer_tensors(run)[0].values())
            row["matrix"] = max(storage_bytes([v for v in run.optimizer.state[p].values() if hasattr(v, "numel")])
                                for g in run.optimizer.param_groups if g.get("matrix") for p in g["params"])
    return row


def worker(methods: list[str], world: int, out: str) -> None:
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as local:
        if world == 1:
            rows = [measure(m, p, 1, local) for m in methods for p in PREFETCHES[-1:]]
            Path(out).write_text(json.dumps(rows))
            return
        import torch.distributed as dist

        dist.init_process_group("gloo")
        save_dir = Path(out).parent / "saves"          # one directory all ranks write the same checkpoint into
        rows = [measure(m, p, world, str(save_dir)) for m in methods for p in PREFETCHES]
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, rows)
        if dist.get_rank() == 0:                        # the largest over ranks, per column
            merged = [{k: (max(r[k] for r in per_rank) if isinstance(v, int) and k not in ("prefetch", "world")
                           else v) for k, v in per_rank[0].items()} for per_rank in zip(*gathered)]
            Path(out).write_text(json.dumps(merged))
    from orthoscope.distributed.seam import teardown
    teardown()                      # barrier, destroy the group, os._exit(0): see its docstring


# ---- the driver ------------------------------------------------------------------------------------------------
def launch(n: int, methods, out: Path, timeout: float) -> list[dict]:
    args = [__file__, "--worker", "--world", str(n), "--methods", ",".join(methods), "--out", str(out)]
    if n == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", str(n), *args]
    return run_and_read(cmd, out, timeout, f"N={n}")


def planned(name: str, world: int) -> int:
    from orthoscope.distributed.plan import memory_plan

    _, config = task_and_config()
    return memory_plan(config, method_of(name), world_size=world, batch_size=BATCH, seq_len=SEQ).peak


def table(rows: list[dict]) -> list[str]:
    mb, kb = 2.0 ** 20, 2.0 ** 10
    at = {(r["method"], r["world"], r["prefetch"]): r for r in rows}
    lines = [f"{'method':<7}{'N':>3}{'params p0':>11}{'params p1':>11}{'peak MB':>10}{'plan MB':>10}"
             f"{'plan/peak':>11}{'save KB':>10}{'bound KB':>10}"]
    for (name, world, prefetch), r in at.items():
        if prefetch != 1:
            continue
        p0 = at.get((name, world, 0), r)
        plan = planned(name, world)
        save = bound = ""
        if "save" in r:
            one = at[(name, 1, 1)]
            save = f"{r['save'] / kb:.1f}"
            bound = f"{(1.1 * one['save'] / world + one['matrix']) / kb:.1f}"
        lines.append(f"{name:<7}{world:>3}{p0['held'] / p0['whole']:>11.3f}{r['held'] / r['whole']:>11.3f}"
                     f"{r['live'] / mb:>10.2f}{plan / mb:>10.2f}{plan / r['live']:>11.2f}{save:>10}{bound:>10}")
    return lines


def headline(rows: list[dict]) -> str:
    n = max(r["world"] for r in rows)
    frac = {p: max(r["held"] / r["whole"] for r in rows if r["world"] == n and r["prefetch"] == p)
            for p in PREFETCHES}
    return (f"HEADLINE peak parameter bytes per rank at N = {n}: {frac[0]:.2f} of the model (prefetch 0), "
            f"{frac[1]:.2f} (prefetch 1), the largest over methods")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 2 and AdamW, Muon")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--methods", default=None, help="comma-separated llm_method names")
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per launch")
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else list(QUICK_METHODS if args.quick else METHODS)
    if args.worker:
        return worker(methods, args.world, args.out)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in ((1, 2) if args.quick else (1, 2, 3)):
            (Path(tmp) / f"n{n}").mkdir()
            rows += launch(n, methods, Path(tmp) / f"n{n}" / "rows.json", args.timeout)
    print("\n".join(table(rows)))
    print(headline(rows))


if __name__ == "__main__":
    main()
