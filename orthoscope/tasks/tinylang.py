"""TinyLang: a tiny English-like language from a probabilistic grammar, for next-token prediction on a CPU.

Sentences come from a small probabilistic context-free grammar over 60-odd words: noun phrases with determiners,
adjectives, prepositional phrases and subject/object relative clauses; intransitive and transitive verbs; and
**number agreement** between every subject and its verb, also across an intervening relative clause or
prepositional phrase ("the dogs that the cat sees run ."). So a model gets quick wins from word frequencies and
bigrams, and has to learn longer-range structure (agreement, clause boundaries) to go further — a small picture of
language-model training that every optimizer in ``orthoscope`` can run in seconds.

The corpus is generated deterministically from ``corpus_seed`` (Python's ``random.Random(seed).random()`` only,
which is stable across Python versions); the default corpus is also committed as ``data/tinylang.txt`` (regenerate
with ``python -m orthoscope.tasks.tinylang data/tinylang.txt``; a test checks the file equals the generator's output).
Tokens are whitespace-separated words with a fixed vocabulary (every terminal of the grammar, sorted), and "." ends a
sentence. The token stream is split into a training prefix and a validation suffix (``val_frac``).

    task = TinyLang(n_ctx=32, batch_size=32)
    model = TinyTransformer(vocab_size=task.vocab_size, n_ctx=task.n_ctx, readout="all", causal=True)
    x, y = task.batch(generator)            # [B, T] tokens and their next tokens (x = w[:, :-1], y = w[:, 1:])
"""
from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.transformer import tiny_lm  # noqa: F401  (moved to models; kept importable from here)
from .base import Task

# ---- the grammar --------------------------------------------------------------------------------------------------
DET = {"sg": ["the", "a", "every", "this"], "pl": ["the", "some", "many", "these", "two"]}
NOUN = {"sg": ["dog", "cat", "bird", "child", "teacher", "farmer", "robot", "queen"],
        "pl": ["dogs", "cats", "birds", "children", "teachers", "farmers", "robots", "queens"]}
VERB_INTR = {"sg": ["runs", "sleeps", "sings", "waits", "laughs"], "pl": ["run", "sleep", "sing", "wait", "laugh"]}
VERB_TRANS = {"sg": ["sees", "likes", "follows", "helps", "finds"], "pl": ["see", "like", "follow", "help", "find"]}
ADJ = ["big", "small", "red", "quiet", "old", "happy"]
ADV = ["quickly", "slowly", "today", "again"]
PREP = ["near", "behind", "with"]
FUNCTION = ["that", "and", "."]

VOCAB = sorted({w for table in (DET, NOUN, VERB_INTR, VERB_TRANS) for words in table.values() for w in words}
               | set(ADJ) | set(ADV) | set(PREP) | set(FUNCTION))


class _Sampler:
    """Grammar expansions driven by ``random.Random.random()`` only (reproducible across Python versions)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def coin(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, words: list[str]) -> str:
        return words[min(int(self.rng.random() * len(words)), len(words) - 1)]

    def number(self) -> str:
        return "pl" if self.coin(0.45) else "sg"

    def noun_phrase(self, num: str, depth: int) -> list[str]:
        words = [self.pick(DET[num])]
        while len(words) < 3 and self.coin(0.35):                      # up to two adjectives
            words.append(self.pick(ADJ))
        words.append(self.pick(NOUN[num]))
        if depth < 2:
            r = self.rng.random()
            if r < 0.15:                                               # subject relative: "that sees the cat"
                words += ["that"] + self.verb_phrase(num, depth + 1)
            elif r < 0.27:                                             # object relative: "that the cats see"
                inner = self.number()
                words += ["that"] + self.noun_phrase(inner, depth + 1) + [self.pick(VERB_TRANS[inner])]
            elif r < 0.40:                                             # prepositional phrase
                words += [self.pick(PREP)] + self.noun_phrase(self.number(), depth + 1)
        return words

    def verb_phrase(self, num: str, depth: int) -> list[str]:
        if self.coin(0.45):
            words = [self.pick(VERB_INTR[num])]
        else:
            words = [self.pick(VERB_TRANS[num])] + self.noun_phrase(self.number(), depth + 1)
        if self.coin(0.2):
            words.append(self.pick(ADV))
        return words

    def sentence(self) -> list[str]:
        num = self.number()
        words = self.noun_phrase(num, 0) + self.verb_phrase(num, 0)
        if self.coin(0.12):                                            # coordinated second clause
            num2 = self.number()
            words += ["and"] + self.noun_phrase(num2, 1) + self.verb_phrase(num2, 1)
        return words + ["."]


def generate_corpus(n_sentences: int = 4000, seed: int = 0) -> str:
    """The corpus text: ``n_sentences`` sentences, one per line, words separated by single spaces."""
    if not isinstance(n_sentences, int) or n_sentences <= 0:
        raise ValueError(f"n_sentences must be a positive int, got {n_sentences!r}")
    sampler = _Sampler(seed)
    return "".join(" ".join(sampler.sentence()) + "\n" for _ in range(n_sentences))


# ---- the task -----------------------------------------------------------------------------------------------------
@dataclass
class TinyLang(Task):
    """Next-token prediction on TinyLang (module docstring). ``eval_sets()`` gives fixed windows of the training
    prefix (``"train"``) and of the held-out suffix (``"val"``); loss is per-token cross-entropy (nats)."""

    batch_size: int | None = field(default=32, metadata={"help": "windows per training batch"})
    n_ctx: int = field(default=32, metadata={"help": "tokens per input window (targets are shifted by one)"})
    n_sentences: int = field(default=4000, metadata={"help": "sentences generated (default corpus: 4000)"})
    corpus_seed: int = field(default=0, metadata={"help": "seed of the generated corpus"})
    val_frac: float = field(default=0.1, metadata={"help": "fraction of the token stream held out, in (0, 1)"})
    n_eval: int = field(default=256, metadata={"help": "windows per evaluation split"})
    path: str | None = field(default=None, metadata={"help": "read this text file instead of generating "
                                                             "(its words must be in the TinyLang vocabulary)"})

    def __post_init__(self):
        if self.batch_size is None or not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int (windows are sampled), got {self.batch_size!r}")
        if not isinstance(self.n_ctx, int) or self.n_ctx <= 0:
            raise ValueError(f"n_ctx must be a positive int, got {self.n_ctx!r}")
        if not 0.0 < self.val_frac < 1.0:
            raise ValueError(f"val_frac must lie in (0, 1), got {self.val_frac!r}")
        if not isinstance(self.n_eval, int) or self.n_eval <= 0:
            raise ValueError(f"n_eval must be a positive int, got {self.n_eval!r}")
        text = Path(self.path).read_text() if self.path is not None else generate_corpus(self.n_sentences,
                                                                                          self.corpus_seed)
        self.tokens = self.encode(text)
        n_val = round(self.val_frac * len(self.tokens))
        self.train_tokens, self.val_tokens = self.tokens[:-n_val], self.tokens[-n_val:]
        for name, stream in (("training", self.train_tokens), ("validation", self.val_tokens)):
            if len(stream) < self.n_ctx + 1:
                raise ValueError(f"the {name} stream has {len(stream)} tokens, fewer than n_ctx + 1 = "
                                 f"{self.n_ctx + 1}; use more sentences, a smaller n_ctx or another val_frac")
        gen = torch.Generator().manual_seed(self.corpus_seed + 1)
        self.x_train, self.y_train = self._windows(self.train_tokens, self._random_starts(self.train_tokens, gen))
        starts = torch.arange(0, len(self.val_tokens) - self.n_ctx, self.n_ctx)[: self.n_eval]   # disjoint windows
        self.x_test, self.y_test = self._windows(self.val_tokens, starts)

    # ---- vocabulary ----
    @property
    def vocab(self) -> list[str]:
        return VOCAB

    @property
    def vocab_size(self) -> int:
        return len(VOCAB)

    @property
    def n_classes(self) -> int:
        return len(VOCAB)

    def encode(self, text: str) -> torch.Tensor:
        index = {w: i for i, w in enumerate(VOCAB)}
        words = text.split()
        unknown = sorted({w for w in words if w not in index})
        if unknown:
            raise ValueError(f"words outside the TinyLang vocabulary: {unknown[:10]}"
                             f"{' …' if len(unknown) > 10 else ''}; the vocabulary is {VOCAB}")
        return torch.tensor([index[w] for w in words], dtype=torch.long)

    def decode(self, ids) -> str:
        return " ".join(VOCAB[int(i)] for i in ids)

    # ---- batches ----
    def _random_starts(self, stream: torch.Tensor, generator: torch.Generator, n: int | None = None) -> torch.Tensor:
        return torch.randint(0, len(stream) - self.n_ctx, (n or self.n_eval,), generator=generator)

    def _windows(self, stream: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = stream[starts[:, None] + torch.arange(self.n_ctx + 1)]          # [B, T + 1]
        return w[:, :-1], w[:, 1:]

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows of the training stream: ``x, y = w[:, :-1], w[:, 1:]`` (each ``[B, T]``)."""
        return self._windows(self.train_tokens, self._random_starts(self.train_tokens, generator, self.batch_size))

    def eval_sets(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {"train": (self.x_train, self.y_train), "val": (self.x_test, self.y_test)}

    # ---- reference lines ----
    def ngram_baselines(self, smoothing: float = 0.1) -> dict[str, float]:
        """Validation cross-entropy (nats/token) of unigram and bigram models counted on the training stream with
        add-``smoothing`` — reference lines: a model below "bigram" uses more than the previous word."""
        v = self.vocab_size
        train, val = self.train_tokens, self.val_tokens
        uni = torch.bincount(train, minlength=v).double() + smoothing
        uni_nll = -(uni / uni.sum()).log()[val].mean().item()
        pairs = torch.zeros(v, v, dtype=torch.float64).index_put_((train[:-1], train[1:]),
                                                                 torch.ones(len(train) - 1, dtype=torch.float64),
                                                                 accumulate=True) + smoothing
        bi = pairs / pairs.sum(1, keepdim=True)
        bi_nll = -bi[val[:-1], val[1:]].log().mean().item()
        return {"uniform": math.log(v), "unigram": uni_nll, "bigram": bi_nll}


def main(argv: list[str] | None = None) -> None:
    """``python -m orthoscope.tasks.tinylang OUT [N_SENTENCES] [SEED]``: write the corpus text to OUT."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit("usage: python -m orthoscope.tasks.tinylang OUT [N_SENTENCES] [SEED]")
    n, seed = (int(argv[1]) if len(argv) > 1 else 4000), (int(argv[2]) if len(argv) > 2 else 0)
    Path(argv[0]).write_text(generate_corpus(n, seed))


if __name__ == "__main__":
    main()
