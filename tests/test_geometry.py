"""PEFT-Arena geometry diagnostics: known answers, independent references (scipy Procrustes, HSIC form of CKA),
hooks that never leak, and the probes inside a Run."""
import copy
import math

import numpy as np
import pytest
import torch

from orthoscope import AdamW, Run
from orthoscope.models import MLP
from orthoscope.probes import geometry as g
from orthoscope.tasks import ModularArithmetic


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def rand_orthogonal(n, seed=0):
    q, r = torch.linalg.qr(rand(n, n, seed=seed))
    return q * torch.sign(torch.diagonal(r))


# ---- weight space ---------------------------------------------------------------------------------------------------
def test_retention_profile_sees_exactly_the_changed_direction():
    w = rand(6, 4)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    assert torch.allclose(g.retention_profile(w, w), torch.zeros(4, dtype=w.dtype), atol=1e-12)
    w_ft = w + 0.3 * torch.outer(u[:, 1], vh[1])          # change σ₂ by +0.3, keep the basis
    expected = torch.tensor([0, 0.3, 0, 0], dtype=w.dtype)
    assert torch.allclose(g.retention_profile(w, w_ft), expected, atol=1e-12)


def test_adaptation_profile_is_update_energy_per_input_direction():
    w = rand(5, 4)
    vh = torch.linalg.svd(w, full_matrices=False)[2]
    x = rand(5, seed=1)
    w_ft = w + torch.outer(x, vh[2])                      # ΔW = x v₃ᵀ touches only v₃
    prof = g.adaptation_profile(w, w_ft)
    assert prof[2].item() == pytest.approx(x.norm().item(), rel=1e-12)
    assert torch.allclose(prof[[0, 1, 3]], torch.zeros(3, dtype=w.dtype), atol=1e-12)


def test_effective_rank_known_answers():
    assert g.delta_effective_rank(torch.outer(rand(7), rand(5, seed=1))) == pytest.approx(1.0)
    assert g.delta_effective_rank(rand_orthogonal(6)) == pytest.approx(6.0)
    assert g.delta_effective_rank(torch.diag(torch.tensor([2.0, 1.0]))) == pytest.approx(1.25)
    assert g.delta_effective_rank(torch.zeros(3, 3)) == 0.0
    with pytest.raises(ValueError, match="2-D"):
        g.delta_effective_rank(torch.zeros(3))


def test_spectral_smoothness_known_answers_and_numpy_reference():
    assert g.spectral_smoothness(torch.full((10,), 3.0)) == 0.0
    alternating = torch.tensor([1.0, -1.0] * 6)          # reflect padding continues the pattern: |±1 ∓ 1/5| = 4/5
    assert g.spectral_smoothness(alternating) == pytest.approx(0.8)
    assert g.spectral_smoothness(torch.arange(3.0)) == 0.0  # shorter than the window
    v = rand(20, seed=3)
    padded = np.pad(v.numpy(), 2, mode="reflect")
    moving = np.convolve(padded, np.ones(5) / 5, mode="valid")
    assert g.spectral_smoothness(v) == pytest.approx(np.abs(v.numpy() - moving).mean(), rel=1e-12)
    with pytest.raises(ValueError, match="odd"):
        g.spectral_smoothness(v, window=4)


def test_singular_vector_alignment_rotation_and_identity():
    w = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
    assert torch.allclose(g.singular_vector_alignment(w, w), torch.ones(3, dtype=w.dtype))
    c, s = math.cos(0.3), math.sin(0.3)
    r = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)
    # an OFT-style input rotation W' = W Rᵀ rotates the right singular vectors v → R v: |cos| = |v_iᵀ R v_i|
    align = g.singular_vector_alignment(w, w @ r.T)
    assert torch.allclose(align, torch.tensor([c, c, 1.0], dtype=w.dtype), atol=1e-12)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"w_pre has shape \(3, 4\) but w_ft has shape \(4, 3\)"):
        g.retention_profile(torch.zeros(3, 4), torch.zeros(4, 3))


# ---- CSD ------------------------------------------------------------------------------------------------------------
def test_capability_drift_known_answers():
    h, w0 = rand(50, 4), rand(3, 4, seed=1)
    zero = g.capability_drift(h, w0, torch.zeros_like(w0))
    assert zero["csd_abs"] == 0.0 and zero["csd_rel"] == 0.0
    assert g.capability_drift(h, w0, w0)["csd_rel"] == pytest.approx(1.0)
    assert g.capability_drift(h, w0, 2 * w0)["csd_rel"] == pytest.approx(4.0)
    eye = torch.eye(4, dtype=h.dtype)
    c = g.capability_drift(h, eye, 0.5 * eye)             # ΔW = cI: E‖ΔW h‖² = c² E‖h‖², update-norm = 1/n
    assert c["csd_abs"] == pytest.approx(0.25 * (h ** 2).sum(1).mean().item())
    assert c["csd_update_norm"] == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="in=4"):
        g.capability_drift(rand(5, 3), w0, w0)


# ---- activation space -----------------------------------------------------------------------------------------------
def test_procrustes_residual_zero_for_rotation_and_translation():
    x0 = rand(40, 6)
    x1 = x0 @ rand_orthogonal(6, seed=2) + 3.0         # rotate and shift (centering removes the shift)
    r = g.procrustes_residual(x0, x1)
    assert r["procrustes"] == pytest.approx(0.0, abs=1e-10)
    assert r["raw"] > 0.5 and r["improvement"] == pytest.approx(r["raw"])


def test_procrustes_residual_matches_scipy():
    from scipy.linalg import orthogonal_procrustes

    x0, x1 = rand(30, 5), rand(30, 5, seed=7)
    a, b = x0 - x0.mean(0), x1 - x1.mean(0)
    rot, _ = orthogonal_procrustes(b.numpy(), a.numpy())
    expected = np.linalg.norm(b.numpy() @ rot - a.numpy()) / np.linalg.norm(a.numpy())
    assert g.procrustes_residual(x0, x1)["procrustes"] == pytest.approx(expected, rel=1e-10)


def test_linear_cka_known_answers_and_hsic_reference():
    x = rand(60, 8)
    assert g.linear_cka(x, x) == pytest.approx(1.0)
    assert g.linear_cka(x, 5 * x @ rand_orthogonal(8) + 1) == pytest.approx(1.0)
    y = rand(60, 3, seed=4)                               # different feature widths are allowed
    n = 60
    h = torch.eye(n, dtype=x.dtype) - 1.0 / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    hsic = lambda a, b: (a * b).sum()                     # noqa: E731  tr(K H L H) with K, L already centered
    expected = hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_))
    assert g.linear_cka(x, y) == pytest.approx(expected.item(), rel=1e-10)
    assert g.linear_cka(rand(2000, 4, seed=8), rand(2000, 4, seed=9)) < 0.02


def test_gram_distortion_invariances():
    x = rand(50, 6)
    assert g.gram_distortion(x, x) == pytest.approx(0.0, abs=1e-12)
    scaled = x @ rand_orthogonal(6) * torch.rand(50, 1, dtype=x.dtype).add(0.5)   # rotate, rescale each token
    assert g.gram_distortion(x, scaled) == pytest.approx(0.0, abs=1e-10)
    assert g.gram_distortion(x, rand(50, 6, seed=1)) > 0.5
    assert g.gram_distortion(rand(3000, 4), rand(3000, 4, seed=2), max_tokens=100) > 0


def test_subspace_distance_extremes():
    x = rand(30, 6)
    assert g.subspace_distance(x, x @ torch.diag(torch.tensor([1, 2, 3, 4, 5, 6.0], dtype=x.dtype)), k=6) \
        == pytest.approx(0.0, abs=1e-7)                   # k = d: both span everything
    a = torch.zeros(30, 6, dtype=torch.float64)
    b = torch.zeros(30, 6, dtype=torch.float64)
    a[:, :2], b[:, 2:4] = rand(30, 2, seed=1), rand(30, 2, seed=2)
    assert g.subspace_distance(a, b, k=2) == pytest.approx(1.0)
    assert g.subspace_distance(a, a, k=2) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="k must be"):
        g.subspace_distance(a, b, k=0)


def test_activation_drift_known_answers():
    x = rand(20, 4)
    d = g.activation_drift(x, 2 * x)
    assert d["cos_drift"] == pytest.approx(0.0, abs=1e-12) and d["log_norm_ratio"] == pytest.approx(math.log(2))
    assert g.activation_drift(x, -x)["angle"] == pytest.approx(math.pi)


# ---- hooks and probes -----------------------------------------------------------------------------------------------
def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_capture_removes_hooks_even_on_error():
    model = MLP(4, (8,), 3)
    with pytest.raises(RuntimeError, match="boom"):
        with g.capture_activations(model, ["layers.0", "layers.1"]) as store:
            model(torch.randn(5, 4))
            assert _hooks(model) == 2 and store["layers.1"][0].shape == (5, 3)
            raise RuntimeError("boom")
    assert _hooks(model) == 0
    acts = g.module_activations(model, torch.randn(7, 4), ["layers.1"], kind="input")
    assert acts["layers.1"].shape == (7, 8) and _hooks(model) == 0 and model.training


def test_module_activations_flatten_sequence_outputs():
    from orthoscope.models.transformer import TinyTransformer, TransformerConfig

    model = TinyTransformer(TransformerConfig(vocab_size=11, n_ctx=3, d_model=16, n_heads=2, d_mlp=32))
    path = next(p for p, _ in model.named_modules() if p.endswith("mlp.up"))
    acts = g.module_activations(model, torch.randint(0, 11, (5, 3)), [path])
    assert acts[path].shape == (15, 32)


def test_probes_in_a_run_start_at_zero_drift_and_then_move():
    torch.manual_seed(0)
    task = ModularArithmetic(p=11, train_frac=0.5)
    model = MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(16,), d_out=11)
    base = copy.deepcopy(model)
    inputs = {"A": task.x_test}
    probes = [g.WeightGeometry(every=5), g.ActivationGeometry(base, inputs, every=5, k=4),
              g.CapabilityDrift(base, inputs, every=5)]
    run = Run(model, task, AdamW(lr=1e-2), probes=probes, seed=0)
    run.train(5, progress=False)
    h = run.history
    assert h["delta_erank/layers.0"].values[0] == 0.0 and h["delta_erank/layers.0"].values[-1] > 1.0
    assert h["cka_A/layers.1"].values[0] == pytest.approx(1.0)
    assert h["procrustes_A/layers.1"].values[0] == pytest.approx(0.0, abs=1e-6)
    assert h["procrustes_A/layers.1"].values[-1] > 1e-3
    assert h["csd_rel_A/layers.0"].values[0] == 0.0 and h["csd_rel_A/layers.0"].values[-1] > 0
    assert "csd_rel_A/embed" not in h                     # embeddings take ids, not activations: no CSD
    assert h["retention/layers.0"].last().shape == (16,) and _hooks(run.model) == 0 and _hooks(base) == 0
    with pytest.raises(ValueError, match="not nn.Linear"):
        g.CapabilityDrift(base, inputs, modules=["embed"])(run)
