"""History → Weights & Biases, offline unless asked otherwise.

    history_to_wandb(run.history, project="orthoscope", dir="wandb_runs")   # offline: nothing leaves the machine
    exporter = WandbExporter(project="orthoscope", mode="online").attach(run)   # live, to the W&B server
    # later: wandb sync wandb_runs/wandb/offline-run-*

Each step's record is one ``wandb_run.log({...}, step=step)``: scalars as numbers, arrays (singular values per
matrix) as ``wandb.Histogram``. ``mode`` defaults to ``"offline"`` (the run is written under ``dir`` and can be synced
later with ``wandb sync``); pass ``mode="online"`` to stream to the server. ``run=`` writes into a W&B run you
started yourself (``wandb.init(...)``), which ``close()`` then leaves open.
"""
from __future__ import annotations

from .base import Exporter, finite_values, need


class WandbExporter(Exporter):
    """Writes records into a W&B run (module docstring); ``init`` arguments go to ``wandb.init``."""

    what = "WandbExporter"

    def __init__(self, *, run=None, mode: str = "offline", num_bins: int = 64, **init):
        self.wandb = need("wandb", "WandbExporter")
        if run is None:
            self.run, self._owned = self.wandb.init(mode=mode, **init), True
        else:
            if init:
                raise ValueError(f"WandbExporter(run=...): the run is already started; wandb.init arguments "
                                 f"{sorted(init)} cannot apply to it")
            self.run, self._owned = run, False
        self.num_bins = num_bins

    def _write(self, step, scalars, arrays) -> None:
        data = dict(scalars)
        for key, values in arrays.items():
            values = finite_values(key, step, values)
            if values is not None:
                data[key] = self.wandb.Histogram(values.numpy(), num_bins=self.num_bins)
        self.run.log(data, step=step)

    def _close(self) -> None:
        if self._owned:
            self.run.finish()


def history_to_wandb(history, **init):
    """Write every record of ``history`` to a new W&B run (offline unless ``mode=`` says otherwise); returns the
    finished ``wandb`` run (its ``dir`` holds the offline files)."""
    with WandbExporter(**init) as exporter:
        exporter.export(history)
    return exporter.run
