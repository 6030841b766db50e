"""Distributed cost of every method on the "small" Llama (orthoscope/llm.py), CPU, gloo, torchrun.

    python benchmarks/bench_distributed.py            # N = 1, 2, 4 processes; every llm_method; DDP and FSDP2
    python benchmarks/bench_distributed.py --quick    # N = 1, 2; adamw, muon, poet

For each world size N it launches ``torchrun --nproc_per_node N`` on this script (``--worker``); each rank builds the
same seeded small Llama (hidden 256, 4 layers, vocab 512, 32-token windows, global batch 4) and trains 2 steps.

* **memory/rank**: bytes of the parameters and optimizer state this rank holds after step 2 (DTensor local shards;
  Muon/Pion's whole matrices on their owning rank), the largest over ranks. FSDP2 target: ≤ 1.1/N of N = 1.
  **transient**: Muon/Pion under FSDP2 gather each matrix and its gradient whole on its owner — the largest such
  pair (2 × the largest matrix) is the extra peak the owner holds while it updates.
* **comm/step**: bytes the collectives of step 2 move, summed over ranks, by the standard algorithms: all-reduce
  2(N−1)/N·n per rank (ring), all-gather/reduce-scatter (N−1)/N·n per rank, broadcast (N−1)/N·n per rank, gather/
  scatter (N−1)·c at the root. Counted by wrapping ``torch.distributed``'s collectives (what FSDP2, the run and
  ``FullMatrices`` call); DDP gets its stock ``allreduce_hook`` so its gradient buckets pass through them too.

The last line is the headline: comm/step of Muon and POET under FSDP2 relative to AdamW under FSDP2, at the largest N.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = ("adamw", "lora", "oft", "poet", "pion", "muon")
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
    """Muon/Pion under FSDP2: the largest matrix's W + ∇W gathered whole on its owner (0 otherwise)."""
    if run.dist.mode != "fsdp" or getattr(run.optimizer, "full_matrices", None) is None:
        return 0
    sizes = [p.numel() * p.element_size() for g in run.optimizer.param_groups if g.get("matrix") for p in g["params"]]
    return 2 * max(sizes, default=0)


def measure(method: str, mode: str, counter: CommCounter) -> dict:
    import torch
    import torch.distributed as dist

    from orthoscope import Run
    from orthoscope.llm import TokenTask, build_llama, llama_config, llm_method
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


def worker(methods: list[str], out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    counter = CommCounter(dist.get_world_size())
    rows = [measure(m, mode, counter) for m in methods for mode in MODES]
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(rows))
    dist.barrier()
    dist.destroy_process_group()


# ---- the driver ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n: int, methods, out: Path, timeout: float) -> list[dict]:
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", str(n), "--master_addr", "127.0.0.1", "--master_port",
           str(free_port()), __file__, "--worker", "--methods", ",".join(methods), "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    if proc.returncode != 0:
        raise SystemExit(f"torchrun at N={n} failed ({proc.returncode}):\n{log[-3000:]}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 2 and three methods")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--methods", default=None, help="comma-separated llm_method names")
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per torchrun launch")
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else list(QUICK_METHODS if args.quick else METHODS)
    if args.worker:
        return worker(methods, args.out)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in ((1, 2) if args.quick else (1, 2, 4)):
            rows += launch(n, methods, Path(tmp) / f"n{n}.json", args.timeout)
    print("\n".join(table(rows)))
    print(headline(rows))


if __name__ == "__main__":
    main()
