"""QOFT — OFT over a group-quantized base weight (OFTv2 §4, arXiv 2506.19847), with our own int8 / 4-bit codes.

Attaching QOFT replaces every target ``nn.Linear`` by a ``QuantLinear`` (weight stored as uint8 codes with a scale
and zero point per group of ``group_size`` consecutive inputs, 4-bit codes packed two per byte; see ``quant.py``)
wrapped by a ``QOFTLinear``:

    y = QuantLinear(x · blockdiag(R)) = (x · blockdiag(R)) · deq(W)ᵀ + bias

The rotation acts on the input (as OFT), so the quantized base runs unchanged and is dequantized on the fly (also
in backward: only the codes are kept for it, never a float copy of the weight); the trainable part is the same packed skew blocks as OFT (``qoft_q``). ``effective_weight()`` is
``deq(W) · blockdiag(R)ᵀ``.

Merging folds R into the weight *and re-quantizes it*, so the merged layer stays quantized; its output then differs
from the unmerged one by the re-quantization error (≤ scale/2 per weight). ``unmerge()`` restores the pre-merge codes
bit-exactly (they are kept while merged). Only a layer merged in an earlier session (no kept codes) is unmerged by
re-quantizing the inverse rotation, with a warning, because that is lossy.

    >>> from torch import nn
    >>> from orthoscope.adapters import attach
    >>> model = attach(nn.Sequential(nn.Linear(64, 8)), QOFTConfig(block=16, bits=4, group_size=32, targets=["0"]))
    >>> type(model[0].base_layer).__name__, model[0].base_layer.codes.dtype
    ('QuantLinear', torch.uint8)
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from .oft import OFTConfig, RotationMixin, divisors
from .quant import SUPPORTED_BITS, QuantizedTensor, dequantize_groupwise, quantize_groupwise, requantization_bound
from .hf import is_conv1d
from .registry import AdaptedLayer, AdapterMethod, register_adapter

__all__ = ["QuantLinear", "QOFTLinear", "QOFTConv1D", "QOFTConfig", "QOFT", "MergeBoundWarning"]


class MergeBoundWarning(UserWarning):
    """A QOFT merge moved a weight further than the re-quantization bound (``quant.requantization_bound``)."""


class _QuantMatmul(torch.autograd.Function):
    """``y = x · deq(W)ᵀ + bias`` that keeps only the codes for backward and dequantizes again there (as bitsandbytes'
    4-bit matmul): a float copy of every quantized weight alive until backward would undo QOFT's memory saving.
    The base is frozen, so only ``∂L/∂x = g · deq(W)`` is computed."""

    @staticmethod
    def forward(ctx, x, layer, bias):
        ctx.layer, ctx.version = layer, layer.codes._version
        return F.linear(x, layer.dequantized_weight(x.dtype), bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        layer = ctx.layer
        if layer.codes._version != ctx.version:
            raise RuntimeError("the quantized weight changed between forward and backward (merged in between?)")
        return grad_y @ layer.dequantized_weight(grad_y.dtype), None, None


class QuantLinear(nn.Module):
    """A linear layer whose weight is stored group-quantized and dequantized at every forward (frozen)."""

    def __init__(self, qt: QuantizedTensor, bias: torch.Tensor | None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.out_features, self.in_features = qt.shape
        self.bits, self.group_size, self.dtype = qt.bits, qt.group_size, dtype
        self.register_buffer("codes", qt.codes)
        self.register_buffer("scale", qt.scale)
        self.register_buffer("zero", qt.zero)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Module, bits: int, group_size: int, path: str = "") -> "QuantLinear":
        """Quantize an ``nn.Linear`` or a ``transformers`` Conv1D (its ``W[in, out]`` is stored as ``[out, in]``)."""
        weight = linear.weight.detach()
        weight = weight.T if is_conv1d(linear) else weight
        d = weight.shape[1]
        try:
            qt = quantize_groupwise(weight, bits=bits, group_size=group_size)
        except ValueError as e:
            valid = [g for g in divisors(d) if bits == 8 or g % 2 == 0]
            raise ValueError(f"cannot quantize layer {path!r} (in_features = {d}): {e}; valid group sizes for it: "
                             f"{valid}") from None
        return cls(qt, linear.bias, weight.dtype)

    def quantized(self) -> QuantizedTensor:
        return QuantizedTensor(self.codes.clone(), self.scale.clone(), self.zero.clone(), self.bits, self.group_size,
                               (self.out_features, self.in_features))

    @torch.no_grad()
    def load_quantized(self, qt: QuantizedTensor) -> None:
        self.codes.copy_(qt.codes)
        self.scale.copy_(qt.scale)
        self.zero.copy_(qt.zero)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return dequantize_groupwise(QuantizedTensor(self.codes, self.scale, self.zero, self.bits, self.group_size,
                                                    (self.out_features, self.in_features)), dtype or self.dtype)

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            return _QuantMatmul.apply(x, self, self.bias)
        return F.linear(x, self.dequantized_weight(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, bias={self.bias is not None}")


class QOFTLinear(RotationMixin, AdaptedLayer):
    """``y = QuantLinear(x · blockdiag(R))``; ``W' = deq(W) · blockdiag(R)ᵀ``."""

    def __init__(self, base_layer: nn.Module, config, path: str = ""):
        quantized = QuantLinear.from_linear(base_layer, config.bits, config.group_size, path)
        super().__init__(quantized, path)
        self.prefix = config.prefix
        self._init_rotation(config, quantized.in_features, "in_features")
        self._premerge: QuantizedTensor | None = None

    def base_weight(self) -> torch.Tensor:
        return self.base_layer.dequantized_weight()

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def adapted_forward(self, x):
        return self.base_layer(kernels.block_rotate(x, self.rotation().to(x.dtype)))

    def _merged_weight(self, w):
        return self._rotate_rows(w, transpose=True)

    def _unmerged_weight(self, w):
        return self._rotate_rows(w, transpose=True, inverse=True)

    def _requantize(self, w: torch.Tensor) -> None:
        if not torch.isfinite(w).all():
            raise ValueError(f"merging the adapter of {self.path!r} produced non-finite weights")
        base = self.base_layer
        base.load_quantized(quantize_groupwise(w.float(), bits=base.bits, group_size=base.group_size))

    @torch.no_grad()
    def merge(self) -> None:
        """Fold R into the weight and re-quantize it (lossy: ≤ scale/2 per weight); keeps the old codes for unmerge.

        The merged weight ``W' = deq(W)·Rᵀ`` is re-quantized with its own group scales; every entry must land
        within ``requantization_bound(W')`` of ``W'`` (half a step of its group). ``merge_error`` and
        ``merge_bound`` keep the largest error and bound of this merge; a ``MergeBoundWarning`` names the layer
        when an entry lands further (docs/adapters.md, "QOFT merge bound")."""
        if not self.merged:
            self._premerge = self.base_layer.quantized()
            target = self._merged_weight(self.base_layer.dequantized_weight(torch.float64))
            self._requantize(target)
            self._check_merge_bound(target)
            self.merged = True

    def _check_merge_bound(self, target: torch.Tensor) -> None:
        base = self.base_layer
        error = (base.dequantized_weight(torch.float64) - target).abs()
        bound = requantization_bound(target, base.bits, base.group_size)
        self.merge_error, self.merge_bound = float(error.max()), float(bound.max())
        over = error > bound
        if over.any():
            ratio = float((error / bound.clamp_min(torch.finfo(torch.float64).tiny)).max())
            where = tuple(int(i) for i in over.nonzero()[0])
            warnings.warn(f"QOFT merge of {self.path!r}: {int(over.sum())} weight(s) moved further than the "
                          f"re-quantization bound (half a quantization step of their group), up to {ratio:.3g}× it "
                          f"(first at {list(where)}: error {float(error[where]):.3g}, bound {float(bound[where]):.3g}); "
                          "the merged layer is not the adapted one to the stated accuracy", MergeBoundWarning,
                          stacklevel=3)

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        if self._premerge is not None:
            self.base_layer.load_quantized(self._premerge)
        else:
            warnings.warn(f"QOFT layer {self.path!r} was merged in another session; unmerging re-quantizes "
                          "deq(W')·R⁻ᵀ, which is lossy", stacklevel=2)
            self._requantize(self._unmerged_weight(self.base_layer.dequantized_weight(torch.float64)))
        self._premerge = None
        self.merged = False


class QOFTConv1D(QOFTLinear):
    """QOFT on ``transformers``' Conv1D: quantized as ``[out, in]`` like any QOFT base, but ``effective_weight()`` is
    given in the replaced Conv1D's layout ``[in, out]`` (as every Conv1D adapter's), so a plain copy of the finetuned
    model (``arena.plain_copy``) loads into the original architecture."""

    fan_in_fan_out = True

    def effective_weight(self) -> torch.Tensor:
        return super().effective_weight().T


@register_adapter
@dataclass
class QOFTConfig(OFTConfig):
    """OFT on Linear and Conv1D (transformers) modules whose base weight is quantized to int8 or 4-bit groups at attach time."""

    bits: int = field(default=8, metadata={"help": "bits per base weight: 8 or 4 (4-bit codes packed two per byte)"})
    group_size: int = field(default=64, metadata={
        "help": "consecutive inputs sharing one scale/zero point; must divide in_features (even for 4 bits)"})

    adapter_name: ClassVar[str] = "qoft"
    prefix: ClassVar[str] = "qoft_"
    layers: ClassVar[dict] = {nn.Linear: QOFTLinear}
    conv1d_layer: ClassVar[type] = QOFTConv1D

    def __post_init__(self):
        super().__post_init__()
        if self.bits not in SUPPORTED_BITS:
            raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {self.bits!r}")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size <= 0:
            raise ValueError(f"group_size must be a positive integer, got {self.group_size!r}")


@dataclass
class QOFT(AdapterMethod, QOFTConfig):
    """Method: quantize the targets' base weights, attach OFT rotations on their inputs, train them with AdamW.

    >>> method = QOFT(block=32, bits=4, group_size=64, targets=["q_proj", "v_proj"], lr=1e-3)
    """
