"""POET-X memory mode: the whole POET linear map as one autograd node that saves only its input and the rotations.

The POET forward (``poet.poet_forward``) is, for row vectors ``x`` and the stored (pre-permuted) weight ``W_s``,

    x̃ = x[..., perm_in] · blockdiag(R_in)      (FS: only the first r·b coordinates are rotated)
    ỹ = x̃ W_sᵀ
    y = (ỹ · blockdiag(R_out))[..., perm_out]

Plain autograd keeps ``x̃`` (for ∂W… and ∂R_out's input chain) and ``ỹ`` alive until backward: two extra
activations per layer besides the input. ``POETXFunction`` instead saves **x, R_in and R_out** (the rotations are
tiny: r·b² numbers). In backward it recomputes ``x̃`` and ``ỹ`` from them and differentiates the same pure function,
so its gradients are those of the plain mode up to floating-point reassociation (the ops are identical, so in
practice bit-identical on CPU). This is gradient checkpointing inside the layer, as
``poet::chain_layer_checkpoint_mem_o2`` in the released code (reference §3.1 item 6). The base weight is a frozen
buffer, not an activation. With a quantized base weight, ``weight_fn`` dequantizes on the fly in forward and again
in backward, so no dense copy of the weight outlives the call.
"""
from __future__ import annotations

from typing import Callable

import torch


def autocast_state(device_type: str) -> tuple[str, bool, torch.dtype]:
    """``(device_type, enabled, dtype)`` of autocast now. Backward runs outside the forward's autocast region, so a
    recompute must re-enter it: else it runs in fp32 while ``grad_y`` (and the saved graph's casts) are bf16."""
    return device_type, torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


class POETXFunction(torch.autograd.Function):
    """``y = forward_fn(x, R_in, R_out, weight_fn())`` saving only ``(x, R_in, R_out)``; recompute in backward."""

    @staticmethod
    def forward(ctx, x, R_in, R_out, weight_fn: Callable[[], torch.Tensor], forward_fn: Callable):
        with torch.no_grad():
            y = forward_fn(x, R_in, R_out, weight_fn())
        ctx.save_for_backward(x, R_in, R_out)
        ctx.weight_fn, ctx.forward_fn = weight_fn, forward_fn
        ctx.amp = autocast_state(x.device.type)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x, R_in, R_out = ctx.saved_tensors
        wanted = ctx.needs_input_grad[:3]
        inputs = [t.detach().requires_grad_(need) for t, need in zip((x, R_in, R_out), wanted)]
        device_type, enabled, dtype = ctx.amp
        with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
            y = ctx.forward_fn(*inputs, ctx.weight_fn())
            leaves = [t for t, need in zip(inputs, wanted) if need]
            grads = iter(torch.autograd.grad(y, leaves, grad_y)) if leaves else iter(())
        return (*[next(grads) if need else None for need in wanted], None, None)


def poet_x_apply(x: torch.Tensor, R_in: torch.Tensor, R_out: torch.Tensor,
                 weight_fn: Callable[[], torch.Tensor], forward_fn: Callable) -> torch.Tensor:
    """Apply ``forward_fn`` through ``POETXFunction`` (see module docstring)."""
    return POETXFunction.apply(x, R_in, R_out, weight_fn, forward_fn)
