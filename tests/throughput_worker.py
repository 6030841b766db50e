"""Worker for tests/test_throughput.py: the tiny Llama under torchrun (DDP, then FSDP2), with throughput recorded.

    torchrun --nproc_per_node 2 tests/throughput_worker.py OUT_DIR

Rank 1 pretends to be slow: 100 s are added to each step it times (``Throughput.end``), so the step time rank 0
records is rank 1's only if the slowest rank is taken (an all-reduce MAX), whatever the machine's load. Rank 0
writes ``OUT_DIR/<mode>.json``: the throughput series, the FLOPs per step (summed over ranks) and the world size.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

STEPS, EVERY, BATCH, N_CTX = 4, 2, 4, 16
SLOW_S = 100.0


def build(distributed=None):
    import torch

    from orthoscope import AdamW, Run
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config
    from orthoscope.tasks.tinylang import TinyLang
    from orthoscope.training.throughput import Throughput

    task = TokenTask(TinyLang(n_ctx=N_CTX, batch_size=BATCH, n_sentences=200), n_eval=4)
    model = build_llama(llama_config("tiny", task.vocab_size, task.n_ctx), seed=0)
    torch.manual_seed(0)
    run = Run(model, task, AdamW(lr=1e-3), probes=[], seed=0, distributed=distributed)
    run.throughput = Throughput(every=EVERY)
    return run


def slow_down(meter) -> None:
    """Add ``SLOW_S`` to every step this rank times (the clock is read in ``end``)."""
    end = meter.end

    def slow_end():
        end()
        if meter._window:
            meter._window[-1] += SLOW_S
    meter.end = slow_end


def main(out: Path) -> None:
    import torch.distributed as dist

    for mode in ("ddp", "fsdp"):
        run = build(mode)
        if run.dist.rank == 1:
            slow_down(run.throughput)
        run.train(STEPS, progress=False)
        if run.dist.is_main:
            h = run.history
            series = {k: {"steps": h[k].steps, "values": h[k].values} for k in h.keys("throughput")}
            (out / f"{mode}.json").write_text(json.dumps({"series": series, "world": run.dist.world,
                                                          "flops_per_step": run.throughput.flops_per_step}))
        dist.barrier()
    from orthoscope.distributed.seam import teardown
    teardown()                     # barrier, destroy the group, os._exit(0): see its docstring


if __name__ == "__main__":
    main(Path(sys.argv[1]))
