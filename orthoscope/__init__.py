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

__version__ = "0.1.0"
__all__ = ["Run", "History", "Method", "AdamW", "SGD", "Intervention", "ClipGradNorm", "NonFiniteError"]


def __getattr__(name):
    # Subpackages on first attribute access: `orthoscope.tasks`, `orthoscope.viz`, … without importing them up front.
    import importlib

    if name in {"tasks", "models", "probes", "viz", "ortho", "optim", "adapters", "losses", "kernels", "scaling",
                "targets", "checkpoint", "arena", "zoo", "report", "demo"}:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'orthoscope' has no attribute {name!r}")
