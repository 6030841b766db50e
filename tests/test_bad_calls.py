"""Every public entry point refuses bad arguments with an error that names the argument (issue 18).

Each row: a call, and the words its error must contain — the argument's name (and, where useful, the allowed
values). A call that raises nothing is *silent*; one whose message lacks the argument's name is *obscure*. The table
holds both to account: 0 silent, ≤ 5 % obscure (the test prints the obscure ones)."""
import math

import pytest
import torch

import orthoscope
from orthoscope import AdamW, SGD, Run
from orthoscope.models import MLP, TinyTransformer
from orthoscope.probes import Evaluate, Spectrum, default_probes
from orthoscope.tasks import ModularArithmetic


def task():
    return ModularArithmetic(p=7, train_frac=0.5)


def mlp(d_out=7, vocab=7):
    torch.manual_seed(0)
    return MLP(vocab_size=vocab, n_tokens=2, d_embed=8, hidden=(16,), d_out=d_out)


def run(**kw):
    return Run(mlp(), task(), AdamW(), probes=[], **kw)


def trained_step(model, t):
    Run(model, t, AdamW(), probes=[]).step()


def evaluate(splits):
    r = Run(mlp(), task(), AdamW(), probes=[Evaluate(every=1, splits=splits)])
    r.step()


def kernels():
    from orthoscope import kernels
    return kernels


def matrix_method(name):
    import orthoscope.optim.methods as m
    return getattr(m, name)


def adapter(name):
    import orthoscope.adapters as a
    return getattr(a, name)


BAD_CALLS = [
    # methods (optimizers)
    ("AdamW lr string", lambda: AdamW(lr="1e-3"), "lr"),
    ("AdamW lr negative", lambda: AdamW(lr=-1.0), "lr"),
    ("AdamW lr nan", lambda: AdamW(lr=math.nan), "lr"),
    ("AdamW lr bool", lambda: AdamW(lr=True), "lr"),
    ("AdamW weight_decay string", lambda: AdamW(weight_decay="0.1"), "weight_decay"),
    ("AdamW betas out of range", lambda: AdamW(betas=(0.9, 1.5)), "betas"),
    ("AdamW betas string", lambda: AdamW(betas="0.9"), "betas"),
    ("AdamW eps negative", lambda: AdamW(eps=-1e-8), "eps"),
    ("AdamW grad_clip negative", lambda: AdamW(grad_clip=-1.0), "grad_clip"),
    ("SGD lr string", lambda: SGD(lr="0.1"), "lr"),
    ("SGD momentum > 1", lambda: SGD(momentum=1.5), "momentum"),
    ("SGD momentum string", lambda: SGD(momentum="0.9"), "momentum"),
    ("Muon lr negative", lambda: matrix_method("Muon")(lr=-0.02), "lr"),
    ("Muon lr string", lambda: matrix_method("Muon")(lr="0.02"), "lr"),
    ("Pion lr string", lambda: matrix_method("Pion")(lr="1e-3"), "lr"),
    ("FOCUS lr negative", lambda: matrix_method("FOCUS")(lr=-1.0), "lr"),
    # adapters
    ("OFT block zero", lambda: adapter("OFT")(block=0), "block"),
    ("OFT block string", lambda: adapter("OFT")(block="32"), "block"),
    ("LoRA rank zero", lambda: adapter("LoRA")(rank=0), "rank"),
    ("LoRA rank float", lambda: adapter("LoRA")(rank=2.5), "rank"),
    ("POET block negative", lambda: adapter("POET")(block=-4), "block"),
    ("POET merge_every zero", lambda: adapter("POET")(merge_every=0), "merge_every"),
    # tasks
    ("ModularArithmetic p string", lambda: ModularArithmetic(p="97"), "p"),
    ("ModularArithmetic p one", lambda: ModularArithmetic(p=1), "p"),
    ("ModularArithmetic train_frac string", lambda: ModularArithmetic(p=7, train_frac="0.5"), "train_frac"),
    ("ModularArithmetic train_frac > 1", lambda: ModularArithmetic(p=7, train_frac=1.5), "train_frac"),
    ("ModularArithmetic batch_size zero", lambda: ModularArithmetic(p=7, batch_size=0), "batch_size"),
    ("ModularArithmetic batch_size float", lambda: ModularArithmetic(p=7, batch_size=8.5), "batch_size"),
    # models
    ("MLP vocab_size zero", lambda: MLP(vocab_size=0, n_tokens=2, d_embed=8, hidden=(16,), d_out=7), "vocab_size"),
    ("MLP hidden string", lambda: MLP(vocab_size=7, n_tokens=2, d_embed=8, hidden="16", d_out=7), "hidden"),
    ("TinyTransformer heads do not divide", lambda: TinyTransformer(vocab_size=7, n_ctx=2, d_model=10, n_heads=3),
     "n_heads"),
    # Run construction
    ("Run model None", lambda: Run(None, task(), AdamW()), "model"),
    ("Run model string", lambda: Run("mlp", task(), AdamW()), "model"),
    ("Run task None", lambda: Run(mlp(), None, AdamW()), "task"),
    ("Run method string", lambda: Run(mlp(), task(), "adamw"), "method"),
    ("Run method class not instance", lambda: Run(mlp(), task(), AdamW), "method"),
    ("Run probes string", lambda: Run(mlp(), task(), AdamW(), probes="spectrum"), "probes"),
    ("Run probes list of strings", lambda: Run(mlp(), task(), AdamW(), probes=["spectrum"]), "probes"),
    ("Run seed float", lambda: run(seed=1.5), "seed"),
    ("Run seed string", lambda: run(seed="0"), "seed"),
    ("Run seed negative", lambda: run(seed=-1), "seed"),
    ("Run name int", lambda: run(name=3), "name"),
    ("Run loss unknown", lambda: Run(mlp(), task(), AdamW(), loss="hinge"), "loss"),
    # Run use
    ("train steps zero", lambda: run().train(0, progress=False), "steps"),
    ("train steps string", lambda: run().train("10", progress=False), "steps"),
    ("train checkpoint_every without path", lambda: run().train(2, progress=False, checkpoint_every=1),
     "checkpoint_path"),
    ("on_step not callable", lambda: run().on_step(42), "callback"),
    ("override unknown key", lambda: run().override(learning_rate=1e-4), "learning_rate"),
    ("override string value", lambda: run().override(lr="1e-4"), "lr"),
    ("load override unknown key", lambda: run().load("x.safetensors", override={"lrr": 1e-4}), "lrr"),
    ("load missing file", lambda: run().load("/nonexistent/x.safetensors"), "does not exist"),
    ("model output width != classes", lambda: trained_step(mlp(d_out=5), task()), "5"),
    ("model vocabulary too small", lambda: trained_step(mlp(vocab=4), task()), "vocab"),
    # probes
    ("Evaluate bogus split", lambda: evaluate(["bogus"]), "bogus"),
    ("Evaluate splits string", lambda: evaluate("test"), "splits"),
    ("Evaluate every zero", lambda: Evaluate(every=0), "every"),
    ("default_probes every string", lambda: default_probes(every="10"), "every"),
    ("Spectrum every negative", lambda: Spectrum(every=-1), "every"),
    # kernels (the seam checks before launch)
    ("cayley_neumann wrong rank", lambda: kernels().cayley_neumann(torch.zeros(3), 4), "q_packed"),
    ("block_rotate dtype mix", lambda: kernels().block_rotate(torch.zeros(2, 8, dtype=torch.float64),
                                                               torch.zeros(2, 4, 4)), "dtype"),
    ("block_rotate device mix", lambda: kernels().block_rotate(torch.zeros(2, 8),
                                                                torch.zeros(2, 4, 4, device="meta")), "device"),
    ("harmonic_nll dtype mix", lambda: kernels().harmonic_nll(torch.zeros(4, 3, dtype=torch.float64),
                                                               torch.zeros(5, 3), torch.zeros(4, dtype=torch.long),
                                                               2.0), "dtype"),
    ("pairwise_energy not a tensor", lambda: kernels().pairwise_energy([[1.0, 2.0]]), "w"),
    # losses / history
    ("harmonic_loss exponent string", lambda: orthoscope.methods.losses.harmonic_loss(torch.zeros(2, 3), torch.zeros(4, 3),
                                                                               torch.zeros(2, dtype=torch.long),
                                                                               n="2"), "n"),
    ("History unknown key", lambda: orthoscope.History()["loss/nope"], "loss/nope"),
]


def outcome(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 — classifying every error is the point
        return e
    return None


def test_the_table_is_big_enough():
    assert len(BAD_CALLS) >= 60


def test_no_bad_call_is_silent_and_few_are_obscure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    silent, obscure = [], []
    for label, call, words in BAD_CALLS:
        error = outcome(call)
        if error is None:
            silent.append(label)
        elif words not in str(error):
            obscure.append(f"{label}: {type(error).__name__}: {str(error)[:160]}")
    print("obscure:", *obscure, sep="\n  ")
    assert not silent, f"silently accepted: {silent}"
    assert len(obscure) <= 0.05 * len(BAD_CALLS), f"{len(obscure)} obscure errors:\n" + "\n".join(obscure)
