"""One finetune's result (scores before/after, plasticity, forgetting, geometry) and the evaluation helpers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from ..methods.losses import accuracy, resolve_loss
from ..training.run import Run

GEOMETRY_SUMMARY = ("delta_erank", "retention_smoothness", "adaptation_smoothness", "procrustes_A", "gram_A",
                    "cka_A", "csd_rel_A", "csd_rel_B")


@dataclass
class ArenaResult:
    """One finetune: its run (model, history), scores on every eval set before/after, and geometry summaries."""

    name: str
    run: Run
    trainable: int
    base_scores: dict
    scores: dict
    geometry: dict = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def plasticity(self) -> float:
        return self.scores["B"] - self.base_scores["B"]

    @property
    def forgetting(self) -> float:
        return self.base_scores["A"] - self.scores["A"]

    @property
    def model(self) -> nn.Module:
        return self.run.model

    def row(self) -> dict:
        return {"method": self.name, "trainable": self.trainable, "acc_A": self.scores["A"],
                "acc_B": self.scores["B"], "plasticity": self.plasticity, "forgetting": self.forgetting,
                **self.geometry, **{k: v for k, v in self.extra.items() if not isinstance(v, dict)},
                "seconds": self.seconds}

    def __repr__(self) -> str:
        return (f"ArenaResult({self.name!r}, trainable={self.trainable}, plasticity={self.plasticity:+.3f}, "
                f"forgetting={self.forgetting:+.3f})")


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def evaluate(model: nn.Module, sets: Mapping[str, tuple], loss=None) -> dict:
    """``{name: accuracy}`` (and ``loss_<name>`` when a loss is given) on every ``(x, y)`` set, in eval mode."""
    was = model.training
    model.eval()
    try:
        out = {}
        for name, (x, y) in sets.items():
            logits = model(x)
            out[name] = accuracy(logits, y)
            if loss is not None:
                out[f"loss_{name}"] = resolve_loss(loss)(logits, y).item()
        return out
    finally:
        model.train(was)


def sora_summary(model: nn.Module) -> dict:
    """For SoRA finetunes: the rank each gate kept and the trainable parameters of the LoRA that ``sora.prune`` would
    leave (``{}`` for other models). The run's model itself is not pruned, so it can keep training."""
    from ..adapters.sora import gate_ranks

    ranks = gate_ranks(model)
    if not ranks:
        return {}
    layers = {p: model.get_submodule(p) for p in ranks}
    per_rank = {p: (layer.A.numel() + layer.B.numel()) // layer.rank for p, layer in layers.items()}
    return {"sora_ranks": ranks, "trainable_pruned": sum(ranks[p] * per_rank[p] for p in ranks)}


def score_table(models: Mapping[str, nn.Module], sets: Mapping[str, tuple]):
    """A pandas DataFrame of accuracies: one row per model, one column per evaluation set, plus their ``mean``."""
    import pandas as pd

    table = pd.DataFrame({name: evaluate(m, sets) for name, m in models.items()}).T
    table["mean"] = table[list(sets)].mean(axis=1)
    return table


def summarize_geometry(history) -> dict:
    """Mean over modules of the last recorded value of each metric in ``GEOMETRY_SUMMARY`` (and the CSD ratio
    ``csd_rel_A / csd_rel_B``: drift on general inputs per unit of drift on target inputs)."""
    out = {}
    for metric in GEOMETRY_SUMMARY:
        values = [history[k].last() for k in history.keys(metric)]
        if values:
            out[metric] = float(sum(values) / len(values))
    if out.get("csd_rel_B"):
        out["csd_ratio"] = out["csd_rel_A"] / out["csd_rel_B"]
    return out


def _transpose(rows: list[dict]) -> dict:
    return {k: [r[k] for r in rows] for k in rows[0]}
