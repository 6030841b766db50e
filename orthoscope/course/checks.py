"""The course's checks: a student's function against the package's reference, with a specific diagnosis.

Each check calls the student's function on a few inputs (random ones, and edge cases with a known answer), compares
with the reference, and — when it differs — compares with the typical wrong answers (a transposed result, a wrong
sign, one Neumann term too many or too few, a forgotten normalization, the wrong dtype) to say *which* mistake it is
and give a hint. The student's function runs in this process on tensors we make; no file is ever executed.

Every check has two sets of cases: the **visible** ones, which the student's check cell runs, and the **hidden** ones
(``hidden=True``), which the autograder's copy of the check cell runs too (nbgrader's ``### BEGIN HIDDEN TESTS``):
other sizes, seeds, dtypes and edge cases — none equal to a visible input — so that an answer fitted to the visible
cases fails. A check is ``check_<exercise>(student, hidden)`` and raises ``Mistake`` on the first wrong answer.
"""
from __future__ import annotations

import math

import torch

from .feedback import Feedback, Mistake  # noqa: F401 — re-exported: orthoscope.course.checks.Feedback is public
from .student import Student, close, gen

F64, F32 = torch.float64, torch.float32


def tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance for comparing with the float64 reference: float32 carries ~7 digits, rounding compounds."""
    return 1e-4 if dtype == F32 else 1e-9


def shape_text(t: torch.Tensor) -> str:
    """"5×5, float64": what a student needs to rebuild the input."""
    return "×".join(str(n) for n in t.shape) + f", {str(t.dtype).removeprefix('torch.')}"


# ---- 1. singular-value entropy --------------------------------------------------------------------------------------

def check_spectral_entropy(student: Student, hidden: bool = False) -> None:
    """``fn(W) -> H``: ``H = −Σ pᵢ log pᵢ / log n``, ``pᵢ = σᵢ² / Σσⱼ²`` over the n singular values of W."""
    from orthoscope.probes.metrics import sv_entropy

    flat = torch.eye(10 if hidden else 6, dtype=F64)
    inputs = f"W = I ({shape_text(flat)}, a flat spectrum)"
    h = student.number(student(inputs, flat), inputs)
    if not math.isclose(h, 1.0, abs_tol=1e-6):
        raise Mistake(f"for {inputs} your spectral_entropy returns H = {h:.4g}; it should be 1",
                      "divide the entropy by log n so that the flat spectrum scores exactly 1")
    rows, cols = (3, 8) if hidden else (5, 4)
    rank_one = torch.outer(torch.arange(1.0, rows + 1, dtype=F64), torch.ones(cols, dtype=F64))
    inputs = f"a rank-one W ({shape_text(rank_one)})"
    h = student.number(student(inputs, rank_one), inputs)
    if not math.isclose(h, 0.0, abs_tol=1e-6):
        raise Mistake(f"for {inputs} your spectral_entropy returns H = {h:.4g}; it should be 0",
                      "zero singular values must contribute 0 (0·log 0 = 0): clamp p before the log")
    cases = ([(10, (4, 9), F64), (11, (12, 3), F64), (12, (6, 6), F32), (13, (8, 5), F64)] if hidden else
             [(0, (7, 5), F64), (1, (7, 5), F64), (2, (7, 5), F64)])
    for seed, shape, dtype in cases:
        w = torch.randn(*shape, generator=gen(seed), dtype=F64) * torch.linspace(0.1, 2, shape[1], dtype=F64)
        if seed == 13:
            w[:, 0] = 0                                  # rank-deficient: one σ is 0, and 0·log 0 must count as 0
        s = torch.linalg.svdvals(w)
        p2, p1 = s ** 2 / (s ** 2).sum(), s / s.sum()
        n = s.numel()

        def entropy(p):
            p = p[p > 0]
            return float(-(p * p.log()).sum())

        inputs = f"a random W ({shape_text(w.to(dtype))}" + (", one column all zero)" if seed == 13 else ")")
        energy = s[s > 0] ** 2
        student.diagnose(student.number(student(inputs, w.to(dtype)), inputs), float(sv_entropy(s)), {
            ("it looks like you used σ instead of σ² for p", "pᵢ = σᵢ² / Σσⱼ² — the squares are the energy"):
                entropy(p1) / math.log(n),
            ("it looks like you forgot to divide by log n", "normalize: H / log(n), n = number of singular values"):
                entropy(p2),
            ("p does not sum to 1 — a forgotten normalization", "p = σ² / (σ²).sum()"):
                float(-(energy * energy.log()).sum()) / math.log(n),
        }, inputs, "H = −Σ p log p / log n", "compute σ = torch.linalg.svdvals(W), p = σ²/Σσ², H = −Σ p log p / log n",
            tol=tolerance(dtype) if dtype == F32 else 1e-6)


# ---- 2. the Cayley transform ---------------------------------------------------------------------------------------

def skew(b: int, seed: int, norm: float = 0.5, dtype=torch.float64) -> torch.Tensor:
    """A random b×b skew-symmetric matrix of Frobenius norm ``norm``."""
    a = torch.randn(b, b, generator=gen(seed), dtype=dtype)
    q = a - a.T
    return q * (norm / torch.linalg.matrix_norm(q))


def _cayley_of_any(m: torch.Tensor) -> torch.Tensor:
    """(I + M)(I − M)⁻¹ for any square M (the two factors commute: both are functions of M)."""
    eye = torch.eye(m.shape[-1], dtype=m.dtype)
    return torch.linalg.solve(eye - m, eye + m, left=False)


def check_cayley(student: Student, hidden: bool = False) -> None:
    """``fn(Q) -> R = (I + Q)(I − Q)⁻¹`` for skew-symmetric Q."""
    from orthoscope.ortho.cayley import cayley

    zero = torch.zeros(3, 3, dtype=F32) if hidden else torch.zeros(4, 4, dtype=F64)
    inputs = f"Q = 0 ({shape_text(zero)})"
    r = student.tensor(student(inputs, zero), zero, inputs)
    if not close(r, torch.eye(zero.shape[0])):
        raise Mistake(f"for {inputs} your cayley does not return the identity", "at Q = 0 both factors are I, so R = I")
    cases = ([(10, 2, 0.5, F64), (11, 8, 3.0, F64), (12, 13, 0.5, F32)] if hidden else
             [(0, 5, 0.5, F64), (1, 5, 0.5, F32)])
    for seed, b, norm, dtype in cases:
        q = skew(b, seed, norm, dtype=F64).to(dtype)
        inputs = f"a random skew Q ({shape_text(q)}, ‖Q‖_F = {norm:g})"
        out = student.tensor(student(inputs, q), q, inputs)
        ref = cayley(q.double())
        tol = tolerance(dtype)
        if close(out, ref, tol):
            continue
        eye = torch.eye(b, dtype=F64)
        if close(out, ref.T, tol):
            raise Mistake(*_which_inverse(student, q, inputs))
        for (message, hint), wrong in {
            ("you return I + Q: the factor (I − Q)⁻¹ is missing", "multiply by (I − Q)⁻¹ — better, solve with "
             "torch.linalg.solve(I − Q, I + Q, left=False)"): eye + q.double(),
            ("you multiplied by (I − Q) instead of by its inverse", "(I − Q)⁻¹, not (I − Q)"):
                (eye + q.double()) @ (eye - q.double()),
        }.items():
            if close(out, wrong, tol):
                raise Mistake(f"for {inputs}: {message}", hint)
        orth = float(torch.linalg.matrix_norm(out.double().T @ out.double() - eye) / math.sqrt(b))
        if orth > 1e-4:
            raise Mistake(f"for {inputs} your R is not orthogonal: ‖RᵀR − I‖/√b = {orth:.2g}",
                          "did you invert the right factor? R = (I + Q)(I − Q)⁻¹")
        raise Mistake(f"for {inputs} your R is orthogonal but not the Cayley transform of Q",
                      "R = (I + Q)(I − Q)⁻¹: check both factors and their signs")


def _which_inverse(student: Student, q: torch.Tensor, inputs: str) -> tuple[str, str]:
    """The student returned Rᵀ = R⁻¹. For skew Q the transpose of R and R with the signs of Q swapped,
    (I − Q)(I + Q)⁻¹, are the same matrix; for a general (non-skew) M they differ, so one more call tells which."""
    m = torch.randn(q.shape[0], q.shape[0], generator=gen(99), dtype=F64)
    m = m * (0.3 / torch.linalg.matrix_norm(m))
    try:
        out = student.fn(m)                             # a diagnosis only: a failure here changes nothing
    except Exception:  # noqa: BLE001
        out = None
    if isinstance(out, torch.Tensor) and close(out, _cayley_of_any(m).T, 1e-9):
        return (f"for {inputs} your cayley returns the transpose of R (Rᵀ = R⁻¹, the rotation backwards): a "
                "transpose too many — a trailing .T, or Qᵀ where Q belongs",
                "R = (I + Q)(I − Q)⁻¹ as it stands; with torch.linalg.solve(I − Q, I + Q, left=False) no transpose "
                "is needed")
    if isinstance(out, torch.Tensor) and close(out, _cayley_of_any(-m), 1e-9):
        return (f"for {inputs} your cayley returns (I − Q)(I + Q)⁻¹: the signs of Q are swapped, which gives "
                "Rᵀ = R⁻¹, the rotation backwards",
                "R = (I + Q)(I − Q)⁻¹: plus Q in the first factor, minus Q in the inverted one")
    return (f"for {inputs} your cayley returns Rᵀ = R⁻¹, the rotation backwards: the transpose of R, which for a "
            "skew Q is also what swapping the signs of Q gives",
            "R = (I + Q)(I − Q)⁻¹: plus Q in the first factor, minus Q in the inverted one, and no transpose")


# ---- 3. Cayley–Neumann --------------------------------------------------------------------------------------------

def check_cayley_neumann(student: Student, hidden: bool = False) -> None:
    """``fn(Q, k) -> (I + Q)(I + Q + Q² + … + Q^k)``, the Cayley transform with the inverse replaced by k Neumann terms."""
    from orthoscope.ortho.cayley import cayley_neumann

    # k = 1 comes last among the visible cases: its k − 1 = 0 polynomial is I + Q, not a telling variant
    cases = ([(5, 4, 0.3, F64, 20), (6, 9, 0.2, F64, 21), (2, 7, 0.3, F32, 22)] if hidden else
             [(2, 6, 0.3, F64, 2), (3, 6, 0.3, F64, 3), (4, 6, 0.3, F64, 4), (1, 6, 0.3, F64, 1)])
    for k, b, norm, dtype, seed in cases:
        q = skew(b, seed, norm).to(dtype)
        inputs = f"a random skew Q ({shape_text(q)}) and k = {k}"
        out = student.tensor(student(inputs, q, k), q, inputs)
        q64 = q.double()
        variants = {
            (f"your cayley_neumann gives the k = {k - 1} polynomial: one Neumann term too few",
             "the series is I + Q + … + Q^k: k + 1 terms, the last one Q^k"): cayley_neumann(q64, k - 1),
            (f"your cayley_neumann gives the k = {k + 1} polynomial: one Neumann term too many",
             "the series stops at Q^k (range(k + 1) powers, starting from Q⁰ = I)"): cayley_neumann(q64, k + 1),
            ("the sign of Q is wrong in one factor", "both factors use +Q: (I + Q)(I + Q + … + Q^k)"):
                cayley_neumann(-q64, k),
            ("the first factor (I + Q) is missing", "multiply the series by (I + Q)"):
                sum(torch.linalg.matrix_power(q64, j) for j in range(k + 1)),
        }
        if k == 1:
            del variants[next(iter(variants))]
        student.diagnose(out, cayley_neumann(q64, k), variants, inputs, "(I + Q)(I + Q + … + Q^k)",
                         "build S = I + Q + … + Q^k with a loop over powers, then return (I + Q) @ S",
                         tol=tolerance(dtype))


# ---- 4. Newton–Schulz (Muon) ---------------------------------------------------------------------------------------

def check_newton_schulz(student: Student, hidden: bool = False) -> None:
    """``fn(G, steps) -> X ≈ U Vᵀ``: normalize G by its Frobenius norm, then ``steps`` quintic iterations
    ``X ← aX + (b·XXᵀ + c·(XXᵀ)²)X`` with (a, b, c) = (3.4445, −4.7750, 2.0315)."""
    from orthoscope.optim.muon import NS_COEFFICIENTS, newton_schulz

    a, b, c = NS_COEFFICIENTS
    cases = ([(10, (9, 4), 5, F64), (11, (5, 5), 3, F64), (12, (3, 7), 1, F64), (13, (8, 6), 5, F32)] if hidden else
             [(0, (6, 6), 5, F64), (1, (4, 9), 5, F64)])
    for seed, shape, steps, dtype in cases:
        g = torch.randn(*shape, generator=gen(seed), dtype=F64).to(dtype)
        inputs = f"a random G ({shape_text(g)}) and steps = {steps}"
        out = student.tensor(student(inputs, g, steps), g, inputs)
        g64 = g.double()

        def iterate(x, coeffs=(a, b, c), n=steps):
            for _ in range(n):
                gram = x @ x.T
                x = coeffs[0] * x + (coeffs[1] * gram + coeffs[2] * gram @ gram) @ x
            return x

        unit = g64 / (g64.norm() + 1e-7)
        variants = {
            ("G was not normalized first, so the iteration left its basin",
             "divide G by its Frobenius norm (G.norm()) before iterating: every σ must start in (0, 1]"): iterate(g64),
            ("you ran one iteration too few", "loop exactly `steps` times"): iterate(unit, n=steps - 1),
            ("you ran one iteration too many", "loop exactly `steps` times"): iterate(unit, n=steps + 1),
            ("the coefficients are not (3.4445, −4.7750, 2.0315) in that order",
             "X ← a·X + (b·A + c·A²)·X with A = X Xᵀ"): iterate(unit, coeffs=(a, c, b)),
        }
        student.diagnose(out, newton_schulz(g64, steps), variants, inputs, "the quintic Newton–Schulz iteration",
                         "normalize by the Frobenius norm, then X ← aX + (bA + cA²)X with A = XXᵀ",
                         tol=tolerance(dtype) if dtype == F32 else 1e-6)


# ---- 5. harmonic logits --------------------------------------------------------------------------------------------

def check_harmonic_logits(student: Student, hidden: bool = False) -> None:
    """``fn(h, centers, n) -> −n·log d``, ``d = √(‖h − w‖² + ε)``, ε = 1e-6, for h[N, D], centers[V, D]."""
    from orthoscope.methods.losses import HARMONIC_EPS, harmonic_logits

    centers = torch.randn(*((6, 5) if hidden else (4, 3)), generator=gen(21 if hidden else 1), dtype=F64)
    on_centre = centers[-1:].clone() if hidden else centers[:1].clone()
    inputs = f"h equal to one of the {centers.shape[0]} centres ({shape_text(centers)})"
    out = student.tensor(student(inputs, on_centre, centers, 2.0), torch.empty(1, centers.shape[0], dtype=F64), inputs)
    if not torch.isfinite(out).all():
        raise Mistake(f"for {inputs} your harmonic_logits returns a non-finite logit (log 0)",
                      "add ε = 1e-6 inside the log: log(‖h − w‖² + ε)")
    cases = ([(22, 7, centers, 8.0, F64), (23, 1, centers, 0.5, F64),
              (24, 4, torch.randn(3, 2, generator=gen(25), dtype=F64), 2.0, F32)] if hidden else
             [(0, 5, centers, 2.0, F64)])
    for seed, n_points, w, n, dtype in cases:
        h = torch.randn(n_points, w.shape[1], generator=gen(seed), dtype=F64)
        inputs = f"random h ({shape_text(h.to(dtype))}), centers ({shape_text(w.to(dtype))}) and n = {n:g}"
        like = torch.empty(n_points, w.shape[0], dtype=dtype)
        out = student.tensor(student(inputs, h.to(dtype), w.to(dtype), n), like, inputs)
        log_d2 = torch.log(torch.cdist(h, w) ** 2 + HARMONIC_EPS)
        student.diagnose(out, harmonic_logits(h, w, n), {
            ("the sign is flipped: nearer centres must get larger logits", "logits = −n·log d"): 0.5 * n * log_d2,
            ("the exponent n is missing", "multiply −log d by n"): -0.5 * log_d2,
            ("you used the log of the squared distance without the ½: that is −2n·log d",
             "−n·log d = −(n/2)·log(‖h − w‖² + ε)"): -n * log_d2,
        }, inputs, "−(n/2)·log(‖h − w‖² + ε)", "logits[i, v] = −(n/2)·log(‖h_i − w_v‖² + ε)",
            tol=tolerance(dtype) if dtype == F32 else 1e-6)


# ---- 6. a B-spline KAN edge ----------------------------------------------------------------------------------------

def check_bspline(student: Student, hidden: bool = False) -> None:
    """``fn(x, grid, k) -> B[B, in, G+k]``: pykan's B-spline basis of order k on the extended knots ``grid[in, G+2k+1]``
    (Cox–de Boor recursion, zero outside the knots)."""
    from orthoscope.kernels.bspline import bspline_basis, uniform_grid

    cases = ([(2, 3, 3, 30), (4, 4, 1, 31), (1, 7, 2, 32)] if hidden else [(1, 5, 2, None), (2, 5, 2, None),
                                                                          (3, 5, 2, None)])
    for k, grid_size, n_in, seed in cases:
        grid = uniform_grid(n_in, grid_size, k, dtype=F64)
        if seed is None:
            x = torch.linspace(-0.99, 0.99, 23, dtype=F64).unsqueeze(1).repeat(1, n_in)
            inputs = f"k = {k}, a uniform grid (G = {grid_size}, float64) and x from −0.99 to 0.99"
        else:
            # hidden: uneven knots (pykan's grids after a grid update), and x reaching beyond the knots (basis 0)
            h = 2 / grid_size
            grid = grid + (torch.rand(grid.shape, generator=gen(seed), dtype=F64) - 0.5) * (h / 3)
            x = (torch.rand(17, n_in, generator=gen(seed + 1), dtype=F64) - 0.5) * (2 + 2 * (k + 2) * h)
            inputs = f"k = {k}, an uneven grid (G = {grid_size}, {n_in} inputs, float64) and x partly outside the knots"
        ref = bspline_basis(x, grid, k)
        out = student(inputs, x, grid, k)
        if isinstance(out, torch.Tensor) and out.dim() == 3 and out.shape[-1] == ref.shape[-1] + 1:
            raise Mistake(f"for {inputs} your bspline returns {out.shape[-1]} basis functions, one more than the "
                          f"{ref.shape[-1]} of order {k}: the recursion stopped one level early",
                          "start from the order-0 indicators (G + 2k of them) and raise the order k times; each "
                          "raise removes one function")
        out = student.tensor(out, ref, inputs)
        inside = (x >= grid[:, k]) & (x < grid[:, -k - 1])   # [B, in]: where the basis must sum to 1
        sums = out.sum(-1)[inside]
        if not close(out, ref) and not close(sums, torch.ones_like(sums), 1e-6):
            raise Mistake(f"for {inputs}: inside the grid your order-{k} basis functions must sum to 1 (partition "
                          f"of unity); yours sum to {sums.min():.3g}…{sums.max():.3g}",
                          "check the two weights of the Cox–de Boor recursion: (x − t_i)/(t_{i+k} − t_i) and "
                          "(t_{i+k+1} − x)/(t_{i+k+1} − t_{i+1})")
        student.diagnose(out, ref, {}, inputs, "the Cox–de Boor basis", "Cox–de Boor: B_{i,0} = 1 on [t_i, t_{i+1}), "
                         "then raise the order with the two weighted terms")


CHECKS = {"spectral_entropy": check_spectral_entropy, "cayley": check_cayley,
          "cayley_neumann": check_cayley_neumann, "newton_schulz": check_newton_schulz,
          "harmonic_logits": check_harmonic_logits, "bspline": check_bspline}
