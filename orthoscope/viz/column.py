"""Fitting a Dashboard to its notebook column: the browser reports the column's width, the kernel resizes the figure.

An ipympl canvas has a fixed pixel size, and it cannot be scaled by CSS: its mouse events carry positions in CSS
pixels of the element, which the kernel maps to figure pixels one to one (values on hover would point at the wrong
place). Neither ipympl (0.10) nor ipywidgets reports how wide the column is. So the Dashboard carries a hidden
``IntText`` (``column_box``) and, when it is displayed, a few lines of JavaScript (``column_script``; JupyterLab runs
``application/javascript`` outputs of the session's own cells) that watch the output column with a
``ResizeObserver`` and type its width into that box — a ``change`` event, as if a person had typed it, which the
widget sends to the kernel. The Dashboard then resizes its figure (``fitted_width``): never wider than the column,
never wider than the ``width_px`` asked for, never narrower than ``MIN_WIDTH_PX``.

Where the front end runs no JavaScript outputs (nbconvert, some hosted notebooks) nothing is reported and the figure
keeps ``width_px`` (drag the canvas's corner, or pass a smaller ``width_px``).
"""
from __future__ import annotations

import itertools

MIN_WIDTH_PX = 300
MARGIN_PX = 12            # the column's own padding and the canvas's border: no horizontal scroll bar
STEP_PX = 8               # smaller changes of the column are not worth a re-render

_ids = itertools.count()

_SCRIPT = """
(function () {
  // orthoscope Dashboard: report the width of the notebook column it sits in (orthoscope/viz/column.py)
  function attach(triesLeft) {
    const boxes = document.querySelectorAll('.%(cls)s');
    const fresh = Array.from(boxes).filter(b => !b.dataset.orthoscopeColumn);
    if (!fresh.length) {
      if (!boxes.length && triesLeft > 0) setTimeout(() => attach(triesLeft - 1), 100);  // views render late
      return;
    }
    for (const box of fresh) {
      box.dataset.orthoscopeColumn = '1';
      const dashboard = box.closest('.orthoscope-dashboard');
      const column = dashboard && dashboard.parentElement;
      const input = box.querySelector('input');
      if (!column || !input) continue;
      let last = -1;
      const report = () => {
        const width = Math.floor(column.clientWidth);
        if (width > 0 && Math.abs(width - last) >= %(step)d) {
          last = width;
          input.value = String(width);
          input.dispatchEvent(new Event('change', {bubbles: true}));
        }
      };
      new ResizeObserver(report).observe(column);
      report();
      // ❚❚ / ■ while a chunk trains: the kernel hears of it only after the chunk, so say it here at once
      const play = dashboard.querySelector('.orthoscope-play');
      const status = dashboard.querySelector('.orthoscope-status');
      if (play && status) {
        play.addEventListener('click', (e) => {
          const button = e.target.closest('button');
          if (!button || !button.querySelector('.fa-pause, .fa-stop')) return;
          const note = document.createElement('div');
          note.className = 'orthoscope-pausing';
          note.style.color = '#a50';
          note.textContent = '❚❚ pausing after this chunk…';
          const content = status.querySelector('.widget-html-content') || status;
          content.prepend(note);      // the kernel's next status line replaces it
        }, true);
      }
    }
  }
  attach(100);
})();
"""


def fitted_width(column_px: int, max_px: int) -> int:
    """The figure's width in a column ``column_px`` wide: the column less a margin, at most ``max_px``, at least
    ``MIN_WIDTH_PX`` (below that the panels' labels cannot fit; the column scrolls instead)."""
    if not isinstance(column_px, int) or column_px <= 0:
        raise ValueError(f"column width must be a positive number of pixels, got {column_px!r}")
    return max(MIN_WIDTH_PX, min(max_px, column_px - MARGIN_PX))


def column_box():
    """The hidden ``IntText`` the browser types the column's width into, with a class unique to it."""
    import ipywidgets as W

    box = W.IntText(value=0, layout=W.Layout(display="none"))     # (the script also says "pausing" at ❚❚)
    box.add_class(f"orthoscope-column-{next(_ids)}")
    return box


def column_script(box):
    """The JavaScript output that reports the column's width into ``box`` (module docstring)."""
    from IPython.display import Javascript

    cls = next(c for c in box._dom_classes if c.startswith("orthoscope-column-"))
    return Javascript(_SCRIPT % {"cls": cls, "step": STEP_PX})


def show_figure(fig, dpi: int = 100, scale: int = 2) -> None:
    """Display a finished (non-interactive) figure so it fits its notebook column at any width (issue 27): a PNG
    rendered at ``scale``× ``dpi`` (sharp on a high-density screen) in an ``<img>`` whose width is the figure's size
    at ``dpi`` and whose ``max-width`` is 100 % — a narrow column scales it down, a wide one never stretches it. An
    ipympl canvas cannot do this (fixed pixel size); a figure made through pyplot is closed, so ``%matplotlib
    widget`` does not show its canvas too. Rendering holds the Dashboards' lock (drawing races with their redraws
    on the widget thread otherwise: ``dashboard_support.DASHBOARD_LOCK``)."""
    import base64
    import io

    from IPython.display import HTML, display

    from .dashboard_support import DASHBOARD_LOCK

    buf = io.BytesIO()
    with DASHBOARD_LOCK:
        fig.savefig(buf, format="png", dpi=dpi * scale)
    width = round(fig.get_figwidth() * dpi)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    display(HTML(f"<img class='orthoscope-static-figure' width='{width}' style='max-width:100%;height:auto' "
                 f"src='data:image/png;base64,{data}'>"))
    import matplotlib.pyplot as plt

    if getattr(fig, "number", None) in plt.get_fignums():
        plt.close(fig)


__all__ = ["fitted_width", "column_box", "column_script", "show_figure", "MIN_WIDTH_PX"]
