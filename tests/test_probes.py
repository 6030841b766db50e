"""Probes: keys, values on known weights, module selection, read-only-ness, effective weights of adapted layers."""
import math

import pytest
import torch
from torch import nn

from orthoscope import AdamW, Run
from orthoscope.models import MLP, TinyTransformer
from orthoscope.probes import Energy, Evaluate, GradNorm, Spectrum, WeightNorm, default_probes, weight_matrices
from orthoscope.probes import metrics
from orthoscope.tasks import ModularArithmetic


class FakeRun:
    """What a probe reads from a run: the model, the task, the loss and the step."""

    def __init__(self, model, task=None, step_count=0):
        from orthoscope.methods.losses import cross_entropy

        self.model, self.task, self.loss_fn, self.step_count = model, task, cross_entropy, step_count


def square_mlp():
    torch.manual_seed(0)
    model = MLP(d_in=4, hidden=(4,), d_out=3)
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.eye(4))
    return model


def test_spectrum_keys_and_known_values():
    out = Spectrum(modules=["layers.0"])(FakeRun(square_mlp()))
    assert set(out) == {"sv/layers.0", "sv_entropy/layers.0", "stable_rank/layers.0", "spectral_norm/layers.0",
                        "condition_number/layers.0"}
    assert torch.equal(out["sv/layers.0"], torch.ones(4))
    assert out["sv_entropy/layers.0"] == pytest.approx(1.0)
    assert out["stable_rank/layers.0"] == pytest.approx(4.0)
    assert out["condition_number/layers.0"] == pytest.approx(1.0)
    assert "sv/layers.0" not in Spectrum(modules=["layers.0"], keep_values=False)(FakeRun(square_mlp()))


def test_spectrum_of_every_matrix_skips_1d_weights_but_refuses_them_by_name():
    torch.manual_seed(0)
    model = TinyTransformer(vocab_size=7, n_ctx=3, d_model=8, n_heads=2, d_mlp=16)
    keys = Spectrum()(FakeRun(model))
    assert {k.split("/", 1)[1] for k in keys if k.startswith("sv/")} == {
        "embed", "pos_embed", "blocks.0.attn.q_proj", "blocks.0.attn.k_proj", "blocks.0.attn.v_proj",
        "blocks.0.attn.o_proj", "blocks.0.mlp.up", "blocks.0.mlp.down", "unembed"}
    with pytest.raises(ValueError, match=r"module 'blocks.0.ln1' has a 1-D weight of shape \(8,\)"):
        Spectrum(modules=["ln1"])(FakeRun(model))
    with pytest.raises(ValueError, match="1-D weight"):
        Energy(modules=r"blocks\.0\.ln2")(FakeRun(model))


def test_energy_keys_variants_and_values():
    model = square_mlp()
    out = Energy(modules=["layers.0"], s=(0, 1, 2), variants=("euclidean", "angular", "half_space"))(FakeRun(model))
    assert sorted(out) == sorted(f"he_{t}{s}/layers.0" for t in "sah" for s in (0, 1, 2))
    # rows of I₄ are orthonormal: every pair is at distance √2 and angle π/2
    assert out["he_s1/layers.0"] == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert out["he_s0/layers.0"] == pytest.approx(-math.log(math.sqrt(2)), rel=1e-6)
    assert out["he_a2/layers.0"] == pytest.approx(4.0, rel=1e-6)
    with pytest.raises(ValueError, match="unknown energy variant"):
        Energy(variants=("geodesic",))
    with pytest.raises(ValueError, match="s must be ≥ 0"):
        Energy(s=(-1,))


def test_weight_norm_and_total():
    model = square_mlp()
    out = WeightNorm()(FakeRun(model))
    assert out["weight_norm/layers.0"] == pytest.approx(2.0)
    total = math.sqrt(sum((p.double() ** 2).sum().item() for p in model.parameters()))
    assert out["weight_norm/total"] == pytest.approx(total, rel=1e-6)


def test_grad_norm_matches_torch():
    model = square_mlp()
    model(torch.randn(5, 4)).pow(2).sum().backward()
    out = GradNorm(per_parameter=True)(FakeRun(model, step_count=1))
    grads = [p.grad for p in model.parameters()]
    assert out["grad_norm/total"] == pytest.approx(torch.nn.utils.get_total_norm(grads).item(), rel=1e-6)
    assert out["grad_norm/layers.1.bias"] == pytest.approx(model.layers[1].bias.grad.norm().item(), rel=1e-6)
    assert "grad_norm/total" not in GradNorm()(FakeRun(model, step_count=0))


def test_evaluate_in_eval_mode_and_restores_mode():
    torch.manual_seed(0)
    task = ModularArithmetic(p=7, train_frac=0.5)
    model = TinyTransformer(vocab_size=7, n_ctx=2, d_model=8, n_heads=2, d_mlp=16, dropout=0.5)
    run = FakeRun(model, task)
    model.train()
    a, b = Evaluate()(run), Evaluate()(run)
    assert a == b                                    # dropout is off while evaluating
    assert model.training                            # and the mode is restored
    logits = model.eval()(task.x_test)
    assert a["acc/test"] == pytest.approx((logits.argmax(-1) == task.y_test).float().mean().item())
    assert a["loss/test"] == pytest.approx(torch.nn.functional.cross_entropy(logits, task.y_test).item(), rel=1e-6)
    assert set(Evaluate(splits=["test"])(run)) == {"loss/test", "acc/test"}


def test_probes_are_read_only():
    torch.manual_seed(0)
    task = ModularArithmetic(p=7, train_frac=0.5)
    run = Run(MLP(vocab_size=7, n_tokens=2, d_embed=8, hidden=(16,), d_out=7), task, AdamW(), probes=[], seed=0)
    run.train(2, progress=False)
    run.step()
    params = {k: v.clone() for k, v in run.model.state_dict().items()}
    grads = {k: p.grad.clone() for k, p in run.model.named_parameters()}
    probes = default_probes(every=1) + [Energy(s=(0, 1, 2), variants=("euclidean", "angular", "half_space")),
                                        GradNorm(per_parameter=True)]
    for probe in probes:
        probe(run)
    assert all(torch.equal(v, params[k]) for k, v in run.model.state_dict().items())
    assert all(torch.equal(p.grad, grads[k]) for k, p in run.model.named_parameters())


class ScaledLinear(nn.Module):
    """A minimal adapted layer: effective weight = 2·base weight."""

    prefix, merged = "scale_", False

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base_layer = base

    def effective_weight(self):
        return 2.0 * self.base_layer.weight

    def forward(self, x):
        return nn.functional.linear(x, self.effective_weight(), self.base_layer.bias)


def test_weight_probes_read_the_effective_weight_of_adapted_layers():
    model = square_mlp()
    model.layers[0] = ScaledLinear(model.layers[0])
    found = dict(weight_matrices(model))
    assert set(found) == {"layers.0", "layers.1"}    # the frozen base inside the adapter is hidden
    assert torch.equal(found["layers.0"], 2.0 * torch.eye(4))
    out = Spectrum(modules=["layers.0"])(FakeRun(model))
    assert out["spectral_norm/layers.0"] == pytest.approx(2.0)
    assert metrics.singular_values(found["layers.0"]).tolist() == [2.0] * 4
