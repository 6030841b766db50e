"""TinyLang: a deterministic generated corpus equal to the committed data file, the vocabulary, agreement in the
grammar, next-token batches, n-gram reference lines, and a tiny causal transformer learning it."""
import re
from pathlib import Path

import pytest
import torch

from orthoscope import AdamW, Run
from orthoscope.models import TinyTransformer
from orthoscope.probes import Evaluate
from orthoscope.tasks.tinylang import NOUN, VERB_INTR, VERB_TRANS, VOCAB, TinyLang, generate_corpus, main, tiny_lm

DATA = Path(__file__).resolve().parents[1] / "data" / "tinylang.txt"


def test_committed_corpus_is_the_generator_output():
    assert DATA.read_text() == generate_corpus()
    assert DATA.stat().st_size < 300_000


def test_generation_is_seeded(tmp_path):
    assert generate_corpus(50, seed=3) == generate_corpus(50, seed=3) != generate_corpus(50, seed=4)
    main([str(tmp_path / "c.txt"), "20", "5"])
    assert (tmp_path / "c.txt").read_text() == generate_corpus(20, 5)
    with pytest.raises(ValueError, match="n_sentences must be a positive int, got 0"):
        generate_corpus(0)


def test_every_sentence_ends_and_simple_sentences_agree():
    lines = generate_corpus(2000, seed=1).splitlines()
    assert all(line.endswith(" .") and line.count(".") == 1 for line in lines)
    number = {w: n for n in ("sg", "pl") for table in (NOUN, VERB_INTR, VERB_TRANS) for w in table[n]}
    simple = [line.split() for line in lines if len(line.split()) == 4]           # "det noun verb ."
    assert len(simple) > 100
    assert all(number[noun] == number[verb] for _, noun, verb, _ in simple)
    # object relatives exist: "… that det [adj] noun verb …"
    assert any(re.search(r"\bthat (the|a|every|this|some|many|these|two) (\w+ )?\w+ (sees|see|likes|like)\b", l)
               for l in lines)


def test_batches_are_shifted_windows_and_seeded():
    task = TinyLang(n_ctx=16, batch_size=8, n_sentences=500)
    x, y = task.batch(torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = task.batch(torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    assert task.decode(task.encode("the dogs run .")) == "the dogs run ."
    assert task.vocab_size == len(VOCAB) == int(task.tokens.max()) + 1
    sets = task.eval_sets()
    assert set(sets) == {"train", "val"} and sets["val"][0].shape[1] == 16
    # validation windows come from the held-out suffix only
    n_val = len(task.val_tokens)
    assert torch.equal(task.tokens[-n_val:], task.val_tokens)


def test_ngram_baselines_are_ordered():
    b = TinyLang(n_sentences=1000).ngram_baselines()
    assert b["uniform"] > b["unigram"] > b["bigram"] > 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TinyLang(batch_size=None)
    with pytest.raises(ValueError, match="val_frac must lie in"):
        TinyLang(val_frac=1.0)
    with pytest.raises(ValueError, match="fewer than n_ctx"):
        TinyLang(n_sentences=5, n_ctx=64)
    with pytest.raises(ValueError, match=r"words outside the TinyLang vocabulary: \['zebra'\]"):
        TinyLang(n_sentences=200, n_ctx=8).encode("the zebra runs")


def test_text_file_source(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text(generate_corpus(300, seed=9))
    assert torch.equal(TinyLang(path=str(path), n_ctx=8).tokens, TinyLang(n_sentences=300, corpus_seed=9).tokens)


def test_tiny_transformer_learns_beyond_unigram():
    task = TinyLang(n_ctx=16, batch_size=16, n_sentences=1500)
    model = tiny_lm(task, d_model=32, n_heads=2, n_layers=1, d_mlp=64, seed=0)
    assert isinstance(model, TinyTransformer) and model.cfg.readout == "all" and model.cfg.causal
    run = Run(model, task, AdamW(lr=1e-2), probes=[Evaluate(150)], seed=0).train(150, progress=False)
    assert run.history["loss/val"].values[-1] < task.ngram_baselines()["unigram"] - 0.3
    assert run.history["acc/val"].values[-1] > 0.1
