"""The LLM recipe: the same ``Run``, methods and probes on a Hugging Face ``LlamaForCausalLM`` built from a config.

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

from ..methods.base import AdamW, Method
# The model and the tasks live with the other models and tasks; they are re-exported here, so one import gives the
# whole recipe (``from orthoscope.recipes.llm import build_llama, llama_config, TokenTask, llm_method``).
from ..models.llama import LLAMA_TARGETS, SIZES, CausalLM, build_llama, llama_config  # noqa: F401
from ..tasks.tokens import SyntheticTokens, TokenTask  # noqa: F401

METHODS = ("adamw", "lora", "oft", "poet", "poet_mem", "pion", "muon")


def llm_method(name: str, lr: float | None = None, block: int = 32, **overrides) -> Method:
    """A method configured for a Llama (module docstring). ``lr`` overrides the method's default learning rate,
    ``block`` the OFT/POET block size; other keywords go to the method's constructor."""
    from ..adapters import LoRA, OFT, POET
    from ..optim.methods import Muon, Pion

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
    from ..probes import Energy, Evaluate, GradNorm, Spectrum, WeightNorm

    n_layers = model.config.num_hidden_layers
    layers = sample_layers(n_layers) if layers is None else list(layers)
    bad = [i for i in layers if not isinstance(i, int) or not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"layers must be indices in [0, {n_layers}), got {bad}")
    names = "|".join(LLAMA_TARGETS)
    rule = rf"(.*\.)?layers\.({'|'.join(map(str, layers))})\.(self_attn|mlp)\.({names})"
    return [Evaluate(eval_every or every, max_examples=max_eval), Spectrum(every, modules=rule),
            WeightNorm(every, modules=rule), Energy(every, modules=rule, s=(1,)), GradNorm(1)]
