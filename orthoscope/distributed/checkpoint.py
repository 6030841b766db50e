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
  *name*, exactly as the optimizer holds it (``orthoscope.distributed.matrix_state``), so it does not depend on the
  world size and a run resumes at any step (a POET merge step, where the Q factors have no Adam state, included);
* ``run.safetensors``, written by rank 0 with ``orthoscope.core.checkpoint.write_atomic`` (atomic, checksummed): step,
  seed, losses, the data generator's RNG state, interventions (POET's permutation generator), the History, the
  method's config and the kind of every optimizer state entry. The data stream is one stream at every world size, so
  its RNG state resumes any of them;
* ``manifest.json``, written last: every file's size and SHA-256 (``orthoscope.distributed.manifest``).

A load verifies before it applies: the files against the manifest, the record's checksum and schema, every shard
header, the shards' keys, shapes, dtypes and coverage against the run; then DCP reads into fresh tensors (its
``CheckpointException``, a ``BaseException``, becomes a ``CheckpointError``), and only then is the run changed
(``Run.load`` restores a snapshot if applying fails). Every failure names the file.

Resharding is DCP's: a tensor saved as two row shards loads into one full tensor, or into four shards, by offsets.
Optimizer state held whole by one owning rank (``orthoscope.distributed.matrices``: Muon, Pion, AdamH, MuonH under
DDP/FSDP2) is not a DTensor; ``orthoscope.distributed.matrix_state`` writes and reads it by parameter name.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import warnings
from pathlib import Path

import torch

from . import manifest, matrix_state
from ..core.checkpoint import (MAX_STEP, CheckpointError, check_structure, comparable_method_config, read_checked,
                               require, rng_state, set_rng_state, write_atomic)
from ..core.history import History
from ..core.structure import fingerprint
from ..tasks.base import check_task_state, load_task_state, task_state

KIND = "orthoscope.ShardedRun"
RUN_FILE = "run.safetensors"
SHARD_FILE = re.compile(r"^shard-\d+-model-\d+-of-\d+\.safetensors$")     # HuggingFaceStorageWriter's names


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(full_state_dict=False)


def _model_state(run) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(run.model, options=_options())


def saved_state(run) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``{"model.<fqn>": t, "optim.<fqn>.<name>": t}`` — DTensors under FSDP2, plain tensors elsewhere — and the
    kind of each optimizer entry (``matrix_state.as_saved``). The optimizer state is taken as held: nothing is
    created for a parameter without state (DCP's ``get_optimizer_state_dict`` would run a zero-gradient step to
    create it, changing Adam's step counter of the run being saved)."""
    tensors = {f"model.{k}": v for k, v in _model_state(run).items()}
    optim, kinds = matrix_state.optimizer_tensors(run)
    tensors.update(optim)
    return tensors, kinds


def tensors_of(run) -> dict[str, torch.Tensor]:
    """The tensors a save writes (``saved_state`` without the kinds)."""
    return saved_state(run)[0]


def _record(run, kinds: dict[str, str]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = dict(rng_state(run.generator))
    for i, iv in enumerate(run.interventions):
        tensors.update({f"intervention{i}.{k}": v for k, v in iv.state_dict().items()})
    hist_meta, hist_tensors = run.history.state()
    tensors.update({f"history.{k}": v for k, v in hist_tensors.items()})
    meta = {"kind": KIND, "step": run.step_count, "seed": run.seed, "last_loss": run.last_loss,
            "wall_time": run.wall_time, "method": run.method.config(), "history": hist_meta,
            "world_size": run.dist.world if run.dist else 1, "mode": run.dist.mode if run.dist else None,
            "overrides": run.overrides, "param_groups": _group_scalars(run.optimizer), "optim": kinds,
            "structure": fingerprint(run.model),           # module types too (a DTensor's shape is the global one)
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


def _barrier(run) -> None:
    if run.dist is not None:
        run.dist.barrier()


def _remove_previous_save(directory: Path) -> None:
    """The files an earlier save wrote into ``directory`` (manifest first: a save cut short is then refused)."""
    (directory / manifest.NAME).unlink(missing_ok=True)
    (directory / RUN_FILE).unlink(missing_ok=True)
    for old in directory.iterdir():
        if SHARD_FILE.match(old.name):
            old.unlink()


def save(run, directory) -> Path:
    """Write ``run`` to ``directory`` (collective under torchrun: every rank calls it): every rank's shards, rank 0's
    ``run.safetensors``, then the manifest of every file (``orthoscope.distributed.manifest``), written last. What an
    earlier save left in ``directory`` is removed first (a shard of a larger world size would otherwise be read
    back)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    directory = Path(directory)
    if run.dist is None or run.dist.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        _remove_previous_save(directory)
    _barrier(run)
    tensors, kinds = saved_state(run)
    with _one_process_quiet(run):
        dcp.save(tensors, storage_writer=HuggingFaceStorageWriter(str(directory), save_distributed=True))
    if run.dist is None or run.dist.is_main:
        write_atomic(directory / RUN_FILE, *_record(run, kinds))
    _barrier(run)                                      # every file on disk before it is hashed
    manifest.write(directory, run.step_count, run.dist)
    _barrier(run)                                      # nobody reads the directory before the manifest is there
    return directory


def load(run, directory):
    """Restore ``run`` (built like the run that saved, at any world size) from ``directory``. Verify, then apply:
    every file against the manifest, the record's schema, the shards' keys, shapes and dtypes against the run;
    then the shards are read into fresh tensors (any failure of DCP's included becomes a ``CheckpointError`` naming
    the directory's files), and only then is anything put into the run. Collective under torchrun."""
    directory = Path(directory)
    listed = manifest.verify(directory, run.dist)
    record, meta = read_checked(directory / RUN_FILE, kind=KIND)
    record_file = directory / RUN_FILE
    if require(record_file, meta, "step", int, low=0, high=MAX_STEP) != listed["step"]:
        raise CheckpointError(f"checkpoint file {str(record_file)!r} records step {meta['step']}, its "
                              f"{manifest.NAME} step {listed['step']}; the checkpoint is refused")
    if comparable_method_config(require(record_file, meta, "method", dict)) != \
            comparable_method_config(run.method.config()):
        raise CheckpointError(f"checkpoint {str(directory)!r} was saved by {meta['method']}, not by "
                              f"{run.method.config()}")
    try:
        check_task_state(run.task, meta.get("task"))
    except ValueError as e:
        raise CheckpointError(f"checkpoint {str(directory / RUN_FILE)!r}: field 'task' {e}") from e
    check_structure(record_file, meta, run.model)   # a HarmonicHead is not a Linear, whatever the shards hold
    kinds = _checked_kinds(record_file, require(record_file, meta, "optim", dict), run)
    with _one_process_quiet(run):
        tensors = _read_shards(run, directory, kinds)
    _apply_model(run, tensors)
    matrix_state.apply_optimizer(run, tensors, kinds)
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


def _checked_kinds(path: Path, kinds: dict, run) -> dict[str, str]:
    """The record's ``optim`` field: every key names a parameter of the run, every kind is known."""
    params = dict(run.model.named_parameters())
    for key, kind in kinds.items():
        fqn = key[len("optim."):].rpartition(".")[0]
        if not key.startswith("optim.") or fqn not in params or not key.rpartition(".")[2]:
            raise CheckpointError(f"checkpoint {str(path)!r}: field 'optim' names {key[:120]!r}, which is no "
                                  "optimizer state of a parameter of this run")
        if kind not in matrix_state.KINDS:
            raise CheckpointError(f"checkpoint {str(path)!r}: field 'optim' gives {key!r} the kind {str(kind)[:40]!r} "
                                  f"(one of {matrix_state.KINDS} expected)")
    return kinds


def _read_shards(run, directory: Path, kinds: dict[str, str]) -> dict[str, torch.Tensor]:
    """The model and optimizer tensors of the checkpoint, read by DCP into fresh tensors laid out like the run's
    (the run itself is not touched); the layout is checked against the shards' metadata first."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.api import CheckpointException

    _open_each_shard(directory)
    try:
        metadata = HuggingFaceStorageReader(str(directory)).read_metadata()
    except Exception as e:                             # every file opened above: not expected, named all the same
        raise CheckpointError(f"checkpoint {str(directory)!r}: DCP cannot read the shards' metadata "
                              f"({type(e).__name__}: {str(e)[:300]})") from e
    targets = {f"model.{k}": torch.empty_like(v) for k, v in _model_state(run).items()}
    _check_layout(directory, metadata, targets, kinds)
    targets.update(matrix_state.load_targets(run, {k: metadata.state_dict_metadata[k] for k in kinds}))
    try:
        dcp.load(targets, storage_reader=HuggingFaceStorageReader(str(directory)))
    except (Exception, CheckpointException) as e:      # DCP's CheckpointException is a BaseException
        files = sorted({str(Path(info.relative_path)) for info in metadata.storage_data.values()
                        if Path(info.relative_path).name != RUN_FILE})
        raise CheckpointError(f"checkpoint {str(directory)!r}: reading its shards ({', '.join(files)}) failed "
                              f"({_dcp_failure(e)}); the run is unchanged") from e
    return targets


def _dcp_failure(error: BaseException) -> str:
    """One line for what went wrong inside DCP: each failing rank's exception (not DCP's multi-line traces)."""
    failures = getattr(error, "failures", None)
    if isinstance(failures, dict):
        parts = []
        for rank, failure in sorted(failures.items()):
            inner = failure[0] if isinstance(failure, tuple) and failure else failure
            parts.append(f"rank {rank}: {type(inner).__name__}: {str(inner)[:200]}")
        return "; ".join(parts)
    return f"{type(error).__name__}: {str(error)[:300]}"


def _open_each_shard(directory: Path) -> None:
    """Open every ``*.safetensors`` file as DCP's reader will (header, sharding offsets): a file that passed the
    manifest but cannot be read (a manifest rewritten to match a damaged file) is named here, not in DCP's error."""
    from safetensors import safe_open
    from torch.distributed.checkpoint._hf_utils import CUSTOM_METADATA_KEY, SAVED_OFFSETS_KEY

    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                extra = f.metadata() or {}
                if path.name == RUN_FILE or CUSTOM_METADATA_KEY not in extra:
                    continue
                offsets = json.loads(extra[CUSTOM_METADATA_KEY])
                if not isinstance(offsets, dict) or set(offsets) != set(f.keys()):
                    raise ValueError("its DCP sharding metadata does not list exactly its tensors")
                for key, entry in offsets.items():
                    saved = entry.get(SAVED_OFFSETS_KEY) if isinstance(entry, dict) else None
                    shape = f.get_slice(key).get_shape()
                    if not (isinstance(saved, list) and len(saved) == len(shape)
                            and all(type(o) is int and o >= 0 for o in saved)):
                        raise ValueError(f"the sharding offsets of {key[:120]!r} are not {len(shape)} "
                                         "non-negative integers")
        except Exception as e:                         # safetensors' and json's own error types
            raise CheckpointError(f"checkpoint file {str(path)!r} cannot be read as a shard "
                                  f"({type(e).__name__}: {str(e)[:300]}); the checkpoint is refused") from e


def _check_layout(directory: Path, metadata, model_targets: dict, kinds: dict[str, str]) -> None:
    """Every tensor the run needs is in the shards with its global shape and dtype, its chunks covering it whole,
    and the shards hold no model or optimizer tensor the run does not have; errors name the shard file."""
    stored = metadata.state_dict_metadata
    files: dict[str, str] = {}
    for index, info in metadata.storage_data.items():
        files.setdefault(index.fqn, str(Path(info.relative_path)))
    shards = ", ".join(repr(str(p)) for p in sorted(directory.glob("*.safetensors")) if p.name != RUN_FILE)

    def missing(key: str, what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {str(directory)!r}: no shard holds {key!r} ({what}); shard files "
                               f"{shards}")

    for key, target in model_targets.items():
        md = stored.get(key)
        if md is None:
            raise missing(key, "a checkpoint of another model?")
        if tuple(md.size) != tuple(target.shape) or md.properties.dtype != target.dtype:
            raise CheckpointError(f"checkpoint file {files[key]!r}: {key!r} is {md.properties.dtype} "
                                  f"{tuple(md.size)}, the run's is {target.dtype} {tuple(target.shape)}")
    for key in kinds:
        if key not in stored:
            raise missing(key, f"the record {RUN_FILE} lists it as optimizer state")
    for key, md in stored.items():
        if key.startswith(("model.", "optim.")) and key not in model_targets and key not in kinds:
            raise CheckpointError(f"checkpoint file {files[key]!r} holds {key!r}, which this run does not have")
        if key in model_targets or key in kinds:
            covered = sum(math.prod(c.sizes) for c in md.chunks)
            if covered != math.prod(md.size):
                raise CheckpointError(f"checkpoint file {files[key]!r}: the shards of {key!r} cover {covered} of its "
                                      f"{math.prod(md.size)} entries (a shard file missing or from another save)")


def _apply_model(run, tensors: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(run.model, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
                         options=_options())


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
