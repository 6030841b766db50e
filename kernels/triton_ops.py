"""The Triton launchers, by op name (``OPS``), read by the seam (``orthoscope.kernels.dispatch``). Imported lazily, on
the first call that needs Triton — never by ``import orthoscope`` — so a missing or broken Triton cannot break import.

Each op lives in its own module, with its ``@triton.jit`` kernels, launchers that check inputs before launch, and an
``autograd.Function`` whose backward is also a kernel:

=================  =====================  ==========================================================================
op                 module                 kernels
=================  =====================  ==========================================================================
cayley_neumann     ``triton_cayley``      fused per-block CNP fwd/bwd (b ≤ 64); tiled batched GEMM steps (b > 64)
block_rotate       ``triton_rotate``      x̃·blockdiag(R) with the permutation folded into loads/stores; ∂R by
                                          row-split partial sums; memory mode that re-gathers in backward
pairwise_energy    ``triton_energy``      tiled hyperspherical energy and its gradient (flash-style, no n×n)
harmonic_nll       ``triton_harmonic``    distance logits + online LSE + NLL over vocabulary tiles; fused backward
kan_spline         ``triton_kan``         de Boor basis fused with the coefficient contraction; ∂x and ∂coef
=================  =====================  ==========================================================================

Set ``TRITON_INTERPRET=1`` before this module is imported to run the kernels on CPU tensors (tests do).
"""
from __future__ import annotations

from .triton_cayley import cayley_neumann
from .triton_energy import pairwise_energy
from .triton_harmonic import harmonic_nll
from .triton_kan import kan_spline
from .triton_rotate import block_rotate

OPS = {"cayley_neumann": cayley_neumann, "block_rotate": block_rotate, "pairwise_energy": pairwise_energy,
       "harmonic_nll": harmonic_nll, "kan_spline": kan_spline}
