"""Worker for tests/test_plan.py: measured per-rank peaks under torchrun with per-block FSDP2.

    torchrun --nproc_per_node 2 tests/plan_worker.py OUT.json METHOD...

Each rank trains through the run's own seam (``Run(..., distributed="fsdp")``: ``Seam.prepare`` shards every unit of
``sharding.sharding_units`` and the root, with prefetch along the blocks), runs two steps of the tiny Llama (batch
4 × 16 tokens, global) and measures the second with ``LiveBytes``; rank 0 writes ``{method: [peak of rank 0, 1,
...]}``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from orthoscope.distributed.live_bytes import second_step_peak  # noqa: E402


def main(out: str, methods: list[str]) -> None:
    from orthoscope import Run
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config, llm_method
    from orthoscope.tasks.tinylang import TinyLang

    peaks = {}
    for name in methods:
        task = TokenTask(TinyLang(n_ctx=16, batch_size=4, n_sentences=300), n_eval=8)
        model = build_llama(llama_config("tiny", task.vocab_size, task.n_ctx), seed=0)
        method = llm_method(name, merge_every=2) if name == "poet" else llm_method(name)
        run = Run(model, task, method, probes=[], seed=0, distributed="fsdp")
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, second_step_peak(run))
        peaks[name] = gathered
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(peaks))
    from orthoscope.distributed.seam import teardown
    teardown()                     # barrier, destroy the group, os._exit(0): see its docstring


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
