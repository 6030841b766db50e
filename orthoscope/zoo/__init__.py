"""The physics-of-learning zoo: toy models of grokking and neural scaling laws, each a task + model + probes that
``Run`` trains, with the paper's number to compare against (``python -m orthoscope reproduce``).

One module per toy, imported on first use (``orthoscope.zoo.superposition`` etc.):

* ``omnigrok``          — Omnigrok's LU mechanism: init scale α, constrained-norm training, digits and mod-113.
* ``effective_theory``  — the toy addition model, RQI, and the (decoder lr × weight decay) phase diagram.
* ``clock_pizza``       — one-layer transformers with attention rate α; gradient symmetricity, distance irrelevance.
* ``superposition``     — feature superposition, negative weight decay, loss ∝ 1/m.
* ``sparse_parity``     — multitask sparse parity (the quantization model of scaling).
* ``time_scaling``      — learning a peaked teacher with softmax + CE: KL ∝ t^(−1/3).
* ``lottery``           — y = x² width scaling (lottery-ticket ensembling).
* ``edge_of_stability`` — full-batch GD sharpens to 2/η and hovers there (Cohen et al. 2021; ``probes.Sharpness``).
* ``thermodynamics``    — neural thermodynamic laws: the river-valley toy (thermal loss ∝ η) and LR schedules.
* ``harmonic``          — harmonic loss vs cross-entropy (owned by the harmonic-loss work; see its docstring).
* ``precision``         — precision ML: float64, BFGS, low-curvature-subspace steps, boosting; KAN vs MLP.
* ``compression``       — grokking as compression: the linear mapping number (LMN) during the compression phase.
* ``resource``          — the resource model: loss ∝ 1/(neurons allocated) in composite tasks.
* ``resource_meanfield`` — the 1/N mechanism: Monte-Carlo error of a 1/N-scaled layer; its trained counterpart.
* ``reproduce``         — the registry behind ``python -m orthoscope reproduce NAME``.
"""
import importlib

TOYS = ("omnigrok", "effective_theory", "clock_pizza", "superposition", "sparse_parity", "time_scaling", "lottery",
        "harmonic", "precision", "compression", "resource", "reproduce", "common", "edge_of_stability",
        "thermodynamics", "resource_meanfield")


def __getattr__(name):
    if name in TOYS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'orthoscope.zoo' has no attribute {name!r}")
