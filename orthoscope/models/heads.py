"""Harmonic heads: classify by distance to class centres instead of by dot product.

``HarmonicHead(d_in, n_classes)`` maps a representation ``x[..., D]`` to logits ``−n·log‖w_v − x‖₂`` (one per class
centre ``w_v``). Softmax of these logits is HarMax, ``p_v ∝ d_v^(−n)``, so the ordinary cross-entropy loss on the
head's output IS the harmonic loss (the loss name ``"harmonic"`` says so); argmax is the nearest centre, so
accuracy probes work unchanged. Conventions (exponent on d, default n = √D, ε at d → 0) are in
``orthoscope.methods.losses``.

``use_harmonic_head(model)`` swaps the classifier of an ``MLP`` (its last layer) or a ``TinyTransformer`` (its
unembedding) — or any ``nn.Linear`` named by ``module=`` — for a HarmonicHead, optionally tied to the token
embedding (centres = embedding rows, the official code's setup for modular addition and GPT-2).
"""
from __future__ import annotations

import torch
from torch import nn

from ..kernels.harmonic import HARMONIC_EPS, check_harmonic_exponent, harmonic_logits, squared_distances
from ..methods.losses import default_harmonic_exponent


class HarmonicHead(nn.Module):
    """Distance logits ``−n·log sqrt(‖x − w_v‖² + eps)`` for ``x[..., d_in]`` → ``[..., n_classes]``.

    Args:
        d_in: representation dimension D.  n_classes: number of centres V.
        n: harmonic exponent on the distance (default √D).
        tie_to: an ``nn.Embedding`` (or ``[V, D]`` parameter) whose rows ARE the centres; then the head owns no
            parameter and the embedding is not registered as a submodule (it belongs to the model already).
        weight: initial centres ``[V, D]`` (copied); default N(0, 1/D).
    """

    def __init__(self, d_in: int, n_classes: int, n: float | None = None, *, tie_to=None,
                 weight: torch.Tensor | None = None, eps: float = HARMONIC_EPS):
        super().__init__()
        for name, v in (("d_in", d_in), ("n_classes", n_classes)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.d_in, self.n_classes, self.eps = d_in, n_classes, float(eps)
        self.n = default_harmonic_exponent(d_in) if n is None else check_harmonic_exponent(n)
        if tie_to is not None:
            w = tie_to.weight if isinstance(tie_to, nn.Module) else tie_to
            if tuple(w.shape) != (n_classes, d_in):
                raise ValueError(f"tied centres must have shape [{n_classes}, {d_in}], got {tuple(w.shape)}")
            object.__setattr__(self, "_tied", tie_to)                # not a submodule: no duplicate parameters
            self.weight = None
        else:
            object.__setattr__(self, "_tied", None)
            if weight is None:
                weight = torch.randn(n_classes, d_in) / d_in ** 0.5
            elif tuple(weight.shape) != (n_classes, d_in):
                raise ValueError(f"weight must have shape [{n_classes}, {d_in}], got {tuple(weight.shape)}")
            self.weight = nn.Parameter(weight.detach().clone())

    @property
    def tied(self) -> bool:
        return self._tied is not None

    @property
    def centers(self) -> torch.Tensor:
        """The class centres ``[V, D]`` (the tied embedding's rows when tied)."""
        if self._tied is None:
            return self.weight
        return self._tied.weight if isinstance(self._tied, nn.Module) else self._tied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return harmonic_logits(x, self.centers, self.n, self.eps)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """``d = sqrt(‖x − w_v‖² + eps)``, ``[..., V]``."""
        return (squared_distances(x, self.centers) + self.eps).sqrt()

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """HarMax probabilities ``d_v^(−n)/Σ d^(−n)``."""
        return torch.softmax(self(x), dim=-1)

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, n_classes={self.n_classes}, n={self.n:.4g}, tied={self.tied}"


def _classifier_path(model: nn.Module) -> str:
    from .mlp import MLP
    from .transformer import TinyTransformer

    if isinstance(model, TinyTransformer):
        return "unembed"
    if isinstance(model, MLP):
        return f"layers.{len(model.layers) - 1}"
    raise ValueError(f"name the classifier to replace with module=... for a {type(model).__name__} "
                     "(automatic only for orthoscope's MLP and TinyTransformer)")


def _embedding_of(model: nn.Module):
    if isinstance(getattr(model, "embed", None), nn.Embedding):
        return model.embed
    if hasattr(model, "get_input_embeddings"):
        return model.get_input_embeddings()
    raise ValueError(f"tie=True needs the model's token embedding; {type(model).__name__} has no .embed or "
                     "get_input_embeddings()")


def use_harmonic_head(model: nn.Module, *, n: float | None = None, tie: bool = False, module: str | None = None,
                      eps: float = HARMONIC_EPS) -> HarmonicHead:
    """Replace the classifier of ``model`` (in place) by a ``HarmonicHead`` and return the head.

    * ``TinyTransformer``: the unembedding (also when its config is ``tied``: the head then computes the logits).
    * ``MLP``: the last linear layer; its input is the last hidden layer after the activation.
    * anything else: ``module="lm_head"`` (a path to an ``nn.Linear``).
    With ``tie=True`` the centres are the token-embedding rows (``[V, D]`` must match); otherwise the centres start
    as a copy of the replaced layer's weight (no RNG is consumed, so runs stay reproducible); its bias is dropped.
    """
    from .transformer import TinyTransformer

    path = module or _classifier_path(model)
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = getattr(parent, name, None)
    if isinstance(model, TinyTransformer) and path == "unembed":
        d_in, n_out = model.cfg.d_model, model.cfg.n_out
        old_weight = model.embed.weight if old is None else old.weight
    elif isinstance(old, nn.Linear):
        d_in, n_out, old_weight = old.in_features, old.out_features, old.weight
    else:
        raise ValueError(f"module {path!r} must be an nn.Linear classifier, found {type(old).__name__}")
    if tie:
        embedding = _embedding_of(model)
        head = HarmonicHead(d_in, n_out, n, tie_to=embedding, eps=eps)
    else:
        head = HarmonicHead(d_in, n_out, n, weight=old_weight.detach().to(torch.get_default_dtype()), eps=eps)
        head.to(device=old_weight.device, dtype=old_weight.dtype)
    setattr(parent, name, head)
    return head
