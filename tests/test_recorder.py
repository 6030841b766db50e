"""The recorder of your own loop (``orthoscope.observe``): the same History as a Run, the run-directory stream, bad
use named. The distributed and framework cases are in tests/test_recorder_torchrun.py and tests/test_integrations.py."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import orthoscope
from orthoscope import AdamW, Run, observe
from orthoscope.models import MLP
from orthoscope.probes import (ESD, Energy, Evaluate, GradNorm, LearningRate, Spectrum, SpectrumDrift, WeightNorm,
                               default_probes)
from orthoscope.probes.view import ProbeView
from orthoscope.tasks import ModularArithmetic
from orthoscope.training.throughput import MEASURED

P, STEPS, SEED = 13, 12, 3


def every_probe(every: int = 4) -> list:
    """One of each probe that runs on a plain MLP (evaluation, spectra, norms, energies, ESD, drift, gradient, lr)."""
    return [Evaluate(every), Spectrum(every), WeightNorm(every), Energy(every, s=(0, 1), variants=("euclidean",
            "angular")), ESD(every), SpectrumDrift(every), GradNorm(1, per_parameter=True), LearningRate(every)]


def make():
    torch.manual_seed(0)
    model = MLP(vocab_size=P, n_tokens=2, d_embed=8, hidden=(16, 16), d_out=P)
    return model, ModularArithmetic(p=P, train_frac=0.5, batch_size=8)


def plain_loop(steps=STEPS, probes=None, **kw):
    """What a user writes: seeded data order, AdamW, backward, step, then one recorder line."""
    model, task = make()
    method = AdamW(lr=0.01, weight_decay=0.1)
    opt = method.make_optimizer(model)
    generator = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    rec = observe(model, probes if probes is not None else every_probe(), optimizer=opt, task=task, **kw)
    for _ in range(steps):
        x, y = task.batch(generator)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        rec.step(loss=loss)
    return rec


def assert_same_history(a, b):
    """Equal Histories; a Run's throughput timings (training/throughput.py), which a recorder has not, left out."""
    a, b = ({k: h[k] for k in h if not k.startswith(MEASURED)} for h in (a, b))
    assert sorted(a) == sorted(b)
    for k in a:
        sa, sb = a[k], b[k]
        assert sa.steps == sb.steps, k
        if sa.is_array:
            assert all(torch.equal(u, v) for u, v in zip(sa.values, sb.values)), k
        else:
            assert sa.values == pytest.approx(sb.values, nan_ok=True, rel=0, abs=0), k


def test_a_plain_loop_records_exactly_what_a_run_records():
    model, task = make()
    run = Run(model, task, AdamW(lr=0.01, weight_decay=0.1), probes=every_probe(), seed=SEED)
    run.train(STEPS, progress=False)
    rec = plain_loop()
    assert_same_history(rec.history, run.history)
    keys = set(rec.history)
    for metric in ("loss/test", "acc/train", "sv/layers.0", "sv_entropy/layers.1", "weight_norm/total",
                   "he_a1/layers.0", "alpha/layers.0", "sv_drift/layers.0", "grad_norm/total", "lr/group0",
                   "loss/batch"):
        assert metric in keys, metric
    assert rec.history["sv/layers.0"].steps == [0, 4, 8, 12]
    assert rec.history["grad_norm/total"].steps == list(range(1, STEPS + 1))


def test_probes_read_one_narrow_view_and_a_run_still_works_as_one():
    model, task = make()
    run = Run(model, task, probes=[], seed=0)
    view = run.probe_view()
    assert isinstance(view, ProbeView) and view.model is run.model and view.step_count == view.step == 0
    with pytest.raises(AttributeError, match="ProbeView, which has no 'generator'.*intervention"):
        view.generator
    with pytest.raises(AttributeError):
        view.model = None                              # read-only: a probe cannot rebind what it sees
    assert Spectrum()(run).keys() == Spectrum()(view).keys()     # a probe called with a Run (older user code)


def test_the_optimizer_hook_records_the_same_as_step():
    model, task = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    last = {}
    rec = observe(model, [GradNorm(1), Spectrum(2)], optimizer=opt).attach(opt, loss=lambda: last["loss"])
    for _ in range(4):
        x, y = task.batch(generator)
        opt.zero_grad()
        last["loss"] = F.cross_entropy(model(x), y)
        last["loss"].backward()
        opt.step()
    rec.close()
    assert rec.history["grad_norm/total"].steps == [1, 2, 3, 4]
    assert rec.history["sv/layers.0"].steps == [0, 2, 4]
    assert rec.history["loss/batch"].values[-1] == last["loss"].item()
    opt.step()                                         # detached: nothing more is recorded
    assert rec.step_count == 4


def test_default_probes_follow_every_and_what_the_recorder_was_given():
    model, task = make()
    names = [type(p).__name__ for p in observe(model, every=5).probes]
    assert names == ["Spectrum", "WeightNorm", "Energy", "GradNorm"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = observe(model, optimizer=opt, task=task)
    assert [type(p).__name__ for p in rec.probes] == ["Evaluate", "Spectrum", "WeightNorm", "Energy", "GradNorm",
                                                       "LearningRate"]
    assert {p.every for p in rec.probes} == {20}


def test_run_dir_streams_what_dashboard_watch_reads(tmp_path):
    from orthoscope.config.rundir import read_history
    from orthoscope.viz.watch import WatchedRun

    rec = plain_loop(steps=6, run_dir=tmp_path / "mine")
    rec.close()
    watched = WatchedRun(tmp_path / "mine")
    watched.refresh()
    assert watched.step_count == 6
    on_disk = read_history(tmp_path / "mine")
    assert sorted(on_disk) == sorted(rec.history)
    for k in rec.history:
        a, b = rec.history[k], on_disk[k]
        assert a.steps == b.steps
        assert (torch.equal(torch.stack(a.values), torch.stack(b.values)) if a.is_array else a.values == b.values)
    assert watched.config["recorder"]["model"] == "MLP"
    with pytest.raises(FileExistsError, match="already holds a History"):
        plain_loop(steps=1, run_dir=tmp_path / "mine")
    # a loop resumed at step 4 records step 4 (its initial observation) anew and goes on; nothing is duplicated
    model, _ = make()
    resumed = observe(model, [Spectrum(2)], run_dir=tmp_path / "mine", start=4)
    resumed.close()
    again = read_history(tmp_path / "mine")
    assert again["sv/layers.0"].steps == [0, 4] and again["loss/batch"].steps == [1, 2, 3]


def test_dashboard_shows_a_recorder_and_never_trains_it():
    pytest.importorskip("ipywidgets")
    from orthoscope.viz import Dashboard

    rec = plain_loop(steps=4)
    dash = Dashboard(rec, metrics=("sv_entropy",), live_every_s=None)
    try:
        dash.advance()                                 # play/step buttons: a recorder is trained by its loop
        assert rec.step_count == 4 and dash.names == ["MLP"]
    finally:
        dash.close()


# ---- bad use ---------------------------------------------------------------------------------------------------
def test_step_before_any_backward_is_named():
    model, _ = make()
    rec = observe(model, [GradNorm(1)])
    with pytest.raises(RuntimeError, match=r"step\(\) before any backward"):
        rec.step(loss=1.0)
    model(torch.zeros(2, 2, dtype=torch.long)).sum().backward()
    model.zero_grad()                                  # set_to_none: the gradients are gone again
    with pytest.raises(RuntimeError, match=r"before the next zero_grad"):
        rec.step()


def test_a_spectrum_probe_on_a_model_without_matrices_is_refused():
    model = torch.nn.Sequential(torch.nn.LayerNorm(4))
    for probe in (Spectrum(), Energy(), ESD()):
        with pytest.raises(ValueError, match="has no 2-D weight"):
            observe(model, [probe])
    observe(model, [WeightNorm(), GradNorm()])           # these read any weight


def test_probes_the_recorder_cannot_feed_are_refused_before_training():
    model, _ = make()
    with pytest.raises(ValueError, match="Evaluate reads evaluation sets.*task="):
        observe(model, [Evaluate()])
    with pytest.raises(ValueError, match="LearningRate reads the optimizer's param groups.*optimizer="):
        observe(model, [LearningRate()])
    with pytest.raises(ValueError, match=r"every=\.\.\.\) sets the interval of the default probes"):
        observe(model, [Spectrum()], every=5)
    with pytest.raises(TypeError, match="is not a probe"):
        observe(model, ["Spectrum"])
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        observe("model")
    with pytest.raises(TypeError, match="is not a torch.optim.Optimizer"):
        observe(model, []).attach(object())
    with pytest.raises(ValueError, match="not after the last recorded step"):
        rec = observe(model, [])
        model(torch.zeros(2, 2, dtype=torch.long)).sum().backward()
        rec.step(step=0)


def test_an_interval_longer_than_the_planned_steps_warns():
    model, task = make()
    with pytest.warns(UserWarning, match=r"Spectrum\(every=50\).*longer than the 10 step\(s\) planned"):
        observe(model, [Spectrum(50), GradNorm(1)], steps=10)
    run = Run(model, task, probes=[Spectrum(50)], seed=0)
    with pytest.warns(UserWarning, match="only step 0"):
        run.train(3, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.train(3, progress=False)                   # once per probe, not every call
        Run(model, task, probes=default_probes(2), seed=0).train(3, progress=False)


def test_the_recorder_is_exported_and_import_stays_light():
    assert orthoscope.observe is observe and "observe" in orthoscope.__all__
