"""orthoscope — see how neural networks train.

    from orthoscope import Run, AdamW, tasks, models
    task = tasks.ModularArithmetic(p=97, train_frac=0.5)
    run = Run(models.MLP(vocab_size=97, n_tokens=2, d_out=97), task, AdamW(lr=3e-3, weight_decay=1.0))
    run.train(1000)
    Dashboard(run)          # from orthoscope.viz import Dashboard

    rec = orthoscope.observe(model, optimizer=opt)   # or: the loop you already have (orthoscope.training.recorder)
    ...; loss.backward(); opt.step(); rec.step(loss=loss)

Importing is cheap and silent: heavy or optional modules (pykan, transformers, triton, ipywidgets, matplotlib) are
imported only by the submodules that use them, when they are used.

The folders are the layers of docs/design.md, bottom first: ``core`` and ``ortho`` (foundations), ``kernels`` (the
kernel seam), ``methods`` (methods and losses), ``models``/``tasks``/``probes``/``optim``/``adapters`` (parts),
``distributed`` (the distributed seam), ``training`` (the loop: ``Run``), ``config``/``recipes``/``zoo``/``arena``/
``course`` (runs as data, and recipes), ``viz``/``trackers`` (views); this file, ``__main__`` and ``demo`` are the entry
points.
"""
from . import _moved
from .core.history import History
from .core.version import __version__  # noqa: F401
from .methods.base import SGD, AdamW, ClipGradNorm, Intervention, Method
from .training import run as _run
from .training.recorder import Recorder, observe
from .training.run import NonFiniteError, Run

__all__ = ["Run", "History", "Method", "AdamW", "SGD", "Intervention", "ClipGradNorm", "NonFiniteError", "observe",
           "Recorder"]

_moved.install()                     # old import paths (orthoscope.run, orthoscope.history, …) keep working, warned


def _config_layer():
    # Run.config / Run.from_config live in the config layer, above Run; the root connects them, importing the config
    # layer only when one of them is first used.
    from .config import build

    return build


_run.connect_config_layer(_config_layer)

# Every method a Run takes, importable from one place (`from orthoscope import Muon, POET, OFT`), loaded on first use.
# `orthoscope.optim.Muon` (and Pion, FOCUS) is the torch optimizer the method of the same name builds.
METHODS = {"Muon": "orthoscope.optim.methods", "Pion": "orthoscope.optim.methods",
           "Hyperball": "orthoscope.optim.methods", "FOCUS": "orthoscope.optim.methods",
           "POET": "orthoscope.adapters", "OFT": "orthoscope.adapters", "BOFT": "orthoscope.adapters",
           "QOFT": "orthoscope.adapters", "LoRA": "orthoscope.adapters", "SoRA": "orthoscope.adapters"}
SUBPACKAGES = {"core", "methods", "training", "distributed", "config", "recipes", "tasks", "models", "probes", "viz",
               "ortho", "optim", "adapters", "kernels", "arena", "zoo", "course", "demo", "trackers"}


def __getattr__(name):
    # Subpackages on first attribute access: `orthoscope.tasks`, `orthoscope.viz`, … without importing them up front;
    # an old module name (`orthoscope.methods.losses`) through its alias, with the alias's warning.
    import importlib

    if name in SUBPACKAGES or f"{__name__}.{name}" in _moved.MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    if name in METHODS:
        return getattr(importlib.import_module(METHODS[name]), name)
    raise AttributeError(f"module 'orthoscope' has no attribute {name!r}")
