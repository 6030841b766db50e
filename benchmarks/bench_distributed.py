"""Distributed cost of every method on the "small" Llama (orthoscope/recipes/llm.py), CPU, gloo, torchrun.

    python benchmarks/bench_distributed.py            # N = 1, 2, 4 processes; every llm_method; DDP and FSDP2
    python benchmarks/bench_distributed.py --quick    # N = 1, 2; adamw, muon, poet
    python benchmarks/bench_distributed.py --probes   # llm_probes' share of step time: 1 process, N = 2 DDP/FSDP2
    python benchmarks/bench_distributed.py --gain     # step-time gain 1 → 2 ranks, same global batch (issue 26)

For each world size N it launches ``torchrun --nproc_per_node N`` on this script (``--worker``); each rank builds the
same seeded small Llama (hidden 256, 4 layers, vocab 512, 32-token windows, global batch 4) and trains 2 steps.

* **memory/rank**: bytes of the parameters and optimizer state this rank holds after step 2 (DTensor local shards;
  Muon/Pion's whole matrices on their owning rank), the largest over ranks. FSDP2 target: ≤ 1.1/N of N = 1.
  **transient**: Muon/Pion under FSDP2 gather each matrix and its gradient whole on its owner — the pairs of its
  matrices in one bucket and the next (gathers in flight) are the extra peak the owner holds while it updates.
* **comm/step**: bytes the collectives of step 2 move, summed over ranks, by the standard algorithms: all-reduce
  2(N−1)/N·n per rank (ring), all-gather/reduce-scatter (N−1)/N·n per rank, broadcast (N−1)/N·n per rank, gather/
  scatter (N−1)·c at the root. Counted by wrapping ``torch.distributed``'s collectives (what FSDP2, the run and
  ``FullMatrices`` call); DDP gets its stock ``allreduce_hook`` so its gradient buckets pass through them too.

The last line is the headline: comm/step of Muon and POET under FSDP2 relative to AdamW under FSDP2, at the largest N.

``--gain``: the median step time (slowest rank, ``--gain-steps`` steps after one warm-up step, ``--repeats``
repeats) of AdamW, Muon, Pion and POET on the same small Llama at the same global batch (``--gain-batch``), in one
process and at N = 2 under DDP and FSDP2; gain = one process's step time ÷ N = 2's. The last line states Muon's and
Pion's gain relative to AdamW's (issue 26 target: within 15 %). Launches use ``torchrun --standalone`` (its
rendezvous binds its own free port, so no other process can take the port between choosing and binding it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = ("adamw", "lora", "oft", "poet", "pion", "muon")
GAIN_METHODS = ("adamw", "muon", "pion", "poet")
QUICK_METHODS = ("adamw", "muon", "poet")
MODES = ("ddp", "fsdp")
STEPS = 2


# ---- the worker (one rank) -----------------------------------------------------------------------------------
class CommCounter:
    """Wraps ``torch.distributed`` collectives; ``bytes`` is what this rank sends while ``on`` (formulas above)."""

    SIMPLE = {"all_reduce": "ring", "broadcast": "share", "all_gather_single": "share",
              "reduce_scatter_single": "share", "all_gather_into_tensor": "share", "reduce_scatter_tensor": "share"}

    def __init__(self, world: int):
        import torch.distributed as dist

        self.world, self.bytes, self.on = world, 0.0, False
        for name, rule in self.SIMPLE.items():
            self._wrap(dist, name, rule)
        self._wrap(dist, "gather", "gather")
        self._wrap(dist, "scatter", "scatter")
        self._wrap(dist, "_broadcast_coalesced", "coalesced")

    def _wrap(self, module, name, rule):
        original = getattr(module, name)

        def counted(*args, **kwargs):
            if self.on:
                self.bytes += self.cost(rule, args, kwargs)
            return original(*args, **kwargs)

        setattr(module, name, counted)

    def cost(self, rule, args, kwargs) -> float:
        import torch.distributed as dist

        n, w = self.world, self.world
        if rule == "coalesced":                        # DDP's buffer broadcast: (group, tensors, size, src)
            return sum(t.numel() * t.element_size() for t in args[1]) * (n - 1) / n
        tensors = [a for a in (*args, *kwargs.values()) if hasattr(a, "element_size")]
        size = max(t.numel() * t.element_size() for t in tensors)
        if rule == "ring":
            return 2 * (w - 1) / w * size
        if rule == "share":
            return (w - 1) / w * size
        rank = dist.get_rank()
        if rule == "gather":
            root = kwargs.get("dst", args[2] if len(args) > 2 else 0)
            return 0.0 if rank == root else size
        root = kwargs.get("src", args[2] if len(args) > 2 else 0)
        return (w - 1) * size if rank == root else 0.0

    @staticmethod
    def ddp_hook():
        """DDP's own all-reduce hook, registered so its buckets go through ``dist.all_reduce`` (counted above)
        instead of the C++ reducer's direct call, which no Python wrapper sees."""
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        return allreduce_hook


def held_bytes(run) -> int:
    """Parameters + optimizer state this rank holds (local shards of DTensors)."""
    import torch

    from orthoscope.distributed import local

    tensors = list(run.model.parameters())
    tensors += [v for s in run.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return sum(local(t).numel() * local(t).element_size() for t in tensors)


def transient_bytes(run) -> int:
    """Muon/Pion under FSDP2: the whole W + ∇W this rank gathers as owner and holds at once — its matrices of one
    bucket and of the next, whose gathers are in flight meanwhile (``matrices.run_jobs``; 0 otherwise)."""
    from orthoscope.distributed import matrices

    fm = getattr(run.optimizer, "full_matrices", None)
    if run.dist.mode != "fsdp" or fm is None:
        return 0
    owners, peak = fm.owners(run.optimizer), 0
    for group in run.optimizer.param_groups:
        if not group.get("matrix"):
            continue
        buckets, size = [], 0
        for p in group["params"]:
            pair = 2 * p.numel() * p.element_size()
            if not buckets or size + pair > matrices.BUCKET_BYTES:
                buckets.append(0)
                size = 0
            size += pair
            buckets[-1] += pair if owners[id(p)] == run.dist.rank else 0
        peak = max([peak] + [a + b for a, b in zip(buckets, buckets[1:] + [0])])
    return peak


def measure(method: str, mode: str, counter: CommCounter) -> dict:
    import torch
    import torch.distributed as dist

    from orthoscope import Run
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config, llm_method
    from orthoscope.tasks import TinyLang

    task = TokenTask(TinyLang(n_ctx=32, batch_size=4, n_sentences=400, n_eval=8))
    model = build_llama(llama_config("small", vocab_size=task.vocab_size, n_ctx=32), seed=0)
    run = Run(model, task, llm_method(method), probes=[], seed=0, distributed=mode)
    if mode == "ddp" and run.dist.world > 1:
        run._forward.register_comm_hook(None, counter.ddp_hook())
    run.train(STEPS - 1, progress=False)
    counter.bytes, counter.on = 0.0, True
    run.train(1, progress=False)
    counter.on = False
    stats = torch.tensor([held_bytes(run), transient_bytes(run), counter.bytes], dtype=torch.float64)
    top = stats.clone()
    dist.all_reduce(top, op=dist.ReduceOp.MAX)
    total = stats.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return {"method": method, "mode": mode, "world": run.dist.world, "held": top[0].item(),
            "transient": top[1].item(), "comm": total[2].item()}


def probe_cost(mode: str | None, steps: int, repeats: int) -> dict:
    """Observation's share of training time on the small Llama with ``llm_probes`` at their default schedule
    (Spectrum, WeightNorm, Energy, Evaluate every 50 steps; GradNorm every step): the time inside ``Run._observe``
    (probes, the FSDP2 gathers they need, History logging) over the time of the rest of the steps, per repeat, after
    one warm-up step (step 0's observation at initialization is not counted). Returns the median over repeats."""
    import statistics
    import time

    import torch
    import torch.distributed as dist

    from orthoscope import Run
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config, llm_method, llm_probes
    from orthoscope.tasks import TinyLang

    shares, step_ms = [], []
    for _ in range(repeats):
        task = TokenTask(TinyLang(n_ctx=32, batch_size=4, n_sentences=400, n_eval=8))
        model = build_llama(llama_config("small", vocab_size=task.vocab_size, n_ctx=32), seed=0)
        run = Run(model, task, llm_method("adamw"), probes=llm_probes(model), seed=0, distributed=mode)
        run.train(1, progress=False)
        observe, spent = run._observe, [0.0]

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return observe(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t0

        run._observe = timed
        if run.dist is not None:
            run.dist.barrier()
        t0 = time.perf_counter()
        run.train(steps, progress=False)
        total = time.perf_counter() - t0
        stats = torch.tensor([spent[0], total], dtype=torch.float64)
        if run.dist is not None:                       # the slowest rank sets the pace
            dist.all_reduce(stats, op=dist.ReduceOp.MAX)
        shares.append(stats[0].item() / (stats[1].item() - stats[0].item()))
        step_ms.append(1e3 * (stats[1].item() - stats[0].item()) / steps)
    world = run.dist.world if run.dist is not None else 1
    return {"mode": mode or "one", "world": world, "share": statistics.median(shares), "shares": shares,
            "step_ms": statistics.median(step_ms)}


def step_time(method: str, mode: str | None, batch: int, steps: int, repeats: int) -> dict:
    """Median over ``repeats`` of the seconds per training step of ``llm_method(method)`` on the small Llama at
    global batch ``batch`` (``mode`` None: one process), after one warm-up step; the slowest rank sets the pace."""
    import statistics
    import time

    import torch
    import torch.distributed as dist

    from orthoscope import Run
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config, llm_method
    from orthoscope.tasks import TinyLang

    times = []
    for _ in range(repeats):
        task = TokenTask(TinyLang(n_ctx=32, batch_size=batch, n_sentences=400, n_eval=8))
        model = build_llama(llama_config("small", vocab_size=task.vocab_size, n_ctx=32), seed=0)
        run = Run(model, task, llm_method(method), probes=[], seed=0, distributed=mode)
        run.train(1, progress=False)
        if run.dist is not None:
            run.dist.barrier()
        t0 = time.perf_counter()
        run.train(steps, progress=False)
        spent = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        if run.dist is not None:
            dist.all_reduce(spent, op=dist.ReduceOp.MAX)
        times.append(spent.item() / steps)
    world = run.dist.world if run.dist is not None else 1
    return {"method": method, "mode": mode or "one", "world": world, "step_s": statistics.median(times)}


def gain_worker(methods: list[str], batch: int, steps: int, repeats: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    modes = [None] if dist.get_world_size() == 1 else list(MODES)
    rows = [step_time(m, mode, batch, steps, repeats) for m in methods for mode in modes]
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(rows))
    from orthoscope.distributed.seam import teardown
    teardown()                      # barrier, destroy the group, os._exit(0): see its docstring


def gain_table(args, methods: list[str]) -> None:
    """Step time in one process and at N = 2 (DDP, FSDP2), the gain, and the headline: Muon's and Pion's gain
    relative to AdamW's."""
    flags = ["--gain", "--gain-batch", str(args.gain_batch), "--gain-steps", str(args.gain_steps),
             "--repeats", str(args.repeats)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in (1, 2):
            rows += launch(n, methods, Path(tmp) / f"gain{n}.json", args.timeout, flags)
    one = {r["method"]: r["step_s"] for r in rows if r["world"] == 1}
    gains = {(r["method"], r["mode"]): one[r["method"]] / r["step_s"] for r in rows if r["world"] == 2}
    print(f"{'method':<8}{'mode':<6}{'N':>3}{'step ms':>10}{'gain':>8}")
    for r in rows:
        gain = gains.get((r["method"], r["mode"]))
        print(f"{r['method']:<8}{r['mode']:<6}{r['world']:>3}{1e3 * r['step_s']:>10.1f}"
              + (f"{gain:>7.2f}×" if gain else f"{'':>8}"))
    parts = [f"{mode}: " + ", ".join(f"{m} {gains[(m, mode)]:.2f}× ({gains[(m, mode)] / gains[('adamw', mode)]:.2f} "
                                     "of AdamW's)" for m in ("muon", "pion") if (m, mode) in gains)
             for mode in MODES if ("adamw", mode) in gains]
    print(f"HEADLINE step-time gain 1 → 2 ranks at global batch {args.gain_batch}, relative to AdamW's "
          f"(target within 15 %): " + "; ".join(parts))


def probe_worker(modes: list[str], steps: int, repeats: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rows = [probe_cost(mode, steps, repeats) for mode in modes]
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(rows))
    from orthoscope.distributed.seam import teardown
    teardown()                      # barrier, destroy the group, os._exit(0): see its docstring


def worker(methods: list[str], out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    counter = CommCounter(dist.get_world_size())
    rows = [measure(m, mode, counter) for m in methods for mode in MODES]
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(rows))
    from orthoscope.distributed.seam import teardown
    teardown()                      # barrier, destroy the group, os._exit(0): see its docstring


# ---- the driver ------------------------------------------------------------------------------------------------
def launch(n: int, methods, out: Path, timeout: float, extra=()) -> list[dict]:
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", str(n), __file__, "--worker", "--methods",
           ",".join(methods), "--out", str(out), *extra]
    return run_and_read(cmd, out, timeout, f"torchrun at N={n}")


def run_and_read(cmd: list[str], out: Path, timeout: float, label: str):
    """Run ``cmd`` (one thread per process) in its own process group, kill the whole group if it outlives
    ``timeout``, and return the JSON it wrote to ``out``; a failure exits with the end of its log. Shared with
    bench_memory.py."""
    proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}):\n{log[-3000:]}")
    return json.loads(out.read_text())


def table(rows: list[dict]) -> list[str]:
    mb = 2.0 ** 20
    one = {(r["method"], r["mode"]): r["held"] for r in rows if r["world"] == 1}
    ref = {(r["mode"], r["world"]): r["comm"] for r in rows if r["method"] == "adamw"}
    lines = [f"{'method':<8}{'mode':<6}{'N':>3}{'mem/rank MB':>13}{'× N / N=1':>11}{'transient MB':>14}"
             f"{'comm/step MB':>14}{'÷ AdamW DDP':>13}{'÷ AdamW FSDP':>14}"]
    for r in rows:
        scaled = r["held"] * r["world"] / one[(r["method"], r["mode"])]
        ddp, fsdp = ref.get(("ddp", r["world"]), 0), ref.get(("fsdp", r["world"]), 0)
        lines.append(f"{r['method']:<8}{r['mode']:<6}{r['world']:>3}{r['held'] / mb:>13.2f}{scaled:>11.3f}"
                     f"{r['transient'] / mb:>14.2f}{r['comm'] / mb:>14.2f}"
                     f"{(r['comm'] / ddp if ddp else float('nan')):>13.2f}"
                     f"{(r['comm'] / fsdp if fsdp else float('nan')):>14.2f}")
    return lines


def headline(rows: list[dict]) -> str:
    n = max(r["world"] for r in rows)
    comm = {r["method"]: r["comm"] for r in rows if r["world"] == n and r["mode"] == "fsdp"}
    others = ", ".join(f"{m} {comm[m] / comm['adamw']:.2f}×" for m in comm if m != "adamw")
    return f"HEADLINE comm/step under FSDP2 at N={n}, relative to AdamW: {others}"


def probe_table(args) -> None:
    """llm_probes' cost at the default schedule: one process, then N = 2 under DDP and FSDP2 (budget: ≤ 10 %)."""
    flags = ["--probes", "--probe-steps", str(args.probe_steps), "--repeats", str(args.repeats)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [probe_cost(None, args.probe_steps, args.repeats)]
        rows += launch(2, ["ddp", "fsdp"], Path(tmp) / "probes.json", args.timeout, flags)
    print(f"{'mode':<6}{'N':>3}{'step ms':>10}{'observe / step':>16}   per repeat")
    for r in rows:
        print(f"{r['mode']:<6}{r['world']:>3}{r['step_ms']:>10.1f}{100 * r['share']:>15.1f}%   "
              + ", ".join(f"{100 * x:.1f}%" for x in r["shares"]))
    worst = max(rows, key=lambda r: r["share"])
    print(f"HEADLINE observation costs at most {100 * worst['share']:.1f}% of step time ({worst['mode']}, "
          f"N={worst['world']}; budget 10%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 2 and three methods")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--methods", default=None, help="comma-separated llm_method names")
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per torchrun launch")
    parser.add_argument("--probes", action="store_true", help="only the probe-cost table: llm_probes' share of "
                        "step time, one process and N = 2 under DDP and FSDP2")
    parser.add_argument("--probe-steps", type=int, default=100, help="timed steps per repeat (--probes)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats, median reported (--probes, --gain)")
    parser.add_argument("--gain", action="store_true", help="only the step-time gain table: AdamW, Muon, Pion, "
                        "POET in one process and at N = 2 under DDP and FSDP2, same global batch")
    parser.add_argument("--gain-batch", type=int, default=8, help="global batch of the gain runs (--gain)")
    parser.add_argument("--gain-steps", type=int, default=5, help="timed steps per repeat (--gain)")
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else list(QUICK_METHODS if args.quick else METHODS)
    if args.worker and args.gain:
        return gain_worker(methods, args.gain_batch, args.gain_steps, args.repeats, args.out)
    if args.gain:
        return gain_table(args, args.methods.split(",") if args.methods else list(GAIN_METHODS))
    if args.worker and args.probes:
        return probe_worker(methods, args.probe_steps, args.repeats, args.out)
    if args.worker:
        return worker(methods, args.out)
    if args.probes:
        return probe_table(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in ((1, 2) if args.quick else (1, 2, 4)):
            rows += launch(n, methods, Path(tmp) / f"n{n}.json", args.timeout)
    print("\n".join(table(rows)))
    print(headline(rows))


if __name__ == "__main__":
    main()
