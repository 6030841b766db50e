"""The Dashboard says only true things (issue 27), kernel side: one view state from which every title, marker, hover
text and status line is drawn; a watched run advancing beside a finished one; near-constant metrics drawn as their
change; the output layer named; controls that cannot act disabled with the reason; hidden runs gone from every panel.
(Live redraws shared by several Dashboards: tests/test_dashboard.py.)"""
import re
import warnings

import numpy as np
import pytest
import torch

from orthoscope.viz import dashboard as dashboard_module

pytestmark = pytest.mark.filterwarnings("ignore:orthoscope Dashboard. ipympl")


def _dash(runs, **kw):
    return dashboard_module.Dashboard(runs, **kw)


def _trained(make_run, steps, **kw):
    return make_run(**kw).train(steps, progress=False)


def _title_steps(title: str) -> dict:
    """{run: step} named by a panel title ("… at step 6" or "… at steps a: 6, b: 4"); {"*": step} for one step."""
    flat = title.replace("\n", " ")
    many = re.search(r"at steps (.*?)(,? fit dashed)?$", flat)
    if many:
        return {name.strip(): int(step) for name, step in re.findall(r"([^,:]+?): (\d+)", many.group(1).strip())}
    return {"*": int(re.search(r"at step (\d+)", flat).group(1))}


def _assert_one_story(dash):
    """Every step panel's title, every marker and the status line name each shown run's step of ``dash.view``."""
    steps = dash.view.steps()
    for panel in ("spectrum", "esd"):
        named = _title_steps(dash.axes[panel].get_title())
        assert named == ({"*": next(iter(steps.values()))} if len(set(steps.values())) == 1 else steps), panel
    for marker, who in dash._markers:
        expected = set(steps.values()) if who == "*" else {steps[who]}
        assert set(marker.get_xdata()) == expected
    for name, step in steps.items():
        assert f"<b>{name}</b>: step " in dash.status.value and f"at step {step} (" in dash.status.value


def test_panels_markers_and_status_name_the_same_step_after_scrubbing(make_run):
    """Spectra recorded every 4 steps, losses every step: a slider at 7 shows the spectrum of step 4, and so do the
    titles, markers and status (before: spectrum 4, status 7)."""
    runs = [_trained(make_run, 12, name="a", every=4), _trained(make_run, 12, name="b", weight_decay=0.0, every=4)]
    dash = _dash(runs, layer="layers.0")
    for target in (7, 12, 1, 9):
        dash.slider.value = target
        assert dash.view.steps() == {"a": target // 4 * 4, "b": target // 4 * 4}
        _assert_one_story(dash)
    dash.close()


def test_a_watched_run_advances_past_a_finished_run_following_live(tmp_path):
    """Notebook 08's scene: a toy run that ended at step 4 beside a job that keeps writing. Following live is per
    run: the job's spectrum, the slider and the status advance past 4 while the toy run stays at its last step."""
    from orthoscope import Run, models, tasks
    from orthoscope.config import normalize, save_config
    from orthoscope.config.build import build_run
    from orthoscope.config.rundir import HistoryStream
    from orthoscope.probes import default_probes
    from orthoscope.viz import Dashboard

    cfg = normalize({"seed": 0, "steps": 40, "task": {"name": "ModularArithmetic", "p": 7, "train_frac": 0.5},
                     "model": {"name": "MLP", "vocab_size": 7, "n_tokens": 2, "d_out": 7, "hidden": [8],
                               "d_embed": 4},
                     "method": {"name": "AdamW", "lr": 0.01}, "probes": {"preset": "default", "every": 2}})
    save_config(cfg, tmp_path / "job" / "config.yaml")
    writer = build_run(cfg)
    writer.on_step(HistoryStream(tmp_path / "job" / "history.jsonl"))
    writer.train(2, progress=False)
    torch.manual_seed(0)
    toy = Run(models.MLP(vocab_size=7, n_tokens=2, d_out=7, hidden=(8,), d_embed=4),
              tasks.ModularArithmetic(p=7, train_frac=0.5), probes=default_probes(2), seed=0,
              name="toy").train(4, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dash = Dashboard.watch(tmp_path / "job", toy, every=2, live_every_s=0.0, live_share=1.0, layer="layers.0")
    watched = dash.watched[0]
    for _ in range(3):                                        # the job writes; the timer refreshes
        writer.train(4, progress=False)
        watched.refresh()
    assert watched.step_count == 14 and dash.following
    assert dash.slider.max == 14 and dash.view.steps() == {"job": 14, "toy": 4}
    assert dash.view.of("toy").why == "live" and dash.view.of("job").why == "live"
    assert "job at 14" in dash.status.value and "toy at 4" in dash.status.value
    _assert_one_story(dash)
    dash.run_boxes[1].value = False                           # hide the toy run: the view is the job's alone
    assert dash.view.steps() == {"job": 14} and dash._watched_only()
    assert dash.step_button.disabled and dash.play.disabled and "disabled" in dash.step_button.tooltip
    dash.run_boxes[1].value = True
    assert not dash.step_button.disabled and "train" in dash.step_button.tooltip
    dash.close()


def test_hover_names_the_step_of_the_value_shown_and_clears_on_leave(make_run):
    runs = [_trained(make_run, 12, name="a", every=4), _trained(make_run, 12, name="b", every=2)]
    dash = _dash(runs)
    ax = dash.axes["metric:sv_entropy"]
    text = ax.format_coord(7.0, 0.5)                                   # a recorded at 4, 8; b at 6, 8
    line_a = next(ln for ln in ax.lines if ln.get_label() == "a · embed")
    a8 = line_a.get_ydata()[list(line_a.get_xdata()).index(8)]       # the value drawn at step 8
    assert f"a · embed {a8:.4g} (step 8)" in text and "(step 6)" in text and "step 7" not in text
    dash.canvas._message = "step 7: a · train 2.3"                     # what ipympl's footer would hold …
    dash._clear_hover()                                                # … until the mouse leaves the figure
    assert dash.canvas._message == ""
    dash.close()


def test_hiding_a_run_removes_every_artist_labelled_with_it_from_every_panel(make_run):
    runs = [_trained(make_run, 8, name="a"), _trained(make_run, 8, name="b", weight_decay=0.0)]
    dash = _dash(runs, layer="layers.0")
    labelled = lambda ax, run: [c for c in ax.get_children() if isinstance(getattr(c, "get_label", None)(), str)
                                and c.get_label().split(" · ", 1)[0] == run]
    assert labelled(dash.axes["esd"], "a")                     # histograms (patches) and fit line of a, before
    dash.run_boxes[0].value = False
    for name, ax in dash.axes.items():
        assert not labelled(ax, "a"), (name, [c.get_label() for c in labelled(ax, "a")])
    assert labelled(dash.axes["esd"], "b") and labelled(dash.axes["alpha"], "b")
    assert run_untouched(runs[0], dash)
    dash.close()


def run_untouched(run, dash):
    """*step* trains the shown runs only: a hidden run is left where it was."""
    before = run.step_count
    dash.step_button.click()
    return run.step_count == before and dash.runs[1].step_count > before


def test_a_nearly_constant_metric_is_drawn_as_its_change_with_the_value_stated():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from orthoscope.core.history import History
    from orthoscope.viz.plots import plot_metric

    h = History()
    for step in range(0, 40, 2):                      # POET keeps the entropy within 5e-7 of 0.893274
        h.log(step, {"sv_entropy/layers.0": 0.893274 + 5e-7 * np.sin(step)})
    fig = Figure()
    ax = fig.add_subplot()
    (line,) = plot_metric(ax, h, "sv_entropy", modules=["layers.0"])
    np.testing.assert_allclose(line.get_ydata(), 5e-7 * np.sin(np.arange(0, 40, 2)), atol=1e-12)
    assert ax.get_title().startswith("change of singular-value entropy of layers.0 from step 0 (≈ 0.893274")
    assert ax.get_ylabel().startswith("Δ ")
    FigureCanvasAgg(fig).draw()
    assert "+" not in ax.yaxis.get_offset_text().get_text()              # no "1e−7+8.93274e−1" offset label
    h2 = History()
    for step in range(0, 40, 2):                      # a metric that moves is drawn as it is
        h2.log(step, {"sv_entropy/layers.0": 0.5 + 0.01 * step})
    ax2 = fig.add_subplot(212)
    (line2,) = plot_metric(ax2, h2, "sv_entropy", modules=["layers.0"])
    assert line2.get_ydata()[0] == 0.5 and not ax2.get_title().startswith("change")


def test_the_output_layer_is_named_as_such_and_titles_have_no_raw_keys(make_run):
    from orthoscope.viz.plots import metric_title

    run = _trained(make_run, 4)
    dash = _dash(run, layer="layers.1", metrics=["sv_entropy", "spectral_norm"])
    assert "layers.1 — the output layer" in dash.status.value and "hidden layer 2" not in dash.status.value
    assert dash.axes["metric:spectral_norm"].get_title().startswith("spectral norm σ₁")
    assert "_" not in metric_title("some_new_metric")
    dash.close()


def test_long_layer_names_are_not_cut_in_the_layer_list(make_run):
    run = _trained(make_run, 4)
    dash = _dash(run)
    longest = max(len(x) for x in dash.layer.options)
    assert dash.layer.layout.width == f"calc({3 + longest}ch + 100px)"
    dash.close()


def test_alpha_only_where_weightwatcher_fits_it_bands_named_error_stated(make_run):
    from orthoscope.probes.esd import MIN_EVALS

    run = _trained(make_run, 6)
    dash = _dash(run, layer="layers.1")                                  # 11 eigenvalues: fitted
    texts = [t.get_text() for t in dash.axes["alpha"].texts]
    assert "over-trained (α < 2)" in texts and "under-trained (α > 6)" in texts
    note = dash.axes["esd"].texts[-1].get_text()
    assert re.fullmatch(r"α = [\d.]+ ± [\d.]+ from a tail of \d+ of 11 λ", note)
    h = run.history                                                      # a 4-wide layer: too few eigenvalues
    for step, sv in zip(h["sv/layers.1"].steps, h["sv/layers.1"].values):
        h.log(step, {"sv/tiny": sv[:4]})
    dash.redraw()                                                        # the layer list picks it up
    dash.layer.value = "tiny"
    assert MIN_EVALS > 4 and dash.axes["alpha"].get_facecolor()[:3] != (1.0, 1.0, 1.0)
    assert "has 4 eigenvalues" in dash.axes["alpha"].texts[0].get_text()
    assert dash.axes["esd"].texts[-1].get_text() == f"no fit (< {MIN_EVALS} eigenvalues)"
    dash.close()


def test_show_figure_fits_its_column_and_leaves_no_canvas(monkeypatch):
    """A finished figure shown as a PNG whose width is its size at 100 dpi and at most its column's (max-width)."""
    import base64
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from orthoscope.viz import show_figure

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot([0, 1], [1, 0])
    show_figure(fig)
    html = shown[0].data
    assert "width='900'" in html and "max-width:100%" in html and "height:auto" in html
    png = base64.b64decode(html.split("base64,")[1].rstrip("'>"))
    assert Image.open(io.BytesIO(png)).size == (1800, 600)              # 2× for a high-density screen
    assert fig.number not in plt.get_fignums()                          # pyplot's canvas is not shown as well
