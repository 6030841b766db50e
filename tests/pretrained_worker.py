"""Worker for tests/test_pretrained.py: meta-device init and sharded loading under torchrun (gloo, CPU).

    torchrun --nproc_per_node N tests/pretrained_worker.py HF_DIR OUT_DIR

Every rank writes ``OUT_DIR/rank<r>.json`` (what it read: ``LoadReport``) and rank 0 writes
``OUT_DIR/results.safetensors``:

* ``load/logits``: the pretrained tiny Llama in HF_DIR built on meta, sharded as ``Seam.prepare`` shards (one
  ``fully_shard`` per repeated block, then the root), materialised from the safetensors files, run on ``IDS``;
* ``random/<name>``: the full weights of a random meta init (seed 5) sharded the same way (gathered);
* ``run/losses``, ``ddp/losses``: the losses of ``run_case`` — an OFT run of the pretrained model under
  ``distributed="fsdp"`` and ``"ddp"``; ``rank<r>.json`` holds the FSDP2 run's ``run.config["model"]`` keys;
* ``poet/logits``: the pretrained model built on meta with POET (``poet_method()``: ``init="keep"``) attached, sharded
  and materialised (``rank<r>.json``'s ``poet_bytes_read``/``poet_bytes_total``: what that load read);
  ``poet_random/<name>``: the same with the random meta init (seed 5), gathered;
* ``poet_run/losses``, ``poet_run/logits``: a POET run of the pretrained model under FSDP2 with a merge at step 2 of
  ``RUN_STEPS`` (``run_case(method="POET")``), and its logits after the last step; ``poet_ddp/losses``: the same
  run under DDP.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

VOCAB, N_CTX = 60, 16                    # TinyLang's vocabulary (make_task), so the OFT run fits the saved model
IDS = torch.arange(2 * N_CTX).reshape(2, N_CTX) * 7 % VOCAB
RUN_STEPS = 3


def shard(model, mesh) -> None:
    """FSDP2 as the seam applies it: one ``fully_shard`` per repeated block, then the root."""
    from torch.distributed.fsdp import fully_shard

    from orthoscope.models.blocks import repeated_blocks

    for _, block in repeated_blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def make_task():
    from orthoscope.tasks.tinylang import TinyLang
    from orthoscope.tasks.tokens import TokenTask

    task = TokenTask(TinyLang(n_ctx=N_CTX, batch_size=6, n_sentences=300), n_eval=8)
    assert task.vocab_size == VOCAB, task.vocab_size
    return task


def poet_method():
    """POET as it finetunes a pretrained model (POET-X: W₀ is the pretrained weight), merging every 2 steps."""
    from orthoscope.adapters import POET

    return POET(block=8, init="keep", merge_every=2, lr=1e-2, seed=4)


def run_case(hf_dir: str, distributed=None, method: str = "OFT"):
    """OFT (or POET, ``poet_method``) on every projection of the pretrained tiny Llama, on TinyLang (global batch 6:
    N = 2 and 3 divide it)."""
    from orthoscope import Run
    from orthoscope.adapters import OFT
    from orthoscope.models.llama import LLAMA_TARGETS, build_llama

    task = make_task()
    model = build_llama(pretrained=hf_dir, autocast_dtype=None)
    chosen = OFT(block=8, targets=LLAMA_TARGETS, lr=1e-2) if method == "OFT" else poet_method()
    return Run(model, task, chosen, probes=[], seed=0, distributed=distributed)


def losses(run) -> list[float]:
    """The loss of each of ``RUN_STEPS`` steps (the global-batch mean under torchrun)."""
    out = []
    for _ in range(RUN_STEPS):
        run.train(1, progress=False)
        out.append(run.last_loss)
    return out


def main(hf_dir: str, out: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file
    from torch.distributed.device_mesh import init_device_mesh

    from orthoscope.distributed.pretrained import materialize
    from orthoscope.distributed.seam import full
    from orthoscope.models.llama import build_llama, llama_config

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    results = {}

    model = build_llama(pretrained=hf_dir, autocast_dtype=None)
    shard(model, mesh)
    report = materialize(model, "cpu")
    with torch.no_grad():
        results["load/logits"] = model(IDS).detach().clone()

    random = build_llama(llama_config("tiny", VOCAB, N_CTX), seed=5, init_device="meta", autocast_dtype=None)
    shard(random, mesh)
    materialize(random, "cpu")
    for name, p in random.named_parameters():
        results[f"random/{name}"] = full(p.detach()).clone()

    run = run_case(hf_dir, distributed="fsdp")
    results["run/losses"] = torch.tensor(losses(run), dtype=torch.float64)
    described = run.config["model"]                # collective-free: a structure check (values are on no rank)
    ddp = run_case(hf_dir, distributed="ddp")      # materialised whole on every rank, then wrapped
    results["ddp/losses"] = torch.tensor(losses(ddp), dtype=torch.float64)

    poet = poet_method().attach(build_llama(pretrained=hf_dir, autocast_dtype=None))     # attached on meta
    shard(poet, mesh)
    poet_report = materialize(poet, "cpu")
    with torch.no_grad():
        results["poet/logits"] = poet(IDS).detach().clone()
    poet_random = poet_method().attach(build_llama(llama_config("tiny", VOCAB, N_CTX), seed=5, init_device="meta",
                                                   autocast_dtype=None))
    shard(poet_random, mesh)
    materialize(poet_random, "cpu")
    for name, p in poet_random.named_parameters():
        results[f"poet_random/{name}"] = full(p.detach()).clone()

    poet_run = run_case(hf_dir, distributed="fsdp", method="POET")
    results["poet_run/losses"] = torch.tensor(losses(poet_run), dtype=torch.float64)
    with torch.no_grad():
        results["poet_run/logits"] = poet_run.model(IDS).detach().clone()
    results["poet_ddp/losses"] = torch.tensor(losses(run_case(hf_dir, distributed="ddp", method="POET")),
                                              dtype=torch.float64)

    Path(out, f"rank{rank}.json").write_text(json.dumps({"bytes_read": report.bytes_read,
                                                         "bytes_total": report.bytes_total,
                                                         "tensors": report.tensors, "world": world,
                                                         "described": {k: described.get(k) for k in
                                                                       ("pretrained", "init_device", "init_seed")},
                                                         "poet_bytes_read": poet_report.bytes_read,
                                                         "poet_bytes_total": poet_report.bytes_total}))
    if rank == 0:
        save_file({k: v.contiguous() for k, v in results.items()}, str(Path(out, "results.safetensors")))
    from orthoscope.distributed.seam import teardown
    teardown()                     # barrier, destroy the group, os._exit(0): see its docstring


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
