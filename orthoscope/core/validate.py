"""One user-given number, checked: each error names the argument, the value and what is allowed.

This module sits at the bottom of the package (it imports nothing from orthoscope), so every layer can use it; the
checks that need a ``Run``'s parts (model, task, method) live one floor up, in ``orthoscope.training.checks``.

Numbers are checked for type as well as range — ``AdamW(lr="1e-3")`` is refused with a message, never a
``TypeError`` from deep inside a comparison — and a ``bool`` is not accepted where a number is meant.
"""
from __future__ import annotations

import math
import numbers
import reprlib


def check_number(name: str, value, *, low=None, high=None, low_open: bool = False, integer: bool = False):
    """``value`` must be a real number (an integer when ``integer``), finite, within [low, high] (``(low`` when
    ``low_open``). Returns it."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an integer' if integer else 'a number'}, got {type(value).__name__} "
                        f"{bounded(value)}" + (" (a string: write the number without quotes)" if isinstance(value, str)
                                            else ""))
    # an int is always finite (and math.isfinite would overflow converting a huge one to float)
    if not isinstance(value, numbers.Integral) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {bounded(value)}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '≥'} {low}, got {bounded(value)}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be ≤ {high}, got {bounded(value)}")
    return value


class _BoundedRepr(reprlib.Repr):
    """``reprlib``'s bounded repr (a few items per container, a few levels, strings cut before they are quoted),
    large integers described by their size: ``repr`` of a 10⁵-digit int is quadratic (and refused past 4300 digits)."""

    def __init__(self, limit: int):
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 3, limit, limit
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = self.maxdeque = 6

    def repr_int(self, x, level):
        bits = x.bit_length()
        return f"<an integer of {bits} bits>" if bits > 128 else repr(x)


def bounded(value, limit: int = 60) -> str:
    """``repr(value)`` in at most ``limit`` characters, built from a bounded prefix of ``value``.

    Every error message that shows a user-given value goes through this: ``f"{value!r:.60}"`` formats the *whole*
    value before cutting it, which never ends for a YAML alias bomb (nine aliases of nine aliases … are 10⁹ strings
    sharing one list) and is slow for a long string or a huge integer. Here at most a few items of a few levels are
    rendered (``reprlib``), so the cost is bounded whatever the value."""
    text = _BoundedRepr(limit).repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def shown_key(key) -> str:
    """A user-given mapping key, as a step of a key path in a message: as written when it is a short word
    (``method.lr``), else bounded (``method.'a b'``)."""
    return key if isinstance(key, str) and key.isidentifier() and len(key) <= 40 else bounded(key, 40)


class ConfigError(ValueError):
    """A config (or an override) is malformed, or a notebook object cannot be written as a config
    (``orthoscope.config``; here at the bottom layer so that every section's checks can raise it)."""
