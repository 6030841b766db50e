"""Worker for tests/test_distributed.py: trains every case of a JSON spec under torchrun and writes what it saw.

    torchrun --nproc_per_node 2 tests/distributed_worker.py SPEC.json OUT_DIR

For each case, rank 0 writes ``OUT_DIR/<case>.safetensors`` (the loss history and the full final weights, gathered
under FSDP2) and every rank writes ``OUT_DIR/<case>.rank<r>.safetensors`` (the full parameters as that rank holds
them), so a test can compare them with one process and with each other. ``build(case)`` is also what the test calls
to make the one-process reference, so both sides construct the same run.
"""
from __future__ import annotations

import json
import sys

import torch

P, BATCH, STEPS = 13, 8, 20


def make_method(case: dict):
    import orthoscope
    from orthoscope import adapters
    from orthoscope.recipes import kan_fit as kan_train
    from orthoscope.optim import methods as optim_methods

    name, kwargs = case["method"], case.get("kwargs", {})
    cls = next(getattr(m, name) for m in (orthoscope, optim_methods, adapters, kan_train) if hasattr(m, name))
    return cls(**kwargs)


def build_llm(case: dict, distributed=None):
    """The LLM recipe of docs/distributed.md as written, on the tiny Llama (hidden 64, 2 layers) and TinyLang:
    ``llm_method(case["llm"])``, ``llm_probes`` every 5 steps, global batch 4."""
    from orthoscope import Run
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config, llm_method, llm_probes
    from orthoscope.tasks.tinylang import TinyLang

    task = TokenTask(TinyLang(n_ctx=16, batch_size=4, n_sentences=300), n_eval=8)
    model = build_llama(llama_config("tiny", task.vocab_size, task.n_ctx), seed=0)
    return Run(model, task, llm_method(case["llm"], **case.get("kwargs", {})), probes=llm_probes(model, every=5),
               seed=0, distributed=distributed)


def build(case: dict, distributed=None):
    """The seeded tiny run of ``case``: modular addition mod 13, a token MLP with two hidden matrices (15 rows: uneven
    shards), global batch 8, no dropout; or, for an ``llm`` case, ``build_llm``."""
    if case.get("llm"):
        return build_llm(case, distributed)
    from orthoscope import Run
    from orthoscope.models import MLP
    from orthoscope.probes import default_probes
    from orthoscope.tasks import ModularArithmetic

    task = ModularArithmetic(p=P, train_frac=0.5, batch_size=case.get("batch", BATCH))
    torch.manual_seed(0)
    model = MLP(vocab_size=P, n_tokens=2, d_embed=8, hidden=tuple(case.get("hidden", (15, 16))), d_out=P)
    probes = default_probes(every=case["probe_every"]) if case.get("probe_every") else []
    return Run(model, task, make_method(case), probes=probes, seed=1, distributed=distributed)


def outcome(run) -> dict[str, torch.Tensor]:
    """The loss history and full weights of ``run`` (collective under FSDP2: call on every rank)."""
    from orthoscope.distributed import full_state

    out = {f"model.{k}": v for k, v in full_state(run.model).items()}
    if run.dist is None or run.dist.is_main:
        for key in run.history:                        # every series: steps, then values (numbers or arrays)
            series = run.history[key]
            out[f"steps.{key}"] = torch.tensor(series.steps, dtype=torch.float64)
            out[f"history.{key}"] = (series.stack() if series.is_array
                                     else torch.tensor(series.values, dtype=torch.float64))
    return out


def owned_states(run) -> dict[str, torch.Tensor]:
    """``owned.<name>`` = 1 when this rank holds optimizer state for the matrix-group parameter ``name``."""
    names = {id(p): n for n, p in run.model.named_parameters()}
    return {f"owned.{names[id(p)]}": torch.tensor(float(bool(run.optimizer.state.get(p))))
            for g in run.optimizer.param_groups if g.get("matrix") for p in g["params"]}


def expect_error(case: dict, out_dir: str) -> None:
    """Building the run must raise ``DistributedError`` (before any step); rank 0 writes the message."""
    from orthoscope.distributed import DistributedError

    try:
        build(case, distributed=case["mode"])
    except DistributedError as err:
        if torch.distributed.get_rank() == 0:
            open(f"{out_dir}/{case['name']}.error.txt", "w").write(f"raised while building the run: {err}")
        return
    raise AssertionError(f"case {case['name']!r} built a run; expected a DistributedError")


def expect_checkpoint_error(case: dict, out_dir: str) -> None:
    """Loading the damaged checkpoint ``case["resume_from"]`` must raise ``CheckpointError`` on every rank (the
    verdict is agreed collectively: no rank may hang or load); each rank writes its message."""
    from orthoscope.core.checkpoint import CheckpointError

    run = build(case, distributed=case["mode"])
    try:
        run.load(case["resume_from"])
    except CheckpointError as err:
        rank = torch.distributed.get_rank()
        open(f"{out_dir}/{case['name']}.rank{rank}.error.txt", "w").write(str(err))
        return
    raise AssertionError(f"case {case['name']!r} loaded a damaged checkpoint")


def main(spec_path: str, out_dir: str) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    cases = json.loads(open(spec_path).read())
    for case in cases:
        if case.get("expect_error"):
            expect_error(case, out_dir)
            continue
        if case.get("expect_checkpoint_error"):
            expect_checkpoint_error(case, out_dir)
            continue
        run = build(case, distributed=case["mode"])
        if case.get("resume_from"):
            run.load(case["resume_from"])
        run.train(case.get("steps", STEPS), progress=False)
        if case.get("save_to"):
            run.save(case["save_to"])
        result = outcome(run)
        rank = run.dist.rank
        mine = {k: v.contiguous() for k, v in result.items() if k.startswith("model.")}
        mine.update(owned_states(run))
        save_file(mine,
                  f"{out_dir}/{case['name']}.rank{rank}.safetensors")
        if rank == 0:
            save_file({k: v.contiguous() for k, v in result.items()}, f"{out_dir}/{case['name']}.safetensors")
    from orthoscope.distributed.seam import teardown
    teardown()                     # barrier, destroy the group, os._exit(0): see its docstring


if __name__ == "__main__":
    main(*sys.argv[1:3])
