"""Asymmetric per-group integer quantization of weight matrices (POET-XQ, QOFT).

Each row of ``w[..., n]`` is cut into groups of ``group_size`` consecutive entries. Each group g gets

    scale_g = (max_g − min_g) / (2^bits − 1),   zero_g = round(−min_g / scale_g)   (an integer, kept as float32)
    code    = clamp(round(w / scale_g) + zero_g, 0, 2^bits − 1),      w ≈ (code − zero_g) · scale_g

This is ``poet_torch/core/ops.py::quantize_tensor_int8`` (group 256, 8 bits) generalized to 4 bits. Codes are stored
as ``uint8``; 4-bit codes are packed two per byte (even index in the low nibble). ``zero_g`` is *not* clamped to the
code range: a group that does not straddle 0 (all entries positive, say) has a zero point outside it, and clamping it
would push the codes of the whole group out of range. So the rounding error per entry is at most ``scale_g / 2``. A group whose entries are all equal has ``max = min``; its scale
is set to 1 so it round-trips exactly instead of dividing by zero.

    qt = quantize_groupwise(w, bits=8, group_size=64)
    w_hat = dequantize_groupwise(qt)            # float32 by default, same shape as w

``requantization_bound(w, bits, group_size)`` is that error bound per entry — half the step of the entry's group,
``(max_g − min_g) / (2^bits − 1) / 2 ≤ max_g |w| / (2^bits − 1)``, plus the float32 arithmetic's rounding — which a
QOFT merge checks after re-quantizing (``qoft.py``; docs/adapters.md states the bound in terms of the weights).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SUPPORTED_BITS = (4, 8)


@dataclass
class QuantizedTensor:
    """Codes and per-group affine parameters of a group-quantized tensor (see module docstring)."""

    codes: torch.Tensor      # uint8; [..., n] for 8 bits, [..., n/2] for 4 bits (packed)
    scale: torch.Tensor      # float32 [..., n / group_size]
    zero: torch.Tensor       # float32 [..., n / group_size] (integer-valued)
    bits: int
    group_size: int
    shape: tuple[int, ...]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.codes, self.scale, self.zero))


def _check(shape: tuple[int, ...], bits: int, group_size: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits!r}")
    if not isinstance(group_size, int) or group_size <= 0:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if not shape:
        raise ValueError("cannot quantize a 0-d tensor; give a vector or matrix")
    n = shape[-1]
    if n % group_size:
        raise ValueError(f"group_size={group_size} does not divide the row length {n} (tensor of shape {shape}); "
                         f"choose a group_size that divides {n}")
    if bits == 4 and group_size % 2:
        raise ValueError(f"4-bit codes are packed two per byte, so group_size must be even, got {group_size}")


def quantize_groupwise(w: torch.Tensor, bits: int = 8, group_size: int = 256) -> QuantizedTensor:
    """Quantize ``w[..., n]`` row-wise in groups of ``group_size`` (``n % group_size == 0``) to ``bits`` ∈ {4, 8}."""
    shape = tuple(w.shape)
    _check(shape, bits, group_size)
    levels = 2 ** bits - 1
    g = w.detach().float().reshape(*shape[:-1], shape[-1] // group_size, group_size)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-lo / scale)
    codes = (torch.round(g / scale[..., None]) + zero[..., None]).clamp(0, levels).to(torch.uint8)
    codes = codes.reshape(shape)
    if bits == 4:
        codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return QuantizedTensor(codes.contiguous(), scale, zero, bits, group_size, shape)


def dequantize_groupwise(qt: QuantizedTensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(code − zero) · scale`` per group, reshaped back to the original shape, in ``dtype``."""
    codes = qt.codes
    if qt.bits == 4:
        low, high = codes & 0x0F, codes >> 4
        codes = torch.stack([low, high], dim=-1).reshape(*codes.shape[:-1], codes.shape[-1] * 2)
    n = qt.shape[-1]
    g = codes.float().reshape(*qt.shape[:-1], n // qt.group_size, qt.group_size)
    w = (g - qt.zero[..., None]) * qt.scale[..., None]
    return w.reshape(qt.shape).to(dtype)


FLOAT32_EPS = 2.0 ** -23


def requantization_bound(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Per-entry bound on ``|dequantize_groupwise(quantize_groupwise(w)) − w|`` (float64, the shape of ``w``).

    The grid of a group is ``scale_g · ℤ`` shifted by the integer zero point, so rounding moves an entry by at most
    ``scale_g / 2`` (the clamp never binds in exact arithmetic: ``round(w/s) + zero`` stays in [0, 2^bits − 1]).
    Quantizing in float32 adds rounding of ``w``, of ``scale_g`` and of ``w / scale_g`` near a half-step; each is a
    few float32 ulps of ``max_g |w| + scale_g``, and 8 ulps are allowed for them together."""
    shape = tuple(w.shape)
    _check(shape, bits, group_size)
    g = w.detach().double().reshape(*shape[:-1], shape[-1] // group_size, group_size)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    step = (hi - lo) / (2 ** bits - 1)
    slack = 8 * FLOAT32_EPS * (g.abs().amax(-1, keepdim=True) + step)
    return (step / 2 + slack).expand_as(g).reshape(shape)
