"""TokenFile: next-token prediction on a memory-mapped file of token ids (nanoGPT's ``.bin``), for LLM runs on real
text from disk.

    python -m orthoscope tokenize data/tinylang.txt data/tinylang.bin     # writes .bin + .bin.json (the vocabulary)
    task = TokenFile("data/tinylang.bin", n_ctx=64, batch_size=16)

The ``.bin`` file is a flat array of ``uint16`` token ids (``uint32`` when the vocabulary has more than 65 536
entries), read through ``numpy.memmap`` — nothing is loaded up front, so files larger than memory work. Its sidecar
``<file>.json`` holds ``{"dtype": "uint16", "vocab": [...]}``; ``tokenize`` builds it from whitespace-separated words
(sorted vocabulary). The last ``val_frac`` of the tokens is held out; training windows start at uniformly random
offsets drawn from the run's generator, evaluation uses ``n_eval`` fixed windows spread over the held-out part.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DTYPES = ("uint16", "uint32")


def tokenize(text_path, out_path) -> dict:
    """Write the token ids of ``text_path`` (whitespace words) to ``out_path`` and the vocabulary beside it."""
    words = Path(text_path).read_text(encoding="utf-8").split()
    if not words:
        raise ValueError(f"{str(text_path)!r} holds no words")
    vocab = sorted(set(words))
    dtype = "uint16" if len(vocab) <= 2 ** 16 else "uint32"
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.fromiter((index[w] for w in words), dtype=dtype, count=len(words))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ids.tofile(out_path)
    meta = {"dtype": dtype, "vocab": vocab, "n_tokens": int(len(ids)), "source": Path(text_path).name}
    Path(str(out_path) + ".json").write_text(json.dumps(meta))
    return meta


@dataclass
class TokenFile:
    """Windows of a memory-mapped token file (module docstring)."""

    path: str = field(default="data/tinylang.bin", metadata={"help": "the .bin file (its .bin.json beside it)"})
    n_ctx: int = field(default=64, metadata={"help": "tokens per input window"})
    batch_size: int = field(default=16, metadata={"help": "windows per training batch"})
    val_frac: float = field(default=0.1, metadata={"help": "fraction of the tokens held out, in (0, 1)"})
    n_eval: int = field(default=64, metadata={"help": "fixed evaluation windows"})

    default_loss = "cross_entropy"
    has_accuracy = True

    def __post_init__(self):
        for name in ("n_ctx", "batch_size", "n_eval"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < self.val_frac < 1:
            raise ValueError(f"val_frac must lie in (0, 1), got {self.val_frac!r}")
        sidecar = Path(str(self.path) + ".json")
        if not Path(self.path).is_file() or not sidecar.is_file():
            raise ValueError(f"path {self.path!r} needs the token file and its {sidecar.name} (build both with "
                             "`python -m orthoscope tokenize TEXT OUT.bin`)")
        meta = json.loads(sidecar.read_text())
        if meta.get("dtype") not in DTYPES:
            raise ValueError(f"{sidecar.name}: dtype must be one of {DTYPES}, got {meta.get('dtype')!r}")
        self.vocab = meta["vocab"]
        self.tokens = np.memmap(self.path, dtype=meta["dtype"], mode="r")
        self.split = int(len(self.tokens) * (1 - self.val_frac))
        if self.split <= self.n_ctx + 1 or len(self.tokens) - self.split <= self.n_ctx + 1:
            raise ValueError(f"{self.path!r} has {len(self.tokens)} tokens: too few for n_ctx={self.n_ctx} windows "
                             f"on both sides of val_frac={self.val_frac}")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _windows(self, starts) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.from_numpy(np.stack([self.tokens[s:s + self.n_ctx + 1] for s in starts]).astype(np.int64))
        return w[:, :-1], w[:, 1:]

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, self.split - self.n_ctx - 1, (self.batch_size,), generator=generator)
        return self._windows(starts.tolist())

    def eval_sets(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        last = len(self.tokens) - self.n_ctx - 1
        starts = np.linspace(self.split, last, num=self.n_eval).astype(np.int64)
        return {"val": self._windows(starts.tolist())}

    def config(self) -> dict:
        return {"task": "TokenFile", "path": self.path, "n_ctx": self.n_ctx, "batch_size": self.batch_size,
                "val_frac": self.val_frac, "n_eval": self.n_eval}


def main(argv: list[str]) -> int:
    """``python -m orthoscope tokenize TEXT OUT.bin``."""
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
        print("usage: python -m orthoscope tokenize TEXT OUT.bin  (whitespace words; writes OUT.bin + OUT.bin.json)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    meta = tokenize(*argv)
    print(f"{argv[1]}: {meta['n_tokens']} tokens, vocabulary {len(meta['vocab'])}, {meta['dtype']}", file=sys.stdout)
    return 0
