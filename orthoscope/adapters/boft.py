"""BOFT — butterfly orthogonal finetuning (Liu et al. 2024, arXiv 2311.06243), with peft's output scale.

The input-side rotation is a product of m butterfly factors, each a block-diagonal rotation conjugated by a
butterfly permutation Π_i (``ortho.butterfly_permutation(d, b, i)``, ``x Π_i = x[..., perm_i]``):

    M_i = Π_i⁻¹ · blockdiag(R_i) · Π_i,     i.e.  x M_i = block_rotate(x[..., inv_i], R_i)[..., perm_i]
    M   = M_{m−1} ⋯ M_1 M_0                 (peft's ``butterfly_oft_mat``: x · M applies factor m−1 first)
    y   = (base(x · M) − bias) ⊙ s + bias    ⇔     W' = diag(s) · W · Mᵀ

``R_i[r, b, b]`` come from packed skew blocks ``boft_q[m, r, b(b−1)/2]`` (zero at init), exact Cayley by default or
Cayley–Neumann; ``boft_s[out]`` is the trainable output magnitude (1 at init). Level i mixes coordinates
``b/2 · 2^(i−1)`` apart, so m factors connect ``b · 2^(m−1)`` features with only ``m · d · (b−1)/2`` parameters.

Cost. peft builds the dense d×d M at every forward (a CUDA extension, or on CPU it silently drops to one factor) and
multiplies ``x @ M``: O(N·d²). Here each factor is a gather and a ``kernels.block_rotate`` (consecutive gathers fused
into one): O(m·N·d·b), no d×d matrix. The dense path is kept for the cases where it is cheaper (``dense=None``
chooses by a flop count, see ``BOFTLinear.uses_dense``) and is what ``effective_weight``/``merge`` build.

Against peft: ``boft_R`` stores full b×b blocks A and uses ``S = ½(A − Aᵀ)``, ``R = (I − S)(I + S)⁻¹ = cayley(−S)``;
so ``boft_q = packed(−S)`` reproduces its output (tests/test_peft_interop.py), with half the stored numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .. import kernels
from ..ortho import butterfly_permutation, cayley, invert_permutation, n_packed, skew_from_packed
from .oft import adapter_dtype, check_rotation_config, config_blocks, divisors
from .hf import Conv1DLayout
from .registry import AdaptedLayer, AdapterConfig, AdapterMethod, register_adapter

__all__ = ["BOFTConfig", "BOFT", "BOFTLinear", "BOFTConv1D", "valid_boft_blocks", "PASS_COST"]


# One factored pass (gather + ``block_rotate``, forward + backward) per element of x, in units of one dense
# multiply-add (forward + backward). On the 2-core CPU (MKL, 2026-11-23) it measured between ~10 and ~190 depending
# on b (2…64), the thread count and the machine's load; 32 is a rough middle, so the dense path wins for d ≲ 32·m.
PASS_COST = 32.0


def valid_boft_blocks(d: int, factors: int) -> list[int]:
    """Block sizes b with ``d % (b·2^(m−1)) == 0`` (and b even when m > 1)."""
    if factors == 1:
        return divisors(d)
    return [b for b in divisors(d) if b % 2 == 0 and d % (b * 2 ** (factors - 1)) == 0]


class BOFTLinear(AdaptedLayer):
    """``y = (base(x · M) − bias) ⊙ s + bias`` with M a product of butterfly factors (module docstring)."""

    def __init__(self, base_layer: nn.Linear, config, path: str = ""):
        super().__init__(base_layer, path)
        self.prefix = config.prefix
        d, m = self.in_features, config.factors
        self.block, self.n_blocks = self._resolve(d, config, path)
        self.factors, self.dense = m, config.dense
        self.cayley, self.neumann_terms = config.cayley, config.neumann_terms
        perms = [butterfly_permutation(d, self.block, i) for i in range(m)]
        # factor i, applied to rows: gather inv_i, rotate, gather perm_i. Applying factors m−1 … 0 in a row, the
        # gather perm_i of one factor and inv_{i−1} of the next fuse into one index: perm_i[inv_{i−1}].
        self.register_buffer("perms", torch.stack(perms), persistent=False)
        self.register_buffer("invs", torch.stack([invert_permutation(p) for p in perms]), persistent=False)
        w = base_layer.weight
        self.register_parameter(self.prefix + "q", nn.Parameter(
            torch.zeros(m, self.n_blocks, n_packed(self.block), dtype=adapter_dtype(w), device=w.device)))
        self.register_parameter(self.prefix + "s", nn.Parameter(
            torch.ones(self.out_features, dtype=adapter_dtype(w), device=w.device)))

    @staticmethod
    def _resolve(d: int, config, path: str) -> tuple[int, int]:
        m = config.factors
        block, n_blocks = config_blocks(config)
        b = block if block is not None else (d // n_blocks if d % n_blocks == 0 else 0)
        valid = valid_boft_blocks(d, m)
        if b not in valid:
            given = f"block={block}" if block is not None else f"n_blocks={n_blocks}"
            raise ValueError(f"BOFT {given} with factors={m} does not fit in_features = {d} of layer {path!r}: "
                             f"need b·2^(m−1) to divide {d}{' and b even' if m > 1 else ''}; valid block sizes: "
                             f"{valid} (valid n_blocks: {[d // v for v in valid]})")
        return b, d // b

    @property
    def q(self) -> nn.Parameter:
        return getattr(self, self.prefix + "q")

    @property
    def s(self) -> nn.Parameter:
        return getattr(self, self.prefix + "s")

    def rotations(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``R[m, r, b, b]``, one block-diagonal rotation per butterfly factor."""
        q = self.q.double() if dtype == torch.float64 else self.q     # float32 at least (no half-precision solves)
        flat = q.reshape(-1, q.shape[-1])
        if self.cayley == "exact":
            r = cayley(skew_from_packed(flat, self.block))
        else:
            r = kernels.cayley_neumann(flat, self.block, self.neumann_terms)
        r = r if dtype is None else r.to(dtype)
        return r.reshape(self.factors, self.n_blocks, self.block, self.block)

    # (not ``_apply``: that name is nn.Module's hook for .to()/.double(), which this would shadow)
    def _apply_factors(self, x: torch.Tensor, rs: torch.Tensor, order) -> torch.Tensor:
        """Rows ``x`` times ``Π_i⁻¹ blockdiag(rs[i]) Π_i`` for i in ``order``, with fused gathers."""
        pending = None                                   # a gather still to apply (perm of the previous factor)
        for i in order:
            index = self.invs[i] if pending is None else pending[self.invs[i]]
            x = kernels.block_rotate(x, rs[i], None if i == 0 and pending is None else index)
            pending = None if i == 0 else self.perms[i]  # level 0 is the identity permutation
        return x if pending is None else x[..., pending]

    def rotate_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x · M`` (factors m−1, …, 0 in turn)."""
        return self._apply_factors(x, self.rotations(x.dtype), range(self.factors - 1, -1, -1))

    def rotation_matrix(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The dense d×d M (``I · M``); O(m·d²·b)."""
        d = self.in_features
        rs = self.rotations(dtype)
        return self._apply_factors(torch.eye(d, dtype=rs.dtype, device=rs.device), rs, range(self.factors - 1, -1, -1))

    def uses_dense(self, n_rows: int) -> bool:
        """Dense ``x @ M`` when its cost N·d² + F·m·d² (the product, and building M by m passes over d rows) is below
        the factored path's F·m·N·d, with F = ``PASS_COST``: roughly when d < F·m and N ≫ d."""
        if self.dense is not None:
            return self.dense
        d, m, f = self.in_features, self.factors, PASS_COST
        return n_rows * d * d + f * m * d * d < f * m * n_rows * d

    def adapted_forward(self, x):
        n_rows = x.numel() // x.shape[-1]
        xr = x @ self.rotation_matrix().to(x.dtype) if self.uses_dense(n_rows) else self.rotate_input(x)
        y = self.base_layer(xr)
        bias = self.base_layer.bias
        if bias is None:
            return y * self.s.to(y.dtype)
        return (y - bias) * self.s.to(y.dtype) + bias

    def _merged_weight(self, w):
        rs = self.rotations(w.dtype).transpose(-1, -2)    # rows of W times Mᵀ = M_0ᵀ M_1ᵀ ⋯ M_{m−1}ᵀ
        return self.s.to(w.dtype)[:, None] * self._apply_factors(w, rs, range(self.factors))

    def _unmerged_weight(self, w):
        rs = torch.linalg.inv(self.rotations(w.dtype)).transpose(-1, -2)   # W = (W'/s) · M_{m−1}⁻ᵀ ⋯ M_0⁻ᵀ
        return self._apply_factors(w / self.s.to(w.dtype)[:, None], rs, range(self.factors - 1, -1, -1))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, block={self.block}, n_blocks={self.n_blocks}, factors={self.factors}, "
                f"cayley={self.cayley}")


class BOFTConv1D(Conv1DLayout, BOFTLinear):
    """BOFT on ``transformers``' Conv1D (``W[in, out]``): the same forward; ``W' = M · W · diag(s)``."""


@register_adapter
@dataclass
class BOFTConfig(AdapterConfig):
    """BOFT on Linear and Conv1D (transformers) modules: m butterfly factors of block-diagonal rotations and a
    trainable output scale."""

    default_block: ClassVar[int] = 4             # peft's default; used when neither block nor n_blocks is given

    block: int | None = field(default=None, metadata={
        "help": "block size b of every factor; give this or n_blocks; default 4 (peft's default)"})
    n_blocks: int | None = field(default=None, metadata={"help": "blocks per factor r = in_features / b"})
    factors: int = field(default=1, metadata={
        "help": "number m of butterfly factors (1: block-diagonal OFT with an output scale); needs b·2^(m−1) | d"})
    cayley: str = field(default="exact", metadata={
        "help": "'exact' Cayley (orthogonal to rounding) or 'neumann' (Cayley–Neumann series, k terms)"})
    neumann_terms: int = field(default=3, metadata={"help": "k of the Cayley–Neumann series"})
    dense: bool | None = field(default=None, metadata={
        "help": "None: pick dense x@M or the factored butterfly by a cost model; True/False force one"})

    adapter_name: ClassVar[str] = "boft"
    prefix: ClassVar[str] = "boft_"
    layers: ClassVar[dict] = {nn.Linear: BOFTLinear}
    conv1d_layer: ClassVar[type] = BOFTConv1D

    def __post_init__(self):
        super().__post_init__()
        check_rotation_config(self)
        if isinstance(self.factors, bool) or not isinstance(self.factors, int) or self.factors < 1:
            raise ValueError(f"factors must be an integer ≥ 1, got {self.factors!r}")
        if self.dense not in (None, True, False):
            raise ValueError(f"dense must be None, True or False, got {self.dense!r}")


@dataclass
class BOFT(AdapterMethod, BOFTConfig):
    """Method: attach BOFT to ``targets`` and train its rotations and output scales with AdamW.

    >>> method = BOFT(block=4, factors=2, targets=["q_proj", "v_proj"], lr=1e-3)
    """
