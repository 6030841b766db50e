"""Figures, animations and the live Dashboard for a run's History.

    from orthoscope.viz import plot_loss_accuracy, plot_spectrum_heatmap, spectrum_animation, to_html, Dashboard

``plots`` (pure ``plot_*(ax, history, ...)``) and ``animate`` need only matplotlib; ``Dashboard`` needs ipywidgets
(and uses ipympl when ``%matplotlib widget`` is active). Nothing is imported until a name is first used, so
``import orthoscope.viz`` stays cheap.
"""
from __future__ import annotations

_PLOTS = ("plot_curves", "plot_loss_accuracy", "plot_metric", "plot_spectrum_heatmap", "plot_spectrum_lines",
          "plot_spectrum_at")
_ANIMATE = ("spectrum_animation", "comparison_animation", "to_html", "save_gif", "animate_spectra",
            "export_animation", "export_png")
_ESD = ("plot_esd", "plot_alpha")
__all__ = [*_PLOTS, *_ANIMATE, *_ESD, "Dashboard", "show_figure"]


def __getattr__(name):
    import importlib

    if name in _PLOTS:
        return getattr(importlib.import_module(f"{__name__}.plots"), name)
    if name in _ANIMATE:
        return getattr(importlib.import_module(f"{__name__}.animate"), name)
    if name in _ESD:
        return getattr(importlib.import_module(f"{__name__}.esd"), name)
    if name == "show_figure":
        return importlib.import_module(f"{__name__}.column").show_figure
    if name == "Dashboard":
        return importlib.import_module(f"{__name__}.dashboard").Dashboard
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
