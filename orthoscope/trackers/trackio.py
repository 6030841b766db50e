"""History → trackio (Hugging Face's local-first tracker), on this machine.

    history_to_trackio(run.history, project="orthoscope", name="adamw")
    exporter = TrackioExporter(project="orthoscope").attach(run)          # live
    # trackio show --project orthoscope

Each step's record is one ``trackio.log({...}, step=step)``: scalars as numbers, arrays (singular values per matrix)
as ``trackio.Histogram``. trackio keeps its runs in a local SQLite database under ``$TRACKIO_DIR`` (default
``~/.cache/huggingface/trackio``; trackio reads the variable when it is first imported). ``init`` arguments go to
``trackio.init``; the notebook embed and the background CPU/GPU sampling are off unless asked for.
"""
from __future__ import annotations

from .base import Exporter, finite_values, need


class TrackioExporter(Exporter):
    """Writes records into a trackio run (module docstring)."""

    what = "TrackioExporter"

    def __init__(self, *, project: str = "orthoscope", name: str | None = None, **init):
        self.trackio = need("trackio", "TrackioExporter")
        for option in ("embed", "auto_log_cpu", "auto_log_gpu"):
            init.setdefault(option, False)
        self.run = self.trackio.init(project=project, name=name, **init)

    def _write(self, step, scalars, arrays) -> None:
        data = dict(scalars)
        for key, values in arrays.items():
            values = finite_values(key, step, values)
            if values is not None:
                data[key] = self.trackio.Histogram(values.numpy())
        self.run.log(data, step=step)

    def _close(self) -> None:
        self.run.finish()


def history_to_trackio(history, **init):
    """Write every record of ``history`` to a new trackio run; returns the finished run (``.project``, ``.name``)."""
    with TrackioExporter(**init) as exporter:
        exporter.export(history)
    return exporter.run
