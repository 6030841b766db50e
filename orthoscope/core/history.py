"""History: the append-only record of what probes saw.

Keys are ``"<metric>/<module path>"`` (e.g. ``"sv_entropy/blocks.0.mlp.up"``) or ``"<metric>/<split>"`` for
model-level numbers (``"loss/train"``). Each key holds a series of ``(step, value)`` pairs, where a value is a Python
float (scalars) or a CPU float32 tensor (arrays such as the singular values of one layer).

Nothing here touches the disk unless ``save`` is called; ``load`` reads safetensors + JSON and never unpickles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from .checkpoint import MAX_STEP
from .keys import metric_of, split_key, where_of


@dataclass(frozen=True)
class Series:
    steps: list[int]
    values: list

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def is_array(self) -> bool:
        return bool(self.values) and isinstance(self.values[0], torch.Tensor)

    def last(self):
        return self.values[-1]

    def stack(self) -> torch.Tensor:
        """Array series as one ``[len, n]`` tensor (all entries must have the same length)."""
        return torch.stack(self.values)


class History:
    """Append-only ``key -> Series`` store. ``log(step, {key: value})`` adds one record per key."""

    def __init__(self) -> None:
        self._steps: dict[str, list[int]] = {}
        self._values: dict[str, list] = {}

    # ---- writing -------------------------------------------------------------------------------------------------
    def log(self, step: int, values: dict) -> None:
        # Check the whole record first, so a refused record leaves nothing behind.
        normalized = {key: _normalize(key, value) for key, value in values.items()}
        for key, value in normalized.items():
            steps = self._steps.get(key)
            if steps and step < steps[-1]:
                raise ValueError(f"History is append-only: key {key!r} has step {steps[-1]}, got {step}")
            if steps and isinstance(value, torch.Tensor) != isinstance(self._values[key][0], torch.Tensor):
                held, got = ("arrays", "a number") if isinstance(value, float) else ("numbers", "an array")
                raise TypeError(f"History key {key!r} holds {held}; step {step} gave {got} "
                                "(use another key for another kind of value)")
        for key, value in normalized.items():
            self._steps.setdefault(key, []).append(int(step))
            self._values.setdefault(key, []).append(value)

    # ---- reading -------------------------------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return key in self._steps

    def __getitem__(self, key: str) -> Series:
        if key not in self._steps:
            raise KeyError(f"no history for {key!r}; recorded keys: {sorted(self._steps)[:30]}")
        return Series(self._steps[key], self._values[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def keys(self, metric: str | None = None) -> list[str]:
        """All keys, or those of one metric (``keys("sv")`` → ``["sv/fc1", "sv/fc2"]``)."""
        if metric is None:
            return list(self._steps)
        return [k for k in self._steps if metric_of(k) == metric]

    def metrics(self) -> list[str]:
        return sorted({metric_of(k) for k in self._steps})

    def modules(self, metric: str) -> list[str]:
        """Module paths (or splits) recorded for ``metric``, in first-seen order."""
        return [where_of(k) for k in self.keys(metric) if where_of(k) is not None]

    @property
    def last_step(self) -> int:
        return max((s[-1] for s in self._steps.values() if s), default=-1)

    def to_frame(self):
        """Scalars as a long pandas DataFrame: columns ``step, key, metric, module, value``."""
        import pandas as pd

        rows = []
        for key, steps in self._steps.items():
            metric, module = split_key(key)
            module = module or ""
            for step, value in zip(steps, self._values[key]):
                if not isinstance(value, torch.Tensor):
                    rows.append((step, key, metric, module, value))
        return pd.DataFrame(rows, columns=["step", "key", "metric", "module", "value"])

    # ---- persistence (only when asked) ---------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """(JSON-able dict, tensors) describing the whole history; used by ``save`` and run checkpoints."""
        meta, tensors = {}, {}
        for i, (key, steps) in enumerate(self._steps.items()):
            values = self._values[key]
            if values and isinstance(values[0], torch.Tensor):
                names = []
                for j, v in enumerate(values):
                    name = f"h{i}.{j}"
                    tensors[name] = v.contiguous()
                    names.append(name)
                meta[key] = {"steps": steps, "tensors": names}
            else:
                meta[key] = {"steps": steps, "values": [_json_float(v) for v in values]}
        return meta, tensors

    @classmethod
    def from_state(cls, meta: dict, tensors: dict[str, torch.Tensor]) -> "History":
        h = cls()
        for key, entry in meta.items():
            h._steps[key] = [int(s) for s in entry["steps"]]
            if "tensors" in entry:
                h._values[key] = [tensors[name] for name in entry["tensors"]]
            else:
                h._values[key] = [float(v) for v in entry["values"]]
        return h

    def save(self, path) -> None:
        from .checkpoint import write_atomic

        meta, tensors = self.state()
        write_atomic(path, tensors, {"kind": "orthoscope.History", "history": meta})

    @classmethod
    def load(cls, path) -> "History":
        from .checkpoint import CheckpointError, read_checked, require

        tensors, meta = read_checked(path, kind="orthoscope.History")

        def fail(field, what):
            raise CheckpointError(f"checkpoint {str(path)!r}: field {field!r} {what}")

        check_history(require(path, meta, "history", dict), {f"history.{k}": v for k, v in tensors.items()}, fail)
        return cls.from_state(meta["history"], tensors)

    def __repr__(self) -> str:
        return f"History({len(self)} keys, last step {self.last_step})"


def _normalize(key: str, value):
    if isinstance(value, torch.Tensor):
        if value.numel() == 1 and value.dim() == 0:
            return float(value.item())
        # Always a copy: a probe may hand over a view of a live weight, and history must not change with it.
        return value.detach().to("cpu", torch.float32, copy=True).contiguous()
    if isinstance(value, (int, float, bool)):
        return float(value)
    raise TypeError(f"History value for {key!r} must be a number or a tensor, got {type(value).__name__}")


def _json_float(v: float):
    # JSON has no NaN/inf; store them as strings and let float() parse them back.
    return v if math.isfinite(v) else repr(v)


def check_history(history: dict, tensors, fail) -> None:
    for key, entry in history.items():
        field = f"history.{key}"
        steps = entry.get("steps") if isinstance(entry, dict) else None
        if not isinstance(steps, list) or not all(isinstance(s, int) and 0 <= s <= MAX_STEP for s in steps):
            fail(field, "must hold a list of steps")
        values = entry.get("values", entry.get("tensors"))
        if not isinstance(values, list) or len(values) != len(steps) or ("values" in entry) == ("tensors" in entry):
            fail(field, f"must hold 'values' or 'tensors', one per step ({len(steps)})")
        if "tensors" in entry and not all(isinstance(n, str) and f"history.{n}" in tensors for n in values):
            fail(field, "names tensors that the file lacks")
        # numbers, or the strings History writes for non-finite ones
        if "values" in entry and not all((isinstance(v, (int, float)) and not isinstance(v, bool)) or
                                         v in ("nan", "inf", "-inf") for v in values):
            fail(field, "must hold numbers")
