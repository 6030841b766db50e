"""orthoscope — see how neural networks train.

    from orthoscope import Run, AdamW, tasks, models
    task = tasks.ModularArithmetic(p=97, train_frac=0.5)
    run = Run(models.MLP(vocab_size=97, n_tokens=2, d_out=97), task, AdamW(lr=3e-3, weight_decay=1.0))
    run.train(1000)
    Dashboard(run)          # from orthoscope.viz import Dashboard

Importing is cheap and silent: heavy or optional modules (pykan, transformers, triton, ipywidgets, matplotlib) are
imported only by the submodules that use them, when they are used.
"""
from .history import History
from .methods import SGD, AdamW, ClipGradNorm, Intervention, Method
from .run import NonFiniteError, Run
from .version import __version__  # noqa: F401

__all__ = ["Run", "History", "Method", "AdamW", "SGD", "Intervention", "ClipGradNorm", "NonFiniteError"]

# Every method a Run takes, importable from one place (`from orthoscope import Muon, POET, OFT`), loaded on first use.
# `orthoscope.optim.Muon` (and Pion, FOCUS) is the torch optimizer the method of the same name builds.
METHODS = {"Muon": "orthoscope.optim.methods", "Pion": "orthoscope.optim.methods",
           "Hyperball": "orthoscope.optim.methods", "FOCUS": "orthoscope.optim.methods",
           "POET": "orthoscope.adapters", "OFT": "orthoscope.adapters", "BOFT": "orthoscope.adapters",
           "QOFT": "orthoscope.adapters", "LoRA": "orthoscope.adapters", "SoRA": "orthoscope.adapters"}


def __getattr__(name):
    # Subpackages on first attribute access: `orthoscope.tasks`, `orthoscope.viz`, … without importing them up front.
    import importlib

    if name in {"tasks", "models", "probes", "viz", "ortho", "optim", "adapters", "losses", "kernels", "scaling",
                "targets", "checkpoint", "arena", "zoo", "report", "demo"}:
        return importlib.import_module(f"{__name__}.{name}")
    if name in METHODS:
        return getattr(importlib.import_module(METHODS[name]), name)
    raise AttributeError(f"module 'orthoscope' has no attribute {name!r}")
