"""Llama models from a config, for runs at LLM scale: a Hugging Face ``LlamaForCausalLM`` built from a
``LlamaConfig`` (random weights, seeded; nothing is downloaded), wrapped so ``forward(input_ids)`` returns logits.

* ``llama_config(size, vocab_size, n_ctx, **overrides)``: named shapes — ``"tiny"`` (hidden 64, 2 layers: tests),
  ``"small"`` (hidden 256, 4 layers: the CPU benchmark), ``"1b"`` (hidden 2048, 22 layers, MLP 5632, 32 heads, 4 KV
  heads — TinyLlama-1.1B's shape, vocab 32000).
* ``build_llama(config, seed, checkpointing)`` → ``CausalLM``: the HF model wrapped so ``forward(input_ids)`` returns
  the logits tensor (``Run``'s losses read tensors, HF returns an output object), under bf16 autocast on CUDA, with
  optional gradient (activation) checkpointing of every decoder layer.
* ``build_llama(..., init_device="meta", pretrained=dir)``: built on the meta device (no memory) with a ``MetaInit``
  plan; ``Run`` shards it and fills it — from the local Hugging Face safetensors in ``dir``, each rank reading only
  its rows, or a random init seeded per parameter (``orthoscope.distributed.pretrained``).
* ``LLAMA_TARGETS``: the projection names every adapter and matrix method of the LLM recipe
  (``orthoscope.recipes.llm``) targets.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SIZES = {
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4),
}
DEFAULT_VOCAB = {"tiny": None, "small": None, "1b": 32000}


def llama_config(size: str = "tiny", vocab_size: int | None = None, n_ctx: int = 256, **overrides):
    """A ``transformers.LlamaConfig`` of a named size (module docstring); ``overrides`` replace any field."""
    from transformers import LlamaConfig

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    vocab_size = vocab_size if vocab_size is not None else DEFAULT_VOCAB[size]
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an int ≥ 2 (size {size!r} has no default), got {vocab_size!r}")
    if not isinstance(n_ctx, int) or n_ctx < 1:
        raise ValueError(f"n_ctx must be a positive int, got {n_ctx!r}")
    fields = dict(SIZES[size], vocab_size=vocab_size, max_position_embeddings=n_ctx, tie_word_embeddings=False,
                  rms_norm_eps=1e-5, attention_dropout=0.0)
    fields.update(overrides)
    return LlamaConfig(**fields)


class CausalLM(nn.Module):
    """``LlamaForCausalLM`` whose ``forward(input_ids)`` returns logits ``[B, T, V]`` (fp32).

    On CUDA the forward runs under ``torch.autocast(dtype=autocast_dtype)`` (bf16 by default) while the weights and
    optimizer states stay fp32. With ``checkpointing`` every decoder layer's activations are recomputed in backward.
    Module paths gain a ``model.`` prefix: ``model.model.layers.0.self_attn.q_proj`` (peft-style suffix rules such
    as ``"q_proj"`` match them unchanged).
    """

    # devices whose forward autocasts: CUDA only — on a CPU bf16 matmuls are slower than fp32 (tests add "cpu" to
    # check the autocast path itself without a GPU)
    autocast_devices: tuple[str, ...] = ("cuda",)

    def __init__(self, model: nn.Module, autocast_dtype: torch.dtype | None = torch.bfloat16):
        super().__init__()
        self.model = model
        self.autocast_dtype = autocast_dtype

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.dtype != torch.long or input_ids.dim() != 2:
            raise ValueError(f"input_ids must be an int64 tensor [B, T], got {input_ids.dtype} {list(input_ids.shape)}")
        device = input_ids.device.type
        use_autocast = device in self.autocast_devices and self.autocast_dtype is not None
        context = torch.autocast(device, dtype=self.autocast_dtype) if use_autocast else contextlib.nullcontext()
        with context:
            out = self.model(input_ids=input_ids, use_cache=False)
        return out.logits.float()


@dataclasses.dataclass
class MetaInit:
    """How a model built on the meta device gets its values (``orthoscope.distributed.pretrained.materialize``):
    from ``pretrained`` (a directory of Hugging Face safetensors) or, when it is ``None``, a random init seeded per
    parameter from ``seed``. ``prefix``: the Hugging Face model's path inside the wrapper (``"model."`` for
    ``CausalLM``); ``device``: where one process materialises it (under torchrun, the rank's device)."""
    pretrained: str | None
    seed: int = 0
    prefix: str = "model."
    device: str = "cpu"


INIT_DEVICES = (None, "meta")


def build_llama(config=None, seed: int = 0, checkpointing: bool = False, device=None,
                autocast_dtype: torch.dtype | None = torch.bfloat16, init_device: str | None = None,
                pretrained=None) -> CausalLM:
    """A randomly initialized ``LlamaForCausalLM`` (seeded: same seed, same weights), wrapped as ``CausalLM``.

    ``init_device="meta"`` (implied by ``pretrained``): built on the meta device with a ``MetaInit`` plan in
    ``model.meta_init``, filled when ``Run`` materialises it — from ``pretrained`` (a local Hugging Face model
    directory; ``config`` defaults to its ``config.json``) or by a per-parameter seeded init (other weights than the
    default path's, which draws every tensor in turn from ``torch.manual_seed(seed)``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if init_device not in INIT_DEVICES:
        raise ValueError(f"init_device must be one of {list(INIT_DEVICES)}, got {init_device!r}")
    if pretrained is not None:
        init_device = "meta"
        if config is None:
            config = LlamaConfig.from_pretrained(str(pretrained), local_files_only=True)
    if config is None:
        raise ValueError("build_llama needs a config (llama_config(...)) or a pretrained directory")
    torch.manual_seed(seed)
    with torch.device("meta") if init_device == "meta" else contextlib.nullcontext():
        model = LlamaForCausalLM(config)
    if checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:                                                    # transformers < 5.2x
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    wrapped = CausalLM(model, autocast_dtype)
    wrapped.init_seed = seed                                     # a run config rebuilds the same weights from it
    if init_device == "meta":
        wrapped.meta_init = MetaInit(None if pretrained is None else str(pretrained), seed, "model.",
                                     str(device or "cpu"))
        return wrapped
    return wrapped.to(device) if device is not None else wrapped
