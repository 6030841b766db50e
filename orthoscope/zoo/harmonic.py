"""Harmonic loss vs cross-entropy (Baek, Liu, Tyagi, Tegmark 2025; official code KindXiaoming/grow-crystals).

Two experiments of the paper, at CPU size:

* **Modular addition** — token embeddings → MLP → classifier, trained with cross-entropy (dot-product logits) or
  harmonic loss (a ``HarmonicHead`` tied to the embeddings, as the official ``H_MLP``). Watch the grokking delay
  (steps from 99 % train to 99 % test accuracy) and the geometry of the embeddings: a circle shows as most
  variance in the top two principal components (``pca_top2/embed``).
* **Digits** (sklearn 8×8) — one layer 64 → 10: ``nn.Linear`` + CE vs a ``HarmonicHead`` on the pixels. The paper's
  MNIST result is equal accuracy (92.49 % vs 92.50 %) with class centres that look like digits; ``prototypes``
  returns the centres as 8×8 images.
"""
from __future__ import annotations

import torch

from ..methods.base import AdamW
from ..models.heads import use_harmonic_head
from ..models.mlp import MLP
from ..probes.harmonic import CenterGeometry, DistanceMargin
from ..probes.spectrum import Spectrum
from ..probes.training import Evaluate
from ..training.run import Run
from ..tasks.digits import Digits
from ..tasks.modular import ModularArithmetic

LOSSES = ("harmonic", "cross_entropy")


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def modular_addition_run(loss: str = "harmonic", *, p: int = 31, train_frac: float = 0.8, d_embed: int = 16,
                         hidden: int = 128, lr: float = 1e-2, weight_decay: float = 1.0, n: float | None = None,
                         seed: int = 0, every: int = 25) -> Run:
    """A seeded run: ``[a, b]`` → concat(E[a], E[b]) → ReLU MLP (``hidden``, then ``d_embed``) → logits.

    ``loss="harmonic"``: the logits are ``−n·log‖E_c − h‖`` (centres = embedding rows, default n = √d_embed);
    ``"cross_entropy"``: a linear unembedding. Probes: accuracy/loss (``acc/test``…), ``pca_top2/embed``, and for
    the harmonic model distance margins."""
    _check_loss(loss)
    torch.manual_seed(seed)
    task = ModularArithmetic(p=p, train_frac=train_frac, seed=seed)
    model = MLP(vocab_size=p, n_tokens=2, d_embed=d_embed, hidden=(hidden, d_embed), d_out=p)
    probes = [Evaluate(every), Spectrum(every), CenterGeometry(every, modules=["embed"])]
    if loss == "harmonic":
        use_harmonic_head(model, tie=True, n=n)
        probes.append(DistanceMargin(every))
    return Run(model, task, AdamW(lr=lr, weight_decay=weight_decay), loss=loss, probes=probes, seed=seed,
               name=loss)


def first_step(history, key: str, threshold: float = 0.99) -> int | None:
    """First recorded step at which ``key`` reaches ``threshold`` (None if never)."""
    series = history[key]
    return next((s for s, v in zip(series.steps, series.values) if v >= threshold), None)


def grokking_summary(run: Run, threshold: float = 0.99) -> dict:
    """``t_train``/``t_test``: first steps with train/test accuracy ≥ threshold; ``delay = t_test − t_train``;
    the final accuracies and the embedding's top-2 explained variance."""
    h = run.history
    t_train, t_test = first_step(h, "acc/train", threshold), first_step(h, "acc/test", threshold)
    return {"name": run.name, "t_train": t_train, "t_test": t_test,
            "delay": None if t_train is None or t_test is None else t_test - t_train,
            "acc_train": h["acc/train"].last(), "acc_test": h["acc/test"].last(),
            "pca_top2": h["pca_top2/embed"].last()}


def compare_modular(steps: int = 1500, seeds=(0,), progress: bool = False, **kwargs):
    """Train harmonic and cross-entropy runs for each seed; returns ``(runs, pandas.DataFrame of summaries)``."""
    import pandas as pd

    runs, rows = [], []
    for seed in seeds:
        for loss in LOSSES:
            run = modular_addition_run(loss, seed=seed, **kwargs)
            run.train(steps, progress=progress)
            runs.append(run)
            rows.append({"seed": seed, **grokking_summary(run)})
    return runs, pd.DataFrame(rows)


def digits_run(loss: str = "harmonic", *, n_train: int = 1000, lr: float = 1e-2, n: float = 16.0,
               batch_size: int | None = 64, seed: int = 0, every: int = 25) -> Run:
    """One layer on the 64 pixels: ``nn.Linear(64, 10)`` with CE, or a ``HarmonicHead(64, 10)`` whose 10 centres
    are images. Both start from the same weights (the head copies the linear layer's). ``n = 16 = 2·√64`` is the
    official MNIST setting (``n_code = √D`` on d², see ``orthoscope.methods.losses``); n = √64 = 8 costs ~3 points of
    accuracy here."""
    _check_loss(loss)
    torch.manual_seed(seed)
    task = Digits(n_train=n_train, seed=seed, batch_size=batch_size)
    model = MLP(d_in=64, hidden=(), d_out=10)
    probes = [Evaluate(every)]
    if loss == "harmonic":
        use_harmonic_head(model, n=n)
    probes.append(Spectrum(every))
    if loss == "harmonic":
        probes += [CenterGeometry(every), DistanceMargin(every)]
    return Run(model, task, AdamW(lr=lr), loss=loss, probes=probes, seed=seed, name=loss)


def prototypes(run: Run) -> torch.Tensor:
    """The class centres (harmonic) or weight rows (linear) of a digits run as ``[10, 8, 8]`` images."""
    layer = run.model.layers[0]
    w = layer.centers if hasattr(layer, "centers") else layer.weight
    return w.detach().reshape(10, 8, 8).clone()


def embedding_plane(run: Run) -> torch.Tensor:
    """The token embeddings projected on their top two principal components, ``[p, 2]`` (the circle, if any)."""
    w = run.model.embed.weight.detach().double()
    w = w - w.mean(0)
    _, _, vh = torch.linalg.svd(w, full_matrices=False)
    return (w @ vh[:2].T).float()
