"""The History as a stream of JSON lines: how a run directory's ``history.jsonl`` is written.

One line per step, ``{"step": 12, "loss/batch": 2.3, "sv/fc1": [...]}``, written with one ``write`` and flushed, so
a killed writer leaves a readable prefix. ``Run`` (through ``orthoscope train``) and the recorder of your own loop
(``orthoscope.observe(..., run_dir=)``) both write it with ``HistoryStream``; ``orthoscope.config.rundir`` reads it
back and ``Dashboard.watch`` follows it. It sits here, beside the History, so both writers reach it from below.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

HISTORY = "history.jsonl"
CONFIG = "config.yaml"


def record_line(step: int, record: dict) -> str:
    """One step's record as a JSON line (arrays as lists; floats round-trip exactly through ``repr``)."""
    values = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
    return json.dumps({"step": step, **values}) + "\n"


class HistoryStream:
    """An ``on_step`` callback appending every record to ``path`` (one line, flushed per record)."""

    def __init__(self, path):
        self.path = Path(path)
        self.file = open(self.path, "a", encoding="utf-8")

    def __call__(self, run, record: dict) -> None:
        self.file.write(record_line(run.step_count, record))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def cut_history(path, last_step: int) -> None:
    """Drop every record after ``last_step`` (and any torn tail) from the stream at ``path``; a stream with nothing
    to drop is not opened for writing (a finished run re-invoked on a read-only disk writes nothing)."""
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
    if keep < path.stat().st_size:
        os.truncate(path, keep)
