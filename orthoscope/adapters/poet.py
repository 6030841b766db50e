"""POET — reparameterized training by orthogonal equivalence transformation (Qiu et al., arXiv 2506.08001).

**Math (paper layout).** ``W_RP = R W₀ P`` with W₀ fixed and random, R ∈ O(m) on the input side (m = in_features)
and P ∈ O(n) on the output side (n = out_features). The singular values of ``W_RP`` equal those of W₀ exactly.
Only R and P train, through stochastic primitives redrawn at every merge (reference §2.1):

* **BS** (block-stochastic, block b): ``R = Π · blockdiag(G_1 … G_{m/b}) · Πᵀ`` with Π a random permutation;
  the same for P. That is ``(m + n)(b − 1)/2`` trainable numbers per layer.
* **FS** (fully stochastic, fraction f): one b×b rotation G on a random index set S of size ``b = round(f·m)``,
  i.e. ``R = I + D(S)(G − I)D(S)ᵀ``, and the same for P with ``round(f·n)``. That is ``b_in(b_in−1)/2 +
  b_out(b_out−1)/2`` numbers per layer (the paper's b(b − 1) when b_in = b_out).

Each G is ``cayley(Q)`` (exact) or ``cayley_neumann(Q, k)`` of a packed skew Q, zero at init and after every merge.

**PyTorch layout (what this code computes).** ``nn.Linear`` keeps ``W[out, in]`` and ``y = x Wᵀ + bias`` for row
vectors x (DESIGN §5). POET's effective weight is ``W_eff = Pᵀ W₀ Rᵀ`` (``W_effᵀ = R W₀ᵀ P`` is the paper's form),
so the layer computes

    y = ((x R) W₀ᵀ) P + bias,      R acts on the INPUT row vector (x ↦ x R),  P on the OUTPUT (y ↦ y P).

The bias sits in the output coordinates and is a plain trainable parameter (not rotated). The weight is stored
**pre-permuted**, as in POET-X (reference §2.8): ``W_s = W₀[inv(perm_out)][:, perm_in]``. Two algorithms compute
the same map (``poet_ops``; option ``centric``):

* input-centric (POET-X): two gathers and two block rotations of the tokens, one matmul with W_s:

      x̃ = x[..., perm_in] · blockdiag(G_in)    (kernels.block_rotate; FS rotates the first b coordinates only)
      y = ((x̃ W_sᵀ) · blockdiag(G_out))[..., perm_out] + bias

* weight-centric: build ``W_eff`` from W_s once per call (O(m·n·b), permutations as row gathers of small
  matrices) and run ``F.linear(x, W_eff, bias)``, like ``nn.Linear``.

``centric="auto"`` (default) picks the cheaper rotation cost per call: weight-centric when the call has more than
``2mn/(m+n)`` tokens (BS), i.e. in training; input-centric for a few tokens (decoding).
Here ``perm_in`` plays Π with ``x Π = x[..., perm_in]``, so ``R = Π blockdiag(G_in) Πᵀ``.

**Merge-then-reinitialize** (``merge_then_reinitialize``) folds R and P into W₀ (``W₀ ← W_eff``), draws new
permutations, re-stores W₀ pre-permuted and zeroes Q. The output is unchanged up to rounding. ``merge()`` and
``unmerge()`` are the adapter protocol (``adapters.core``): they move ``W_eff`` in and out of ``base_layer.weight``
in ordinary coordinates. Unmerged, ``base_layer.weight`` holds the pre-permuted ``W_s`` (or nothing when the base
is quantized). Read the weight through ``effective_weight()``.

**Memory mode** (POET-X_mem): the whole map runs as one autograd node that saves only x, G_in and G_out
(``poet_x.POETXFunction``, input-centric: recomputes the rotated activations; ``POETXWeightFunction``,
weight-centric: recomputes only W_eff). **Quantized base** (POET-XQ): W_s is kept as 8- or 4-bit group codes
(``quant.quantize_groupwise``) and dequantized on the fly. A merge is dequantize → merge → requantize.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import kernels
from ..methods.base import Intervention, Method, check_positive
from ..core.targets import Rules, path_matches
from .core import AdaptedLayer, matched_modules, swap_in
from .hf import skipped_compute, unsupported_target_message, warn_skipped
from ..ortho import cayley, invert_permutation, n_packed, random_block_permutation, skew_from_packed
from .poet_ops import (CENTRICS, choose_centric, effective_weight_from, poet_forward, poet_forward_weight,  # noqa: F401
                       rotate)
from .poet_meta import draw_on_meta, normalize_rows
from .poet_x import poet_x_apply, poet_x_weight_apply
from .quant import QuantizedTensor, dequantize_groupwise, quantize_groupwise

VARIANTS = ("bs", "fs")
CAYLEY_CHOICES = ("neumann", "exact")
INITS = ("normalized_gaussian", "normalize", "keep")

# The layer settings' defaults, declared once: POETLinear's keyword defaults and the POET method's fields read these.
LAYER_DEFAULTS = dict(variant="bs", block=32, fs_fraction=0.5, cayley="neumann", k=3, memory_mode=False,
                      quantize=None, group_size=256, init="normalized_gaussian", centric="auto")


def check_layer_settings(variant, block, fs_fraction, cayley, k, quantize, init, centric) -> None:
    """The checks of POET's layer settings (the method and every POETLinear run these, and only these)."""
    for name, value, allowed in (("variant", variant, VARIANTS), ("cayley", cayley, CAYLEY_CHOICES),
                                 ("init", init, INITS), ("quantize", quantize, (None, 8, 4)),
                                 ("centric", centric, CENTRICS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if isinstance(block, bool) or not isinstance(block, int) or block < 2:
        raise ValueError(f"block must be an int ≥ 2 (a 1×1 rotation has no parameters), got {block!r}")
    if isinstance(fs_fraction, bool) or not isinstance(fs_fraction, (int, float)) or not 0.0 < fs_fraction <= 1.0:
        raise ValueError(f"fs_fraction must lie in (0, 1], got {fs_fraction!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k (Neumann terms) must be an int ≥ 0, got {k!r}")


def side_blocks(n: int, variant: str, block: int, fs_fraction: float) -> tuple[int, int]:
    """``(b, r)`` for one side of size n: BS ``(block, n // block)``, FS ``(round(f·n), 1)`` (check_layer first)."""
    if variant == "bs":
        return block, n // block
    return max(int(round(fs_fraction * n)), 0), 1


def check_layer(path: str, in_features: int, out_features: int, variant: str, block: int,
                fs_fraction: float, group_size: int | None = None) -> str | None:
    """Why POET cannot adapt this layer (a message naming it), or ``None``; ``group_size`` must divide in_features."""
    if group_size is not None and in_features % group_size:
        return f"group_size={group_size} does not divide layer {path!r} (in_features={in_features})"
    if variant == "bs":
        for what, n in (("in_features", in_features), ("out_features", out_features)):
            if block > n:
                return f"block={block} is larger than layer {path!r} ({what}={n})"
            if n % block:
                return f"block={block} does not divide layer {path!r} ({what}={n})"
        return None
    for what, n in (("in_features", in_features), ("out_features", out_features)):
        if side_blocks(n, "fs", block, fs_fraction)[0] < 2:
            return (f"fs_fraction={fs_fraction} of layer {path!r} ({what}={n}) gives a block of "
                    f"{side_blocks(n, 'fs', block, fs_fraction)[0]} < 2, which has no parameters")
    return None


def poet_parameter_count(in_features: int, out_features: int, variant: str = "bs", block: int = 256,
                         fs_fraction: float = 0.5) -> int:
    """Trainable POET numbers of one layer. BS: ``(m + n)(b − 1)/2``. FS: ``b_in(b_in − 1)/2 + b_out(b_out − 1)/2``."""
    total = 0
    for n in (in_features, out_features):
        b, r = side_blocks(n, variant, block, fs_fraction)
        total += r * n_packed(b)
    return total


class POETLinear(AdaptedLayer):
    """An ``nn.Linear`` trained by POET (module docstring). Trainable: ``poet_q_in``, ``poet_q_out`` (packed skew
    blocks of G_in, G_out) and the base layer's bias. Buffers: ``perm_in``, ``perm_out``, the probe vectors
    ``probe_v``/``probe_u`` (for ``vRv``), and the quantized codes when ``quantize`` is set."""

    prefix = "poet_"

    def __init__(self, base_layer: nn.Linear, path: str = "", *, variant: str = LAYER_DEFAULTS["variant"],
                 block: int = LAYER_DEFAULTS["block"], fs_fraction: float = LAYER_DEFAULTS["fs_fraction"],
                 cayley: str = LAYER_DEFAULTS["cayley"], k: int = LAYER_DEFAULTS["k"],
                 memory_mode: bool = LAYER_DEFAULTS["memory_mode"], quantize: int | None = LAYER_DEFAULTS["quantize"],
                 group_size: int = LAYER_DEFAULTS["group_size"], init: str = LAYER_DEFAULTS["init"],
                 centric: str = LAYER_DEFAULTS["centric"], generator: torch.Generator | None = None):
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"POET adapts nn.Linear layers; {path!r} is a {type(base_layer).__name__}")
        check_layer_settings(variant, block, fs_fraction, cayley, k, quantize, init, centric)
        problem = check_layer(path, base_layer.in_features, base_layer.out_features, variant, block, fs_fraction,
                              group_size if quantize else None)
        if problem:
            raise ValueError(problem)
        super().__init__(base_layer, path)
        self.variant, self.cayley, self.k, self.memory_mode, self.centric = variant, cayley, k, memory_mode, centric
        self.quantize, self.group_size = quantize, group_size
        m, n = base_layer.in_features, base_layer.out_features
        self.b_in, r_in = side_blocks(m, variant, block, fs_fraction)
        self.b_out, r_out = side_blocks(n, variant, block, fs_fraction)
        ref = base_layer.weight
        self.poet_q_in = nn.Parameter(torch.zeros(r_in, n_packed(self.b_in), dtype=ref.dtype, device=ref.device))
        self.poet_q_out = nn.Parameter(torch.zeros(r_out, n_packed(self.b_out), dtype=ref.dtype, device=ref.device))
        self.register_buffer("perm_in", torch.zeros(m, dtype=torch.long, device=ref.device))
        self.register_buffer("perm_out", torch.zeros(n, dtype=torch.long, device=ref.device))
        raw = torch.randn(m, generator=generator, dtype=torch.float32)
        v = raw.to(ref.device) / raw.to(ref.device).norm()
        self.register_buffer("probe_v", v.to(ref.dtype))
        self.register_buffer("probe_u", v.to(ref.dtype).clone())
        base_layer.weight.requires_grad_(False)
        if ref.is_meta:      # the same draws, kept on the CPU until materialised (poet_meta; distributed.pretrained)
            self.meta_draws = draw_on_meta(raw, init, (n, m), generator)
            return
        w0 = self._initial_weight(init, generator)          # from the detached weight: no autograd
        self.draw_permutations(generator)
        self._store_permuted(w0)

    # ---- construction helpers -----------------------------------------------------------------------------------
    def _initial_weight(self, init: str, generator) -> torch.Tensor:
        w = self.base_layer.weight.detach()
        if init == "normalized_gaussian":       # paper default (Table 5): Gaussian rows, each scaled to unit norm
            w = torch.randn(w.shape, generator=generator, dtype=torch.float32).to(w)
        if init in ("normalized_gaussian", "normalize"):   # "normalize": released code, rows of the given weight
            w = normalize_rows(w)
        return w.clone()

    def draw_permutations(self, generator) -> None:
        """New ``perm_in``/``perm_out`` from ``generator`` (under FSDP2 every rank draws them: one stream)."""
        self.perm_in.copy_(random_block_permutation(self.perm_in.numel(), generator))
        self.perm_out.copy_(random_block_permutation(self.perm_out.numel(), generator))

    @torch.no_grad()
    def _store_permuted(self, w: torch.Tensor) -> None:
        """Store ``W_s = w[inv(perm_out)][:, perm_in]`` as the base weight (quantized if asked)."""
        ws = w[invert_permutation(self.perm_out)][:, self.perm_in]
        if self.quantize is None:
            self.base_layer.weight.data = ws.to(self.base_layer.weight.dtype).contiguous()
            return
        qt = quantize_groupwise(ws, self.quantize, self.group_size)
        for name in ("codes", "scale", "zero"):
            if hasattr(self, "q" + name):
                setattr(self, "q" + name, getattr(qt, name))
            else:
                self.register_buffer("q" + name, getattr(qt, name))
        if isinstance(self.base_layer.weight, nn.Parameter):      # the dense weight is dropped: that is the point
            self._dtype = self.base_layer.weight.dtype
            del self.base_layer.weight
            self.base_layer.register_parameter("weight", None)

    # ---- the maps -----------------------------------------------------------------------------------------------
    def stored_weight(self) -> torch.Tensor:
        """``W_s``, the pre-permuted base weight (dequantized when quantized)."""
        if self.quantize is None:
            return self.base_layer.weight
        qt = QuantizedTensor(self.qcodes, self.qscale, self.qzero, self.quantize, self.group_size,
                             (self.perm_out.numel(), self.perm_in.numel()))
        return dequantize_groupwise(qt, self._dtype)

    def rotation_blocks(self, dtype: torch.dtype | None = None, q_in: torch.Tensor | None = None,
                        q_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(G_in[r_in, b_in, b_in], G_out[r_out, b_out, b_out])`` from the packed skews (this layer's, or the
        whole ``q_in``/``q_out`` given), computed in ``dtype`` when given (merges use float64)."""
        q_in = self.poet_q_in if q_in is None else q_in
        q_out = self.poet_q_out if q_out is None else q_out
        if dtype is not None:
            q_in, q_out = q_in.to(dtype), q_out.to(dtype)
        if self.b_in == self.b_out:     # BS: both sides in one batched call (half the small matmuls and launches)
            g = self._blocks(torch.cat([q_in, q_out]), self.b_in)
            return g[:q_in.shape[0]], g[q_in.shape[0]:]
        return self._blocks(q_in, self.b_in), self._blocks(q_out, self.b_out)

    def _blocks(self, q: torch.Tensor, b: int) -> torch.Tensor:
        if self.cayley == "exact":
            return cayley(skew_from_packed(q, b))
        return kernels.cayley_neumann(q, b, self.k)

    def rotations(self) -> dict[str, torch.Tensor]:
        """The orthogonal blocks for probes: ``{"R": G_in, "P": G_out}`` (input and output side)."""
        g_in, g_out = self.rotation_blocks()
        return {"R": g_in, "P": g_out}

    def centric_for(self, x: torch.Tensor) -> str:
        """``"input"`` or ``"weight"``: the algorithm ``forward(x)`` uses (``centric``; ``"auto"`` compares the
        rotation costs for this many tokens, ``poet_ops.choose_centric``)."""
        n_tokens = x.numel() // max(x.shape[-1], 1)
        return choose_centric(self.centric, n_tokens, self.perm_in.numel(), self.perm_out.numel(),
                              self.poet_q_in.shape[:1] + (self.b_in,), self.poet_q_out.shape[:1] + (self.b_out,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        g_in, g_out = self.rotation_blocks()
        bias = self.base_layer.bias
        if self.centric_for(x) == "weight":
            if not self.memory_mode:
                return poet_forward_weight(x, g_in, g_out, self.stored_weight(), self.perm_in, self.perm_out, bias)
            build = lambda w, a, c: effective_weight_from(w, a, c, self.perm_in, self.perm_out)  # noqa: E731
            return poet_x_weight_apply(x, g_in, g_out, bias, self.stored_weight, build)
        fwd = lambda x_, a, c, w: poet_forward(x_, a, c, w, self.perm_in, self.perm_out)  # noqa: E731
        if self.memory_mode:
            y = poet_x_apply(x, g_in, g_out, self.stored_weight, fwd)
        else:
            y = fwd(x, g_in, g_out, self.stored_weight())
        return y if bias is None else y + bias

    def effective_weight(self) -> torch.Tensor:
        """``W_eff[out, in] = Pᵀ W₀ Rᵀ``, so that ``forward(x) = x W_effᵀ + bias``. Built in O(m·n·b), never by
        forwarding the identity. Differentiable in the POET parameters."""
        if self.merged:
            return self.base_layer.weight
        return effective_weight_from(self.stored_weight(), *self.rotation_blocks(), self.perm_in,
                                     self.perm_out).contiguous()

    # ---- merges -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def merge_then_reinitialize(self, generator: torch.Generator | None = None) -> None:
        """POET's merge: ``W₀ ← W_eff``, new permutations from ``generator``, Q ← 0 (output unchanged)."""
        if self.merged:
            raise RuntimeError(f"POET layer {self.path!r} is merged (merge()); unmerge() before training it")
        w, u = self.merge_result(self.stored_weight(), self.poet_q_in, self.poet_q_out)
        self.probe_u.copy_(u)
        self.draw_permutations(generator)
        self._store_permuted(w)
        self.poet_q_in.zero_()
        self.poet_q_out.zero_()

    @torch.no_grad()
    def merge_result(self, stored: torch.Tensor, q_in: torch.Tensor, q_out: torch.Tensor):
        """A merge's arithmetic on whole tensors: ``(W_eff in float64, u ← R u)`` from ``stored`` (W_s) and the
        packed skews. Under FSDP2 it runs once per layer, on its owner (``orthoscope.distributed.matrices``)."""
        w = effective_weight_from(stored.double(), *self.rotation_blocks(torch.float64, q_in, q_out),
                                  self.perm_in, self.perm_out).contiguous()
        g_in = self.rotation_blocks(None, q_in, q_out)[0]
        u = self.input_rotation(self.probe_u[None], transpose=True, g_in=g_in)[0]
        return w, u

    def permuted(self, w: torch.Tensor) -> torch.Tensor:
        """``W_s = w[inv(perm_out)][:, perm_in]`` in the stored dtype (unquantized layers): what a merge stores."""
        return w[invert_permutation(self.perm_out)][:, self.perm_in].to(self.base_layer.weight.dtype).contiguous()

    def input_rotation(self, x: torch.Tensor, transpose: bool = False, g_in=None) -> torch.Tensor:
        """``x R`` (or ``x Rᵀ``) for row vectors x[..., m], R the input-side rotation (m×m; of ``g_in`` if given)."""
        g_in = (self.rotation_blocks()[0] if g_in is None else g_in).to(x.dtype)
        return rotate(x, g_in.transpose(-1, -2) if transpose else g_in, self.perm_in)[
            ..., invert_permutation(self.perm_in)]

    def output_rotation(self, y: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """``y P`` (or ``y Pᵀ``) for row vectors y[..., n], with P the current output-side rotation (n×n),
        ``P = Π_outᵀ blockdiag(G_out) Π_out``."""
        g_out = self.rotation_blocks()[1].to(y.dtype)
        inv = invert_permutation(self.perm_out)
        return rotate(y, g_out.transpose(-1, -2) if transpose else g_out, inv)[..., self.perm_out]

    @torch.no_grad()
    def merge(self) -> None:
        """Adapter protocol: put ``W_eff`` (ordinary coordinates) into ``base_layer.weight``; forward uses it alone."""
        if self.merged:
            return
        w = self.merge_result(self.stored_weight(), self.poet_q_in, self.poet_q_out)[0]
        dtype = self._dtype if self.quantize is not None else self.base_layer.weight.dtype
        if self.quantize is not None:
            del self.base_layer.weight
            self.base_layer.weight = nn.Parameter(w.to(dtype), requires_grad=False)
        else:
            self.base_layer.weight.data = w.to(dtype).contiguous()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo ``merge()``: ``W_s = Π_out B_out⁻ᵀ … `` computed with the inverses of the small blocks (exact also
        for the only-approximately-orthogonal CNP blocks, as peft ≥ 0.18 does)."""
        if not self.merged:
            return
        w = self.base_layer.weight.double()
        g_in, g_out = self.rotation_blocks(torch.float64)
        mt = rotate(w[..., self.perm_in], torch.linalg.inv(g_in).transpose(-1, -2), None)    # Mᵀ = W Π_in B_inᵀ⁻¹
        wst = rotate(mt.T[..., invert_permutation(self.perm_out)], torch.linalg.inv(g_out), None)   # W_sᵀ
        self.merged = False
        if self.quantize is None:
            self.base_layer.weight.data = wst.T.to(self.base_layer.weight.dtype).contiguous()
            return
        qt = quantize_groupwise(wst.T, self.quantize, self.group_size)
        self.qcodes, self.qscale, self.qzero = qt.codes, qt.scale, qt.zero
        del self.base_layer.weight
        self.base_layer.register_parameter("weight", None)

    @torch.no_grad()
    def release_base(self) -> nn.Linear:
        """The base layer in ordinary coordinates, for ``remove_adapters``: merged, it holds ``W_eff`` already;
        unmerged, the rotations are dropped and the pre-permuted ``W_s`` is un-permuted back to ``W₀``
        (``W₀ = W_s[perm_out][:, inv(perm_in)]``, dequantized when the base is quantized). With ``init="keep"`` and
        no merge-then-reinitialize yet, that is the layer POET was attached to."""
        if self.merged:
            return self.base_layer
        w0 = self.stored_weight()[self.perm_out][:, invert_permutation(self.perm_in)].contiguous()
        if self.quantize is None:
            self.base_layer.weight.data = w0
        else:
            del self.base_layer.weight
            self.base_layer.weight = nn.Parameter(w0, requires_grad=False)
        return self.base_layer

    def num_poet_parameters(self) -> int:
        return self.poet_q_in.numel() + self.poet_q_out.numel()

    def extra_repr(self) -> str:
        return (f"path={self.path!r}, variant={self.variant!r}, b_in={self.b_in}, b_out={self.b_out}, "
                f"cayley={self.cayley!r}, k={self.k}, centric={self.centric!r}, memory_mode={self.memory_mode}, "
                f"quantize={self.quantize}, merged={self.merged}")


# ---- the method ---------------------------------------------------------------------------------------------------

def clip_ramp_value(step: int, max_norm: float, ramp_steps: int, merge_every: int, min_ratio: float = 0.1,
                    until: int = 2000) -> float:
    """The gradient-clip threshold at ``step`` (= updates done so far), ramped after each merge (reference §2.7).

    For ``merge_every ≤ step ≤ until``, the threshold rises linearly from ``min_ratio·max_norm`` to ``max_norm``
    over the ``ramp_steps`` steps that follow each merge. Outside that window it is ``max_norm``. This follows
    ``poet_torch``'s ``calc_poet_grad_clipping_value``: the paper "increases the gradient clipping for 10 training
    steps" after each merge.
    """
    if step < merge_every or step > until:
        return max_norm
    position = step % merge_every
    if position >= ramp_steps:
        return max_norm
    return (min_ratio + (1.0 - min_ratio) * position / max(1, ramp_steps)) * max_norm


class POETGradClip(Intervention):
    """Clip the global gradient norm before every update, with the post-merge ramp (``clip_ramp_value``)."""

    def __init__(self, max_norm: float, merge_every: int, ramp_steps: int, min_ratio: float, until: int):
        self.max_norm, self.merge_every, self.ramp_steps = max_norm, merge_every, ramp_steps
        self.min_ratio, self.until, self.last_value = min_ratio, until, max_norm

    def before_step(self, run) -> None:
        self.last_value = clip_ramp_value(run.step_count, self.max_norm, self.ramp_steps, self.merge_every,
                                          self.min_ratio, self.until)
        torch.nn.utils.clip_grad_norm_(run.trainable_parameters(), self.last_value)


class POETMerge(Intervention):
    """Every ``every`` updates: merge-then-reinitialize every POET layer, then **reset the optimizer state** (Adam's
    m, v and step) of the POET parameters, as ``POETAdamW`` does. The permutation generator's state is checkpointed,
    so a resumed run draws the same permutations."""

    needs_full_weights = True                       # merges multiply whole matrices

    def __init__(self, every: int, layers: list[tuple[str, POETLinear]], generator: torch.Generator):
        self.every, self.layers, self.generator, self.merges = every, layers, generator, 0
        # The parameters whose state is reset, fixed now: under FSDP2 the merge runs on unsharded module
        # attributes, while the optimizer's state stays keyed by the sharded parameters seen here.
        self.poet_ids = {id(p) for _, layer in layers for p in (layer.poet_q_in, layer.poet_q_out)}

    @property
    def owner_mergeable(self) -> bool:
        """Merges can run once per layer on one rank: no layer is quantized (those live in replicated buffers)."""
        return all(layer.quantize is None for _, layer in self.layers)

    def after_step(self, run, merge_layers=None) -> None:
        """Every ``every`` steps: merge every layer (here, or by ``merge_layers(layers, generator)``: the seam's
        once-per-layer merge under FSDP2), then reset the POET parameters' optimizer state."""
        if run.step_count % self.every:
            return
        if merge_layers is not None:
            merge_layers(self.layers, self.generator)
        else:
            for _, layer in self.layers:
                layer.merge_then_reinitialize(self.generator)
        for p in [p for p in run.optimizer.state if id(p) in self.poet_ids]:
            del run.optimizer.state[p]
        self.merges += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state(), "merges": torch.tensor(self.merges)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
        self.merges = int(state["merges"])


@dataclass
class POET(Method):
    """POET as a training method (module docstring): attach POET layers, train with one AdamW, merge periodically.

    The optimizer is one ``torch.optim.AdamW`` with two parameter groups. Group ``"poet"`` holds the packed skew
    parameters, with learning rate **``lr × poet_scale``** and no weight decay (released ``POETAdamW``: poet_lr
    5e-4 × poet_scale 0.5 = 2.5e-4 peak). Group ``"base"`` holds every other trainable parameter (embeddings, norms,
    biases, the head and layers POET skipped), with ``base_lr`` (default ``lr``) and ``weight_decay``. Adam has
    betas (0.9, 0.999) and eps 1e-6, as POETAdamW. torch applies decoupled weight decay before the Adam update;
    POETAdamW applies it after. The difference is O(lr²·wd).

    The order inside a step follows ``examples/torchrun_main.py``: clip (with the post-merge ramp) → update →
    ``step_count += 1`` → merge when ``step_count % merge_every == 0``, resetting the POET Adam state.
    """

    block: int = field(default=LAYER_DEFAULTS["block"], metadata={"help": "BS block size b (variant='bs'); ≥ 2, must divide each layer"})
    merge_every: int = field(default=400, metadata={"help": "T_m: updates between merge-then-reinitialize"})
    lr: float = field(default=1e-3, metadata={"help": "POET learning rate (effective: lr × poet_scale)"})
    poet_scale: float = field(default=0.5, metadata={"help": "multiplier of lr for the POET group (released: 0.5)"})
    base_lr: float | None = field(default=None, metadata={"help": "lr of non-POET parameters (None: lr)"})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay of non-POET parameters"})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "Adam β1, β2"})
    eps: float = field(default=1e-6, metadata={"help": "Adam ε (POETAdamW: 1e-6)"})
    variant: str = field(default=LAYER_DEFAULTS["variant"], metadata={"help": "'bs' (block-stochastic) or 'fs' (fully stochastic)"})
    fs_fraction: float = field(default=LAYER_DEFAULTS["fs_fraction"], metadata={"help": "FS block as a fraction of each side (paper b=1/2)"})
    cayley: str = field(default=LAYER_DEFAULTS["cayley"], metadata={"help": "'neumann' (CNP, k terms) or 'exact' Cayley"})
    k: int = field(default=LAYER_DEFAULTS["k"], metadata={"help": "Neumann terms: R = (I+Q)(I+Q+…+Q^k)"})
    memory_mode: bool = field(default=LAYER_DEFAULTS["memory_mode"], metadata={"help": "POET-X_mem: save only input + rotations"})
    centric: str = field(default=LAYER_DEFAULTS["centric"], metadata={
        "help": "'input' (rotate the tokens, POET-X), 'weight' (build R·W0·P once per call, one matmul) or 'auto' "
                "(the cheaper rotation cost per call: weight when tokens > 2mn/(m+n) for BS)"})
    quantize: int | None = field(default=LAYER_DEFAULTS["quantize"], metadata={"help": "None, 8 or 4: group-quantized base (POET-XQ)"})
    group_size: int = field(default=LAYER_DEFAULTS["group_size"], metadata={"help": "quantization group along in_features"})
    init: str = field(default=LAYER_DEFAULTS["init"], metadata={
        "help": "W0: 'normalized_gaussian' (paper), 'normalize' (row-normalize the given weight, released code), "
                "'keep'"})
    targets: Rules = field(default=None, metadata={"help": "modules to adapt (peft rules); None: every nn.Linear"})
    exclude: Rules = field(default=("lm_head", "unembed"), metadata={"help": "never adapted (default: the head)"})
    skip_indivisible: bool = field(default=False, metadata={
        "help": "leave layers the block does not fit as plain Linear (trained by AdamW), with a warning"})
    seed: int = field(default=0, metadata={"help": "seed of W0 init, permutations and probe vectors"})
    clip_ramp_steps: int = field(default=10, metadata={"help": "steps of the post-merge grad-clip ramp"})
    clip_ramp_min_ratio: float = field(default=0.1, metadata={"help": "ramp start as a fraction of grad_clip"})
    clip_ramp_until: int = field(default=2000, metadata={"help": "no ramp after this step (gd_warmup_steps)"})

    def __post_init__(self):
        check_layer_settings(self.variant, self.block, self.fs_fraction, self.cayley, self.k, self.quantize,
                             self.init, self.centric)
        if not isinstance(self.merge_every, int) or self.merge_every <= 0:
            raise ValueError(f"merge_every must be a positive int, got {self.merge_every!r}")
        check_positive("lr", self.lr, allow_zero=True)
        check_positive("poet_scale", self.poet_scale)
        if self.base_lr is not None:
            check_positive("base_lr", self.base_lr, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas!r}")
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)

    def attach(self, model: nn.Module) -> nn.Module:
        """Replace the selected ``nn.Linear`` layers by ``POETLinear`` in place (every layer is built before any
        is swapped, so an error leaves the model unchanged). Non-POET parameters keep ``requires_grad``."""
        generator = torch.Generator().manual_seed(self.seed)
        if self.targets is not None:
            problem = unsupported_target_message(model, self.targets, "POET", (nn.Linear,))
            if problem:
                raise ValueError(problem)
        paths = matched_modules(model, self.targets, self.exclude)
        skipped = []
        if self.targets is None:          # default targets tell the truth about layers POET cannot take (Conv1D …)
            excluded = lambda p: bool(self.exclude) and path_matches(p, self.exclude)  # noqa: E731
            skipped = skipped_compute(model, (nn.Linear,), excluded)
        if not paths:
            layers = [f"{p} ({type(m).__name__})" for p, m in skipped[:8]]
            other = f"; its weight layers are {layers}" if skipped else ""
            raise ValueError(f"POET: targets={self.targets!r} (exclude={self.exclude!r}) matched no nn.Linear in "
                             f"{type(model).__name__}{other}. POET adapts nn.Linear only")
        warn_skipped("POET", skipped, (nn.Linear,), (nn.Linear,))
        problems = self._unfit(model, paths)
        if problems and not self.skip_indivisible:
            raise ValueError(f"POET cannot adapt {len(problems)} layer(s): " + "; ".join(problems.values()) +
                             ". Exclude them, pick another block size, or pass skip_indivisible=True to train them "
                             "as plain layers with AdamW")
        if problems:
            warnings.warn(f"POET leaves {len(problems)} layer(s) as plain nn.Linear (skip_indivisible=True): "
                          f"{sorted(problems)}", stacklevel=2)
        paths = [p for p in paths if p not in problems]
        if not paths:
            raise ValueError("POET: every matched layer was skipped; nothing to train with POET")
        built = {p: self.make_layer(p, model.get_submodule(p), generator) for p in paths}
        swap_in(model, built, POETLinear.prefix, freeze_others=False)
        # The random stream the merges continue (new permutations) belongs to this model, not to the method: one
        # POET object can attach to several models, each with its own stream. Checkpointed by POETMerge.
        model.poet_generator = generator
        return model

    def _unfit(self, model: nn.Module, paths) -> dict[str, str]:
        """``{path: why}`` for the matched layers the block layout does not fit."""
        problems = {}
        for p in paths:
            m = model.get_submodule(p)
            why = check_layer(p, m.in_features, m.out_features, self.variant, self.block, self.fs_fraction,
                              self.group_size if self.quantize else None)
            if why:
                problems[p] = why
        return problems

    def skipped_layers(self, model: nn.Module) -> list[str]:
        """The layers this method's targets hit that it left as plain ``nn.Linear`` (``skip_indivisible=True``),
        read from the model: the method keeps no record of the models it attached to."""
        plain = [p for p, m in model.named_modules() if type(m) is nn.Linear and p
                 and (self.targets is None or path_matches(p, self.targets))
                 and not (self.exclude and path_matches(p, self.exclude))
                 and not any(isinstance(model.get_submodule(q), AdaptedLayer) for q in _parents(p))]
        return sorted(self._unfit(model, plain))

    def make_layer(self, path: str, module: nn.Linear, generator: torch.Generator) -> POETLinear:
        return POETLinear(module, path, variant=self.variant, block=self.block, fs_fraction=self.fs_fraction,
                          cayley=self.cayley, k=self.k, memory_mode=self.memory_mode, quantize=self.quantize,
                          group_size=self.group_size, init=self.init, centric=self.centric, generator=generator)

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        poet = [p for n, p in named if n.rsplit(".", 1)[-1].startswith(POETLinear.prefix)]
        base = [p for n, p in named if not n.rsplit(".", 1)[-1].startswith(POETLinear.prefix)]
        if not poet:
            raise ValueError("POET.make_optimizer: the model has no POET parameters (call attach(model) first)")
        groups = [{"params": poet, "lr": self.lr * self.poet_scale, "weight_decay": 0.0, "name": "poet"}]
        if base:
            groups.append({"params": base, "lr": self.lr if self.base_lr is None else self.base_lr,
                           "weight_decay": self.weight_decay, "name": "base"})
        return torch.optim.AdamW(groups, betas=tuple(self.betas), eps=self.eps)

    def interventions(self, model: nn.Module | None = None) -> list[Intervention]:
        """The grad-clip ramp (with ``grad_clip``) and the periodic merge of ``model``'s POET layers, which continues
        the random stream ``attach(model)`` started."""
        if model is None or not poet_layers(model) or not hasattr(model, "poet_generator"):
            raise RuntimeError("POET.interventions(model) needs the model POET.attach(model) returned "
                               "(Run does this for you)")
        out: list[Intervention] = []
        if self.grad_clip:
            out.append(POETGradClip(self.grad_clip, self.merge_every, self.clip_ramp_steps,
                                    self.clip_ramp_min_ratio, self.clip_ramp_until))
        return out + [POETMerge(self.merge_every, poet_layers(model), model.poet_generator)]

    def label(self) -> str:
        size = f"b={self.block}" if self.variant == "bs" else f"b={self.fs_fraction}"
        extra = (", mem" if self.memory_mode else "") + (f", int{self.quantize}" if self.quantize else "")
        return f"POET-{self.variant.upper()}({size}, T_m={self.merge_every}, lr={self.lr:g}{extra})"


def _parents(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def poet_layers(model: nn.Module) -> list[tuple[str, POETLinear]]:
    return [(p, m) for p, m in model.named_modules() if isinstance(m, POETLinear)]


def count_poet_parameters(model: nn.Module) -> int:
    """Trainable POET numbers in ``model`` (the paper's count: embeddings and other parameters excluded)."""
    return sum(layer.num_poet_parameters() for _, layer in poet_layers(model))
