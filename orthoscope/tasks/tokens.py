"""Token tasks for language models at scale (``orthoscope.models.llama``, ``orthoscope.recipes.llm``).

* ``SyntheticTokens``: a random sparse bigram language over any vocabulary (each token has ``branching`` successors,
  so the loss floor is log(branching)) for big-vocabulary runs.
* ``TokenTask(task, device)``: any token task (``TinyLang``, ``SyntheticTokens``, ``TokenFile``) with batches moved
  to the model's device and its evaluation windows capped and cached there.
"""
from __future__ import annotations

import math

import torch


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
