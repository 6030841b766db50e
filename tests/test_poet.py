"""POET / POET-X / POET-XQ: the layer, the method, merges, memory mode, quantization, checkpoints."""
from __future__ import annotations

import pytest
import torch

from orthoscope.adapters.quant import dequantize_groupwise, quantize_groupwise


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---- group quantization (shared with QOFT) ------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_groupwise_error_bound_and_round_trip(bits):
    w = torch.randn(12, 64, generator=gen()) + torch.linspace(-1, 3, 64)     # some groups do not straddle 0
    qt = quantize_groupwise(w, bits, 16)
    assert qt.codes.dtype == torch.uint8 and qt.codes.shape == (12, 64 if bits == 8 else 32)
    w_hat = dequantize_groupwise(qt)
    err = (w - w_hat).abs().reshape(12, 4, 16).amax(-1)
    assert (err <= qt.scale * 0.5 * (1 + 1e-5)).all()                          # ≤ half a quantization step
    w_hat2 = dequantize_groupwise(quantize_groupwise(w_hat, bits, 16))
    torch.testing.assert_close(w_hat2, w_hat, atol=1e-6, rtol=0)               # idempotent on its own grid
    assert qt.nbytes() == w.numel() * bits // 8 + 8 * w.numel() // 16           # codes + fp32 scale/zero per group


def test_quantize_groupwise_known_answer_and_constant_group():
    w = torch.tensor([[0.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0]])
    qt = quantize_groupwise(w, 8, 4)
    torch.testing.assert_close(qt.scale, torch.tensor([[3 / 255, 1.0]]))
    torch.testing.assert_close(qt.zero, torch.tensor([[0.0, -5.0]]))
    assert qt.codes[0, :4].tolist() == [0, 85, 170, 255]
    torch.testing.assert_close(dequantize_groupwise(qt), w)


def test_quantize_groupwise_errors():
    with pytest.raises(ValueError, match="group_size=48 does not divide the row length 64"):
        quantize_groupwise(torch.zeros(2, 64), 8, 48)
    with pytest.raises(ValueError, match="bits must be one of"):
        quantize_groupwise(torch.zeros(2, 64), 3, 16)
    with pytest.raises(ValueError, match="group_size must be even"):
        quantize_groupwise(torch.zeros(2, 63), 4, 63)
