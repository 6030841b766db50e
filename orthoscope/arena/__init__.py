"""The stability–plasticity arena (after PEFT-Arena, arXiv 2605.28819), small enough for a CPU.

Pretrain a model on task A, then finetune copies of it on task B with several methods (full finetuning, LoRA, SoRA,
OFT, BOFT, QOFT, …) and measure, per method:

* **plasticity** = accuracy gained on B:  ``acc_B(finetuned) − acc_B(base)``;
* **forgetting** = accuracy lost on A:    ``acc_A(base) − acc_A(finetuned)``  (PEFT-Arena: drop of the general score);
* the trainable-parameter count, so budgets can be compared;
* spectra of every weight (``Spectrum`` probe, at each evaluation), so the runs can be watched in the Dashboard;
* geometry (``orthoscope.probes.geometry``), recorded as probes at the start and the end of the finetune: ΔW stable
  rank, retention/adaptation smoothness, activation Procrustes residual / Gram distortion / CKA on A's inputs, and
  capability-conditioned drift on A's (general) and B's (target) inputs;
* **interpolation paths** between base (α = 0) and finetune (α = 1): ``dense`` scales the weight delta,
  ``W₀ + αΔW``; ``generator`` stays on the orthogonal group: OFT generators are scaled (``Q → αQ``), other finetunes
  are split as ``W = W₀ cayley(A) + τ`` (OrthoMerge's Procrustes decomposition) and walked as ``W₀ cayley(αA) + ατ``.
  (The PEFT-Arena page writes the OFT path as √α·Q; that is the same path with another parametrization of α.)

The default pair (``Arena.digits``) is sklearn's 8×8 digits (A) and the same digits with their pixels shuffled by one
fixed permutation (B; the "permuted MNIST" of continual learning; ``shift="mirror"`` or ``"invert"`` are milder) on
an MLP: it runs in seconds on a CPU, and B competes with A for the same weights.

    arena = Arena.digits()
    results = arena.compare(standard_methods())       # or {"full": AdamW(lr=1e-3), "oft": OFT(block=16), ...}
    arena.table(results)                       # pandas DataFrame
    fig, ax = plt.subplots(); plot_frontier(ax, results)

Plot functions are pure: ``plot_*(ax, …) -> list of artists``; nothing here imports matplotlib.

One file per job: ``tasks`` (the A/B pair), ``results`` (a finetune's scores and summaries), ``harness`` (``Arena``
and ``standard_methods``), ``interpolation`` (paths between base and finetune), ``plots``. Everything public is
importable from ``orthoscope.arena``.
"""
from .harness import Arena, standard_methods
from .interpolation import INTERPOLATIONS, interpolation_models, plain_copy
from .plots import pareto_front, plot_frontier, plot_geometry, plot_interpolation, plot_profile, trajectory
from .results import (GEOMETRY_SUMMARY, ArenaResult, count_trainable, evaluate, score_table, sora_summary,
                      summarize_geometry)
from .tasks import SHIFTS, PairTask, digits_task, shift_digits

__all__ = ["Arena", "standard_methods", "INTERPOLATIONS", "interpolation_models", "plain_copy", "pareto_front",
           "plot_frontier", "plot_geometry", "plot_interpolation", "plot_profile", "trajectory", "GEOMETRY_SUMMARY",
           "ArenaResult", "count_trainable", "evaluate", "score_table", "sora_summary", "summarize_geometry", "SHIFTS",
           "PairTask", "digits_task", "shift_digits"]
