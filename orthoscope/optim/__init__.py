"""Optimizers that work in any PyTorch loop, each a pure ``*_update`` function plus a thin ``torch.optim.Optimizer``:

* ``Muon`` — Newton–Schulz-orthogonalized momentum (``muon.py``);
* ``Pion`` — spectrum-preserving rotations of hidden matrices (``pion.py``);
* ``AdamH`` / ``MuonH`` — Hyperball: fixed weight norm, angular step (``hyperball.py``);
* ``FOCUS`` — sign of momentum plus attraction to the parameter EMA (``focus.py``).

Muon, Pion, AdamH and MuonH train hidden matrices and run AdamW on the rest inside the same optimizer; see
``common.matrix_param_groups``. The same names as ``Run`` methods live in ``orthoscope.optim.methods``.
"""
from .common import NonFiniteGradError, matrix_param_groups
from .focus import FOCUS, focus_update
from .hyperball import AdamH, MuonH, hyperball_update
from .muon import Muon, muon_update, newton_schulz, register_backend, svd_orthogonalize
from .pion import Pion, lie_gradients, pion_update

__all__ = ["Muon", "Pion", "AdamH", "MuonH", "FOCUS", "NonFiniteGradError", "matrix_param_groups", "muon_update",
           "newton_schulz", "svd_orthogonalize", "register_backend", "hyperball_update", "focus_update",
           "pion_update", "lie_gradients"]
