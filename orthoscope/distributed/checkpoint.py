"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP): save at one world size, resume at another.

    run.save("ckpt_dir")          # under torchrun: every rank writes its shards (DCP), rank 0 the run's own record
    run.load("ckpt_dir")          # at any world size, in one process too: DCP reshards on load
    to_single_file("ckpt_dir", "ckpt.safetensors")     # for a notebook: today's one-file Run checkpoint
    from_single_file("ckpt.safetensors", "ckpt_dir")   # and back

A directory holds:

* the model and optimizer tensors, written by DCP's ``HuggingFaceStorageWriter`` with ``save_distributed=True``:
  one safetensors file per rank, each rank's shards with their offsets in the file's JSON header. Nothing in it is
  pickled (DCP's default ``.metadata`` file is a pickle; this writer keeps the layout in the safetensors headers), so
  loading executes no code. Keys are ``model.<fqn>`` and ``optim.<fqn>.<state name>``: optimizer state by parameter
  *name* (``get_optimizer_state_dict``), so it does not depend on the world size;
* ``run.safetensors``, written by rank 0 with ``orthoscope.core.checkpoint.write_atomic`` (atomic, checksummed): step,
  seed, losses, the data generator's RNG state, interventions (POET's permutation generator), the History and the
  method's config. The data stream is one stream at every world size, so its RNG state resumes any of them.

Resharding is DCP's: a tensor saved as two row shards loads into one full tensor, or into four shards, by offsets.
Optimizer state held whole by one owning rank (``orthoscope.distributed.matrices``: Muon, Pion, AdamH, MuonH under
DDP/FSDP2) is not a DTensor; ``orthoscope.distributed.matrix_state`` writes and reads it by parameter name.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch

from . import matrix_state
from ..core.checkpoint import (CheckpointError, comparable_method_config, read_checked, rng_state, set_rng_state,
                               write_atomic)
from ..core.history import History
from ..tasks.base import check_task_state, load_task_state, task_state

KIND = "orthoscope.ShardedRun"
RUN_FILE = "run.safetensors"


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(full_state_dict=False)


def tensors_of(run) -> dict[str, torch.Tensor]:
    """``{"model.<fqn>": t, "optim.<fqn>.<name>": t}`` — DTensors under FSDP2, plain tensors elsewhere. Creates
    the optimizer state if no step has run yet (DCP loads into existing tensors)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    out = {f"model.{k}": v for k, v in get_model_state_dict(run.model, options=_options()).items()}
    if matrix_state.applies(run):                  # Muon, Pion, AdamH, MuonH: matrix state owned whole by one rank
        out.update(matrix_state.optimizer_tensors(run))
        return out
    optim = get_optimizer_state_dict(run.model, run.optimizer, options=_options())
    for fqn, state in optim["state"].items():
        for name, value in state.items():
            out[f"optim.{fqn}.{name}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return out


def _model_state(run) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(run.model, options=_options())


def _apply_model(run, tensors: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(run.model, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
                         options=_options())


def _apply(run, tensors: dict[str, torch.Tensor]) -> None:
    """Put loaded ``tensors`` (same keys as ``tensors_of``) into the model and the optimizer."""
    from torch.distributed.checkpoint.state_dict import (get_optimizer_state_dict, set_model_state_dict,
                                                         set_optimizer_state_dict)

    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    set_model_state_dict(run.model, model, options=_options())
    optim = get_optimizer_state_dict(run.model, run.optimizer, options=_options())
    for fqn, state in optim["state"].items():
        for name in state:
            state[name] = tensors[f"optim.{fqn}.{name}"]
    set_optimizer_state_dict(run.model, run.optimizer, optim, options=_options())


def _record(run) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = dict(rng_state(run.generator))
    for i, iv in enumerate(run.interventions):
        tensors.update({f"intervention{i}.{k}": v for k, v in iv.state_dict().items()})
    hist_meta, hist_tensors = run.history.state()
    tensors.update({f"history.{k}": v for k, v in hist_tensors.items()})
    meta = {"kind": KIND, "step": run.step_count, "seed": run.seed, "last_loss": run.last_loss,
            "wall_time": run.wall_time, "method": run.method.config(), "history": hist_meta,
            "world_size": run.dist.world if run.dist else 1, "mode": run.dist.mode if run.dist else None,
            "overrides": run.overrides, "param_groups": _group_scalars(run.optimizer),
            "task": task_state(run.task, run.generator)}       # DatasetTask: (seed, epoch, position); else None
    return tensors, meta


@contextlib.contextmanager
def _one_process_quiet(run):
    """In one process DCP warns that it "assumes the intent is to save/load in a single process": it is."""
    with warnings.catch_warnings():
        if run.dist is None:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def _group_scalars(optimizer) -> list[dict]:
    """The numeric hyperparameters of each parameter group (``lr`` as a schedule left it, ``weight_decay``, …).
    DCP's optimizer state dict carries the per-parameter state; the groups' values travel in the JSON record."""
    return [{k: v for k, v in g.items() if k != "params" and isinstance(v, (bool, int, float))}
            for g in optimizer.param_groups]


def save(run, directory) -> Path:
    """Write ``run`` to ``directory`` (collective under torchrun: every rank calls it)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _one_process_quiet(run):
        dcp.save(tensors_of(run), storage_writer=HuggingFaceStorageWriter(str(directory), save_distributed=True))
    if run.dist is None or run.dist.is_main:
        write_atomic(directory / RUN_FILE, *_record(run))
    if run.dist is not None:
        run.dist.barrier()                             # nobody reads the directory before rank 0 has finished
    return directory


def load(run, directory):
    """Restore ``run`` (built like the run that saved, at any world size) from ``directory``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader

    directory = Path(directory)
    record, meta = read_checked(directory / RUN_FILE, kind=KIND)
    if comparable_method_config(meta["method"]) != comparable_method_config(run.method.config()):
        raise CheckpointError(f"checkpoint {str(directory)!r} was saved by {meta['method']}, not by "
                              f"{run.method.config()}")
    try:
        check_task_state(run.task, meta.get("task"))
    except ValueError as e:
        raise CheckpointError(f"checkpoint {str(directory / RUN_FILE)!r}: field 'task' {e}") from e
    with _one_process_quiet(run):
        if matrix_state.applies(run):
            reader = HuggingFaceStorageReader(str(directory))
            tensors = {f"model.{k}": v for k, v in _model_state(run).items()}
            tensors.update(matrix_state.load_targets(run, reader.read_metadata().state_dict_metadata))
            dcp.load(tensors, storage_reader=HuggingFaceStorageReader(str(directory)))
            _apply_model(run, tensors)
            matrix_state.apply_optimizer(run, tensors)
        else:
            tensors = tensors_of(run)
            dcp.load(tensors, storage_reader=HuggingFaceStorageReader(str(directory)))
            _apply(run, tensors)
    set_rng_state(run.generator, record)
    for i, iv in enumerate(run.interventions):
        prefix = f"intervention{i}."
        iv.load_state_dict({k[len(prefix):]: v for k, v in record.items() if k.startswith(prefix)})
    run.history = History.from_state(
        meta["history"], {k[len("history."):]: v for k, v in record.items() if k.startswith("history.")})
    run.step_count, run.last_loss, run.wall_time = meta["step"], meta["last_loss"], meta["wall_time"]
    run.overrides = dict(meta.get("overrides") or {})
    load_task_state(run.task, meta.get("task"), run.generator)
    for group, saved in zip(run.optimizer.param_groups, meta.get("param_groups") or []):
        group.update(saved)                            # the lr a schedule or run.override set, as saved
    return run


def to_single_file(run, directory, path) -> None:
    """Convert a sharded checkpoint into today's one-file ``Run`` checkpoint, through ``run`` — a one-process run
    built like the one that saved (a notebook builds it anyway to look at the result)."""
    _one_process(run, "to_single_file")
    load(run, directory)
    run.save(path)


def from_single_file(run, path, directory) -> None:
    """Convert a one-file ``Run`` checkpoint into a sharded directory that any world size resumes, through ``run``
    (a one-process run built like the one that saved)."""
    _one_process(run, "from_single_file")
    run.load(path)
    save(run, directory)


def _one_process(run, what: str) -> None:
    if run.dist is not None:
        raise CheckpointError(f"{what} converts in one process; build the run with distributed=None "
                              f"(this one is {run.dist.mode} at world size {run.dist.world})")
