"""Run directories: where ``orthoscope train`` keeps a run, and what a notebook reads back.

    runs/NAME/config.yaml                      the run's config (``orthoscope.config``), normalized
    runs/NAME/history.jsonl                    one JSON line per step: {"step": 12, "loss/batch": 2.3, "sv/fc1": [...]}
    runs/NAME/checkpoints/step-00000100.safetensors     ``Run.save`` files; the newest ``keep`` are kept

The History is streamed as the run grows: each record is one line, written with one ``write`` and flushed, so a
killed writer leaves a readable prefix (a torn last line is ignored by ``read_history``). ``pandas.read_json(path,
lines=True)`` reads it as a wide table (one column per key). On restart, the file is cut back to the newest
checkpoint's step before training goes on, so no record is duplicated or missing.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from .history import History

HISTORY = "history.jsonl"
CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
_CKPT = re.compile(r"^step-(\d{8,})\.safetensors$")


def _line(step: int, record: dict) -> str:
    values = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
    return json.dumps({"step": step, **values}) + "\n"


class HistoryStream:
    """A ``Run.on_step`` callback appending every record to ``path`` (one line, flushed per record)."""

    def __init__(self, path):
        self.path = Path(path)
        self.file = open(self.path, "a", encoding="utf-8")

    def __call__(self, run, record: dict) -> None:
        self.file.write(_line(run.step_count, record))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_records(path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete records of ``path`` from byte ``offset``; returns them and the offset after the last complete line
    (a torn last line — a killed writer — is left for the next read)."""
    path = Path(path)
    if not path.is_file():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    records, end = [], 0
    for raw in data.split(b"\n")[:-1]:              # the part after the last newline is incomplete
        try:
            records.append(json.loads(raw))
        except json.JSONDecodeError:
            break
        end += len(raw) + 1
    return records, offset + end


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


def cut_history(path, last_step: int) -> None:
    """Drop every record after ``last_step`` (and any torn tail) from the stream at ``path``."""
    path = Path(path)
    if not path.is_file():
        return
    keep, offset = 0, 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                if json.loads(raw)["step"] > last_step:
                    break
            except (json.JSONDecodeError, KeyError):
                break
            offset += len(raw)
            keep = offset
    os.truncate(path, keep)


# ---- checkpoints -----------------------------------------------------------------------------------------------

def checkpoints(run_dir) -> list[tuple[int, Path]]:
    """``(step, path)`` of the run directory's checkpoints, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.safetensors") if (m := _CKPT.match(p.name))]
    return sorted(found)


def save_checkpoint(run, run_dir, keep: int) -> Path:
    """``run.save`` into the run directory, then delete all but the newest ``keep`` checkpoints."""
    path = Path(run_dir) / CHECKPOINTS / f"step-{run.step_count:08d}.safetensors"
    run.save(path)
    for _, old in checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def resume(run, run_dir) -> int:
    """Load the newest checkpoint of ``run_dir`` into ``run`` (if any) and cut the streamed History back to its
    step; returns the step the run continues from."""
    found = checkpoints(run_dir)
    if found:
        run.load(found[-1][1])
    cut_history(Path(run_dir) / HISTORY, run.step_count if found else -1)
    return run.step_count
