"""The contract every optimizer in orthoscope.optim keeps: determinism, convergence on a quadratic, a plain PyTorch
loop, state_dict round trip, Run checkpoints, and clear errors for bad input (lr < 0, 1-D matrix params, NaN grads)."""
import copy

import pytest
import torch
from torch import nn

from orthoscope import Run
from orthoscope.models import MLP
from orthoscope.optim import FOCUS, AdamH, Muon, MuonH, NonFiniteGradError, Pion, matrix_param_groups
from orthoscope.tasks import ModularArithmetic

# name → (constructor taking param groups, quadratic lr, has a matrix path)
OPTIMIZERS = {
    "muon": (lambda groups, **kw: Muon(groups, **{"lr": 0.05, **kw}), True),
    "muon_svd": (lambda groups, **kw: Muon(groups, **{"lr": 0.05, "backend": "svd", **kw}), True),
    "muon_kimi": (lambda groups, **kw: Muon(groups, **{"lr": 0.05, "rms_match": 0.2, **kw}), True),
    "adamh": (lambda groups, **kw: AdamH(groups, **{"lr": 0.02, **kw}), True),
    "muonh": (lambda groups, **kw: MuonH(groups, **{"lr": 0.02, **kw}), True),
    "focus": (lambda groups, **kw: FOCUS(groups, **{"lr": 0.01, **kw}), False),
    "signum": (lambda groups, **kw: FOCUS(groups, **{"lr": 0.01, "gamma": 0.0, **kw}), False),
    "pion": (lambda groups, **kw: Pion(groups, **{"lr": 0.05, **kw}), True),
    "pion_alt_ambient": (lambda groups, **kw: Pion(groups, **{
        "lr": 0.05, "side": "alternate", "momentum": "transported_ambient", **kw}), True),
    "pion_adam": (lambda groups, **kw: Pion(groups, **{"lr": 0.05, "second_moment": True, **kw}), True),
    "pion_additive": (lambda groups, **kw: Pion(groups, **{"lr": 0.05, "form": "additive", **kw}), True),
}

NAMES = sorted(OPTIMIZERS)


def make(name, model_or_groups, **kw):
    factory, has_matrix = OPTIMIZERS[name]
    groups = model_or_groups
    if isinstance(model_or_groups, nn.Module):
        groups = matrix_param_groups(model_or_groups) if has_matrix else list(model_or_groups.named_parameters())
    return factory(groups, **kw)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 6, generator=g)
    return x, torch.sin(x[:, :3] * 2) + x[:, 3:]


def plain_loop(name, steps, model=None, opt=None):
    model = model or tiny_model()
    opt = opt or make(name, model)
    x, y = data()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, opt, losses


@pytest.mark.parametrize("name", NAMES)
def test_plain_loop_reduces_loss(name):
    _, _, losses = plain_loop(name, 150)
    assert all(map(lambda v: v == v, losses))
    assert min(losses[-10:]) < 0.6 * losses[0], (losses[0], losses[-10:])


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name):
    a, _, la = plain_loop(name, 20)
    b, _, lb = plain_loop(name, 20)
    assert la == lb
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", NAMES)
def test_quadratic_distance_halves(name):
    """f(W) = ½‖W − W*‖² with W* = Q₁ W₀ Q₂ (same singular values and norm as W₀, so the spectrum- and
    norm-preserving methods can reach it too): the distance must halve within 300 steps."""
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(12, 8, generator=g)
    q1, _ = torch.linalg.qr(torch.randn(12, 12, generator=g))
    q2, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    target = q1 @ w0 @ q2
    target = w0 + 0.5 * (target - w0)             # a nearby point …
    u, s, vh = torch.linalg.svd(target, full_matrices=False)
    target = u @ torch.diag(torch.linalg.svdvals(w0)) @ vh   # … given W₀'s spectrum (and hence its norm)
    w = nn.Parameter(w0.clone())
    opt = make(name, [w])
    d0 = (w0 - target).norm().item()
    best = d0
    for _ in range(300):
        opt.zero_grad()
        (0.5 * ((w - target) ** 2).sum()).backward()
        opt.step()
        best = min(best, (w.detach() - target).norm().item())
    assert best <= 0.5 * d0, (name, d0, best)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    model, opt, _ = plain_loop(name, 7)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(opt.state_dict())                 # as torch.save would freeze it
    plain_loop(name, 5, model, opt)                              # the reference continuation

    clone = tiny_model(seed=5)
    clone.load_state_dict(saved_model)
    opt2 = make(name, clone)
    opt2.load_state_dict(saved_opt)
    plain_loop(name, 5, clone, opt2)
    for p, q in zip(model.parameters(), clone.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", ["muon", "adamh", "focus", "pion"])
def test_run_checkpoint_resume(name, tmp_path):
    from orthoscope.optim import methods

    method = {"muon": lambda: methods.Muon(lr=0.02), "adamh": lambda: methods.Hyperball(),
              "focus": lambda: methods.FOCUS(), "pion": lambda: methods.Pion(lr=0.02)}[name]
    task = ModularArithmetic(p=11, train_frac=0.5, batch_size=16)

    def fresh():
        torch.manual_seed(0)
        return Run(MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(16,), d_out=11), task, method(), probes=[],
                   seed=0)

    a = fresh().train(4, progress=False)
    a.save(tmp_path / "ck.safetensors")
    a.train(4, progress=False)
    b = fresh().load(tmp_path / "ck.safetensors").train(4, progress=False)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


# ---- bad input ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_negative_lr_is_rejected(name):
    with pytest.raises(ValueError, match="lr must be a finite number ≥ 0, got -0.1"):
        make(name, tiny_model(), lr=-0.1)


@pytest.mark.parametrize("name", [n for n in NAMES if OPTIMIZERS[n][1]])
def test_vector_on_matrix_path_is_named(name):
    model = tiny_model()
    named = list(model.named_parameters())                      # biases included, all on the matrix path
    with pytest.raises(ValueError, match=r"matrix path needs 2-D.*'0\.bias' has shape \(16,\)"):
        make(name, named)


@pytest.mark.parametrize("name", NAMES)
def test_nan_gradient_refused_and_named(name):
    model, opt, _ = plain_loop(name, 3)
    before = [p.detach().clone() for p in model.parameters()]
    state_before = {k: (v.clone() if torch.is_tensor(v) else v) for s in opt.state.values() for k, v in s.items()}
    x, y = data()
    opt.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    model[2].weight.grad[0, 0] = float("nan")
    with pytest.raises(NonFiniteGradError, match=r"gradient of '2\.weight' contains NaN"):
        opt.step()
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)
    state_after = {k: v for s in opt.state.values() for k, v in s.items()}
    assert all(torch.equal(v, state_after[k]) if torch.is_tensor(v) else v == state_after[k]
               for k, v in state_before.items())


def test_unnamed_nan_message_gives_position():
    w = nn.Parameter(torch.randn(3, 3))
    opt = FOCUS([w])
    w.grad = torch.full_like(w, float("inf"))
    with pytest.raises(NonFiniteGradError, match=r"parameter 0 of group 0 \(shape \(3, 3\)\)"):
        opt.step()


def test_matrix_param_groups_split():
    model = MLP(vocab_size=7, n_tokens=2, d_embed=4, hidden=(8, 8), d_out=7)
    matrix, rest = matrix_param_groups(model)
    assert [n for n, _ in matrix["params"]] == ["layers.0.weight", "layers.1.weight"]   # head layers.2 → AdamW
    assert {n for n, _ in rest["params"]} >= {"embed.weight", "layers.2.weight", "layers.0.bias"}
    matrix, _ = matrix_param_groups(model, exclude=[])
    assert [n for n, _ in matrix["params"]] == ["layers.0.weight", "layers.1.weight", "layers.2.weight"]
    with pytest.raises(ValueError, match="no hidden nn.Linear weight"):
        matrix_param_groups(nn.Sequential(nn.Embedding(3, 2)))


def test_methods_validate_at_construction_and_label_briefly():
    from orthoscope.optim import methods

    assert methods.Muon().label() == "Muon(lr=0.02)"
    assert methods.Pion(side="alternate").label() == "Pion(lr=0.001, side='alternate')"
    assert methods.Hyperball(base="muon").name == "MuonH"
    with pytest.raises(ValueError, match="lr must be a finite number ≥ 0, got -1"):
        methods.Pion(lr=-1)
    with pytest.raises(ValueError, match="base must be 'adam'"):
        methods.Hyperball(base="sgd")
    with pytest.raises(ValueError, match="backend must be one of"):
        methods.Muon(backend="qr")
    model = MLP(vocab_size=7, n_tokens=2, d_embed=4, hidden=(8,), d_out=7)
    assert methods.Pion().matrix_names(model) == ["layers.0.weight"]
    assert methods.Muon(exclude=[]).matrix_names(model) == ["layers.0.weight", "layers.1.weight"]
