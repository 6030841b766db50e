"""The memory plan's activations (``orthoscope.distributed.plan``), measured on one real decoder layer on the CPU.

    fit = layer_fit(llama_config("1b"), POET(block=256), tokens=8192)   # {"saved": (constant, per token), ...}

What autograd saves in one ``LlamaDecoderLayer`` with the method attached, and the working set of its backward
(without and with ``torch.utils.checkpoint``), at two small token counts, extrapolated to the planned count.
"""
from __future__ import annotations

import torch
from torch import nn

from .live_bytes import LiveBytes


def layer_activation_bytes(config, method, tokens: int, autocast_dtype=None) -> int:
    """Bytes autograd saves in one decoder layer for ``tokens`` tokens (``layer_fit``)."""
    constant, per_token = layer_fit(config, method, tokens, autocast_dtype)["saved"]
    return int(round(constant + per_token * tokens))


def layer_fit(config, method, tokens: int, autocast_dtype=None, probe_tokens=(16, 32),
              checkpointing: bool = False) -> dict:
    """``{"saved": (constant, per token), "backward": (constant, per token)}`` bytes of one decoder layer,
    measured on a real ``LlamaDecoderLayer`` on the CPU with ``method`` attached at ``probe_tokens`` tokens:

    * ``saved``: what autograd saves for backward (the layer's input and the shared rotary tables not counted);
    * ``backward``: the working set of its backward above that — the gradients of its intermediate tensors and of
      its input, at their peak (``LiveBytes``), its parameters' gradients not counted (the plan counts those);
    * with ``checkpointing``, also ``"checkpointed"``: the working set of the backward of the same layer wrapped in
      ``torch.utils.checkpoint`` (non-reentrant, as ``build_llama`` wraps it): the recomputed forward's saved
      tensors and its transients (OFT's and POET's rotations are built again) together with the gradients.

    Every tensor of a Llama layer with flash-style attention is linear in tokens or constant: the constant part is
    weight-sized — POET's weight-centric ``W_eff``, and under autocast the bf16 copies of fp32 weights that the
    matmuls save for backward. POET's ``centric="auto"`` is fixed per layer to what ``tokens`` would choose."""
    span = probe_tokens[1] - probe_tokens[0]
    fit = {}
    for wrapped in (False, True) if checkpointing else (False,):
        small, large = (_measure_layer(config, method, t, tokens, autocast_dtype, wrapped) for t in probe_tokens)
        if not wrapped:
            per_token = (large[0] - small[0]) / span
            fit["saved"] = (small[0] - per_token * probe_tokens[0], per_token)
        fit["checkpointed" if wrapped else "backward"] = _peak_fit(small[1], large[1], probe_tokens, tokens)
    return fit


def _peak_fit(small: list[int], large: list[int], probe_tokens: tuple[int, int], tokens: int) -> tuple[float, float]:
    """The backward's peak at ``tokens``, from its live bytes after every operator at two probe token counts.

    The peak moves with the token count: at few tokens weight-sized temporaries (OFT's and POET's rotation
    gradients) dominate, at many the token-sized ones, at a different operator. So each moment is extrapolated on
    its own — the live bytes after operator i are a_i + c_i·tokens (the same operators run at both counts) — and
    the peak is the largest moment at ``tokens``: the exact piecewise-linear maximum, returned as the
    (constant, per-token) line of that moment. Falls back to the peaks' line if the operator sequences differ."""
    span = probe_tokens[1] - probe_tokens[0]
    if len(small) != len(large) or not small:
        small, large = [max(small, default=0)], [max(large, default=0)]
    lines = [(a - (b - a) / span * probe_tokens[0], (b - a) / span) for a, b in zip(small, large)]
    return max(lines, key=lambda line: line[0] + line[1] * tokens)


_MEASURED: dict = {}


def _measure_layer(config, method, tokens: int, planned_tokens: int, autocast_dtype, wrapped: bool = False):
    """``_measure_one_layer``, remembered per (config, method, tokens, dtype, checkpointed) within this process."""
    poet = type(method).__name__ == "POET"
    key = (config.to_json_string(), repr(method), tokens, planned_tokens if poet else None, str(autocast_dtype),
           wrapped)
    if key not in _MEASURED:
        _MEASURED[key] = _measure_one_layer(config, method, tokens, planned_tokens, autocast_dtype, wrapped)
    return _MEASURED[key]


def _measure_one_layer(config, method, tokens: int, planned_tokens: int, autocast_dtype,
                       wrapped: bool) -> tuple[int, list[int]]:
    import contextlib
    import copy

    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    from ..core.memory import saved_tensor_bytes
    if getattr(config, "_attn_implementation", None) is None:   # what LlamaForCausalLM picks when built (sdpa)
        config = copy.deepcopy(config)
        config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    holder = nn.Module()
    holder.model = nn.Module()
    holder.model.layers = nn.ModuleList([LlamaDecoderLayer(config, layer_idx=0)])   # paths as in the full model
    if type(method).__name__ in ("POET", "OFT", "LoRA"):
        holder = method.attach(holder)
        _fix_poet_centric(holder, planned_tokens)
    layer = holder.model.layers[0]
    h = torch.randn(1, tokens, config.hidden_size, requires_grad=True)
    positions = torch.arange(tokens)[None]
    with torch.no_grad():
        cos, sin = LlamaRotaryEmbedding(config)(h, positions)
    context = (torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype is not None
               else contextlib.nullcontext())
    state = [*holder.parameters(), *holder.buffers(), h, cos, sin]
    tracker = _Timeline()
    with tracker, context:
        tracker.track(*state)
        def forward():
            def call(x):
                return layer(x, attention_mask=None, position_embeddings=(cos, sin), position_ids=positions)
            if wrapped:                                  # as build_llama's activation checkpointing wraps it
                from torch.utils.checkpoint import checkpoint
                return checkpoint(call, h, use_reentrant=False)
            return call(h)
        nbytes, out = saved_tensor_bytes(forward, exclude=state)
        out = out[0] if isinstance(out, tuple) else out
        grad = torch.ones_like(out)
        start = tracker.current
        tracker.reset_peak()
        tracker.moments = []
        hooks = [p.register_post_accumulate_grad_hook(lambda p: tracker.forget(p.grad))
                 for p in holder.parameters() if p.requires_grad]        # the plan counts these gradients itself
        out.backward(grad)
        for hook in hooks:
            hook.remove()
    return nbytes, [max(0, m - start) for m in tracker.moments]


class _Timeline(LiveBytes):
    """``LiveBytes`` that also records the live bytes after every operator (``moments``), once it is a list."""
    moments = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if self.moments is not None:
            self.moments.append(self.current)
        return out


def _fix_poet_centric(model: nn.Module, tokens: int) -> None:
    """Each POET layer's ``centric="auto"`` replaced by the choice it makes for ``tokens`` tokens per call."""
    from ..adapters.poet import POETLinear, choose_centric

    for m in model.modules():
        if isinstance(m, POETLinear) and m.centric == "auto":
            m.centric = choose_centric("auto", tokens, m.perm_in.numel(), m.perm_out.numel(),
                                       m.poet_q_in.shape[:1] + (m.b_in,), m.poet_q_out.shape[:1] + (m.b_out,))
