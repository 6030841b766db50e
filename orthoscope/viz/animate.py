"""History → matplotlib animation of one layer's singular-value spectrum → offline HTML player or GIF.

    anim = spectrum_animation(run.history, "layers.0", kind="lines")
    HTML(to_html(anim))                  # in a notebook: a player with play/step/loop controls, no network needed
    save_gif(anim, "spectrum.gif")       # PillowWriter (Pillow ships with matplotlib)
    export_animation([("wd=1", run_a), ("wd=0", run_b)], "layers.0", "out/spectra.html")   # one panel per run
    export_png(fig, "out/dashboard.png")

``to_html`` is matplotlib's ``to_jshtml`` player made offline (``viz.offline``: no CDN stylesheet, text icons).

Frames are the recorded steps of ``sv/<module>``, subsampled evenly to at most ``max_frames`` (first and last kept).
The figures made here are plain ``matplotlib.figure.Figure`` objects, never registered with pyplot, so nothing is
displayed by accident, nothing leaks into ``plt.get_fignums()``, and no backend (ipympl, inline) is involved.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .offline import offline_html
from .plots import _as_runs, _single, _spectra, _sv_key, log_spectrum

KINDS = ("lines", "bars")


def frame_indices(n_recorded: int, max_frames: int) -> np.ndarray:
    """Evenly spaced indices into ``n_recorded`` records, at most ``max_frames``, always the first and last."""
    if not isinstance(max_frames, int) or max_frames < 2:
        raise ValueError(f"max_frames must be an integer ≥ 2, got {max_frames!r}")
    if n_recorded <= max_frames:
        return np.arange(n_recorded)
    return np.unique(np.linspace(0, n_recorded - 1, max_frames).round().astype(int))


def _attach_frame_canvas(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    class FrameCanvas(FigureCanvasAgg):
        """Agg canvas whose ``draw_idle`` does nothing: FuncAnimation calls it after every frame to refresh a
        window, but these figures have no window — each frame is rendered once, by the writer's savefig."""

        def draw_idle(self, *args, **kwargs):
            pass

    return FrameCanvas(fig)


def spectrum_animation(history, module: str, kind: str = "lines", max_frames: int = 100, fps: int = 10,
                       figsize=(5.0, 3.2)):
    """A ``FuncAnimation`` of log10 σ_i against i over the recorded steps of ``sv/<module>``.

    ``kind="lines"``: the spectrum as a line, with the first recorded spectrum in grey for reference.
    ``kind="bars"``: one bar per σ_i. The y-range is fixed over all frames so motion is comparable.
    log10 σ is drawn on a linear axis rather than σ on a log axis: the log axis's mathtext tick labels made every
    frame ~3× slower to render, and to_jshtml renders each frame.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(fps, int) or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    from matplotlib.animation import FuncAnimation
    from matplotlib.figure import Figure

    h = _single(history, "spectrum_animation")
    key = _sv_key([("", h)], module)
    steps, S = _spectra(h, key)
    L = log_spectrum(S)
    frames = frame_indices(len(steps), max_frames)
    pad = 0.05 * max(float(L.max() - L.min()), 0.1)
    lo, hi = float(L.min()) - pad, float(L.max()) + pad
    i = np.arange(1, S.shape[1] + 1)

    fig = Figure(figsize=figsize, layout="constrained")
    _attach_frame_canvas(fig)   # a concrete Agg canvas: rendering never depends on the active backend
    ax = fig.add_subplot()
    ax.set_ylim(lo, hi)
    ax.set_xlabel("index i")
    ax.set_ylabel("log10 σ_i")
    if kind == "lines":
        ax.plot(i, L[0], color="0.7", lw=1, label=f"step {int(steps[0])}")
        (artist,) = ax.plot(i, L[0], color="C0", marker=".", ms=3, label="now")
        ax.legend(fontsize="small", loc="upper right")
        update_artist = artist.set_ydata
    else:
        bars = ax.bar(i, L[0] - lo, bottom=lo, width=0.9, color="C0")   # bars grow up from the bottom of the range

        def update_artist(row):
            for bar, v in zip(bars, row):
                bar.set_height(v - lo)
    title = ax.set_title(f"{key[3:]} — step {int(steps[-1])}")
    # Lay out once, then freeze: constrained layout on every frame would double the cost of each frame.
    fig.canvas.draw()
    fig.set_layout_engine("none")

    def update(j):
        update_artist(L[j])
        title.set_text(f"{key[3:]} — step {int(steps[j])}")
        return []

    anim = FuncAnimation(fig, update, frames=list(frames), interval=1000 / fps, blit=False, repeat=True)
    anim._orthoscope_fps = fps
    return anim


def to_html(anim, default_mode: str = "loop") -> str:
    """The animation as self-contained, offline HTML (a JavaScript player with every frame embedded as PNG; the
    player's icons are text, nothing is loaded from the network)."""
    import matplotlib

    from .dashboard_support import DASHBOARD_LOCK

    # Rendering the frames holds the Dashboards' lock (issue 27): JupyterLab handles widget messages — a Dashboard's
    # redraw, ipympl's draw requests as a cell's canvases appear — on a thread of their own while this cell runs,
    # and matplotlib is not thread-safe; notebook 01's animation, rendered while the Dashboard above it redrew,
    # came out fully transparent after Run All. to_jshtml refuses to embed more than animation.embed_limit MB
    # (default 20); spectra at ≤100 frames are far below 50.
    with DASHBOARD_LOCK, matplotlib.rc_context({"animation.embed_limit": 50}):
        return offline_html(anim.to_jshtml(default_mode=default_mode))


def save_gif(anim, path, fps: int | None = None) -> Path:
    """Write the animation as a GIF with Pillow; returns the path."""
    from matplotlib.animation import PillowWriter

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    anim.save(path, writer=PillowWriter(fps=fps or getattr(anim, "_orthoscope_fps", 10)))
    return path


def animate_spectra(history, module: str, kind: str = "lines", max_frames: int = 100) -> str:
    """``to_html(spectrum_animation(...))`` in one call."""
    return to_html(spectrum_animation(history, module, kind=kind, max_frames=max_frames))


def comparison_animation(history, module: str, max_frames: int = 100, fps: int = 10, panel_size=(3.6, 2.8)):
    """One panel per run (``[(label, history)]`` or runs), all on the same axes, stepping through the union of the
    runs' recorded steps of ``sv/<module>``. Each panel shows its run's newest spectrum at or before the frame's step
    (its first before it starts) and says which step that is, so runs recorded at different steps never pass for
    the same one."""
    from matplotlib.animation import FuncAnimation
    from matplotlib.figure import Figure

    runs = _as_runs(history)
    key = _sv_key(runs, module)
    data = [(label or f"run {i}", *_spectra(h, key)) for i, (label, h) in enumerate(runs) if key in h]
    logs = [log_spectrum(S) for _, _, S in data]
    lo = min(float(L.min()) for L in logs)
    hi = max(float(L.max()) for L in logs)
    pad = 0.05 * max(hi - lo, 0.1)
    all_steps = np.unique(np.concatenate([steps for _, steps, _ in data]))
    frames = all_steps[frame_indices(len(all_steps), max_frames)]

    fig = Figure(figsize=(panel_size[0] * len(data), panel_size[1]), layout="constrained")
    _attach_frame_canvas(fig)
    axes = fig.subplots(1, len(data), squeeze=False, sharey=True)[0]
    lines, titles = [], []
    for i, (ax, (label, steps, _), L) in enumerate(zip(axes, data, logs)):
        idx = np.arange(1, L.shape[1] + 1)
        ax.plot(idx, L[0], color="0.7", lw=1, label=f"step {int(steps[0])}")
        lines.append(ax.plot(idx, L[0], color=f"C{i % 10}", marker=".", ms=3, label="now")[0])
        titles.append(ax.set_title(label, fontsize="small"))
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel("index i")
    axes[0].set_ylabel("log10 σ_i")
    axes[0].legend(fontsize="x-small", loc="upper right")
    suptitle = fig.suptitle(f"singular values of {key[3:]}", fontsize="medium")
    fig.canvas.draw()
    fig.set_layout_engine("none")   # laid out once: per-frame layout would double each frame's cost

    def update(step):
        for line, title, (label, steps, _), L in zip(lines, titles, data, logs):
            j = max(int(np.searchsorted(steps, step, side="right")) - 1, 0)
            line.set_ydata(L[j])
            shown = int(steps[j])
            title.set_text(f"{label} — step {shown}" + ("" if shown == step else f" (newest ≤ {int(step)})"))
        suptitle.set_text(f"singular values of {key[3:]} — step {int(step)}")
        return []

    anim = FuncAnimation(fig, update, frames=list(frames), interval=1000 / fps, blit=False, repeat=True)
    anim._orthoscope_fps = fps
    return anim


def export_animation(history, module: str, path, max_frames: int = 100, title: str | None = None) -> Path:
    """Write an offline HTML page with an animated spectrum of ``module``: one run as ``spectrum_animation``, several
    (a list) as ``comparison_animation``. The page loads nothing from the network. Returns the path."""
    import html as html_lib

    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"path must end in .html, got {str(path)!r}")
    several = isinstance(history, (list, tuple))
    anim = (comparison_animation(history, module, max_frames=max_frames) if several
            else spectrum_animation(history, module, max_frames=max_frames))
    heading = html_lib.escape(title or f"Singular values of {module} over training")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{heading}</title></head>\n'
            f'<body><h1 style="font: 600 1.2em system-ui, sans-serif">{heading}</h1>\n'
            f"{to_html(anim)}\n</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def export_png(fig, path, dpi: int = 100) -> Path:
    """Save a figure (a Dashboard's, or any matplotlib figure) as PNG; returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


__all__ = ["spectrum_animation", "comparison_animation", "to_html", "save_gif", "animate_spectra", "frame_indices",
           "export_animation", "export_png"]
