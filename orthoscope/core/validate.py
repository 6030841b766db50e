"""One user-given number, checked: each error names the argument, the value and what is allowed.

This module sits at the bottom of the package (it imports nothing from orthoscope), so every layer can use it; the
checks that need a ``Run``'s parts (model, task, method) live one floor up, in ``orthoscope.training.checks``.

Numbers are checked for type as well as range — ``AdamW(lr="1e-3")`` is refused with a message, never a
``TypeError`` from deep inside a comparison — and a ``bool`` is not accepted where a number is meant.
"""
from __future__ import annotations

import math
import numbers


def check_number(name: str, value, *, low=None, high=None, low_open: bool = False, integer: bool = False):
    """``value`` must be a real number (an integer when ``integer``), finite, within [low, high] (``(low`` when
    ``low_open``). Returns it."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an integer' if integer else 'a number'}, got {type(value).__name__} "
                        f"{value!r:.60}" + (" (a string: write the number without quotes)" if isinstance(value, str)
                                            else ""))
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '≥'} {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be ≤ {high}, got {value!r}")
    return value


class ConfigError(ValueError):
    """A config (or an override) is malformed, or a notebook object cannot be written as a config
    (``orthoscope.config``; here at the bottom layer so that every section's checks can raise it)."""
