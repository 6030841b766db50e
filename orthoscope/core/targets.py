"""Select modules by path with peft's ``target_modules`` rules.

* a ``str`` is a regular expression that must ``fullmatch`` the module path;
* a list/tuple of strings matches a path equal to an entry or ending in ``"." + entry``;
* ``exclude`` uses the same rules and wins over ``targets``.

Paths come from ``model.named_modules()`` (the root module has path ``""`` and is never selected).
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence, Union

from torch import nn

Rules = Union[str, Sequence[str], None]


def path_matches(path: str, rules: Rules) -> bool:
    """True when ``path`` is hit by ``rules`` (peft semantics, see module docstring)."""
    if rules is None:
        return True
    if isinstance(rules, str):
        return re.fullmatch(rules, path) is not None
    return any(path == r or path.endswith("." + r) for r in rules)


def exactly(paths: Iterable[str]) -> str:
    """A rule that selects exactly these module paths: one regex of the escaped paths, full-matched. (A list rule
    would also hit every longer path that ends in ``.<entry>``, peft's suffix rule.)"""
    return "|".join(re.escape(p) for p in paths)


def _check_rules(rules: Rules, name: str) -> None:
    if rules is None:
        return
    if isinstance(rules, str):
        try:
            re.compile(rules)
        except re.error as e:
            raise ValueError(f"{name}={rules!r} is not a valid regular expression ({e}); a string is matched as a "
                             "regex against the whole module path, a list as names or dotted suffixes") from None
        return
    if not isinstance(rules, (list, tuple)) or not all(isinstance(r, str) for r in rules):
        raise TypeError(f"{name} must be a regex string or a list of module names, got {rules!r}")


def select_modules(
    model: nn.Module,
    targets: Rules = None,
    exclude: Rules = None,
    where: Callable[[str, nn.Module], bool] | None = None,
    what: str = "module",
) -> list[tuple[str, nn.Module]]:
    """Return ``[(path, module)]`` hit by ``targets`` minus ``exclude`` among modules satisfying ``where``.

    Raises ``ValueError`` naming the valid paths when explicit ``targets`` hit nothing, or when an entry of a list
    of targets hits nothing (a typo should never silently select fewer modules).
    """
    _check_rules(targets, "targets")
    _check_rules(exclude, "exclude")
    candidates = [(p, m) for p, m in model.named_modules() if p and (where is None or where(p, m))]
    chosen = [(p, m) for p, m in candidates if path_matches(p, targets) and not (exclude and path_matches(p, exclude))]
    valid = [p for p, _ in candidates]
    if targets is not None:
        missing = [targets] if isinstance(targets, str) and not chosen else []
        if not isinstance(targets, str):
            missing = [t for t in targets if not any(path_matches(p, [t]) for p in valid)]
        if missing:
            raise ValueError(
                f"unknown {what} target(s) {missing!r}; valid {what} paths are: {_short_list(valid)}"
            )
    return chosen


def _short_list(paths: Iterable[str], limit: int = 40) -> str:
    paths = list(paths)
    shown = ", ".join(repr(p) for p in paths[:limit])
    return shown + (f", … ({len(paths) - limit} more)" if len(paths) > limit else "") if paths else "(none)"
