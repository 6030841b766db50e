"""History → TensorBoard event files, through ``torch.utils.tensorboard.SummaryWriter``.

    history_to_tensorboard(run.history, "runs/tb/adamw")          # after a run: every record
    exporter = TensorBoardExporter("runs/tb/adamw").attach(run)   # live: the History so far, then every step
    run.train(1000); exporter.close()
    # tensorboard --logdir runs/tb

Every scalar series becomes a scalar tag of the same name (``loss/batch``, ``sv_entropy/fc1``: TensorBoard groups
them by the metric before the ``/``); every array series (the singular values of each matrix) becomes a histogram
tag at its steps. TensorBoard stores a scalar as a 32-bit float, so a value read back equals the History's rounded to
float32 (``numpy.float32(v)``); a histogram keeps the count, min, max and sum of the values (float64) and their
bucket counts. Non-finite entries of an array are left out of its histogram, with a warning.
"""
from __future__ import annotations

from pathlib import Path

from .base import Exporter, finite_values, need


class TensorBoardExporter(Exporter):
    """Writes records into an event file in ``log_dir`` (module docstring). ``writer``: an existing
    ``SummaryWriter`` to write into instead (not closed by ``close``)."""

    what = "TensorBoardExporter"

    def __init__(self, log_dir=None, *, writer=None, bins="tensorflow"):
        if (log_dir is None) == (writer is None):
            raise ValueError("TensorBoardExporter: give log_dir (a folder for the event files) or writer (a "
                             "SummaryWriter), not both and not neither")
        if writer is None:
            need("tensorboard", "TensorBoardExporter")          # torch.utils.tensorboard's own requirement
            from torch.utils.tensorboard import SummaryWriter

            writer, self._owned = SummaryWriter(log_dir=str(log_dir)), True
        else:
            self._owned = False
        self.writer, self.bins = writer, bins

    @property
    def log_dir(self) -> Path:
        return Path(self.writer.log_dir)

    def _write(self, step, scalars, arrays) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, global_step=step)
        for key, values in arrays.items():
            values = finite_values(key, step, values)
            if values is not None:
                self.writer.add_histogram(key, values.numpy(), global_step=step, bins=self.bins)

    def _flush(self) -> None:
        self.writer.flush()

    def _close(self) -> None:
        self.writer.flush()
        if self._owned:
            self.writer.close()


def history_to_tensorboard(history, log_dir) -> Path:
    """Write every record of ``history`` to an event file in ``log_dir``; returns the folder."""
    with TensorBoardExporter(log_dir) as exporter:
        exporter.export(history)
    return exporter.log_dir
