"""The Dashboard's exports: the figure as shown (PNG) and the chosen layer's spectrum over training (an offline HTML
player: no request leaves the machine)."""
from __future__ import annotations

from pathlib import Path

from ..core.keys import key as make_key


def export_png(fig, export_dir: Path, layer: str | None, step: int, path=None) -> Path:
    """Write ``fig`` as shown to ``path`` (default ``export_dir/dashboard-<layer>-step<N>.png``); returns the path."""
    name = (layer or "none").replace("/", "_")
    path = Path(path) if path is not None else export_dir / f"dashboard-{name}-step{step}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi)
    return path


def export_animation(visible, several: bool, export_dir: Path, layer: str | None, path=None) -> Path:
    """Write an offline player of ``layer``'s spectrum over training — one panel per shown run (``visible``: (name,
    History) pairs) — to ``path`` (default ``export_dir/spectrum-<layer>.html``); returns the path."""
    from .animate import export_animation as export

    if layer is None:
        raise ValueError("no singular values recorded yet: nothing to animate")
    path = Path(path) if path is not None else export_dir / f"spectrum-{layer.replace('/', '_')}.html"
    pairs = [(n, h) for n, h in visible if make_key("sv", layer) in h]
    return export(pairs if several else pairs[0][1], layer, path)


__all__ = ["export_png", "export_animation"]
