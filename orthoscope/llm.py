"""LLM scale: the same ``Run``, methods and probes on a Hugging Face ``LlamaForCausalLM`` built from a config.

Nothing is downloaded: the model is initialized from a ``LlamaConfig`` (random weights, seeded) and trained on
shipped or synthetic tokens. The pieces:

* ``llama_config(size, vocab_size, n_ctx, **overrides)``: named shapes — ``"tiny"`` (hidden 64, 2 layers: tests),
  ``"small"`` (hidden 256, 4 layers: the CPU benchmark), ``"1b"`` (hidden 2048, 22 layers, MLP 5632, 32 heads, 4 KV
  heads — TinyLlama-1.1B's shape, vocab 32000).
* ``build_llama(config, seed, checkpointing)`` → ``CausalLM``: the HF model wrapped so ``forward(input_ids)`` returns
  the logits tensor (``Run``'s losses read tensors, HF returns an output object), under bf16 autocast on CUDA, with
  optional gradient (activation) checkpointing of every decoder layer.
* ``TokenTask(task, device)``: any token task (``TinyLang``, ``SyntheticTokens``) with batches moved to the
  model's device; ``SyntheticTokens``: a random sparse bigram language over any vocabulary (each token has
  ``branching`` successors, so the loss floor is log(branching)) for big-vocabulary runs.
* ``llm_method(name)``: AdamW, LoRA, OFT, POET, POET memory mode (``"poet_mem"``), Pion, Muon — configured for
  Llama's module names (``self_attn.{q,k,v,o}_proj``, ``mlp.{gate,up,down}_proj``; the ``lm_head`` and embeddings
  stay on AdamW or frozen, as each method decides).
* ``llm_probes(model, layers)``: spectra, norms and hyperspherical energy of a *sample* of decoder layers (default:
  first, middle, last), evaluation loss on a capped number of windows, gradient norm — observation stays cheap.

    task = TokenTask(TinyLang(n_ctx=32, batch_size=8))
    model = build_llama(llama_config("tiny", task.vocab_size, task.n_ctx), seed=0)
    run = Run(model, task, llm_method("poet_mem"), probes=llm_probes(model, every=10), seed=0)
    run.train(50)
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from .methods import AdamW, Method

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


def build_llama(config, seed: int = 0, checkpointing: bool = False, device=None,
                autocast_dtype: torch.dtype | None = torch.bfloat16) -> CausalLM:
    """A randomly initialized ``LlamaForCausalLM`` (seeded: same seed, same weights), wrapped as ``CausalLM``."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
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
    return wrapped.to(device) if device is not None else wrapped


# ---- tasks ----------------------------------------------------------------------------------------------------

class SyntheticTokens:
    """A random sparse bigram language: token t is followed by one of ``branching`` fixed successors (uniformly).

    The successor table is drawn from ``seed``; batches come from the run's generator. A perfect model reaches the
    entropy ``log(branching)`` nats/token, so training curves have a known floor at any vocabulary size.
    """

    default_loss = "cross_entropy"
    has_accuracy = True

    def __init__(self, vocab_size: int = 32000, n_ctx: int = 256, batch_size: int = 8, branching: int = 4,
                 n_eval: int = 16, seed: int = 0):
        for name, value in (("vocab_size", vocab_size), ("n_ctx", n_ctx), ("batch_size", batch_size),
                            ("branching", branching), ("n_eval", n_eval)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if branching > vocab_size:
            raise ValueError(f"branching ({branching}) cannot exceed vocab_size ({vocab_size})")
        self.vocab_size, self.n_ctx, self.batch_size, self.branching = vocab_size, n_ctx, batch_size, branching
        self.n_eval, self.seed = n_eval, seed
        g = torch.Generator().manual_seed(seed)
        self.successors = torch.randint(0, vocab_size, (vocab_size, branching), generator=g)
        self._eval = self._sample(n_eval, torch.Generator().manual_seed(seed + 1))

    @property
    def floor(self) -> float:
        """Entropy of the language in nats/token (ignoring repeated successors): log(branching)."""
        return math.log(self.branching)

    def _sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.empty(n, self.n_ctx + 1, dtype=torch.long)
        w[:, 0] = torch.randint(0, self.vocab_size, (n,), generator=generator)
        choice = torch.randint(0, self.branching, (n, self.n_ctx), generator=generator)
        for t in range(self.n_ctx):
            w[:, t + 1] = self.successors[w[:, t], choice[:, t]]
        return w[:, :-1], w[:, 1:]

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sample(self.batch_size, generator)

    def eval_sets(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {"val": self._eval}


class TokenTask:
    """A token task with batches and evaluation windows on ``device`` (evaluation capped at ``n_eval`` windows,
    cached on the device). Everything else (vocab_size, n_ctx, …) is read from the wrapped task."""

    def __init__(self, task, device=None, n_eval: int | None = 64):
        self.task = task
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.n_eval = n_eval
        self._eval = None

    default_loss = "cross_entropy"

    @property
    def has_accuracy(self) -> bool:
        return getattr(self.task, "has_accuracy", True)

    def __getattr__(self, name):
        if name == "task":                                   # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.task, name)

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.task.batch(generator)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def eval_sets(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if self._eval is None:
            n = self.n_eval
            self._eval = {k: (x[:n].to(self.device), y[:n].to(self.device))
                          for k, (x, y) in self.task.eval_sets().items()}
        return self._eval

    def config(self) -> dict:
        inner = self.task.config() if hasattr(self.task, "config") else {"task": type(self.task).__name__}
        return {**inner, "device": str(self.device), "n_eval": self.n_eval}


# ---- methods and probes ------------------------------------------------------------------------------------------

METHODS = ("adamw", "lora", "oft", "poet", "poet_mem", "pion", "muon")


def llm_method(name: str, lr: float | None = None, block: int = 32, **overrides) -> Method:
    """A method configured for a Llama (module docstring). ``lr`` overrides the method's default learning rate,
    ``block`` the OFT/POET block size; other keywords go to the method's constructor."""
    from .adapters import LoRA, OFT, POET
    from .optim.methods import Muon, Pion

    if name not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {name!r}")
    lr_kw = {} if lr is None else {"lr": lr}
    if name == "adamw":
        return AdamW(**{"lr": 1e-3, "weight_decay": 0.0, **lr_kw, **overrides})
    if name == "lora":
        return LoRA(**{"rank": 8, "alpha": 16.0, "targets": LLAMA_TARGETS, "lr": 2e-3, **lr_kw, **overrides})
    if name == "oft":
        return OFT(**{"block": block, "cayley": "neumann", "targets": LLAMA_TARGETS, "lr": 2e-3, **lr_kw,
                      **overrides})
    if name in ("poet", "poet_mem"):
        return POET(**{"block": block, "merge_every": 100, "lr": 1e-3, "targets": LLAMA_TARGETS,
                       "memory_mode": name == "poet_mem", **lr_kw, **overrides})
    if name == "pion":
        return Pion(**{"lr": 1e-3, **lr_kw, **overrides})
    return Muon(**{"lr": 0.02, "adamw_lr": 1e-3, **lr_kw, **overrides})


def sample_layers(n_layers: int, k: int = 3) -> list[int]:
    """``k`` decoder-layer indices spread over ``range(n_layers)``: first, last and evenly between."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be ≥ 1, got {n_layers}")
    if k >= n_layers:
        return list(range(n_layers))
    return sorted({round(i * (n_layers - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def llm_probes(model: CausalLM, every: int = 50, layers: list[int] | None = None, eval_every: int | None = None,
               max_eval: int = 64) -> list:
    """Probes on a sample of decoder layers (default ``sample_layers``): Spectrum, WeightNorm, Energy (s = 1) of
    their projection matrices; Evaluate (≤ ``max_eval`` windows) every ``eval_every`` (default ``every``) steps;
    GradNorm every step."""
    from .probes import Energy, Evaluate, GradNorm, Spectrum, WeightNorm

    n_layers = model.config.num_hidden_layers
    layers = sample_layers(n_layers) if layers is None else list(layers)
    bad = [i for i in layers if not isinstance(i, int) or not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"layers must be indices in [0, {n_layers}), got {bad}")
    names = "|".join(LLAMA_TARGETS)
    rule = rf"(.*\.)?layers\.({'|'.join(map(str, layers))})\.(self_attn|mlp)\.({names})"
    return [Evaluate(eval_every or every, max_examples=max_eval), Spectrum(every, modules=rule),
            WeightNorm(every, modules=rule), Energy(every, modules=rule, s=(1,)), GradNorm(1)]
