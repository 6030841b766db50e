"""Modular arithmetic: learn ``c = a ∘ b (mod p)`` from a random fraction of the full p×p table.

The classic grokking task (Power et al. 2022; Nanda et al. 2023). Inputs are token ids ``[a, b]`` or, with
``equals_token=True``, ``[a, b, p]`` where ``p`` is the id of "=". Labels are ``c ∈ {0, …, p−1}``.
Division uses the multiplicative inverse, so it needs a prime ``p`` and excludes ``b = 0``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import Task

OPS = ("+", "-", "*", "/")


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def modular_table(p: int, op: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs ``(a, b)`` for which ``a ∘ b mod p`` is defined, and their results. Exact integer arithmetic."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    if op == "+":
        c = (a + b) % p
    elif op == "-":
        c = (a - b) % p
    elif op == "*":
        c = (a * b) % p
    elif op == "/":
        keep = b != 0
        a, b = a[keep], b[keep]
        inv = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])  # Fermat: b^(p−2) = b⁻¹ mod prime p
        c = (a * inv[b]) % p
    else:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    return torch.stack([a, b], 1), c


@dataclass
class ModularArithmetic(Task):
    p: int = field(default=97, metadata={"help": "modulus (prime required for '/')"})
    op: str = field(default="+", metadata={"help": "one of + - * /"})
    train_frac: float = field(default=0.3, metadata={"help": "fraction of the table used for training, in (0, 1)"})
    seed: int = field(default=0, metadata={"help": "seed of the train/test split"})
    equals_token: bool = field(default=False, metadata={"help": "append an '=' token (id p) to every input"})

    def __post_init__(self):
        if not isinstance(self.p, int) or self.p < 2:
            raise ValueError(f"p must be an integer ≥ 2, got {self.p!r}")
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        if self.op == "/" and not is_prime(self.p):
            raise ValueError(f"op '/' needs a prime p (a field, so every b ≠ 0 has an inverse); {self.p} is not prime")
        from ..core.validate import check_number

        check_number("train_frac", self.train_frac)
        if not 0.0 < self.train_frac < 1.0:
            raise ValueError(f"train_frac must lie in (0, 1), got {self.train_frac!r}")
        self._check_batch_size()
        pairs, labels = modular_table(self.p, self.op)
        if self.equals_token:
            pairs = torch.cat([pairs, torch.full((len(pairs), 1), self.p)], 1)
        perm = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(self.seed))
        n_train = max(1, min(len(pairs) - 1, round(self.train_frac * len(pairs))))
        train, test = perm[:n_train], perm[n_train:]
        self.x_train, self.y_train = pairs[train], labels[train]
        self.x_test, self.y_test = pairs[test], labels[test]

    @property
    def vocab_size(self) -> int:
        return self.p + 1 if self.equals_token else self.p

    @property
    def n_tokens(self) -> int:
        return 3 if self.equals_token else 2

    @property
    def n_classes(self) -> int:
        return self.p
