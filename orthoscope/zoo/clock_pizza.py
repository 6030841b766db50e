"""The Clock and the Pizza (Zhong, Liu, Tegmark, Andreas; NeurIPS 2023; arXiv 2306.17844; code fjzzq2002/pizza).

One-layer transformers learning ``a + b mod p`` (p = 59, 80 % of the table, full batch) find one of two algorithms.
The *attention rate* α interpolates the attention pattern with a constant one, ``A = α·softmax(QKᵀ/√d) + (1−α)``
(``TinyTransformer(attn_rate=α)``, no LayerNorm, no causal mask): α = 1 tends to the **clock** (angles added via
products of embeddings), α = 0 to the **pizza** (the average of the two embeddings, sliced like a pizza).

Two diagnostics (the paper's Definitions 4.1 and 4.2):

* **Gradient symmetricity** ``s_g``: the mean, over random triples ``(a, b, c)``, of the cosine between
  ``∂ logit_c / ∂E_a`` and ``∂ logit_c / ∂E_b`` — gradients with respect to the two input token embeddings (taken
  before the positional embedding is added). A network that depends on the inputs only through ``E_a + E_b`` has
  ``s_g = 1``; the pizza is near 1, the clock well below.
* **Distance irrelevance** ``q``: with ``L[a, b]`` the logit of the correct class ``(a+b) mod p``,
  ``q = mean_d std_i L[i, i+d] / std_{a,b} L[a, b]`` (population std). Holding the distance ``d = b − a`` fixed and
  sweeping the sum: the clock's correct logit ignores ``d`` (``q → 1``), the pizza's depends on it (``q → 0``).

Reference trend (the authors' committed run table, 1-layer, d_model 128, 2,381 runs, binned by α):
``s_g`` 0.993 → 0.477 and ``q`` 0.419 → 0.844 as α goes 0 → 1.
"""
from __future__ import annotations

import random

import torch

from ..methods.base import check_positive
from ..probes.base import Probe
from .common import ScheduledAdamW

REFERENCE = {  # α bin → (mean gradient symmetricity, mean distance irrelevance), from result/1l_fixedwidth.csv
    (0.0, 0.1): (0.993, 0.419), (0.1, 0.3): (0.992, 0.424), (0.3, 0.5): (0.992, 0.420),
    (0.5, 0.7): (0.903, 0.536), (0.7, 0.9): (0.660, 0.737), (0.9, 1.0): (0.477, 0.844)}


# ---- the two metrics ------------------------------------------------------------------------------------------
def triples(p: int, n: int = 100, seed: int = 0) -> torch.Tensor:
    """``n`` distinct random ``(a, b, c)`` in ``Z_p³`` (seeded), ``[n, 3]``."""
    rng = random.Random(seed)
    total = p ** 3
    picks = rng.sample(range(total), min(n, total))
    return torch.tensor([(i // (p * p), (i // p) % p, i % p) for i in picks], dtype=torch.long)


def gradient_symmetricity(model: torch.nn.Module, abc: torch.Tensor, embed: torch.nn.Module | None = None) -> float:
    """Mean cosine similarity of ``∂ logit_c/∂E_a`` and ``∂ logit_c/∂E_b`` over the rows ``(a, b, c)`` of ``abc``.

    ``embed`` (default ``model.embed``) must map tokens ``[B, 2]`` to ``[B, 2, d]`` in one call; its output is
    replaced by a leaf tensor through a forward hook (removed afterwards), so any such model works. Rows are
    independent, so one batched backward gives every triple's gradients."""
    embed = model.embed if embed is None else embed
    captured = {}

    def hook(_module, _inputs, output):
        leaf = output.detach().requires_grad_(True)
        captured["e"] = leaf
        return leaf

    handle = embed.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(abc[:, :2])
            e = captured["e"]
            if e.dim() != 3 or e.shape[1] != 2:
                raise ValueError(f"the embedding must output [B, 2, d] for two input tokens, got {tuple(e.shape)}")
            if logits.dim() == 3:                                   # [B, T, V] models: read the last position
                logits = logits[:, -1]
            picked = logits.gather(1, abc[:, 2:3]).sum()
            (grad,) = torch.autograd.grad(picked, e)
    finally:
        handle.remove()
    return torch.nn.functional.cosine_similarity(grad[:, 0], grad[:, 1], dim=-1).mean().item()


@torch.no_grad()
def correct_logit_matrix(model: torch.nn.Module, p: int) -> torch.Tensor:
    """``L[a, b]`` = logit of the correct class ``(a + b) mod p`` for every pair, ``[p, p]``."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.reshape(-1), b.reshape(-1)], 1)
    logits = model(x)
    if logits.dim() == 3:
        logits = logits[:, -1]
    return logits.gather(1, ((x[:, 0] + x[:, 1]) % p)[:, None]).view(p, p)


def distance_irrelevance(L: torch.Tensor) -> float:
    """``q = mean_d std_i L[i, (i+d) mod p] / std(L)`` (population std; Definition 4.2)."""
    p = L.shape[0]
    if L.shape != (p, p):
        raise ValueError(f"L must be a square [p, p] matrix, got {tuple(L.shape)}")
    L = L.double()
    i = torch.arange(p)
    per_d = torch.stack([L[i, (i + d) % p] for d in range(p)])          # [d, i]
    total = L.std(unbiased=False)
    if total == 0:
        raise ValueError("distance irrelevance is undefined for a constant logit matrix")
    return (per_d.std(1, unbiased=False).mean() / total).item()


class ClockPizzaProbe(Probe):
    """``grad_sym/embed`` and ``dist_irr/embed`` on a schedule (triples fixed at construction)."""

    name = "clock_pizza"

    def __init__(self, p: int, every: int = 500, n_triples: int = 100, seed: int = 0):
        super().__init__(every)
        self.p, self.abc = p, triples(p, n_triples, seed)

    def __call__(self, run) -> dict:
        was = run.model.training
        run.model.eval()
        try:
            return {"grad_sym/embed": gradient_symmetricity(run.model, self.abc),
                    "dist_irr/embed": distance_irrelevance(correct_logit_matrix(run.model, self.p))}
        finally:
            run.model.train(was)


# ---- model, method, runs --------------------------------------------------------------------------------------
def make_model(p: int = 59, attn_rate: float = 1.0, d_model: int = 128, n_heads: int = 4, seed: int = 0):
    """The paper's one-layer transformer: MLP width 4·d_model, ReLU, no LayerNorm, no causal mask, learned
    positions, inputs ``[a, b]``, logits read at the last position."""
    from ..models import TinyTransformer

    torch.manual_seed(seed)
    return TinyTransformer(vocab_size=p, n_ctx=2, d_model=d_model, n_heads=n_heads, n_layers=1, d_mlp=4 * d_model,
                           layer_norm=False, causal=False, attn_rate=attn_rate, readout="last")


def train(*, attn_rate: float = 1.0, p: int = 59, train_frac: float = 0.8, d_model: int = 128, lr: float = 1e-3,
          weight_decay: float = 2.0, steps: int = 20_000, seed: int = 0, eval_every: int = 100,
          probe_every: int | None = None, progress: bool = False):
    """Train one model (full batch, AdamW β = (0.9, 0.98), 10-step warmup); probes: accuracy and the two metrics."""
    from ..probes import Evaluate
    from ..training.run import Run
    from ..tasks import ModularArithmetic

    if not 0.0 <= attn_rate <= 1.0:
        raise ValueError(f"attn_rate must lie in [0, 1], got {attn_rate!r}")
    check_positive("steps", steps)
    task = ModularArithmetic(p=p, train_frac=train_frac, seed=seed)
    model = make_model(p, attn_rate, d_model, seed=seed)
    probes = [Evaluate(eval_every), ClockPizzaProbe(p, every=probe_every or steps)]
    method = ScheduledAdamW(lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay, warmup=10)   # 10-step warmup
    run = Run(model, task, method, probes=probes, seed=seed, name=f"α={attn_rate:g}")
    return run.train(steps, progress=progress)


def metrics_vs_rate(rates, *, seeds=(0,), progress: bool = True, **kwargs):
    """``orthoscope.zoo.scaling.sweep`` over attention rates: final ``grad_sym``, ``dist_irr``, ``test_acc``."""
    from .scaling import sweep

    def one(rate, seed):
        h = train(attn_rate=float(rate), seed=seed, **kwargs).history
        return {"grad_sym": h["grad_sym/embed"].last(), "dist_irr": h["dist_irr/embed"].last(),
                "test_acc": h["acc/test"].last()}

    return sweep(one, rates, seeds, progress=progress, desc="attention rate")


# ---- plots (pure) ---------------------------------------------------------------------------------------------
def plot_correct_logits(ax, model, p: int):
    """The correct-logit matrix re-indexed by (a+b) mod p (x) and (a−b) mod p (y): vertical stripes = clock
    (depends on the sum only), horizontal bands = pizza (depends on the distance). Returns ``ax``."""
    L = correct_logit_matrix(model, p)
    i = torch.arange(p)
    M = torch.stack([L[i, (i + d) % p] for d in range(p)])              # [d, i]: row d = distance, col i = a
    s = (2 * i[None, :] + torch.arange(p)[:, None]) % p                  # sum (a + b) for each (d, i)
    grid = torch.zeros(p, p)
    grid[torch.arange(p)[:, None].expand(p, p), s] = M.float()
    ax.imshow(grid.numpy(), cmap="Reds_r", aspect="auto")
    ax.set_xlabel("(a + b) mod p")
    ax.set_ylabel("(b − a) mod p")
    ax.set_title(f"correct logits, q = {distance_irrelevance(L):.2f}")
    return ax


def plot_metrics_vs_rate(ax, result):
    """Gradient symmetricity and distance irrelevance against α (ours: points; the paper's binned means: lines)."""
    for key, marker, ref_idx in (("grad_sym", "o", 0), ("dist_irr", "s", 1)):
        x, y = result.points(key)
        line = ax.plot(x, y, marker, label=f"{key} (ours)")[0]
        centres = [(lo + hi) / 2 for lo, hi in REFERENCE]
        ax.plot(centres, [v[ref_idx] for v in REFERENCE.values()], "--", color=line.get_color(), lw=1,
                label=f"{key} (paper, binned)")
    ax.set_xlabel("attention rate α")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    return ax
