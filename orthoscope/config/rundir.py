"""Run directories: where ``orthoscope train`` keeps a run, and what a notebook reads back.

    runs/NAME/config.yaml                      the run's config (``orthoscope.config``), normalized
    runs/NAME/history.jsonl                    one JSON line per step: {"step": 12, "loss/batch": 2.3, "sv/fc1": [...]}
    runs/NAME/checkpoints/step-00000100/       a sharded checkpoint (any world size resumes it); newest ``keep`` kept
    runs/NAME/checkpoints/latest               the name of the newest complete checkpoint (replaced atomically)

The History is streamed as the run grows: each record is one line, written with one ``write`` and flushed, so a
killed writer leaves a readable prefix (a torn last line is ignored by ``read_history``). ``pandas.read_json(path,
lines=True)`` reads it as a wide table (one column per key). On restart, the file is cut back to the step of the
checkpoint ``latest`` names before training goes on, so no record is duplicated or missing. Under torchrun rank 0
alone writes the History and the pointer; every rank writes its shards of each checkpoint.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path

import torch

from ..distributed import checkpoint as sharded
from ..distributed import manifest
from ..core.checkpoint import CheckpointError
from ..core.validate import bounded
from ..core.history import History
from ..core.stream import CONFIG, HISTORY, HistoryStream, cut_history  # noqa: F401  (the writer: beside the History)

CHECKPOINTS = "checkpoints"
LATEST = "latest"
_CKPT = re.compile(r"^step-(\d{8,})$")


def read_records(path, offset: int = 0, max_bytes: int | None = None) -> tuple[list[dict], int, bool]:
    """Complete records of ``path`` from byte ``offset``, reading at most ``max_bytes`` when given (but always at least
    one whole line); returns them, the offset after the last complete line, and whether complete lines remain unread.
    A torn last line (a killed writer) is left for the next read."""
    path = Path(path)
    if not path.is_file():
        return [], offset, False
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read() if max_bytes is None else f.read(max_bytes)
        if max_bytes is not None and data and b"\n" not in data:    # one record longer than max_bytes: finish it
            data += f.readline()
        more = max_bytes is not None and bool(f.read(1))
    records, end = [], 0
    for raw in data.split(b"\n")[:-1]:              # the part after the last newline is incomplete
        try:
            records.append(json.loads(raw))
        except json.JSONDecodeError:
            break
        end += len(raw) + 1
    return records, offset + end, more and end > 0


def add_records(history: History, records: list[dict]) -> None:
    """Log streamed records into ``history`` the way ``Run`` logged them (arrays back as float32 tensors)."""
    for rec in records:
        step = rec.pop("step")
        history.log(step, {k: (torch.tensor(v, dtype=torch.float32) if isinstance(v, list) else v)
                           for k, v in rec.items()})


def read_history(run_dir) -> History:
    """The History streamed into ``run_dir`` (a run directory or its ``history.jsonl``)."""
    path = Path(run_dir)
    path = path / HISTORY if path.is_dir() else path
    history = History()
    add_records(history, read_records(path)[0])
    return history


# ---- the run directory's name ------------------------------------------------------------------------------------

NAME_BYTES = 255                        # a file name's limit on Linux and macOS


def run_directory(runs, name: str | None, config_name: str | None, config_path) -> Path:
    """``runs/<safe name>``: the ``--name`` given, else the config's ``name``, else the config file's name, made one
    safe folder name (``safe_name``: "toy poet" → "toy-poet", "a/b" → "a-b", "../x" → "x"), so the run directory is
    always a child of ``runs``. A name with nothing safe left, '.'/'..', a control character or over ``NAME_BYTES``
    bytes is refused with a ``ConfigError`` naming where it came from, before anything is written."""
    from ..core.validate import ConfigError, bounded

    if name is not None:
        chosen, origin = name, f"--name {bounded(name)}"
    elif config_name is not None:
        chosen, origin = config_name, f"name {bounded(config_name)}"
    else:
        chosen, origin = Path(config_path).stem, f"the config file's name {bounded(Path(config_path).stem)}"
    safe = safe_name(chosen)
    problem = (
        "is empty" if not chosen else
        "is '.' or '..'" if chosen in (".", "..") else
        "holds a control character (NUL, newline, …)" if any(ord(c) < 32 or ord(c) == 127 for c in chosen) else
        "has no letter or digit to name a folder with" if not safe else
        f"is longer than {NAME_BYTES} bytes" if len(safe.encode("utf-8", "surrogatepass")) > NAME_BYTES else None)
    if problem:
        raise ConfigError(f"{origin}: a run name becomes one folder name inside --runs {bounded(str(runs))}, and "
                          f"this one {problem}; pick a plain name such as 'poet-small'")
    return Path(runs) / safe


_UNSAFE = re.compile(r"[^\w.+=@-]+")


def safe_name(name: str) -> str:
    """``name`` as one portable folder name: every run of characters other than letters, digits and ``_ . + = @ -``
    (spaces, ``/``, ``\\``, ``:``, quotes, …) becomes one ``-``, and leading/trailing ``-`` and ``.`` go (no hidden
    folder, no ``..``). ``"toy poet"`` → ``"toy-poet"``, ``"a/b"`` → ``"a-b"``, ``"/tmp/x"`` → ``"tmp-x"``."""
    return _UNSAFE.sub("-", name).strip("-.")


# ---- extending a run: what may change in its config ------------------------------------------------------------

EXTENDABLE = ("steps", "checkpoint.every", "checkpoint.keep", "the probes' every / eval_every")


def extension_problem(saved: dict, cfg: dict, done: int) -> str | None:
    """Why ``cfg`` cannot continue the run whose directory holds ``saved`` (``done`` steps checkpointed), or
    ``None``: a run directory continues under a config that differs only in what does not change the numbers it
    computes (``EXTENDABLE``): ``steps`` (not below ``done``), the checkpoint cadence and the probes' cadence.
    Anything else (method, lr, seed, model, task, batch, schedule, loss, device, …) is named, with both values."""
    if cfg["steps"] < done:
        return (f"steps {cfg['steps']} is below the {done} steps this run directory has already checkpointed; a "
                "run is extended, never cut back")
    schedule = saved.get("schedule")
    if isinstance(schedule, dict) and schedule.get("total") is None and cfg["steps"] != saved["steps"] \
            and isinstance(cfg.get("schedule"), dict) and cfg["schedule"].get("total") is None:
        return (f"steps {saved['steps']} → {cfg['steps']} would stretch the learning-rate schedule (schedule.total "
                f"is null: the run's steps); set schedule.total: {saved['steps']} to extend the run with the "
                "schedule it was trained with")
    path = _first_difference(_math_of(saved), _math_of(cfg))
    if path is None:
        return None
    return (f"{path or 'the config'} differs (the run directory has {bounded(_at(saved, path))}, this config "
            f"{bounded(_at(cfg, path))}); a run continues only under the same config, with {', '.join(EXTENDABLE)} "
            "free to change")


def _math_of(cfg: dict) -> dict:
    """``cfg`` without what may change between a run and its extension, and with defaults written out (a null
    ``schedule.total`` is the run's ``steps``; ``probes: default`` is the default preset)."""
    out = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in ("steps", "checkpoint")}
    if isinstance(out.get("schedule"), dict) and out["schedule"].get("total") is None:
        out["schedule"]["total"] = cfg.get("steps")
    probes = {"preset": "default"} if out.get("probes") == "default" else out.get("probes")
    out["probes"] = ([_without_cadence(p) for p in probes] if isinstance(probes, list) else _without_cadence(probes))
    return out


def _without_cadence(spec):
    return {k: v for k, v in spec.items() if k not in ("every", "eval_every")} if isinstance(spec, dict) else spec


def _first_difference(a, b, path: str = "") -> str | None:
    """The first key path (``method.lr``, ``probes[0].name``) where ``a`` and ``b`` differ; ``None`` when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                return sub
            found = _first_difference(a[key], b[key], sub)
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((p for i in range(len(a)) if (p := _first_difference(a[i], b[i], f"{path}[{i}]"))), None)
    return None if a == b else path


def _at(cfg, path: str):
    """The value at a key path of ``cfg`` (``"(absent)"`` when a key on the way is missing)."""
    node = cfg
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            node = node[index] if isinstance(node, list) and index < len(node) else "(absent)"
        else:
            node = node.get(part, "(absent)") if isinstance(node, dict) else "(absent)"
    return node


# ---- checkpoints -----------------------------------------------------------------------------------------------
#
# A checkpoint is a directory ``checkpoints/step-00000040/`` written by ``Run.save`` (``orthoscope.
# distributed_checkpoint``: every rank's shards plus rank 0's ``run.safetensors``; in one process the same layout
# with one shard file) and its ``manifest.json`` — every file's size and SHA-256, written last and verified before a
# load applies anything (``orthoscope.distributed.manifest``) — so a run resumes at any world size. It is written as
# ``step-00000040.partial/`` by every rank, renamed by rank 0 once every rank has finished (``Run.save`` ends with a
# barrier), and only then named in ``checkpoints/latest`` (a one-line file replaced atomically: temp file, fsync,
# ``os.replace``). ``latest`` is the one truth: a ``.partial`` directory, or a step directory newer than ``latest``
# (killed between the rename and the pointer), is left over from a killed run and removed on the next start.

def _barrier(run) -> None:
    if run.dist is not None:
        run.dist.barrier()


def _main(run) -> bool:
    return run.dist is None or run.dist.is_main


def checkpoints(run_dir) -> list[tuple[int, Path]]:
    """``(step, path)`` of the run directory's complete checkpoint directories, oldest first (those up to
    ``latest``; any newer one is a leftover of a killed run)."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CKPT.match(p.name)))
    last = latest_checkpoint(run_dir)
    return [(s, p) for s, p in found if last is not None and s <= last[0]]


def latest_checkpoint(run_dir) -> tuple[int, Path] | None:
    """``(step, path)`` of the checkpoint ``checkpoints/latest`` names (the newest one every rank finished), or
    ``None`` before the first one."""
    pointer = Path(run_dir) / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    m = _CKPT.match(name)
    if not m or not (pointer.parent / name).is_dir():
        raise CheckpointError(f"{str(pointer)!r} names {name!r}, which is not a checkpoint directory of "
                              f"{str(pointer.parent)!r}; the run directory was changed by hand")
    return int(m.group(1)), pointer.parent / name


def _write_pointer(folder: Path, name: str) -> None:
    tmp = folder / f"{LATEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / LATEST)


def save_checkpoint(run, run_dir, keep: int) -> Path:
    """Write ``run`` as ``checkpoints/step-<step>/`` (collective under torchrun: every rank calls it), point
    ``latest`` at it, then delete all but the newest ``keep``. Returns its path."""
    folder = Path(run_dir) / CHECKPOINTS
    name = f"step-{run.step_count:08d}"
    final, partial = folder / name, folder / f"{name}.partial"
    if _main(run):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in (partial, final):          # a leftover of a killed attempt at this very step
            shutil.rmtree(stale, ignore_errors=True)
    _barrier(run)                               # nobody writes into the folder before it is clean
    sharded.save(run, partial)                  # every rank's shards, then a barrier: all of it is on disk
    if _main(run):
        os.replace(partial, final)
        _write_pointer(folder, name)
        for _, old in checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def clean_checkpoints(run_dir) -> list[Path]:
    """Remove what a killed run left behind: ``.partial`` directories, step directories newer than ``latest``
    and a torn pointer temp file. Returns what was removed."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    last = latest_checkpoint(run_dir)
    removed = []
    for p in folder.iterdir():
        m = _CKPT.match(p.name)
        stale = (p.name.endswith(".partial") or p.name == f"{LATEST}.tmp"
                 or (m is not None and (last is None or int(m.group(1)) > last[0])))
        if stale:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _check_named_step(step: int, path: Path) -> None:
    """The checkpoint in ``step-<step>/`` is the one of that step (its manifest says so)."""
    listed = manifest.read(path)["step"]
    if listed != step:
        raise CheckpointError(f"checkpoint file {str(path / manifest.NAME)!r} is the manifest of step {listed}, in "
                              f"the directory of step {step}; the run directory was changed by hand")


def resume(run, run_dir) -> int:
    """Load the checkpoint ``latest`` names into ``run`` (if any), cut the streamed History back to its step, and
    remove leftovers of a killed run; returns the step the run continues from. Collective under torchrun."""
    if _main(run):
        clean_checkpoints(run_dir)
    _barrier(run)
    found = latest_checkpoint(run_dir)
    if found:
        _check_named_step(*found)
        run.load(found[1])                      # verified against its manifest before anything is applied
    if _main(run):
        cut_history(Path(run_dir) / HISTORY, run.step_count if found else -1)
    return run.step_count
