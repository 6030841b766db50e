"""History keys: ``"<metric>/<module path>"`` (``sv/layers.0.attn.W_Q``), ``"<metric>/<split>"`` (``acc/test``) or a
bare ``"<metric>"``. Build them with ``key`` and read them with ``split_key``, never with ad-hoc string slicing: the
metric is everything before the FIRST ``/``, and a module path may itself contain dots but no ``/``.

    key("sv", "layers.0.mlp")      -> "sv/layers.0.mlp"
    split_key("sv/layers.0.mlp")   -> ("sv", "layers.0.mlp")
    split_key("step_time")         -> ("step_time", None)
"""
from __future__ import annotations

SEPARATOR = "/"


def key(metric: str, where: str | None = None) -> str:
    """The History key of ``metric`` at ``where`` (a module path, a split, a parameter name; None: a global one)."""
    if not metric or SEPARATOR in metric:
        raise ValueError(f"a metric name is non-empty and has no {SEPARATOR!r}, got {metric!r}")
    return metric if where is None else f"{metric}{SEPARATOR}{where}"


def split_key(name: str) -> tuple[str, str | None]:
    """``(metric, where)`` of a History key; ``where`` is None for a bare metric."""
    metric, sep, where = name.partition(SEPARATOR)
    return metric, (where if sep else None)


def metric_of(name: str) -> str:
    return split_key(name)[0]


def where_of(name: str) -> str | None:
    """The module path (or split) of a key, None for a bare metric."""
    return split_key(name)[1]
