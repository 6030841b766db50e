"""The training loop: ``Run`` (``run``), the checks it makes before anything is built or trained (``checks``), and
what a load checks before it changes the run, with the snapshot that makes a load all-or-nothing (``state``).

``Run.config`` and ``Run.from_config`` are conveniences over the config layer one floor up (``orthoscope.config``),
connected by the package root (``orthoscope/__init__.py``) so that nothing here imports upward.
"""
from .run import NonFiniteError, Run  # noqa: F401

__all__ = ["Run", "NonFiniteError"]
