"""viz: every plot function draws exactly the History's numbers; animations export; the Dashboard drives runs."""
import io
import warnings

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from orthoscope import History
from orthoscope.viz import animate, plots


def _axes(n=1):
    fig = Figure()
    axs = fig.subplots(1, n, squeeze=False).ravel()
    return axs if n > 1 else axs[0]


@pytest.fixture(scope="module")
def trained():
    """(run_a, run_b): two tiny runs, weight decay 1 and 0, 12 steps, probes every 2 steps."""
    import torch

    from orthoscope import AdamW, Run
    from orthoscope.models import MLP
    from orthoscope.probes import default_probes
    from orthoscope.tasks import ModularArithmetic

    runs = []
    for wd, name in ((1.0, "wd=1"), (0.0, "wd=0")):
        torch.manual_seed(0)
        model = MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(16,), d_out=11)
        run = Run(model, ModularArithmetic(p=11, train_frac=0.5), AdamW(lr=1e-2, weight_decay=wd),
                  probes=default_probes(2), seed=0, name=name)
        runs.append(run.train(12, progress=False))
    return tuple(runs)


def _synthetic_spectra(n_steps=6, n=8):
    """sv/m with σ_i(t) = (t + 1) / i, the last one exactly 0 (rank-deficient), plus a scalar metric."""
    h = History()
    for t in range(n_steps):
        sv = torch.tensor([(t + 1) / i for i in range(1, n + 1)], dtype=torch.float32)
        sv[-1] = 0.0
        h.log(10 * t, {"sv/m": sv, "sv_entropy/m": 0.1 * t})
    return h


# ---- plot_curves ---------------------------------------------------------------------------------------------------
def test_plot_curves_default_draws_loss_left_accuracy_right_with_history_values(trained):
    run = trained[0]
    ax = _axes()
    lines = plots.plot_curves(ax, run)
    by_label = {ln.get_label(): ln for ln in lines}
    assert set(by_label) == {"loss/train", "loss/test", "acc/train", "acc/test"}
    for key, line in by_label.items():
        np.testing.assert_array_equal(line.get_xdata(), run.history[key].steps)
        np.testing.assert_allclose(line.get_ydata(), run.history[key].values)
    assert by_label["loss/test"].axes is ax and by_label["acc/test"].axes is not ax   # accuracy on the twin axes
    twin = by_label["acc/test"].axes
    ax.clear()
    plots.plot_curves(ax, run)                       # redrawing reuses (and clears) the twin, no pile-up
    assert len(ax.figure.axes) == 2 and len(twin.lines) == 2


def test_plot_curves_explicit_keys_scales_prefix_and_overlay(trained):
    ax = _axes()
    lines = plots.plot_curves(ax, list(trained), keys=["grad_norm/total"], logx=True, logy=True, label_prefix="x ")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert [ln.get_label() for ln in lines] == ["x wd=1 · grad_norm/total", "x wd=0 · grad_norm/total"]
    assert lines[0].get_color() != lines[1].get_color()
    np.testing.assert_allclose(lines[1].get_ydata(), trained[1].history["grad_norm/total"].values)
    assert len(ax.get_legend().get_texts()) == 2
    assert len(ax.figure.axes) == 1                  # explicit keys share one axes


def test_plot_curves_errors_name_the_recorded_keys(trained):
    ax = _axes()
    with pytest.raises(ValueError, match=r"unknown key 'loss/nope'.*loss/train"):
        plots.plot_curves(ax, trained[0], keys=["loss/nope"])
    with pytest.raises(ValueError, match="array series"):
        plots.plot_curves(ax, trained[0], keys="sv/layers.0")
    with pytest.raises(ValueError, match="empty list"):
        plots.plot_curves(ax, [])
    with pytest.raises(TypeError, match="History, a Run"):
        plots.plot_curves(ax, {"loss": 1})
    with pytest.raises(ValueError, match="no loss/\\* or acc/\\*"):
        plots.plot_curves(ax, _synthetic_spectra())


# ---- plot_loss_accuracy / plot_metric ------------------------------------------------------------------------------
def test_plot_loss_accuracy_two_axes_log_loss(trained):
    ax_loss, ax_acc = _axes(2)
    lines = plots.plot_loss_accuracy((ax_loss, ax_acc), [("A", trained[0].history), ("B", trained[1])])
    assert ax_loss.get_yscale() == "log" and ax_acc.get_yscale() == "linear"
    labels = [ln.get_label() for ln in ax_loss.lines]
    assert labels == ["A · train", "A · test", "B · train", "B · test"]
    np.testing.assert_allclose(ax_acc.lines[3].get_ydata(), trained[1].history["acc/test"].values)
    assert ax_loss.lines[0].get_color() != ax_loss.lines[2].get_color()            # colour = run
    assert ax_loss.lines[0].get_linestyle() != ax_loss.lines[1].get_linestyle()    # style = split
    assert len(lines) == 8
    with pytest.raises(ValueError, match="exactly 2 axes"):
        plots.plot_loss_accuracy([ax_loss], trained[0])


def test_plot_metric_one_line_per_module_and_overlay(trained):
    run = trained[0]
    ax = _axes()
    lines = plots.plot_metric(ax, run.history, "sv_entropy")
    modules = run.history.modules("sv_entropy")
    assert [ln.get_label() for ln in lines] == modules and len(modules) == 3
    np.testing.assert_allclose(lines[1].get_ydata(), run.history[f"sv_entropy/{modules[1]}"].values)
    ax = _axes()
    lines = plots.plot_metric(ax, list(trained), "he_s1", modules="layers.0")
    assert [ln.get_label() for ln in lines] == ["wd=1 · layers.0", "wd=0 · layers.0"]
    assert lines[0].get_color() != lines[1].get_color()
    with pytest.raises(ValueError, match=r"unknown metric 'nope'.*sv_entropy"):
        plots.plot_metric(ax, run, "nope")
    with pytest.raises(ValueError, match="holds arrays"):
        plots.plot_metric(ax, run, "sv")
    with pytest.raises(ValueError, match=r"no series for module\(s\) \['fc9'\].*layers.0"):
        plots.plot_metric(ax, run, "sv_entropy", modules=["fc9"])


# ---- spectra -------------------------------------------------------------------------------------------------------
def test_spectrum_heatmap_colours_are_log10_sigma_with_floor():
    h = _synthetic_spectra()
    ax = _axes()
    (mesh,) = plots.plot_spectrum_heatmap(ax, h, "sv/m", colorbar=True)
    S = h["sv/m"].stack().double().numpy()
    expected = np.log10(np.maximum(S, plots.LOG_FLOOR * S.max())).T       # rows = index i, columns = steps
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(expected.shape), expected, rtol=1e-6)
    assert np.isfinite(mesh.get_array()).all()                            # the exact zero σ_8 is floored
    assert len(ax.figure.axes) == 2                                       # colorbar axes
    (mesh,) = plots.plot_spectrum_heatmap(_axes(), h, "m", upto_step=25)
    assert np.asarray(mesh.get_array()).size == 8 * 3                     # steps 0, 10, 20
    with pytest.raises(ValueError, match=r"no singular values recorded for module 'q'.*\['m'\]"):
        plots.plot_spectrum_heatmap(_axes(), h, "q")
    with pytest.raises(ValueError, match="before the first recorded step"):
        plots.plot_spectrum_heatmap(_axes(), h, "m", upto_step=-1)
    with pytest.raises(ValueError, match="draws one run"):
        plots.plot_spectrum_heatmap(_axes(), [h, h], "m")


def test_spectrum_lines_subsample_indices_and_values(trained):
    run = trained[0]
    ax = _axes()
    lines = plots.plot_spectrum_lines(ax, run, "layers.0", max_lines=5)      # layers.0 is 16×16: 16 values
    assert [ln.get_label() for ln in lines] == ["σ_1", "σ_5", "σ_9", "σ_12", "σ_16"]
    S = run.history["sv/layers.0"].stack().numpy()
    np.testing.assert_allclose(lines[-1].get_ydata(), S[:, 15], rtol=1e-6)
    assert len(plots.plot_spectrum_lines(_axes(), run, "layers.0")) == 16
    upto = plots.plot_spectrum_lines(_axes(), run, "layers.0", upto_step=6)
    np.testing.assert_array_equal(upto[0].get_xdata(), [0, 2, 4, 6])
    with pytest.raises(ValueError, match="max_lines"):
        plots.plot_spectrum_lines(ax, run, "layers.0", max_lines=0)


def test_spectrum_at_uses_nearest_recorded_step(trained):
    h = _synthetic_spectra()
    ax = _axes()
    (line,) = plots.plot_spectrum_at(ax, h, "m", 24)             # recorded 0, 10, …, 50 → 20
    np.testing.assert_allclose(line.get_ydata(), h["sv/m"].values[2].numpy())
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 9))
    assert "step 20" in ax.get_title()
    assert plots.nearest_step([0, 10, 20], 15) == 1               # tie → the earlier one
    lines = plots.plot_spectrum_at(_axes(), list(trained), "layers.1", 1000)
    assert [ln.get_label() for ln in lines] == ["wd=1 · step 12", "wd=0 · step 12"]
    np.testing.assert_allclose(lines[1].get_ydata(), trained[1].history["sv/layers.1"].last().numpy())


# ---- animation -----------------------------------------------------------------------------------------------------
def test_frame_indices():
    np.testing.assert_array_equal(animate.frame_indices(5, 100), np.arange(5))
    idx = animate.frame_indices(1000, 100)
    assert len(idx) == 100 and idx[0] == 0 and idx[-1] == 999 and (np.diff(idx) > 0).all()
    with pytest.raises(ValueError, match="max_frames"):
        animate.frame_indices(10, 1)


@pytest.mark.parametrize("kind", ["lines", "bars"])
def test_animation_html_and_gif(kind, tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    open_figures = plt.get_fignums()
    h = _synthetic_spectra(n_steps=6)
    anim = animate.spectrum_animation(h, "m", kind=kind, max_frames=4)
    html = animate.to_html(anim)
    assert html.count("data:image/png;base64") == 4              # frames 0, 2, 3, 5 of 6, each embedded
    path = animate.save_gif(anim, tmp_path / "sub" / "spec.gif")
    with Image.open(path) as im:
        assert im.n_frames == 4
        first = np.asarray(im.convert("RGB"))
        im.seek(3)
        assert not np.array_equal(first, np.asarray(im.convert("RGB")))   # the spectrum moved
    assert plt.get_fignums() == open_figures                     # no figure left registered with pyplot


@pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")
def test_animation_rejects_bad_input(tmp_path):
    h = _synthetic_spectra()
    with pytest.raises(ValueError, match="kind must be one of"):
        animate.spectrum_animation(h, "m", kind="pie")
    with pytest.raises(ValueError, match="fps"):
        animate.spectrum_animation(h, "m", fps=0)
    with pytest.raises(ValueError, match="must end in .gif"):
        animate.save_gif(animate.spectrum_animation(h, "m", max_frames=2), tmp_path / "x.mp4")
    html = animate.animate_spectra(h, "m", max_frames=2)
    assert html.count("data:image/png;base64") == 2


# ---- Dashboard -----------------------------------------------------------------------------------------------------
@pytest.fixture
def dashboard_module():
    from orthoscope.viz import dashboard

    dashboard._FALLBACK_WARNED = False
    return dashboard


def _png(dash):
    return bytes(dash.canvas.value)


def test_dashboard_fallback_step_slider_layer(make_run, dashboard_module):
    run = make_run(every=2)
    with pytest.warns(UserWarning, match="ipympl is not the active"):
        dash = dashboard_module.Dashboard(run, every=4)
    assert not dash.interactive and dash.layer.value is None and dash.slider.max == 0   # nothing recorded yet
    assert "orthoscope-dashboard" in dash.widget._dom_classes and dash.step_button.description == "step"
    assert dash.play.description == "play" and hasattr(dash, "_ipython_display_")
    before = _png(dash)
    dash.step_button.click()
    assert run.step_count == 4 and dash.slider.value == dash.slider.max == 4
    assert dash.layer.options == ("embed", "layers.0", "layers.1") and dash.layer.value == "embed"
    np.testing.assert_array_equal(dash.axes["loss"].lines[0].get_xdata(), [0, 2, 4])
    assert _png(dash) != before and "step 4" in dash.status.value
    dash.step_button.click()
    assert run.step_count == 8
    np.testing.assert_array_equal(dash.axes["loss"].lines[0].get_xdata(), [0, 2, 4, 6, 8])
    spec = dash.axes["spectrum"].lines[0]
    np.testing.assert_allclose(spec.get_ydata(), run.history["sv/embed"].values[-1].numpy())
    dash.slider.value = 2                                                   # scrub back
    np.testing.assert_allclose(dash.axes["spectrum"].lines[0].get_ydata(), run.history["sv/embed"].values[1].numpy())
    dash.layer.value = "layers.1"
    assert "layers.1" in dash.axes["heatmap"].get_title()
    assert dash.axes["metric:sv_entropy"].lines[0].get_label() == "run · layers.1"
    dash.step_button.click()
    assert dash.slider.value == 2 and dash.slider.max == 12                 # scrubbed back: does not follow
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dash2 = dashboard_module.Dashboard(run, every=1, layer="layers.0")
    assert not [w for w in caught if "ipympl is not the active" in str(w.message)]   # the warning came only once
    assert dash2.layer.value == "layers.0"
    dash.close()
    dash2.close()
    assert run._callbacks == []


def test_dashboard_overlay_play_ticks_and_live_redraw(make_run, dashboard_module):
    runs = [make_run(1.0, "wd=1"), make_run(0.0, "wd=0")]
    with pytest.warns(UserWarning):
        dash = dashboard_module.Dashboard(runs, every=3, live_every_s=0.0, live_share=1.0)   # no budget (viz.live)
    dash.step_button.click()
    assert [r.step_count for r in runs] == [3, 3]
    assert [ln.get_label() for ln in dash.axes["spectrum"].lines[:2]] == ["wd=1 · step 2", "wd=0 · step 2"]
    dash._chunk_end = -float("inf")
    dash.play.value = 1                                                     # a tick from the browser's timer
    assert [r.step_count for r in runs] == [6, 6]
    dash.play.value = 2                                                     # arrived right after: queued backlog
    assert [r.step_count for r in runs] == [6, 6]
    dash._chunk_end = -float("inf")
    dash.play.value = 0                                                     # the stop button rewinds: no tick
    assert [r.step_count for r in runs] == [6, 6]
    before = _png(dash)
    runs[0].train(2, progress=False)                                        # trained elsewhere → live redraw
    assert _png(dash) != before and dash.slider.max == 8                    # following live, per run:
    assert dash.view.steps() == {"wd=1": 8, "wd=0": 6}                      # each at its own newest step
    assert "different steps (wd=1: 8, wd=0: 6)" in dash.status.value
    dash.close()


def test_dashboard_shows_training_errors_and_rejects_bad_arguments(make_run, dashboard_module):
    nan_loss = lambda out, y: out.sum() * float("nan")                       # noqa: E731
    run = make_run(loss=nan_loss)
    with pytest.warns(UserWarning):
        dash = dashboard_module.Dashboard(run, every=2)
    dash.play.playing = True
    dash.step_button.click()
    assert dash.error is not None and not dash.play.playing and "stopped: NonFiniteError" in dash.status.value
    dash._chunk_end = -float("inf")
    dash.play.value = 5                                                     # play does nothing after an error
    assert run.step_count == 0
    from orthoscope import NonFiniteError

    with pytest.raises(NonFiniteError):                                    # called from code, errors propagate
        dash.advance(1)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        dash.advance(0)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        dashboard_module.Dashboard(run, every=0)
    with pytest.raises(ValueError, match="empty list"):
        dashboard_module.Dashboard([])
    with pytest.raises(TypeError, match="a Run or a list of Runs"):
        dashboard_module.Dashboard(run.history)
    trained = make_run()
    trained.train(2, progress=False)
    with pytest.raises(ValueError, match=r"metrics \['nope'\] are not recorded.*sv_entropy"):
        dashboard_module.Dashboard(trained, metrics=["nope"])
    with pytest.raises(ValueError, match=r"layer 'fc9' has no recorded spectrum.*layers.0"):
        dashboard_module.Dashboard(trained, layer="fc9")


def test_dashboard_uses_ipympl_canvas_when_active(make_run, dashboard_module):
    old = matplotlib.get_backend()          # before importing ipympl: its import makes itself the backend
    pytest.importorskip("ipympl")
    matplotlib.use("module://ipympl.backend_nbagg")
    try:
        run = make_run()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dash = dashboard_module.Dashboard(run, every=2)
        assert not [w for w in caught if "ipympl is not the active" in str(w.message)]
        from ipympl.backend_nbagg import Canvas

        assert dash.interactive and isinstance(dash.canvas, Canvas) and dash.canvas.figure is dash.fig
        assert dash.canvas in dash.widget.children
        assert dash.canvas._data_url is None          # nothing pushed before a browser view initialized the canvas
        dash.canvas._handle_message(dash.canvas, {"type": "initialized"}, [])   # what the browser view sends
        dash.step_button.click()
        rgba = np.asarray(dash.canvas.get_renderer().buffer_rgba())
        assert run.step_count == 2 and (rgba[..., 3] == 255).all()          # rendered (a fresh buffer is clear)
        assert (rgba[..., :3] < 128).any()                                  # with ink on it
        np.testing.assert_array_equal(dash.axes["loss"].lines[0].get_xdata(), [0, 2])
        import matplotlib.pyplot as plt

        assert all(plt.figure(n) is not dash.fig for n in plt.get_fignums())   # not registered with pyplot
        dash.close()
    finally:
        matplotlib.use(old)
