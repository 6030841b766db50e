"""The course's checks: a student's function against the package's reference, with a specific diagnosis.

Each check calls the student's function on a few inputs (random ones, and edge cases with a known answer), compares
with the reference, and — when it differs — compares with the typical wrong answers (a transposed result, a wrong
sign, one Neumann term too many or too few, a forgotten normalization, the wrong dtype) to say *which* mistake it is
and give a hint. The student's function runs in this process on tensors we make; no file is ever executed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Feedback:
    """What a check found: ``ok``, a one-line ``message`` and a ``hint`` (empty when ok)."""

    name: str
    ok: bool
    message: str
    hint: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"{mark} {self.name}: {self.message}" + (f"\n  hint: {self.hint}" if self.hint else "")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        color, mark = ("#1a7f37", "✓") if self.ok else ("#b42318", "✗")
        hint = f"<div style='margin-top:4px'><b>hint:</b> {_html(self.hint)}</div>" if self.hint else ""
        return (f"<div class='orthoscope-feedback' data-ok='{str(self.ok).lower()}' style='border-left:4px solid "
                f"{color};padding:6px 10px;font-family:sans-serif'><b style='color:{color}'>{mark} {self.name}</b>: "
                f"{_html(self.message)}{hint}</div>")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Mistake(Exception):
    """Raised inside a check with the message and hint for the student."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def call(fn, *args):
    """The student's function, with its own exceptions turned into feedback."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise Mistake("not written yet — the function still raises NotImplementedError",
                      "replace `raise NotImplementedError()` with your code, run that cell, then this one")
    except Exception as e:  # noqa: BLE001 — any error in student code is feedback, not a crash
        raise Mistake(f"your function raised {type(e).__name__}: {e}",
                      "run it by hand on a small input (e.g. a 3×3 matrix) and read the error")


def tensor_result(out, like: torch.Tensor, what: str) -> torch.Tensor:
    """The output must be a tensor of ``like``'s shape and dtype."""
    if not isinstance(out, torch.Tensor):
        raise Mistake(f"{what} should be a torch.Tensor, got {type(out).__name__}",
                      "use torch operations throughout (no numpy, no Python lists)")
    if out.shape != like.shape:
        raise Mistake(f"{what} has shape {tuple(out.shape)}, expected {tuple(like.shape)}",
                      "check which dimension your sums or products run over")
    if out.dtype != like.dtype:
        raise Mistake(f"{what} has dtype {out.dtype}, expected {like.dtype} (the input's)",
                      "avoid hard-coded dtypes such as torch.float32; build new tensors with dtype=x.dtype")
    return out


def scalar(out, what: str) -> float:
    """The output must be one number (a Python float or a one-element tensor)."""
    try:
        return float(out)
    except (TypeError, ValueError, RuntimeError):
        raise Mistake(f"{what} should be one number, got {type(out).__name__} {out!r:.60}",
                      "return a single value, e.g. a 0-d tensor or float(...)") from None


def close(a, b, tol: float = 1e-6) -> bool:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    if a.shape != b.shape:
        return False
    both_nan = torch.isnan(a) & torch.isnan(b)
    return bool((((a - b).abs() <= tol * (1 + b.abs())) | both_nan | (a == b)).all())   # a == b: equal infinities


def diagnose(out, ref, variants: dict, what: str, general_hint: str):
    """``out`` equals ``ref`` — or name the first wrong variant it equals, or say how far off it is."""
    if close(out, ref):
        return
    for (message, hint), wrong in variants.items():
        if close(out, wrong):
            raise Mistake(f"{what}: {message}", hint)
    err = (torch.as_tensor(out).double() - torch.as_tensor(ref).double()).abs().max().item()
    raise Mistake(f"{what} differs from the reference by up to {err:.3g}", general_hint)


# ---- 1. singular-value entropy --------------------------------------------------------------------------------------

def check_spectral_entropy(fn) -> None:
    """``fn(W) -> H``: ``H = −Σ pᵢ log pᵢ / log n``, ``pᵢ = σᵢ² / Σσⱼ²`` over the n singular values of W."""
    from orthoscope.probes.metrics import sv_entropy

    flat = torch.eye(6, dtype=torch.float64)
    h = scalar(call(fn, flat), "H of the identity")
    if not math.isclose(h, 1.0, abs_tol=1e-6):
        raise Mistake(f"a flat spectrum (the identity) should give H = 1, got {h:.4g}",
                      "divide the entropy by log n so that the flat spectrum scores exactly 1")
    rank_one = torch.outer(torch.arange(1.0, 6.0, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    h = scalar(call(fn, rank_one), "H of a rank-one matrix")
    if not math.isclose(h, 0.0, abs_tol=1e-6):
        raise Mistake(f"a rank-one matrix should give H = 0, got {h:.4g}",
                      "zero singular values must contribute 0 (0·log 0 = 0): clamp p before the log")
    for seed in range(3):
        w = torch.randn(7, 5, generator=gen(seed), dtype=torch.float64) * torch.linspace(0.1, 2, 5, dtype=torch.float64)
        s = torch.linalg.svdvals(w)
        p2, p1 = s ** 2 / (s ** 2).sum(), s / s.sum()
        n = s.numel()

        def entropy(p):
            return float(-(p * p.log()).sum())

        diagnose(scalar(call(fn, w), "H"), float(sv_entropy(s)), {
            ("it looks like you used σ instead of σ² for p", "pᵢ = σᵢ² / Σσⱼ² — the squares are the energy"):
                entropy(p1) / math.log(n),
            ("it looks like you forgot to divide by log n", "normalize: H / log(n), n = number of singular values"):
                entropy(p2),
            ("p does not sum to 1 — a forgotten normalization", "p = σ² / (σ²).sum()"):
                float(-((s ** 2) * (s ** 2).log()).sum()) / math.log(n),
        }, "H", "compute σ = torch.linalg.svdvals(W), p = σ²/Σσ², H = −Σ p log p / log n")


# ---- 2. the Cayley transform ---------------------------------------------------------------------------------------

def skew(b: int, seed: int, norm: float = 0.5, dtype=torch.float64) -> torch.Tensor:
    a = torch.randn(b, b, generator=gen(seed), dtype=dtype)
    q = a - a.T
    return q * (norm / torch.linalg.matrix_norm(q))


def check_cayley(fn) -> None:
    """``fn(Q) -> R = (I + Q)(I − Q)⁻¹`` for skew-symmetric Q."""
    from orthoscope.ortho.cayley import cayley

    zero = torch.zeros(4, 4, dtype=torch.float64)
    r = tensor_result(call(fn, zero), zero, "cayley(0)")
    if not close(r, torch.eye(4, dtype=torch.float64)):
        raise Mistake("Q = 0 should give R = I", "at Q = 0 both factors are the identity")
    for seed, dtype in ((0, torch.float64), (1, torch.float32)):
        q = skew(5, seed, dtype=dtype)
        out = tensor_result(call(fn, q), q, "R")
        ref = cayley(q)
        eye = torch.eye(5, dtype=dtype)
        variants = {
            ("you computed Rᵀ = R⁻¹ (the signs of Q are swapped)", "R = (I + Q)(I − Q)⁻¹: plus in the first factor"):
                ref.T,
            ("you returned I + Q: the inverse factor (I − Q)⁻¹ is missing", "multiply by torch.linalg.inv(I − Q), or "
             "better solve with torch.linalg.solve"): eye + q,
            ("you multiplied by (I − Q) instead of its inverse", "(I − Q)⁻¹, not (I − Q)"): (eye + q) @ (eye - q),
        }
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        if close(out, ref, tol):
            continue
        orth = float(torch.linalg.matrix_norm(out.T @ out - eye) / math.sqrt(5))
        for (message, hint), wrong in variants.items():
            if close(out, wrong, tol):
                raise Mistake(message, hint)
        if orth > 1e-4:
            raise Mistake(f"R is not orthogonal: ‖RᵀR − I‖/√b = {orth:.2g}", "did you invert the right factor?")
        raise Mistake("R is orthogonal but not the Cayley transform of Q", "check the order of the two factors")


# ---- 3. Cayley–Neumann --------------------------------------------------------------------------------------------

def check_cayley_neumann(fn) -> None:
    """``fn(Q, k) -> (I + Q)(I + Q + Q² + … + Q^k)``, the Cayley transform with the inverse replaced by k Neumann terms."""
    from orthoscope.ortho.cayley import cayley_neumann

    for k in (2, 3, 4, 1):                                     # k = 1 last: there k − 1 = 0 is I + Q itself
        q = skew(6, k, norm=0.3)
        out = tensor_result(call(fn, q, k), q, f"R with k = {k}")
        variants = {
            (f"k = {k} gave the k = {k - 1} polynomial: one Neumann term too few",
             "the series is I + Q + … + Q^k: k + 1 terms, the last one Q^k"): cayley_neumann(q, k - 1),
            (f"k = {k} gave the k = {k + 1} polynomial: one Neumann term too many",
             "the series stops at Q^k (range(k + 1) powers, starting from Q⁰ = I)"): cayley_neumann(q, k + 1),
            ("the sign of Q is wrong in one factor", "both factors use +Q: (I + Q)(I + Q + … + Q^k)"):
                cayley_neumann(-q, k),
            ("the first factor (I + Q) is missing", "multiply the series by (I + Q)"):
                sum(torch.linalg.matrix_power(q, j) for j in range(k + 1)),
        }
        if k == 1:
            del variants[next(iter(variants))]                 # k − 1 = 0 is I + Q itself: not a telling variant
        diagnose(out, cayley_neumann(q, k), variants, f"R with k = {k}",
                 "build S = I + Q + … + Q^k with a loop over powers, then return (I + Q) @ S")


# ---- 4. Newton–Schulz (Muon) ---------------------------------------------------------------------------------------

def check_newton_schulz(fn) -> None:
    """``fn(G, steps) -> X ≈ U Vᵀ``: normalize G by its Frobenius norm, then ``steps`` quintic iterations
    ``X ← aX + (b·XXᵀ + c·(XXᵀ)²)X`` with (a, b, c) = (3.4445, −4.7750, 2.0315)."""
    from orthoscope.optim.muon import NS_COEFFICIENTS, newton_schulz

    a, b, c = NS_COEFFICIENTS
    for seed, shape in ((0, (6, 6)), (1, (4, 9))):
        g = torch.randn(*shape, generator=gen(seed), dtype=torch.float64)
        out = tensor_result(call(fn, g, 5), g, "X")

        def iterate(x, coeffs=(a, b, c), steps=5):
            for _ in range(steps):
                gram = x @ x.T
                x = coeffs[0] * x + (coeffs[1] * gram + coeffs[2] * gram @ gram) @ x
            return x

        variants = {
            ("G was not normalized first, so the iteration left its basin",
             "divide G by its Frobenius norm (G.norm()) before iterating: every σ must start in (0, 1]"): iterate(g),
            ("you ran one iteration too few", "loop exactly `steps` times"): iterate(g / g.norm(), steps=4),
            ("you ran one iteration too many", "loop exactly `steps` times"): iterate(g / g.norm(), steps=6),
            ("the coefficients are not (3.4445, −4.7750, 2.0315) in that order",
             "X ← a·X + (b·A + c·A²)·X with A = X Xᵀ"): iterate(g / g.norm(), coeffs=(a, c, b)),
        }
        diagnose(out, newton_schulz(g, 5), variants, f"X for a {shape[0]}×{shape[1]} G",
                 "normalize by the Frobenius norm, then X ← aX + (bA + cA²)X with A = XXᵀ")


# ---- 5. harmonic logits --------------------------------------------------------------------------------------------

def check_harmonic_logits(fn) -> None:
    """``fn(h, centers, n) -> −n·log d``, ``d = √(‖h − w‖² + ε)``, ε = 1e-6, for h[N, D], centers[V, D]."""
    from orthoscope.methods.losses import HARMONIC_EPS, harmonic_logits

    h = torch.randn(5, 3, generator=gen(0), dtype=torch.float64)
    centers = torch.randn(4, 3, generator=gen(1), dtype=torch.float64)
    on_centre = tensor_result(call(fn, centers[:1].clone(), centers, 2.0), torch.empty(1, 4, dtype=torch.float64),
                              "logits")
    if not torch.isfinite(on_centre).all():
        raise Mistake("a point exactly on a centre gives a non-finite logit (log 0)",
                      "add ε = 1e-6 inside the log: log(‖h − w‖² + ε)")
    like = torch.empty(5, 4, dtype=torch.float64)
    out = tensor_result(call(fn, h, centers, 2.0), like, "logits")
    d2 = torch.cdist(h, centers) ** 2
    diagnose(out, harmonic_logits(h, centers, 2.0), {
        ("the sign is flipped: nearer centres must get larger logits", "logits = −n·log d"):
            0.5 * 2.0 * torch.log(d2 + HARMONIC_EPS),
        ("the exponent n is missing", "multiply −log d by n"): -0.5 * torch.log(d2 + HARMONIC_EPS),
        ("you used log of the squared distance without the ½: that is −2n·log d",
         "−n·log d = −(n/2)·log(‖h − w‖² + ε)"): -2.0 * torch.log(d2 + HARMONIC_EPS),
    }, "logits", "logits[i, v] = −(n/2)·log(‖h_i − w_v‖² + ε)")


# ---- 6. a B-spline KAN edge ----------------------------------------------------------------------------------------

def check_bspline(fn) -> None:
    """``fn(x, grid, k) -> B[B, in, G+k]``: pykan's B-spline basis of order k on the extended knots ``grid[in, G+2k+1]``
    (Cox–de Boor recursion, zero outside the knots)."""
    from orthoscope.kernels.bspline import bspline_basis, uniform_grid

    for k in (1, 2, 3):
        grid = uniform_grid(2, 5, k, dtype=torch.float64)
        x = torch.linspace(-0.99, 0.99, 23, dtype=torch.float64).unsqueeze(1).repeat(1, 2)
        ref = bspline_basis(x, grid, k)
        out = call(fn, x, grid, k)
        if isinstance(out, torch.Tensor) and out.dim() == 3 and out.shape[-1] == ref.shape[-1] + 1:
            raise Mistake(f"k = {k} gave {out.shape[-1]} basis functions, one more than the {ref.shape[-1]} of order "
                          f"{k}: the recursion stopped one level early",
                          "start from the order-0 indicators (G + 2k of them) and raise the order k times; each "
                          "raise removes one function")
        out = tensor_result(out, ref, f"B with k = {k}")
        variants = {}
        sums = out.sum(-1)
        if not close(out, ref) and not close(sums, 1.0, 1e-6):
            raise Mistake(f"inside the grid the k = {k} basis functions must sum to 1 (partition of unity); yours sum "
                          f"to {sums.min():.3g}…{sums.max():.3g}",
                          "check the two weights of the Cox–de Boor recursion: (x − t_i)/(t_{i+k} − t_i) and "
                          "(t_{i+k+1} − x)/(t_{i+k+1} − t_{i+1})")
        diagnose(out, ref, variants, f"B with k = {k}", "Cox–de Boor: B_{i,0} = 1 on [t_i, t_{i+1}), then raise the "
                 "order with the two weighted terms")


CHECKS = {"spectral_entropy": check_spectral_entropy, "cayley": check_cayley,
          "cayley_neumann": check_cayley_neumann, "newton_schulz": check_newton_schulz,
          "harmonic_logits": check_harmonic_logits, "bspline": check_bspline}
