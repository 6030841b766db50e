"""Arena figures, pure: ``plot_*(ax, …) -> list of artists``; nothing here imports matplotlib."""
from __future__ import annotations

from typing import Mapping, Sequence

from .results import ArenaResult


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(forgetting, plasticity)`` no other point beats on both (less forgetting and more
    plasticity, one strictly), sorted by forgetting."""
    front = [i for i, (f, p) in enumerate(points)
             if not any((f2 <= f and p2 >= p) and (f2 < f or p2 > p) for f2, p2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def trajectory(result: ArenaResult) -> tuple[list[float], list[float]]:
    """``(forgetting, plasticity)`` at every evaluation of the finetune (from ``acc/A`` and ``acc/B`` in its history)."""
    h, base = result.run.history, result.base_scores
    return [base["A"] - a for a in h["acc/A"].values], [b - base["B"] for b in h["acc/B"].values]


def plot_frontier(ax, results: Sequence[ArenaResult], paths: Mapping[str, dict] | None = None,
                  base_scores: dict | None = None, trajectories: bool = True) -> list:
    """Stability–plasticity plane: x = forgetting on A, y = gain on B; one labelled point per finetune, the Pareto
    front as a dashed line, each finetune's trajectory during training as a thin line (``trajectories``), and optional
    interpolation ``paths`` (``{label: Arena.interpolate(...)}``, relative to ``base_scores`` — default: the first
    result's) drawn as dotted lines from the base at (0, 0)."""
    if not results:
        raise ValueError("plot_frontier needs at least one ArenaResult")
    artists = []
    points = [(r.forgetting, r.plasticity) for r in results]
    for i, (r, (f, p)) in enumerate(zip(results, points)):
        if trajectories:
            artists += ax.plot(*trajectory(r), "-", color=f"C{i}", lw=0.8, alpha=0.5)
        artists.append(ax.scatter([f], [p], s=60, color=f"C{i}", zorder=3, label=f"{r.name} ({r.trainable:,} params)"))
        artists.append(ax.annotate(r.name, (f, p), textcoords="offset points", fontsize=8,
                                   xytext=(5, 5 - 14 * (i % 2))))      # alternate above/below: fewer overlaps
    front = pareto_front(points)
    artists += ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=1, alpha=0.5,
                       label="Pareto front")
    base = base_scores or results[0].base_scores
    for j, (label, path) in enumerate((paths or {}).items()):
        xs = [base["A"] - a for a in path["A"]]
        ys = [b - base["B"] for b in path["B"]]
        artists += ax.plot(xs, ys, ":", marker=".", color=f"C{len(results) + j}", label=label)
    artists.append(ax.axhline(0, color="0.8", lw=0.8, zorder=0))
    artists.append(ax.axvline(0, color="0.8", lw=0.8, zorder=0))
    ax.set_xlabel("forgetting: accuracy lost on A")
    ax.set_ylabel("plasticity: accuracy gained on B")
    ax.legend(fontsize=7)
    return artists


def plot_interpolation(ax, paths: Mapping[str, dict]) -> list:
    """Accuracy on A (solid) and B (dashed) along interpolation paths ``{label: Arena.interpolate(...)}``."""
    artists = []
    for i, (label, path) in enumerate(paths.items()):
        artists += ax.plot(path["alpha"], path["A"], "-o", color=f"C{i}", ms=3, label=f"{label}: A")
        artists += ax.plot(path["alpha"], path["B"], "--s", color=f"C{i}", ms=3, label=f"{label}: B")
    ax.set_xlabel("α (0 = base, 1 = finetuned)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    return artists


def plot_geometry(ax, results: Sequence[ArenaResult], metric: str) -> list:
    """One bar per finetune of a summarized geometry metric (``ArenaResult.geometry[metric]``)."""
    missing = [r.name for r in results if metric not in r.geometry]
    if missing:
        known = sorted(results[0].geometry) if results else []
        raise KeyError(f"no geometry metric {metric!r} for {missing}; available: {known}")
    bars = ax.bar([r.name for r in results], [r.geometry[metric] for r in results],
                  color=[f"C{i}" for i in range(len(results))])
    ax.set_title(metric, fontsize=9)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    return list(bars)


def plot_profile(ax, results: Sequence[ArenaResult], module: str, profile: str = "retention",
                 logy: bool = False) -> list:
    """The final ``retention`` (|u_iᵀW v_i − σ_i|) or ``adaptation`` (‖ΔW v_i‖) profile of one module, per finetune,
    against the index i of the pretrained singular value."""
    if profile not in ("retention", "adaptation"):
        raise ValueError(f"profile must be 'retention' or 'adaptation', got {profile!r}")
    artists = []
    for i, r in enumerate(results):
        values = r.run.history[f"{profile}/{module}"].last()
        artists += ax.plot(range(1, len(values) + 1), values.tolist(), color=f"C{i}", label=r.name)
    ax.set_xlabel("index i of the pretrained singular value")
    ax.set_ylabel(f"{profile} profile of {module}")
    if logy:                                  # exact zeros (untouched directions) are not drawn on a log axis
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    return artists
