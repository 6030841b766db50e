"""What a reproduction is (``Reproduction``: the paper's setting, ours, the tolerance, the code that runs it) and what
one run of it returns (``Outcome``). The entries live in ``reproduce`` and ``reproduce_dynamics``; the command line
in ``reproduce``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Outcome:
    ours: float
    detail: str
    passed: bool


@dataclass
class Reproduction:
    name: str
    title: str
    paper: str           # the paper's setting and number
    tolerance: str       # what counts as reproduced
    scaled: str          # how our setting differs
    run: Callable[[bool], Outcome]
