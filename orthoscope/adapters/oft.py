"""OFT — orthogonal finetuning with block-diagonal rotations, input-centric (Qiu et al. 2023; OFTv2, arXiv 2506.19847).

Every adapted layer learns r rotations ``R_i ∈ SO(b)`` (``r·b = d``, the size being rotated) from packed skew blocks
``Q_i`` (``oft_q[r, b(b−1)/2]``, zero at init so ``R = I``) and computes, for row vectors ``x`` (PyTorch layout),

    Linear / Conv2d:  y = base(x · blockdiag(R))          ⇔  W' = W · blockdiag(R)ᵀ     (input side, W[out, in])
    Embedding:        e = base(ids) · blockdiag(R)         ⇔  E' = E · blockdiag(R)      (E[vocab, dim])

The forward is **input-centric** (OFTv2): it rotates the activations blockwise with ``kernels.block_rotate`` (an
einsum over ``[..., r, b] × [r, b, b]``, O(N·d·b)) and calls the unchanged base layer; the d×d rotation and W' are
built only by ``effective_weight()`` and ``merge()``. R is computed once per forward call from the r small blocks.

* ``R = cayley(Q) = (I + Q)(I − Q)⁻¹`` exactly (default; orthogonal to rounding), or with ``cayley="neumann"`` the
  Cayley–Neumann series ``(I + Q)(I + Q + … + Q^k)`` (``kernels.cayley_neumann``; cheaper, orthogonal to
  O(‖Q‖^{k+1}); k = 3 equals peft's ``num_cayley_neumann_terms=5``).
* ``block`` (b) or ``n_blocks`` (r), exactly one; a value that does not divide the layer raises ``ValueError`` naming
  the layer and listing the valid values (peft silently picks another block size; we do not).
* ``block_share``: one block repeated r times (b(b−1)/2 parameters per layer).
* ``coft`` (constrained OFT): before each use the stored blocks are projected in place onto ``‖Q_i‖_F ≤ ε/√(#blocks)``
  (peft's ``_project_batch``), bounding the distance of R from I.
* Conv2d rotates unfolded patches (the ``C·kh·kw`` filter vectors; groups = 1, zero padding).

Conventions against peft (docs/adapters.md): same packing, same forward, same CNP formula, so equal parameters give
equal outputs; peft's *exact* branch computes ``cayley(Q)ᵀ``, so there ``oft_q = −(peft's weight)``.

    >>> from torch import nn
    >>> from orthoscope.adapters import attach
    >>> model = attach(nn.Sequential(nn.Linear(8, 4)), OFTConfig(block=4, targets=["0"]))
    >>> model[0].oft_q.shape
    torch.Size([2, 6])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from ..methods.base import check_positive
from ..ortho import cayley, n_packed, skew_from_packed
from .hf import Conv1DLayout
from .registry import AdaptedLayer, AdapterConfig, AdapterMethod, register_adapter

__all__ = ["OFTConfig", "OFT", "OFTLinear", "OFTConv1D", "OFTConv2d", "OFTEmbedding", "RotationMixin", "resolve_blocks",
           "divisors",
           "check_rotation_config", "config_blocks", "adapter_dtype"]

CAYLEY_CHOICES = ("exact", "neumann")


def adapter_dtype(weight: torch.Tensor) -> torch.dtype:
    """Adapter parameters are float32 (or float64) even on a half-precision base, as peft's ``autocast_adapter_dtype``:
    Cayley solves and small updates need the precision; activations are cast to it and back."""
    return weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32


def divisors(d: int) -> list[int]:
    return [k for k in range(1, d + 1) if d % k == 0]


def config_blocks(config) -> tuple[int | None, int | None]:
    """``(block, n_blocks)`` a config asks for: as given, or the class's ``default_block`` when neither is."""
    if config.block is None and config.n_blocks is None:
        return config.default_block, None
    return config.block, config.n_blocks


def resolve_blocks(d: int, block: int | None, n_blocks: int | None, path: str, what: str) -> tuple[int, int]:
    """``(b, r)`` with ``b·r = d`` from exactly one of ``block`` / ``n_blocks``; ValueError naming the layer else."""
    value, name = (block, "block") if block is not None else (n_blocks, "n_blocks")
    if d % value:
        raise ValueError(f"{name}={value} does not divide {what} = {d} of layer {path!r}; valid values of {name} for "
                         f"this layer: {divisors(d)} (pick one, or exclude the layer)")
    return (value, d // value) if block is not None else (d // value, value)


class RotationMixin:
    """The rotation part shared by OFT and QOFT layers: packed skew blocks → ``R[r, b, b]``."""

    def _init_rotation(self, config, d: int, what: str) -> None:
        self.block, self.n_blocks = resolve_blocks(d, *config_blocks(config), self.path, what)
        self.cayley, self.neumann_terms = config.cayley, config.neumann_terms
        self.coft, self.eps, self.block_share = config.coft, config.eps, config.block_share
        ref = self.base_weight()
        stored = 1 if self.block_share else self.n_blocks
        self.register_parameter(self.prefix + "q", nn.Parameter(torch.zeros(stored, n_packed(self.block),
                                                                            dtype=adapter_dtype(ref), device=ref.device)))

    @property
    def q(self) -> nn.Parameter:
        return getattr(self, self.prefix + "q")

    @torch.no_grad()
    def project_coft(self) -> None:
        """COFT: rescale every block with ‖Q_i‖_F > ε' onto ‖Q_i‖_F = ε', ε' = eps/√(#stored blocks) (in place)."""
        q = self.q
        limit = self.eps / q.shape[0] ** 0.5
        norm = q.norm(dim=1, keepdim=True) * 2 ** 0.5                   # ‖Q‖_F = √2 ‖packed‖ for skew Q
        if (norm > limit).any():                                        # only write when needed (keeps autograd versions)
            q.copy_(torch.where(norm > limit, q * (limit / norm.clamp_min(1e-30)), q))

    def rotation(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``R[r, b, b]``: exact Cayley or Cayley–Neumann of every block (shared blocks expanded, not copied).

        Computed in the parameters' dtype (float32 for half-precision models), or float64 when asked, then cast."""
        if self.coft:
            self.project_coft()
        q = self.q.double() if dtype == torch.float64 else self.q
        if self.cayley == "exact":
            r = cayley(skew_from_packed(q, self.block))
        else:
            r = kernels.cayley_neumann(q, self.block, self.neumann_terms)
        r = r if dtype is None else r.to(dtype)
        return r.expand(self.n_blocks, -1, -1) if self.block_share else r

    def _rotate_rows(self, w: torch.Tensor, transpose: bool, inverse: bool = False) -> torch.Tensor:
        """``w · blockdiag(M)`` for the rows of ``w``, ``M = R``, ``Rᵀ``, ``R⁻¹`` or ``R⁻ᵀ`` (computed in ``w``'s dtype)."""
        r = self.rotation(w.dtype)
        if inverse:                         # exact Cayley: R⁻¹ = Rᵀ to rounding; CNP is only near-orthogonal
            r = torch.linalg.inv(r)
        return kernels.block_rotate(w, r.transpose(-1, -2) if transpose else r)

    def extra_repr(self) -> str:
        kind = "exact" if self.cayley == "exact" else f"neumann k={self.neumann_terms}"
        return (f"{super().extra_repr()}, block={self.block}, n_blocks={self.n_blocks}, cayley={kind}"
                + (", shared" if self.block_share else "") + (f", coft eps={self.eps:g}" if self.coft else ""))


class OFTLinear(RotationMixin, AdaptedLayer):
    """``y = base(x · blockdiag(R))``; ``W' = W · blockdiag(R)ᵀ``."""

    def __init__(self, base_layer: nn.Linear, config, path: str = ""):
        super().__init__(base_layer, path)
        self.prefix = config.prefix
        self._init_rotation(config, self.in_features, "in_features")

    def adapted_forward(self, x):
        r = self.rotation()
        return self.base_layer(kernels.block_rotate(x, r.to(x.dtype)))

    def _merged_weight(self, w):
        return self._rotate_rows(w, transpose=True)

    def _unmerged_weight(self, w):
        return self._rotate_rows(w, transpose=True, inverse=True)


class OFTConv1D(Conv1DLayout, OFTLinear):
    """OFT on ``transformers``' Conv1D (``W[in, out]``): the same forward; ``W' = blockdiag(R) · W``."""


class OFTEmbedding(RotationMixin, AdaptedLayer):
    """``e = base(ids) · blockdiag(R)``; ``E' = E · blockdiag(R)`` (rotates the embedding vectors)."""

    def __init__(self, base_layer: nn.Embedding, config, path: str = ""):
        super().__init__(base_layer, path)
        self.prefix = config.prefix
        self._init_rotation(config, base_layer.embedding_dim, "embedding_dim")

    def adapted_forward(self, ids):
        e = self.base_layer(ids)
        return kernels.block_rotate(e, self.rotation().to(e.dtype))

    def _merged_weight(self, w):
        return self._rotate_rows(w, transpose=False)

    def _unmerged_weight(self, w):
        return self._rotate_rows(w, transpose=False, inverse=True)


class OFTConv2d(RotationMixin, AdaptedLayer):
    """Rotates each unfolded patch ``x_patch[C·kh·kw]``: ``W'.view(out, −1) = W.view(out, −1) · blockdiag(R)ᵀ``."""

    def __init__(self, base_layer: nn.Conv2d, config, path: str = ""):
        super().__init__(base_layer, path)
        self.prefix = config.prefix
        conv = base_layer
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"OFT on Conv2d {path!r} needs groups=1, padding_mode='zeros' and numeric padding; got "
                             f"groups={conv.groups}, padding_mode={conv.padding_mode!r}, padding={conv.padding!r}")
        d = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        self._init_rotation(config, d, "in_channels·kh·kw")

    def adapted_forward(self, x):
        conv = self.base_layer
        n, _, h, w = x.shape
        out_hw = [(size + 2 * p - dl * (k - 1) - 1) // s + 1 for size, p, dl, k, s in
                  zip((h, w), conv.padding, conv.dilation, conv.kernel_size, conv.stride)]
        cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)      # [N, C·kh·kw, L]
        cols = kernels.block_rotate(cols.transpose(1, 2), self.rotation().to(x.dtype))    # [N, L, C·kh·kw]
        y = F.linear(cols, conv.weight.reshape(conv.out_channels, -1), conv.bias)          # [N, L, out]
        return y.transpose(1, 2).reshape(n, conv.out_channels, *out_hw)

    def _merged_weight(self, w):
        return self._rotate_rows(w.reshape(w.shape[0], -1), transpose=True).reshape(w.shape)

    def _unmerged_weight(self, w):
        return self._rotate_rows(w.reshape(w.shape[0], -1), transpose=True, inverse=True).reshape(w.shape)


def check_rotation_config(config) -> None:
    """Validation shared by OFT-style configs (block XOR n_blocks, Cayley choice, number of Neumann terms). It only
    reads the config: a block size left unset stays unset (``config_blocks`` supplies the class's default)."""
    if config.block is not None and config.n_blocks is not None:
        raise ValueError(f"give block or n_blocks, not both (got block={config.block!r}, n_blocks={config.n_blocks!r})")
    for name in ("block", "n_blocks"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if config.cayley not in CAYLEY_CHOICES:
        raise ValueError(f"cayley must be one of {CAYLEY_CHOICES}, got {config.cayley!r}")
    k = config.neumann_terms
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"neumann_terms must be an integer ≥ 1, got {k!r}")


@register_adapter
@dataclass
class OFTConfig(AdapterConfig):
    """OFT on Linear, Conv1D (transformers), Conv2d and Embedding modules (input-side block-diagonal rotation)."""

    default_block: ClassVar[int] = 32            # used when neither block nor n_blocks is given (config_blocks)

    block: int | None = field(default=None, metadata={
        "help": "block size b (must divide the rotated size of every target); give this or n_blocks; default 32"})
    n_blocks: int | None = field(default=None, metadata={
        "help": "number of blocks r per layer (b = size / r); give this or block"})
    cayley: str = field(default="exact", metadata={
        "help": "'exact': R = (I+Q)(I−Q)⁻¹, orthogonal to rounding (default). 'neumann': (I+Q)(I+Q+…+Q^k), "
                "cheaper for large blocks but only approximately orthogonal (error O(‖Q‖^{k+1}))"})
    neumann_terms: int = field(default=3, metadata={
        "help": "k of the Cayley–Neumann series (k=3 ≙ peft num_cayley_neumann_terms=5)"})
    coft: bool = field(default=False, metadata={
        "help": "constrained OFT: project each block onto ‖Q‖_F ≤ eps/√(#blocks) before use"})
    eps: float = field(default=6e-5, metadata={"help": "COFT radius ε (peft default 6e-5)"})
    block_share: bool = field(default=False, metadata={
        "help": "share one block across the whole layer (b(b−1)/2 parameters per layer)"})

    adapter_name: ClassVar[str] = "oft"
    prefix: ClassVar[str] = "oft_"
    layers: ClassVar[dict] = {nn.Linear: OFTLinear, nn.Conv2d: OFTConv2d, nn.Embedding: OFTEmbedding}
    conv1d_layer: ClassVar[type] = OFTConv1D

    def __post_init__(self):
        super().__post_init__()
        check_rotation_config(self)
        check_positive("eps", self.eps)


@dataclass
class OFT(AdapterMethod, OFTConfig):
    """Method: attach OFT to ``targets`` and train the skew blocks with AdamW.

    >>> method = OFT(block=32, targets=["q_proj", "v_proj"], lr=1e-3)
    """
