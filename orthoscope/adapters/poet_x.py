"""POET-X memory mode: the whole POET linear map as one autograd node that saves only its input and the rotations.

**Input-centric** (``POETXFunction``, the POET-X algorithm). The POET forward (``poet_ops.poet_forward``) is, for
row vectors ``x`` and the stored (pre-permuted) weight ``W_s``,

    x̃ = x[..., perm_in] · blockdiag(R_in)      (FS: only the first r·b coordinates are rotated)
    ỹ = x̃ W_sᵀ
    y = (ỹ · blockdiag(R_out))[..., perm_out]

Plain autograd keeps ``x̃`` (for ∂W… and ∂R_out's input chain) and ``ỹ`` alive until backward: two extra
activations per layer besides the input. ``POETXFunction`` instead saves **x, R_in and R_out** (the rotations are
tiny: r·b² numbers). In backward it recomputes ``x̃`` and ``ỹ`` from them and differentiates the same pure function,
so its gradients are those of the plain mode up to floating-point reassociation (the ops are identical, so in
practice bit-identical on CPU). This is gradient checkpointing inside the layer, as
``poet::chain_layer_checkpoint_mem_o2`` in the released code (reference §3.1 item 6).

**Weight-centric** (``POETXWeightFunction``). ``y = x W_effᵀ`` with ``W_eff`` built from ``W_s`` and the rotations
(``poet_ops.effective_weight_from``). It saves the same three tensors; backward rebuilds ``W_eff`` (O(m·n·b), no
token dimension) and applies ``F.linear``'s own backward, ``∂x = g W_eff`` and ``∂W_eff = gᵀx``, then
backpropagates ``∂W_eff`` into the rotations. Only the cheap weight build is recomputed, never the matmul with the
tokens, so this mode costs little more than the plain weight-centric mode.

In both, the base weight is a frozen buffer, not an activation. With a quantized base weight, ``weight_fn``
dequantizes on the fly in forward and again in backward, so no dense copy of the weight outlives the call.

**Autocast.** Backward runs outside the forward's autocast region (autocast state is thread-local and the engine
does not restore it), so each function records ``autocast_state`` in forward and re-enters it for the recompute;
otherwise the recompute runs in fp32 against a bf16 ``grad_y``.
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


def _amp_cast(t: torch.Tensor, enabled: bool, dtype: torch.dtype) -> torch.Tensor:
    """The cast autocast applies to a matmul operand: fp32/fp16/bf16 → ``dtype`` when enabled (float64 is left)."""
    if enabled and t.is_floating_point() and t.dtype != torch.float64:
        return t.to(dtype)
    return t


class POETXWeightFunction(torch.autograd.Function):
    """``y = x · build_fn(weight_fn(), R_in, R_out)ᵀ + bias`` saving only ``(x, R_in, R_out)``; backward rebuilds
    the weight (not the matmul with the tokens)."""

    @staticmethod
    def forward(ctx, x, R_in, R_out, bias, weight_fn: Callable[[], torch.Tensor], build_fn: Callable):
        with torch.no_grad():
            y = torch.nn.functional.linear(x, build_fn(weight_fn(), R_in, R_out), bias)
        ctx.save_for_backward(x, R_in, R_out)
        ctx.weight_fn, ctx.build_fn = weight_fn, build_fn
        ctx.amp = autocast_state(x.device.type)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x, R_in, R_out = ctx.saved_tensors
        need_x, need_in, need_out = ctx.needs_input_grad[:3]
        rots = [t.detach().requires_grad_(need) for t, need in ((R_in, need_in), (R_out, need_out))]
        device_type, enabled, dtype = ctx.amp
        with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
            w = ctx.build_fn(ctx.weight_fn(), *rots)
        # F.linear's backward, in the dtype F.linear ran in (under autocast both operands were cast to `dtype`).
        wc, xc = _amp_cast(w.detach(), enabled, dtype), _amp_cast(x, enabled, dtype)
        g2 = grad_y.reshape(-1, grad_y.shape[-1])
        grad_x = (g2.to(wc.dtype) @ wc).reshape(x.shape).to(x.dtype) if need_x else None
        grad_bias = g2.sum(0) if ctx.needs_input_grad[3] else None
        grads = [None, None]
        if need_in or need_out:
            grad_w = g2.to(xc.dtype).T @ xc.reshape(-1, x.shape[-1])            # ∂L/∂W_eff = gᵀ x   [n, m]
            leaves = [t for t in rots if t.requires_grad]
            found = iter(torch.autograd.grad(w, leaves, grad_w.to(w.dtype)))
            grads = [next(found) if t.requires_grad else None for t in rots]
        return grad_x, *grads, grad_bias, None, None


def poet_x_apply(x: torch.Tensor, R_in: torch.Tensor, R_out: torch.Tensor,
                 weight_fn: Callable[[], torch.Tensor], forward_fn: Callable) -> torch.Tensor:
    """Apply the input-centric ``forward_fn`` through ``POETXFunction`` (see module docstring)."""
    return POETXFunction.apply(x, R_in, R_out, weight_fn, forward_fn)


def poet_x_weight_apply(x: torch.Tensor, R_in: torch.Tensor, R_out: torch.Tensor, bias: torch.Tensor | None,
                        weight_fn: Callable[[], torch.Tensor], build_fn: Callable) -> torch.Tensor:
    """``x · build_fn(weight_fn(), R_in, R_out)ᵀ + bias`` through ``POETXWeightFunction`` (module docstring)."""
    return POETXWeightFunction.apply(x, R_in, R_out, bias, weight_fn, build_fn)
