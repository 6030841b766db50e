"""Worker for tests/test_recorder_torchrun.py: your own loop with the recorder under torchrun, DDP and FSDP2.

    torchrun --nproc_per_node 2 tests/recorder_worker.py OUT_DIR

For each mode rank 0 writes ``OUT_DIR/<mode>.safetensors`` (every History series: steps, then values) and
``OUT_DIR/<mode>.gathers`` (how many times the FSDP2 weights were gathered); rank 1 writes ``<mode>.rank1.txt``, the
error it got reading the History. ``train_loop(None)`` is the same loop in one process, for the test to compare.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

P, BATCH, STEPS, EVERY = 13, 8, 12, 4


def probes():
    from orthoscope.probes import Energy, Evaluate, GradNorm, LearningRate, Spectrum, SpectrumDrift, WeightNorm

    return [Evaluate(EVERY), Spectrum(EVERY), WeightNorm(EVERY), Energy(EVERY, s=(0, 1)), SpectrumDrift(EVERY),
            GradNorm(1, per_parameter=True), LearningRate(EVERY)]


def train_loop(mode: str | None):
    """The loop a user writes: seeded model and data order, each rank its rows of the global batch, AdamW, and the
    recorder's line after the update. ``mode``: None (one process), "ddp" or "fsdp"."""
    import torch.distributed as dist

    from orthoscope import observe
    from orthoscope.models import MLP
    from orthoscope.tasks import ModularArithmetic

    torch.manual_seed(0)
    model = MLP(vocab_size=P, n_tokens=2, d_embed=8, hidden=(15, 16), d_out=P)     # 15 rows: uneven shards
    task = ModularArithmetic(p=P, train_frac=0.5, batch_size=BATCH)
    rank, world = (dist.get_rank(), dist.get_world_size()) if mode else (0, 1)
    forward = model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel
        forward = DistributedDataParallel(model)
    elif mode == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    rec = observe(forward, probes(), optimizer=opt, task=task)
    generator = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        x, y = task.batch(generator)
        rows = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x[rows]), y[rows])
        loss.backward()
        opt.step()
        rec.step(loss=loss)
    return rec


def series(history) -> dict[str, torch.Tensor]:
    out = {}
    for key in history:
        s = history[key]
        out[f"steps.{key}"] = torch.tensor(s.steps, dtype=torch.float64)
        out[f"history.{key}"] = s.stack() if s.is_array else torch.tensor(s.values, dtype=torch.float64)
    return out


def main(out: Path) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    from orthoscope.distributed import seam

    dist.init_process_group("gloo")
    gathers = {"n": 0}
    full_weights = seam.Seam.full_weights

    def counted(self, model):
        gathers["n"] += 1
        return full_weights(self, model)

    seam.Seam.full_weights = counted
    for mode in ("ddp", "fsdp"):
        gathers["n"] = 0
        rec = train_loop(mode)
        if dist.get_rank() == 0:
            save_file(series(rec.history), str(out / f"{mode}.safetensors"))
            (out / f"{mode}.gathers").write_text(str(gathers["n"]))
        else:
            try:
                rec.history
                message = "no error"
            except RuntimeError as e:
                message = str(e)
            (out / f"{mode}.rank1.txt").write_text(message)
        dist.barrier()
    from orthoscope.distributed.seam import teardown
    teardown()                     # barrier, destroy the group, os._exit(0): see its docstring


if __name__ == "__main__":
    main(Path(sys.argv[1]))
