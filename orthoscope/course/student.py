"""The student's function under test, and what a check says about its answers — in the student's terms.

Every message names the input the check gave and the student's own function: "for Q = 0 (4×4, float64) your cayley
returns dtype float32", never "cayley(0) has dtype float32" (a call the student never wrote). A message is one
sentence; its hint says what to change.
"""
from __future__ import annotations

import torch

from .feedback import Mistake
from .own_code import package_references, run_watched

REFUSED_HINT = ("the check grades your code: remove the orthoscope import from your solution cell and write the "
                "function with torch operations")


class Student:
    """``fn``, the student's answer to the exercise whose function is called ``name`` (e.g. "cayley")."""

    def __init__(self, fn, name: str):
        self.fn, self.name = fn, name

    def refuse_the_package(self) -> None:
        """A Mistake when ``fn`` is, wraps or refers to the package's own code (see own_code.py)."""
        found = package_references(self.fn)
        if found:
            raise Mistake(f"your {self.name} uses the package's own answer ({', '.join(found[:3])}), not your code",
                          REFUSED_HINT)

    def __call__(self, inputs: str, *args):
        """``fn(*args)``; ``inputs`` describes the arguments for the messages ("a random 5×5 skew Q")."""
        out, error, entered = run_watched(self.fn, args)
        if entered:
            raise Mistake(f"for {inputs} your {self.name} ran the package's own code ({entered[0]}), not yours",
                          REFUSED_HINT)
        if isinstance(error, NotImplementedError):
            raise Mistake(f"not written yet — your {self.name} still raises NotImplementedError",
                          "replace `raise NotImplementedError()` with your code, run that cell, then this one")
        if error is not None:
            raise Mistake(f"for {inputs} your {self.name} raised {type(error).__name__}: {error}",
                          "run it by hand on a small input (e.g. a 3×3 matrix) and read the error")
        return out

    def tensor(self, out, like: torch.Tensor, inputs: str) -> torch.Tensor:
        """The answer must be a tensor of ``like``'s shape and dtype."""
        if not isinstance(out, torch.Tensor):
            raise Mistake(f"for {inputs} your {self.name} returns a {type(out).__name__}, not a torch.Tensor",
                          "use torch operations throughout (no numpy, no Python lists)")
        if out.shape != like.shape:
            raise Mistake(f"for {inputs} your {self.name} returns shape {tuple(out.shape)}; it should be "
                          f"{tuple(like.shape)}", "check which dimension your sums or products run over")
        if out.dtype != like.dtype:
            raise Mistake(f"for {inputs} your {self.name} returns dtype {_dtype(out)}; it should keep the input's "
                          f"dtype, {_dtype(like)}",
                          "avoid hard-coded dtypes such as torch.float32; build new tensors with dtype=x.dtype")
        return out

    def number(self, out, inputs: str) -> float:
        """The answer must be one number (a Python float or a one-element tensor)."""
        try:
            return float(out)
        except (TypeError, ValueError, RuntimeError):
            shown = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else \
                f"a {type(out).__name__} {out!r:.60}"
            raise Mistake(f"for {inputs} your {self.name} returns {shown}, not one number",
                          "return a single value, e.g. a 0-d tensor or float(...)") from None

    def diagnose(self, out, ref, variants: dict, inputs: str, formula: str, hint: str, tol: float = 1e-6) -> None:
        """``out`` equals ``ref`` — or name the first typical mistake (``variants``: (message, hint) -> its answer)
        that ``out`` equals, or say how far ``out`` is from ``formula``."""
        if close(out, ref, tol):
            return
        for (message, variant_hint), wrong in variants.items():
            if close(out, wrong, tol):
                raise Mistake(f"for {inputs}: {message}", variant_hint)
        err = (torch.as_tensor(out).double() - torch.as_tensor(ref).double()).abs().max().item()
        raise Mistake(f"for {inputs} your {self.name} differs from {formula} by up to {err:.3g}", hint)


def close(a, b, tol: float = 1e-6) -> bool:
    """Equal within ``tol`` relative to ``b`` (absolute near 0); equal NaNs and equal infinities count as equal."""
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    if a.shape != b.shape:
        return False
    both_nan = torch.isnan(a) & torch.isnan(b)
    return bool((((a - b).abs() <= tol * (1 + b.abs())) | both_nan | (a == b)).all())   # a == b: equal infinities


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
