"""Does the model fit the task? Checked on a config's built task and model, before ``Run`` takes one step.

A model whose input vocabulary, input count, context or output width disagrees with the task otherwise passes every
key's own check and fails inside the first forward (an embedding index out of range, a matmul of the wrong width)
or, worse, trains on a silently wrong target. Here each side says what it has and which config key set it:

* **inputs** — token ids (a vocabulary and a number of tokens per example) or a vector of numbers (a width);
* **targets** — one class per example, or one next token per position; and how many classes.

Rules: a model's embedding must hold every token id of the task (``vocab ≥`` the task's; a larger, padded vocabulary
is fine); an MLP reads exactly the task's number of tokens, a transformer at most its context; a vector model's input
width is the task's; a classifier's output width is the task's number of classes (as ``Run``'s first-forward check
demands), a language model's at least the vocabulary; one prediction per example or per position, as the task's
targets are. Tasks and models the table below does not know are not checked here (``Run`` still checks the first
forward).
"""
from __future__ import annotations

from dataclasses import dataclass

from .format import ConfigError


@dataclass
class Size:
    """A number and where it comes from: a config key (``model.d_out``) or a fact (``the Digits images``)."""

    value: int
    source: str

    def __str__(self) -> str:
        return f"{self.value} ({self.source})"


@dataclass
class Shape:
    """What one side (task or model) says about inputs and targets; ``None``: that side says nothing."""

    name: str
    tokens: bool | None = None          # token ids (True) or a vector of numbers (False)
    vocab: Size | None = None
    length: Size | None = None          # tokens per example; for a transformer, its context (a maximum)
    width: Size | None = None           # numbers per example (vector inputs)
    outputs: Size | None = None         # classes (task) or output width (model)
    per_position: bool | None = None    # one target per position (next token) or per example
    readout: str = ""                   # the key that sets ``per_position`` on the model side


def task_shape(task, where: str = "task") -> Shape | None:
    from ..tasks import Digits, ModularArithmetic, TinyLang, TokenFile
    from ..tasks.tokens import SyntheticTokens, TokenTask

    if isinstance(task, TokenTask):
        return task_shape(task.task, f"{where}.task")
    name = f"task {type(task).__name__}"
    if isinstance(task, ModularArithmetic):
        vocab_key = f"{where}.p" + (f" + 1 for {where}.equals_token" if task.equals_token else "")
        return Shape(name, True, Size(task.vocab_size, vocab_key),
                     Size(task.n_tokens, f"a, b{', =' if task.equals_token else ''}"),
                     outputs=Size(task.n_classes, f"{where}.p"), per_position=False)
    if isinstance(task, Digits):
        return Shape(name, False, width=Size(task.d_in, "8×8 pixels"), outputs=Size(task.n_classes, "digits"),
                     per_position=False)
    length = Size(task.n_ctx, f"{where}.n_ctx")
    if isinstance(task, TinyLang):
        vocab = Size(task.vocab_size, "the TinyLang vocabulary")
        return Shape(name, True, vocab, length, outputs=vocab, per_position=True)
    if isinstance(task, TokenFile):
        vocab = Size(task.vocab_size, f"the vocabulary of {where}.path")
        return Shape(name, True, vocab, length, outputs=vocab, per_position=True)
    if isinstance(task, SyntheticTokens):
        vocab = Size(task.vocab_size, f"{where}.vocab_size")
        return Shape(name, True, vocab, length, outputs=vocab, per_position=True)
    return None


def model_shape(model, spec: dict) -> Shape | None:
    from ..models import MLP, TinyTransformer
    from ..models.kan import KAN
    from ..models.llama import CausalLM

    name = f"model {'Llama' if isinstance(model, CausalLM) else type(model).__name__}"
    if isinstance(model, MLP):
        head = model.layers[-1]                      # a Linear, or the HarmonicHead that model.head put in its place
        out = Size(getattr(head, "out_features", None) or head.n_classes, "model.d_out")
        if model.embed is not None:
            return Shape(name, True, Size(model.embed.num_embeddings, "model.vocab_size"),
                         Size(model.arguments["n_tokens"], "model.n_tokens"), outputs=out, per_position=False)
        return Shape(name, False, width=Size(model.layers[0].in_features, "model.d_in"), outputs=out,
                     per_position=False)
    if isinstance(model, TinyTransformer):
        cfg = model.cfg
        n_out = "model.n_out" if spec.get("n_out") is not None else "model.n_out, default model.vocab_size"
        return Shape(name, True, Size(cfg.vocab_size, "model.vocab_size"), Size(cfg.n_ctx, "model.n_ctx"),
                     outputs=Size(cfg.n_out, n_out), per_position=cfg.readout == "all",
                     readout=f"model.readout {cfg.readout!r}")
    if isinstance(model, KAN):
        width = model.width
        return Shape(name, False, width=Size(width[0], "model.width[0]"),
                     outputs=Size(width[-1], f"model.width[{len(width) - 1}]"), per_position=False)
    if isinstance(model, CausalLM):
        key = next((f"model.{k}.vocab_size" for k in ("config", "overrides")
                    if isinstance(spec.get(k), dict) and "vocab_size" in spec[k]),
                   "model.vocab_size" if spec.get("vocab_size") else "model.vocab_size, default the task's")
        vocab = Size(model.config.vocab_size, key)
        return Shape(name, True, vocab, outputs=vocab, per_position=True, readout="a causal language model")
    return None


def check_model_fits_task(model, task, spec: dict) -> None:
    """Refuse (``ConfigError``, naming both numbers and their keys) a model that cannot take the task's inputs or
    predict its targets (module docstring)."""
    t, m = task_shape(task), model_shape(model, spec)
    if t is None or m is None:
        return
    both = f"{m.name} does not fit {t.name}"
    if m.tokens is not None and m.tokens != t.tokens:
        if t.tokens:
            raise ConfigError(f"model: {both}: the task gives token ids of a vocabulary of {t.vocab}, the model takes "
                              f"a vector of numbers, {m.width}; give it an embedding (MLP: model.vocab_size and "
                              "model.n_tokens) or pick a token model (TinyTransformer, Llama)")
        raise ConfigError(f"model: {both}: the task gives a vector of numbers, {t.width}, the model takes token ids "
                          f"of a vocabulary of {m.vocab}; use model.d_in instead of model.vocab_size")
    if t.tokens:
        if m.vocab.value < t.vocab.value:
            raise ConfigError(f"{_key(m.vocab)}: {both}: the model's vocabulary is {m.vocab}, the task's is "
                              f"{t.vocab}: its token ids go up to {t.vocab.value - 1}")
        if m.length is not None and m.name.startswith("model MLP") and m.length.value != t.length.value:
            raise ConfigError(f"{_key(m.length)}: {both}: tokens per example: the model reads {m.length}, the task "
                              f"gives {t.length}")
        if m.length is not None and m.length.value < t.length.value:
            raise ConfigError(f"{_key(m.length)}: {both}: the model's context is {m.length} tokens, the task's "
                              f"windows are longer: {t.length}")
    elif m.width.value != t.width.value:
        raise ConfigError(f"{_key(m.width)}: {both}: numbers per example: the model takes {m.width}, the task gives "
                          f"{t.width}")
    if m.per_position is not None and m.per_position != t.per_position:
        wants = "the next token at each position" if t.per_position else "one class per example"
        has = "one per position" if m.per_position else "one per example"
        if m.readout.startswith("model.readout"):
            fix = f"set model.readout: {'all' if t.per_position else 'last'}"
        else:
            fix = "use a TinyTransformer (readout: all) or Llama" if t.per_position else \
                "use an MLP or a TinyTransformer (readout: last)"
        key = "model.readout" if m.readout.startswith("model.readout") else "model"
        raise ConfigError(f"{key}: {both}: the task predicts {wants}, the model predicts {has}"
                          + (f" ({m.readout})" if m.readout else "") + f"; {fix}")
    exact = hasattr(_inner(task), "n_classes")   # a classifier's width is its classes (Run's first-forward check)
    if m.outputs.value < t.outputs.value or (exact and m.outputs.value != t.outputs.value):
        raise ConfigError(f"{_key(m.outputs)}: {both}: the model outputs {m.outputs} values per prediction, the "
                          f"task has {t.outputs} classes")


def _key(size: Size) -> str:
    """The config key a message starts with (so the command line can point at its line), else ``model``."""
    return size.source.split(",")[0] if size.source.startswith("model.") else "model"


def _inner(task):
    from ..tasks.tokens import TokenTask

    return task.task if isinstance(task, TokenTask) else task
