"""A self-contained HTML report of one run: curves, a spectrum animation, entropy/energy curves, the configuration.

    from orthoscope.viz.report import write_report
    write_report("out/report.html", run, title="My run", intro="<p>What this run shows.</p>",
                 summary=["Test accuracy reached 99% at step 540."], config={"lr": 1e-2}, layer="embed")

Every figure is rendered with matplotlib's Agg canvas (no pyplot, no display) and embedded as a base64 PNG; the
animation is matplotlib's ``to_jshtml`` player with every frame embedded. The page loads nothing from the network:
the player's one external link (a Font Awesome stylesheet for its button icons) is removed and the icons drawn as
text (``orthoscope.viz.offline``, which also refuses HTML that still names an external URL).
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 980px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.5; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.summary { background: #f3f7ff; border-left: 4px solid #3b6fd1; padding: 0.6em 1em; }
.summary li { margin: 0.2em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { color: #555; font-size: 0.92em; }
table.config { border-collapse: collapse; font-size: 0.92em; }
table.config td, table.config th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left;
                                   vertical-align: top; font-family: ui-monospace, monospace; }
footer { margin-top: 2em; color: #777; font-size: 0.85em; }
"""

# ---- pieces ------------------------------------------------------------------------------------------------------
def new_figure(figsize=(9.0, 3.4), ncols: int = 1):
    """A pyplot-free matplotlib figure with ``ncols`` axes side by side (rendering never depends on the backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def figure_data_uri(fig, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure_html(fig, caption: str, alt: str) -> str:
    return (f'<figure><img alt="{html.escape(alt)}" src="{figure_data_uri(fig)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def offline_player(jshtml: str) -> str:
    """matplotlib's ``to_jshtml`` output without its external stylesheet, icons as text (``viz.offline``)."""
    from .offline import offline_html

    return offline_html(jshtml)


def config_table(config: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in config.items())
    return f'<table class="config">{rows}</table>'


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)


# ---- figures -----------------------------------------------------------------------------------------------------
def curves_figure(history, marks: dict[str, int] | None = None):
    """Loss (log y) and accuracy per split, with dotted vertical lines at the steps in ``marks`` ({label: step})."""
    from .plots import plot_loss_accuracy

    fig, axes = new_figure(ncols=2)
    plot_loss_accuracy(axes, history)
    for i, (label, step) in enumerate((marks or {}).items()):
        for ax in axes:
            ax.axvline(step, color=f"C{i + 2}", ls=":", lw=1.2, label=label)
        axes[1].legend(fontsize="x-small", loc="center right")
    return fig


def spectrum_figure(history, layer: str):
    from .plots import plot_spectrum_heatmap, plot_spectrum_lines

    fig, axes = new_figure(ncols=2)
    plot_spectrum_heatmap(axes[0], history, layer, colorbar=True)
    plot_spectrum_lines(axes[1], history, layer, max_lines=12)
    return fig


def geometry_panels(history) -> tuple[list[str], bool]:
    """The per-layer metrics shown in section 3 (entropy, one HE variant, preferring s = 1) and whether the total
    weight norm was recorded."""
    he_metrics = sorted((m for m in history.metrics() if m.startswith("he_")), key=lambda m: m != "he_s1")
    panels = [m for m in ["sv_entropy", *he_metrics[:1]] if m in history.metrics()]
    return panels, "weight_norm/total" in history


def geometry_figure(history):
    """Singular-value entropy and hyperspherical energy of every recorded layer, and the total weight norm."""
    from .plots import plot_curves, plot_metric

    panels, norm = geometry_panels(history)
    fig, axes = new_figure(figsize=(4.0 * (len(panels) + norm), 3.3), ncols=len(panels) + norm)
    for ax, metric in zip(axes, panels):
        plot_metric(ax, history, metric)
    if norm:
        plot_curves(axes[-1], history, keys=["weight_norm/total"])
        axes[-1].set_title("weight norm (all parameters)")
    return fig


def animation_html(history, layer: str, max_frames: int) -> str:
    from .animate import spectrum_animation, to_html

    return to_html(spectrum_animation(history, layer, kind="lines", max_frames=max_frames))   # offline player


# ---- the page ----------------------------------------------------------------------------------------------------
def build_report(run, *, title: str, intro: str = "", summary: list[str] = (), config: dict | None = None,
                 layer: str | None = None, marks: dict[str, int] | None = None, max_frames: int = 60) -> str:
    """The report as one HTML string. ``intro`` and ``summary`` items are trusted HTML written by the caller;
    everything taken from the run (keys, config values) is escaped. ``layer`` picks the animated spectrum
    (default: the first layer with recorded singular values)."""
    history = run.history
    layers = history.modules("sv")
    if layer is None and layers:
        layer = layers[0]
    if layer is not None and layer not in layers:
        raise ValueError(f"no singular values recorded for layer {layer!r}; recorded layers: {layers}")
    sections = [("Loss and accuracy",
                 figure_html(curves_figure(history, marks), _CURVES_CAPTION, "loss and accuracy curves"))]
    if layer is not None:
        sections.append((f"The spectrum of <code>{html.escape(layer)}</code> over training",
                         f"<p>{_ANIMATION_TEXT}</p>" + animation_html(history, layer, max_frames)
                         + figure_html(spectrum_figure(history, layer), _SPECTRUM_CAPTION, f"spectrum of {layer}")))
    if any(geometry_panels(history)):
        sections.append(("Singular-value entropy and hyperspherical energy",
                         figure_html(geometry_figure(history), _GEOMETRY_CAPTION, "entropy, energy and weight norm")))
    if config:
        sections.append(("Configuration", config_table(config)))
    parts = [f"<h1>{html.escape(title)}</h1>", intro]
    if summary:
        parts.append('<ul class="summary">' + "".join(f"<li>{s}</li>" for s in summary) + "</ul>")
    parts += [f"<h2>{i}. {heading}</h2>\n{content}" for i, (heading, content) in enumerate(sections, 1)]
    from ..core.version import __version__

    parts.append(f"<footer>Written by orthoscope {__version__}. Keys follow <code>&lt;metric&gt;/&lt;module "
                 f"path&gt;</code>; every curve is a series in <code>run.history</code>.</footer>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_report(path, run, **kwargs) -> Path:
    """``build_report(run, **kwargs)`` written to ``path`` (folders are created). Returns the path."""
    path = Path(path)
    text = build_report(run, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


_CURVES_CAPTION = ("Left: cross-entropy loss (log scale) on the training split and on the held-out split. Right: "
                   "accuracy. Dotted lines mark the first evaluated steps at which each accuracy reached the target.")
_ANIMATION_TEXT = ("Each frame is one recorded step: the singular values σ<sub>1</sub> ≥ σ<sub>2</sub> ≥ … of the "
                   "weight matrix on a log scale (grey: at initialization). Press ▶ to play, or drag the slider.")
_SPECTRUM_CAPTION = ("Left: the same spectrum as a heat-map (x = step, y = index i, colour = log10 σ<sub>i</sub>). "
                     "Right: a few individual σ<sub>i</sub> against step.")
_GEOMETRY_CAPTION = ("Normalized singular-value entropy H = −Σ p<sub>i</sub> log p<sub>i</sub> / log n with "
                     "p<sub>i</sub> = σ<sub>i</sub>² / Σσ<sub>j</sub>² (1 = flat spectrum, 0 = rank one); "
                     "hyperspherical energy of the normalized rows (mean over pairs of 1/‖ŵ<sub>i</sub> − "
                     "ŵ<sub>j</sub>‖ for s = 1: lower = rows spread more evenly over the sphere); and the "
                     "Euclidean norm of all parameters together.")
