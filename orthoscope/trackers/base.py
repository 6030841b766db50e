"""What every exporter shares: a History read as records in step order, the live hook on a run, the missing extra.

An exporter writes one *record* per step: the scalars (``loss/batch``, ``sv_entropy/fc1`` …) and the arrays
(singular values per matrix …) that the History holds at that step. ``export(history)`` writes every record of a
History, step by step in increasing order (W&B drops a step lower than one it has seen). ``attach(run)`` writes what
the run's History holds so far and then each new record as the run logs it (``run.on_step``), so a tracker follows a
run live. Values logged outside a step's record (``run.override``'s ``override/<name>``) reach a tracker only through
``export``.
"""
from __future__ import annotations

import importlib
import warnings

import torch

EXTRA = "pip install orthoscope[integrations]"


def need(package: str, what: str):
    """``import package``, or an ``ImportError`` that names the extra that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise ImportError(f"{what} needs the optional package {package!r}, which is not installed: {EXTRA}") from e


def records(history) -> list[tuple[int, dict[str, float], dict[str, torch.Tensor]]]:
    """``[(step, scalars, arrays)]`` of ``history``, one entry per step that holds anything, steps increasing."""
    by_step: dict[int, tuple[dict, dict]] = {}
    for key in history:
        series = history[key]
        for step, value in zip(series.steps, series.values):
            scalars, arrays = by_step.setdefault(step, ({}, {}))
            (arrays if isinstance(value, torch.Tensor) else scalars)[key] = value
    return [(step, *by_step[step]) for step in sorted(by_step)]


def split(record: dict) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """A run's step record as (scalars, arrays), values as the History stores them."""
    scalars, arrays = {}, {}
    for key, value in record.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            arrays[key] = value.detach().to("cpu", torch.float32).reshape(-1)
        else:
            scalars[key] = float(value)
    return scalars, arrays


def finite_values(key: str, step: int, values: torch.Tensor) -> torch.Tensor | None:
    """The finite entries of an array (a histogram has no bin for NaN or inf); None, with a warning, when none is."""
    values = values.reshape(-1)
    finite = values[torch.isfinite(values)]
    if len(finite) < len(values):
        warnings.warn(f"{key!r} at step {step}: {len(values) - len(finite)} of {len(values)} values are not finite "
                      "and are left out of its histogram", stacklevel=3)
    return finite if len(finite) else None


class Exporter:
    """Base of the exporters: subclasses write one step (``_write``) and close their tracker (``_close``)."""

    what = "an exporter"

    def export(self, history) -> "Exporter":
        """Write every record of ``history`` (step order)."""
        for step, scalars, arrays in records(history):
            self._write(step, scalars, arrays)
        self._flush()
        return self

    def attach(self, run) -> "Exporter":
        """Follow ``run`` live: write its History so far, then every record it logs. Returns ``self``; ``detach()``
        stops following, ``close()`` also finishes the tracker's run."""
        if not callable(getattr(run, "on_step", None)) or not hasattr(run, "history"):
            raise TypeError(f"{type(self).__name__}.attach(run): expected an orthoscope Run (with .history and "
                            f".on_step), got {type(run).__name__}")
        self.export(run.history)
        self._unsubscribe = run.on_step(self._on_step)
        return self

    def _on_step(self, run, record: dict) -> None:
        if record:
            step = getattr(run, "step_count", None)
            self._write(run.history.last_step if step is None else int(step), *split(record))

    def detach(self) -> None:
        unsubscribe = getattr(self, "_unsubscribe", None)
        if unsubscribe is not None:
            unsubscribe()
            self._unsubscribe = None

    def close(self) -> None:
        self.detach()
        self._close()

    def __enter__(self) -> "Exporter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- what a tracker implements ----
    def _write(self, step: int, scalars: dict[str, float], arrays: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        pass

    def _close(self) -> None:
        pass

