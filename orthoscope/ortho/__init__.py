"""Orthogonal algebra: pure functions, each tested against an exact reference (DESIGN §2, §5).

* ``skew``: skew-symmetric blocks ↔ their packed strict upper triangle (``b(b−1)/2`` numbers);
* ``cayley``: exact Cayley ``(I+Q)(I−Q)⁻¹``, its inverse, and the Cayley–Neumann approximation;
* ``expm``: exact and truncated matrix exponential;
* ``blockdiag``: ``x · blockdiag(R)`` without building the matrix (plain and recompute-in-backward variants);
* ``permutations``: butterfly (BOFT), random (POET) and inverse permutations;
* ``procrustes``: the orthogonal R minimizing ``‖A R − B‖_F``.

Heavy model code calls the kernel seam (``orthoscope.kernels.cayley_neumann`` / ``block_rotate``), whose torch twins
call these functions.
"""
from .blockdiag import block_rotate, block_rotate_lowmem, blockdiag
from .cayley import cayley, cayley_neumann, inverse_cayley
from .expm import expm, expm_truncated
from .permutations import butterfly_permutation, invert_permutation, random_block_permutation
from .procrustes import procrustes
from .skew import block_size_from_packed, n_packed, packed_from_skew, skew_from_packed

__all__ = ["skew_from_packed", "packed_from_skew", "n_packed", "block_size_from_packed", "cayley", "inverse_cayley",
           "cayley_neumann", "expm", "expm_truncated", "block_rotate", "block_rotate_lowmem", "blockdiag",
           "butterfly_permutation", "random_block_permutation", "invert_permutation", "procrustes"]
