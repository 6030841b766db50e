"""Trackers: a History exported to the tools people already watch — TensorBoard, Weights & Biases, MLflow, trackio.

    from orthoscope.trackers import history_to_tensorboard, TensorBoardExporter
    history_to_tensorboard(run.history, "runs/tb/adamw")             # after a run
    exporter = TensorBoardExporter("runs/tb/adamw").attach(run)      # live, step by step (run.on_step)

Each tracker is an optional package (``pip install orthoscope[integrations]``), imported only when its exporter is
built; ``import orthoscope`` loads none of them. Trackers get scalars and histograms (MLflow: scalars only); the
Dashboard stays the place for spectra. docs/data_and_trackers.md has the details.
"""
from .base import Exporter, records
from .mlflow import MLflowExporter, history_to_mlflow
from .tensorboard import TensorBoardExporter, history_to_tensorboard
from .trackio import TrackioExporter, history_to_trackio
from .wandb import WandbExporter, history_to_wandb

__all__ = ["Exporter", "records", "TensorBoardExporter", "history_to_tensorboard", "WandbExporter",
           "history_to_wandb", "MLflowExporter", "history_to_mlflow", "TrackioExporter", "history_to_trackio"]
