"""Worker for tests/test_fsdp_blocks.py: trains each case of a JSON spec under torchrun with per-block FSDP2 and writes
what it saw, including the peak parameter bytes this rank held, sampled by hooks on every sharding unit
(``orthoscope.distributed.held_bytes.HeldBytes``). A case's ``prefetch`` (default 1) and ``precision`` reach the run's
seam through ``$ORTHOSCOPE_PREFETCH`` / ``$ORTHOSCOPE_PRECISION``.

    torchrun --nproc_per_node N tests/fsdp_blocks_worker.py SPEC.json OUT_DIR

Rank 0 writes ``OUT_DIR/<case>.safetensors`` (losses, probe records, full final weights); every rank writes
``OUT_DIR/<case>.rank<r>.json`` (its memory samples and the unit sizes). ``build(case)`` is also the one-process
reference the test trains.
"""
from __future__ import annotations

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distributed_worker import outcome  # noqa: E402
from orthoscope.distributed.held_bytes import HeldBytes  # noqa: E402

BATCH, LAYERS, STEPS = 6, 4, 8            # batch 6: divisible by 2 and 3, the same global batch at both sizes


def build(case: dict, distributed=None):
    """The tiny Llama with ``LAYERS`` decoder layers on TinyLang (global batch ``BATCH``), ``llm_method(case["llm"])``
    and ``llm_probes`` every 4 steps (spectra and an evaluation inside a gather of the whole model)."""
    from orthoscope import Run
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config, llm_method, llm_probes
    from orthoscope.tasks.tinylang import TinyLang

    task = TokenTask(TinyLang(n_ctx=16, batch_size=BATCH, n_sentences=300), n_eval=6)
    config = llama_config("tiny", task.vocab_size, task.n_ctx, num_hidden_layers=LAYERS)
    model = build_llama(config, seed=0, checkpointing=case.get("checkpointing", False))
    return Run(model, task, llm_method(case["llm"], block=16, **case.get("kwargs", {})),
               probes=llm_probes(model, every=4), seed=0, distributed=distributed)


def run_case(case: dict, out_dir: str) -> None:
    from safetensors.torch import save_file

    from orthoscope.distributed import DistributedError

    os.environ["ORTHOSCOPE_PRECISION"] = case.get("precision", "fp32")
    os.environ["ORTHOSCOPE_PREFETCH"] = str(case.get("prefetch", 1))
    rank = torch.distributed.get_rank()
    if case.get("expect_error"):
        try:
            build(case, distributed="fsdp")
        except DistributedError as err:
            if rank == 0:
                open(f"{out_dir}/{case['name']}.error.txt", "w").write(str(err))
            return
        raise AssertionError(f"case {case['name']!r} built a run; expected a DistributedError")
    run = build(case, distributed="fsdp")
    held = HeldBytes(run.model)
    held.during_training_passes(run)
    run.train(case.get("steps", STEPS), progress=False)
    result = outcome(run)
    with open(f"{out_dir}/{case['name']}.rank{rank}.json", "w") as f:
        json.dump({**held.report(), "merges": getattr(run.interventions[-1], "merges", None)
                   if run.interventions else None}, f)
    if rank == 0:
        save_file({k: v.contiguous() for k, v in result.items()}, f"{out_dir}/{case['name']}.safetensors")


def main(spec_path: str, out_dir: str) -> None:
    from orthoscope.distributed import init_process_group

    torch.set_num_threads(1)
    init_process_group("gloo")                         # the runs join it (Run's setup finds it initialized)
    for case in json.loads(open(spec_path).read()):
        run_case(case, out_dir)
    from orthoscope.distributed.seam import teardown
    teardown()                     # barrier, destroy the group, os._exit(0): see its docstring


if __name__ == "__main__":
    main(*sys.argv[1:3])
