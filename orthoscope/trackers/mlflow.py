"""History → MLflow metrics (scalars; MLflow has no histograms).

    run_id = history_to_mlflow(run.history, tracking_uri="sqlite:///mlflow.db", experiment="orthoscope")
    exporter = MLflowExporter(experiment="orthoscope").attach(run)      # live; the default tracking URI

Each scalar series becomes an MLflow metric of the same name, one value per step (``MlflowClient.log_batch``, at most
1000 per call). Arrays (singular values per matrix) have no MLflow metric type and are not exported: the scalars
computed from them (``sv_entropy/…``, ``sv_max/…``) are. ``tracking_uri`` is any MLflow tracking URI (default: MLflow's
own resolution, ``$MLFLOW_TRACKING_URI`` first); MLflow 3 recommends a database (``sqlite:///path.db``) over the
``file:`` store, which it refuses unless ``MLFLOW_ALLOW_FILE_STORE=true``. ``run_id=`` writes into an MLflow run you
started, which ``close()`` then leaves open.
"""
from __future__ import annotations

import time

from .base import Exporter, need

BATCH = 1000          # MLflow's limit of metrics per log_batch call


class MLflowExporter(Exporter):
    """Writes scalar records into an MLflow run (module docstring)."""

    what = "MLflowExporter"

    def __init__(self, *, tracking_uri: str | None = None, experiment: str = "orthoscope",
                 run_name: str | None = None, run_id: str | None = None, tags: dict | None = None):
        need("mlflow", "MLflowExporter")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        if run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
            self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
            self._owned = True
        else:
            self.run_id, self._owned = run_id, False
        self._pending: list = []

    def _write(self, step, scalars, arrays) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(key, value, now, step) for key, value in scalars.items()]
        if len(self._pending) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def _close(self) -> None:
        self._flush()
        if self._owned:
            self.client.set_terminated(self.run_id)


def history_to_mlflow(history, **kwargs) -> str:
    """Write every scalar record of ``history`` to a new MLflow run; returns its run id."""
    with MLflowExporter(**kwargs) as exporter:
        exporter.export(history)
    return exporter.run_id
