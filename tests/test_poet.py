"""POET / POET-X / POET-XQ: the layer, the method, merges, memory mode, quantization, checkpoints."""
from __future__ import annotations

import pytest
import torch

from orthoscope.adapters.quant import dequantize_groupwise, quantize_groupwise


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---- group quantization (shared with QOFT) ------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_groupwise_error_bound_and_round_trip(bits):
    w = torch.randn(12, 64, generator=gen()) + torch.linspace(-1, 3, 64)     # some groups do not straddle 0
    qt = quantize_groupwise(w, bits, 16)
    assert qt.codes.dtype == torch.uint8 and qt.codes.shape == (12, 64 if bits == 8 else 32)
    w_hat = dequantize_groupwise(qt)
    err = (w - w_hat).abs().reshape(12, 4, 16).amax(-1)
    assert (err <= qt.scale * 0.5 * (1 + 1e-5)).all()                          # ≤ half a quantization step
    w_hat2 = dequantize_groupwise(quantize_groupwise(w_hat, bits, 16))
    torch.testing.assert_close(w_hat2, w_hat, atol=1e-6, rtol=0)               # idempotent on its own grid
    assert qt.nbytes() == w.numel() * bits // 8 + 8 * w.numel() // 16           # codes + fp32 scale/zero per group


def test_quantize_groupwise_known_answer_and_constant_group():
    w = torch.tensor([[0.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0]])
    qt = quantize_groupwise(w, 8, 4)
    torch.testing.assert_close(qt.scale, torch.tensor([[3 / 255, 1.0]]))
    torch.testing.assert_close(qt.zero, torch.tensor([[0.0, -5.0]]))
    assert qt.codes[0, :4].tolist() == [0, 85, 170, 255]
    torch.testing.assert_close(dequantize_groupwise(qt), w)


def test_quantize_groupwise_errors():
    with pytest.raises(ValueError, match="group_size=48 does not divide the row length 64"):
        quantize_groupwise(torch.zeros(2, 64), 8, 48)
    with pytest.raises(ValueError, match="bits must be one of"):
        quantize_groupwise(torch.zeros(2, 64), 3, 16)
    with pytest.raises(ValueError, match="group_size must be even"):
        quantize_groupwise(torch.zeros(2, 63), 4, 63)


# ---- the POET layer -----------------------------------------------------------------------------------------------

import math  # noqa: E402
import re  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from orthoscope import Run  # noqa: E402
from orthoscope.adapters.core import remove_adapters  # noqa: E402
from orthoscope.adapters.poet import (POET, POETLinear, clip_ramp_value, count_poet_parameters,  # noqa: E402
                                      poet_layers, poet_parameter_count)
from orthoscope.probes.orthogonal import OrthogonalityError, RotationCosine, SpectrumDrift  # noqa: E402
from orthoscope.tasks.base import Task  # noqa: E402

LAYER_CASES = [("bs", "neumann", None), ("bs", "exact", None), ("fs", "neumann", None), ("fs", "exact", None),
               ("bs", "neumann", 8), ("fs", "exact", 4)]


def make_layer(variant="bs", cayley="neumann", quantize=None, m=16, n=24, block=4, seed=0, scale=0.1, **kw):
    torch.manual_seed(seed)
    layer = POETLinear(nn.Linear(m, n), "lin", variant=variant, block=block, fs_fraction=0.5, cayley=cayley,
                       quantize=quantize, group_size=8, generator=gen(seed), **kw)
    with torch.no_grad():
        layer.poet_q_in.copy_(torch.randn(layer.poet_q_in.shape, generator=gen(seed + 1)) * scale)
        layer.poet_q_out.copy_(torch.randn(layer.poet_q_out.shape, generator=gen(seed + 2)) * scale)
    return layer


@pytest.mark.parametrize("centric", ["input", "weight"])
@pytest.mark.parametrize("variant,cayley,quantize", LAYER_CASES)
def test_forward_equals_linear_with_effective_weight(variant, cayley, quantize, centric):
    layer = make_layer(variant, cayley, quantize, centric=centric)
    assert layer.centric_for(torch.zeros(3, 5, 16)) == centric
    x = torch.randn(3, 5, 16, generator=gen(9))
    torch.testing.assert_close(layer(x), F.linear(x, layer.effective_weight(), layer.base_layer.bias),
                               atol=1e-5, rtol=1e-5)


def test_effective_weight_is_R_W0_P_with_dense_rotations():
    """W_eff = Pᵀ W₀ Rᵀ with R = Π_in blockdiag(G_in) Π_inᵀ and P = Π_outᵀ blockdiag(G_out) Π_out (docstring)."""
    from orthoscope.ortho import blockdiag

    layer = make_layer("bs", "exact")
    g_in, g_out = layer.rotation_blocks()
    eye = lambda k: torch.eye(k)  # noqa: E731
    pi_in, pi_out = eye(16)[:, layer.perm_in], eye(24)[:, layer.perm_out]      # x Π = x[..., perm]
    R = pi_in @ blockdiag(g_in) @ pi_in.T
    P_ = pi_out.T @ blockdiag(g_out) @ pi_out
    with torch.no_grad():
        layer.poet_q_in.zero_()
        layer.poet_q_out.zero_()
        w0 = layer.effective_weight().clone()
    expected = (R @ w0.T @ P_).T                                               # paper: W = R W0 P
    q = make_layer("bs", "exact")                                              # same seed: same Q, perms, W0
    torch.testing.assert_close(q.effective_weight(), expected, atol=1e-6, rtol=1e-6)
    with torch.no_grad():                                                      # the dense-rotation helpers agree
        torch.testing.assert_close(q.input_rotation(torch.eye(16)), R, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(q.output_rotation(torch.eye(24)), P_, atol=1e-6, rtol=1e-6)


def test_init_modes():
    layer = make_layer(scale=0.0)
    torch.testing.assert_close(layer.effective_weight().norm(dim=1), torch.ones(24))   # normalized Gaussian rows
    lin = nn.Linear(16, 24)
    w = lin.weight.detach().clone()
    normalized = POETLinear(lin, "l", block=4, init="normalize")                       # released code: rows of W
    torch.testing.assert_close(normalized.effective_weight(), w / w.norm(dim=1, keepdim=True))
    lin = nn.Linear(16, 24)
    w = lin.weight.detach().clone()
    torch.testing.assert_close(POETLinear(lin, "l", block=4, init="keep").effective_weight(), w)


@pytest.mark.parametrize("centric", ["input", "weight"])
@pytest.mark.parametrize("variant,cayley,quantize", LAYER_CASES[:4])
def test_merge_then_reinitialize_keeps_output(variant, cayley, quantize, centric):
    layer = make_layer(variant, cayley, quantize, centric=centric)
    x = torch.randn(7, 16, generator=gen(3))
    before, perms = layer(x), (layer.perm_in.clone(), layer.perm_out.clone())
    layer.merge_then_reinitialize(gen(5))
    assert (layer.poet_q_in == 0).all() and (layer.poet_q_out == 0).all()
    assert not torch.equal(layer.perm_in, perms[0]) and not torch.equal(layer.perm_out, perms[1])
    assert (layer(x) - before).abs().max() <= 1e-5


@pytest.mark.parametrize("centric", ["input", "weight"])
def test_quantized_merge_is_dequantize_merge_requantize(centric):
    from orthoscope.adapters.quant import quantize_groupwise
    from orthoscope.ortho import invert_permutation

    layer = make_layer("bs", "exact", 8, centric=centric)
    assert layer.base_layer.weight is None and layer.qcodes.dtype == torch.uint8   # no dense copy is kept
    w_eff = layer.effective_weight().detach().double()
    layer.merge_then_reinitialize(gen(5))
    expected = quantize_groupwise(w_eff[invert_permutation(layer.perm_out)][:, layer.perm_in], 8, 8)
    assert torch.equal(layer.qcodes, expected.codes)
    torch.testing.assert_close(layer.qscale, expected.scale)
    x = torch.randn(4, 16, generator=gen(1))
    torch.testing.assert_close(layer(x), F.linear(x, layer.effective_weight(), layer.base_layer.bias))


@pytest.mark.parametrize("centric", ["input", "weight"])
@pytest.mark.parametrize("quantize", [None, 8])
def test_merge_unmerge_round_trip_and_remove(quantize, centric):
    layer = make_layer("bs", "neumann", quantize, scale=0.2, centric=centric)
    x = torch.randn(6, 16, generator=gen(2))
    y = layer(x)
    layer.merge()
    assert layer.merged and isinstance(layer.base_layer.weight, nn.Parameter)
    torch.testing.assert_close(layer(x), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.base_layer(x), y, atol=1e-5, rtol=1e-5)
    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(layer(x), y, atol=1e-5, rtol=1e-5)
    model = nn.Sequential(layer)
    remove_adapters(model)
    assert type(model[0]) is nn.Linear
    torch.testing.assert_close(model(x), y, atol=1e-5, rtol=1e-5)


# ---- POET-X memory mode -------------------------------------------------------------------------------------------

def stack(memory_mode, variant="bs", quantize=None, centric="input"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 16))     # a POET layer stack
    POET(block=8, variant=variant, memory_mode=memory_mode, quantize=quantize, group_size=8,
         exclude=None, centric=centric).attach(model)
    for i, (_, layer) in enumerate(poet_layers(model)):
        with torch.no_grad():
            layer.poet_q_in.copy_(torch.randn(layer.poet_q_in.shape, generator=gen(i)) * 0.1)
            layer.poet_q_out.copy_(torch.randn(layer.poet_q_out.shape, generator=gen(i + 10)) * 0.1)
    return model


def run_stack(model, x):
    """Output, gradients (input + trainable parameters) and saved-activation bytes of one forward + backward."""
    xi = x.clone().requires_grad_()
    saved = {}
    state = {t.data_ptr() for t in [*model.parameters(), *model.buffers()] if t is not None}

    def pack(t):                      # activation bytes: unique storages that are not parameters or buffers
        if t.data_ptr() not in state:
            saved[t.data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = model(xi)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y.detach(), [xi.grad] + [p.grad for p in model.parameters() if p.requires_grad], sum(saved.values())


@pytest.mark.parametrize("variant,quantize", [("bs", None), ("fs", None), ("bs", 8)])
def test_memory_mode_gradient_parity_and_saved_tensors(variant, quantize):
    """POET-X memory mode is the input-centric algorithm with recompute: compared with input-centric plain mode."""
    x = torch.randn(8, 32, 16, generator=gen(7))
    results = []
    for mm in (False, True):
        results.append(run_stack(stack(mm, variant, quantize, centric="input"), x))
    (y0, g0, bytes_plain), (y1, g1, bytes_mem) = results
    torch.testing.assert_close(y1, y0, atol=1e-6, rtol=1e-6)
    assert len(g0) == len(g1)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)
    assert bytes_mem < 0.6 * bytes_plain, (bytes_mem, bytes_plain)    # plain keeps x̃ and ỹ, memory mode x


@pytest.mark.parametrize("variant,quantize", [("bs", None), ("fs", None), ("bs", 8), ("fs", 4)])
def test_weight_centric_equals_input_centric_plain_and_memory_mode(variant, quantize):
    """y = x·W_effᵀ with W_eff = R W₀ P built once (weight-centric) gives the input-centric outputs and gradients,
    in plain and memory mode; weight-centric memory mode saves only the layer inputs (+ rotation-build tensors)."""
    x = torch.randn(8, 32, 16, generator=gen(7))
    y0, g0, bytes_input = run_stack(stack(False, variant, quantize, centric="input"), x)
    saved = {}
    for mm in (False, True):
        y, g, saved[mm] = run_stack(stack(mm, variant, quantize, centric="weight"), x)
        torch.testing.assert_close(y, y0, atol=1e-5, rtol=1e-5)
        assert len(g) == len(g0)
        for a, b in zip(g0, g):                  # fp32 reassociation: 1e-5 of each gradient's largest entry
            torch.testing.assert_close(b, a, atol=1e-5 * a.abs().max().item(), rtol=1e-5)
    inputs = 4 * 8 * 32 * (16 + 32 + 32)                               # the three layers' inputs, fp32
    assert saved[True] < saved[False] < bytes_input, (saved, bytes_input)
    assert inputs <= saved[True] < 1.5 * inputs, (saved[True], inputs)


def test_auto_centric_follows_the_cost_rule():
    """BS: weight-centric when tokens N > 2mn/(m+n) (here m=16, n=24: 19.2), input-centric otherwise."""
    from orthoscope.adapters.poet_ops import choose_centric, rotation_costs

    layer = make_layer("bs", "neumann")                                         # m=16, n=24, b=4
    assert layer.centric == "auto"
    assert [layer.centric_for(torch.zeros(n, 16)) for n in (1, 19, 20, 200)] == ["input", "input", "weight", "weight"]
    assert layer.centric_for(torch.zeros(4, 5, 16)) == "weight"                # N counts every token: 20
    assert rotation_costs(20, 16, 24, (4, 4), (6, 4)) == (20 * (16 + 24) * 4, 2 * 16 * 24 * 4)
    assert choose_centric("input", 10**6, 16, 24, (4, 4), (6, 4)) == "input"
    assert choose_centric("weight", 1, 16, 24, (4, 4), (6, 4)) == "weight"
    with pytest.raises(ValueError, match="centric must be one of"):
        POET(centric="tokens")
    with pytest.raises(ValueError, match="centric must be one of"):
        POETLinear(nn.Linear(16, 24), "l", block=4, centric="both")


@pytest.mark.parametrize("centric", ["input", "weight"])
@pytest.mark.parametrize("bias", [False, True])
def test_memory_mode_under_bf16_autocast_matches_plain(bias, centric):
    """Backward re-enters the forward's autocast state (issue 7): without it the recompute ran in fp32 against a bf16
    ``grad_y`` and failed ("expected scalar type Float but found BFloat16") in a bias-free stack."""
    x = torch.randn(8, 16, generator=gen(7))
    results = []
    for mm in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32, bias=bias), nn.Linear(32, 32, bias=bias), nn.Linear(32, 16, bias=bias))
        POET(block=8, memory_mode=mm, exclude=None, centric=centric).attach(model)
        for i, (_, layer) in enumerate(poet_layers(model)):
            with torch.no_grad():
                layer.poet_q_in.copy_(torch.randn(layer.poet_q_in.shape, generator=gen(i)) * 0.1)
                layer.poet_q_out.copy_(torch.randn(layer.poet_q_out.shape, generator=gen(i + 10)) * 0.1)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
        assert y.dtype == torch.bfloat16 or bias          # weight-centric adds the bias inside F.linear (bf16)
        (y.float() * torch.linspace(-1, 1, 16)).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        opt.step()                                                            # trains a step
        after = [p.detach() for p in model.parameters() if p.requires_grad]
        assert all(torch.isfinite(g).all() for g in grads)
        assert any(not torch.equal(a, b) for a, b in zip(after, before))
        results.append((y.detach(), grads))
    (y0, g0), (y1, g1) = results
    assert y0.dtype == y1.dtype
    y0, y1 = y0.float(), y1.float()
    torch.testing.assert_close(y1, y0, atol=2e-2, rtol=2e-2)                  # bf16: 8 bits of mantissa
    for a, b in zip(g0, g1):
        assert a.abs().max() > 0
        torch.testing.assert_close(b, a, atol=2e-2 * a.abs().max().item(), rtol=2e-2)


@pytest.mark.parametrize("variant", ["bs", "fs"])
def test_memory_mode_function_gradcheck(variant):
    from orthoscope.adapters.poet import poet_forward
    from orthoscope.adapters.poet_x import poet_x_apply

    layer = make_layer(variant, "exact").double()
    g_in, g_out = (g.detach().clone().requires_grad_() for g in layer.rotation_blocks())
    x = torch.randn(3, 16, dtype=torch.float64, generator=gen(4), requires_grad=True)
    fwd = lambda x_, a, c, w: poet_forward(x_, a, c, w, layer.perm_in, layer.perm_out)  # noqa: E731
    assert torch.autograd.gradcheck(lambda x_, a, c: poet_x_apply(x_, a, c, layer.stored_weight, fwd),
                                    (x, g_in, g_out))


@pytest.mark.parametrize("variant", ["bs", "fs"])
def test_weight_centric_memory_function_gradcheck(variant):
    from orthoscope.adapters.poet_ops import effective_weight_from
    from orthoscope.adapters.poet_x import poet_x_weight_apply

    layer = make_layer(variant, "exact").double()
    g_in, g_out = (g.detach().clone().requires_grad_() for g in layer.rotation_blocks())
    x = torch.randn(2, 3, 16, dtype=torch.float64, generator=gen(4), requires_grad=True)
    bias = torch.randn(24, dtype=torch.float64, generator=gen(5), requires_grad=True)
    build = lambda w, a, c: effective_weight_from(w, a, c, layer.perm_in, layer.perm_out)  # noqa: E731
    assert torch.autograd.gradcheck(lambda x_, a, c, b: poet_x_weight_apply(x_, a, c, b, layer.stored_weight, build),
                                    (x, g_in, g_out, bias))
    assert torch.autograd.gradcheck(lambda a: poet_x_weight_apply(x.detach(), a, g_out.detach(), None,
                                                                  layer.stored_weight, build), (g_in,))


# ---- parameter count ----------------------------------------------------------------------------------------------

def test_parameter_count_formula():
    assert poet_parameter_count(64, 32, "bs", 8) == (64 + 32) * 7 // 2
    assert poet_parameter_count(64, 32, "fs", fs_fraction=0.5) == 32 * 31 // 2 + 16 * 15 // 2
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 16))
    POET(block=8, exclude=None).attach(model)
    assert count_poet_parameters(model) == (64 + 32) * 7 // 2 + (32 + 16) * 7 // 2
    assert count_poet_parameters(model) == sum(p.numel() for n, p in model.named_parameters() if "poet_" in n)


def test_parameter_count_matches_paper_llama60m():
    """Paper Table 2: POET-BS b=256 on Llama-60M trains 9.66M numbers (8 blocks × 4 attention 512² + 3 MLP 512×1376)."""
    per_block = 4 * poet_parameter_count(512, 512, "bs", 256) + 3 * poet_parameter_count(512, 1280, "bs", 256)
    assert round(8 * per_block / 1e6, 2) == 9.66
    assert 8 * poet_parameter_count(512, 512, "fs", fs_fraction=0.5) == 8 * 2 * (256 * 255 // 2)


# ---- bad input ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    ({"block": 0}, "block must be an int ≥ 2"), ({"block": -4}, "block must be an int ≥ 2"),
    ({"block": 1}, "block must be an int ≥ 2"), ({"merge_every": 0}, "merge_every must be a positive int"),
    ({"merge_every": -1}, "merge_every must be a positive int"), ({"lr": -1e-3}, "lr must be ≥ 0"),
    ({"variant": "xs"}, "variant must be one of"), ({"fs_fraction": 0.0}, "fs_fraction must lie in"),
    ({"cayley": "pade"}, "cayley must be one of"), ({"quantize": 2}, "quantize must be one of"),
    ({"k": -1}, "k \\(Neumann terms\\)"), ({"poet_scale": 0}, "poet_scale must be > 0"),
])
def test_method_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        POET(**kwargs)


def test_block_larger_than_layer_and_indivisible_layers_are_named():
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 10))
    with pytest.raises(ValueError, match="block=32 is larger than layer '0' \\(in_features=16\\)"):
        POET(block=32, exclude=None).attach(model)
    with pytest.raises(ValueError, match="block=4 does not divide layer '1' \\(out_features=10\\)"):
        POET(block=4, exclude=None).attach(model)
    assert type(model[0]) is nn.Linear                                      # nothing changed on error
    method = POET(block=4, exclude=None, skip_indivisible=True)
    with pytest.warns(UserWarning, match="leaves 1 layer"):
        method.attach(model)
    assert method.skipped_layers(model) == ["1"] and type(model[1]) is nn.Linear and isinstance(model[0], POETLinear)
    assert model[1].weight.requires_grad                                    # trained by AdamW instead
    with pytest.raises(ValueError, match="group_size=32 does not divide layer '0' \\(in_features=16\\)"):
        POET(block=4, quantize=8, group_size=32, exclude=None).attach(nn.Sequential(nn.Linear(16, 16)))
    with pytest.raises(ValueError, match="variant must be one of"):
        POETLinear(nn.Linear(8, 8), "x", variant="nope")


def test_default_excludes_the_head():
    from orthoscope.models import TinyTransformer

    model = TinyTransformer(vocab_size=16, n_ctx=4, d_model=16, n_heads=2, d_mlp=32)
    POET(block=8).attach(model)
    assert isinstance(model.blocks[0].attn.q_proj, POETLinear) and isinstance(model.blocks[0].mlp.up, POETLinear)
    assert type(model.unembed) is nn.Linear and model.unembed.weight.requires_grad
    assert model.embed.weight.requires_grad and not model.blocks[0].mlp.up.base_layer.weight.requires_grad


# ---- the method inside a Run --------------------------------------------------------------------------------------

@dataclass
class Blobs(Task):
    n: int = 64
    d: int = 8

    def __post_init__(self):
        g = gen(0)
        self.x_train = torch.randn(self.n, self.d, generator=g)
        self.y_train = self.x_train[:, : self.d // 2].argmax(1)
        self.x_test, self.y_test = self.x_train[:16], self.y_train[:16]


def tiny_run(method, hidden=8, seed=0, probes=()):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, hidden), nn.Tanh(), nn.Linear(hidden, 4))
    return Run(model, Blobs(), method, probes=list(probes), seed=seed)


def test_optimizer_groups_and_lr_convention():
    run = tiny_run(POET(block=4, lr=2e-3, poet_scale=0.5, base_lr=1e-2, weight_decay=0.1, exclude=["2"]))
    poet_group, base_group = run.optimizer.param_groups
    assert poet_group["name"] == "poet" and poet_group["lr"] == pytest.approx(1e-3) and poet_group["weight_decay"] == 0
    assert base_group["name"] == "base" and base_group["lr"] == 1e-2 and base_group["weight_decay"] == 0.1
    assert {id(p) for p in poet_group["params"]} == {id(run.model[0].poet_q_in), id(run.model[0].poet_q_out)}
    before = run.model[2].weight.detach().clone()
    run.train(3, progress=False)
    assert not torch.equal(run.model[2].weight, before)                     # the head trains with AdamW


def test_optimizer_state_reset_exactly_at_merges():
    run = tiny_run(POET(block=4, merge_every=5, lr=1e-2, exclude=None))
    poet_params = run.optimizer.param_groups[0]["params"]
    base_params = run.optimizer.param_groups[1]["params"]
    for step in range(1, 13):
        run.step()
        poet_steps = {float(run.optimizer.state[p]["step"]) for p in poet_params if p in run.optimizer.state}
        if step % 5 == 0:
            assert all(p not in run.optimizer.state for p in poet_params), step   # reset right after the merge
        else:
            assert poet_steps == {float(step % 5)}, (step, poet_steps)
        assert {float(run.optimizer.state[p]["step"]) for p in base_params} == {float(step)}   # never reset
    assert run.interventions[-1].merges == 2


def test_clip_ramp_schedule():
    values = [clip_ramp_value(s, 1.0, ramp_steps=10, merge_every=100, min_ratio=0.1, until=2000)
              for s in (0, 50, 99, 100, 101, 105, 109, 110, 200, 2000, 2001, 2100)]
    assert values == pytest.approx([1, 1, 1, 0.1, 0.19, 0.55, 0.91, 1, 0.1, 0.1, 1, 1])
    run = tiny_run(POET(block=4, merge_every=3, grad_clip=0.5, exclude=None))
    seen = []
    run.on_step(lambda r, rec: seen.append(r.interventions[0].last_value))
    run.train(5, progress=False)
    assert seen[1:] == pytest.approx([0.5, 0.5, 0.5, 0.05, 0.5 * (0.1 + 0.9 * 1 / 10)])   # [0]: the step-0 probe call


def spectrum_ratio(w, sv0):
    return (torch.linalg.svdvals(w.double()) / sv0 - 1).abs().max().item()


@pytest.mark.slow
@pytest.mark.parametrize("cayley,lr", [("exact", 0.02), ("neumann", 0.005)])
def test_singular_values_preserved_every_step_of_2000_steps(cayley, lr):
    """σ(W_eff) = σ(W₀) at every step of a 2,000-step run with 19 merges: 1e-4 relative with exact Cayley; with CNP
    within the bound ∏(1 ± ‖Q_in‖₂^{k+1})(1 ± ‖Q_out‖₂^{k+1}) over the current interval and every merged one
    (each merge folds a rotation that is orthogonal only to O(‖Q‖^{k+1}) into W₀; docs/ortho.md)."""
    run = tiny_run(POET(block=4, merge_every=100, lr=lr, cayley=cayley, exclude=None), hidden=8)
    layers = poet_layers(run.model)
    sv0 = {p: torch.linalg.svdvals(layer.effective_weight().detach().double()) for p, layer in layers}
    merged_eps = {p: [] for p, _ in layers}            # per-merge ε of the rotations folded into W₀
    last_eps = {}
    worst = {"err": 0.0}

    def check(r, record):
        for p, layer in layers:
            err = spectrum_ratio(layer.effective_weight().detach(), sv0[p])
            if cayley == "exact":
                bound = 1e-4
            else:
                if r.step_count and r.step_count % 100 == 0:
                    merged_eps[p].extend(last_eps[p])         # the rotations of the interval just merged
                eps = [torch.linalg.matrix_norm(q).max().item() ** (layer.k + 1) for q in _skews(layer)]  # ‖·‖_F ≥ ‖·‖₂
                last_eps[p] = eps
                every = merged_eps[p] + eps
                bound = max(math.prod(1 + e for e in every) - 1, 1 - math.prod(1 - e for e in every)) + 1e-5
            assert err <= bound, (r.step_count, p, err, bound)
            worst["err"] = max(worst["err"], err)

    run.on_step(check)
    last_eps.update({p: [0.0, 0.0] for p, _ in layers})
    run.train(2000, progress=False)
    assert run.interventions[-1].merges == 20
    assert run.last_loss < 1.0                                              # it did learn something
    if cayley == "neumann":
        assert worst["err"] > 1e-6                                          # the CNP error is real and bounded


def _skews(layer):
    from orthoscope.ortho import skew_from_packed

    return (skew_from_packed(layer.poet_q_in.detach(), layer.b_in),
            skew_from_packed(layer.poet_q_out.detach(), layer.b_out))


def test_checkpoint_resume_is_bit_identical(tmp_path):
    def method():
        return POET(block=4, merge_every=7, lr=1e-2, grad_clip=1.0, exclude=None)

    probes = lambda: [OrthogonalityError(every=3), RotationCosine(every=3), SpectrumDrift(every=3)]  # noqa: E731
    straight = tiny_run(method(), probes=probes())
    straight.train(20, progress=False)
    first = tiny_run(method(), probes=probes())
    first.train(10, progress=False)
    first.save(tmp_path / "ckpt.safetensors")
    resumed = tiny_run(method(), probes=probes()).load(tmp_path / "ckpt.safetensors")
    resumed.train(10, progress=False)
    for (k, a), (k2, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert straight.history["loss/batch"].values == resumed.history["loss/batch"].values
    key = "vRv/0"
    assert straight.history[key].values == resumed.history[key].values
    assert straight.history["sv_drift/0"].values == resumed.history["sv_drift/0"].values


# ---- probes -------------------------------------------------------------------------------------------------------

def test_probe_values():
    run = tiny_run(POET(block=4, merge_every=5, lr=0.05, cayley="exact", exclude=None),
                   probes=[OrthogonalityError(every=1), RotationCosine(every=1), SpectrumDrift(every=1)])
    layer, h = run.model[0], run.history
    merged = []                                                          # dense R folded in at each merge
    original = layer.merge_then_reinitialize

    def spy(generator):
        merged.append(layer.input_rotation(torch.eye(8)).double())        # rows of I·R = R
        original(generator)

    layer.merge_then_reinitialize = spy
    v = layer.probe_v.double()
    for _ in range(12):
        run.step()
        acc = torch.eye(8, dtype=torch.float64)
        for r in merged:
            acc = r @ acc                                                 # R_total = R_new R_old
        current = layer.input_rotation(torch.eye(8)).double()
        assert h["vRv/0"].last() == pytest.approx((v @ current @ acc @ v).item(), abs=1e-6), run.step_count
    assert len(merged) == 2
    assert h["vRv/0"].values[0] == pytest.approx(1.0)
    assert min(h["vRv/0"].values) < 0.9999                                # it turned
    assert max(h["orth_err/0"].values) < 1e-6 and max(h["orth_err/2"].values) < 1e-6
    assert max(h["sv_drift/0"].values) < 1e-5 and "sv_ref/0" in h
    adam = tiny_run(__import__("orthoscope").AdamW(lr=0.05), probes=[SpectrumDrift(every=1)])
    adam.train(12, progress=False)
    assert adam.history["sv_drift/0"].last() > 1e-3                       # additive updates move the spectrum


def test_orth_err_shows_cnp_error():
    run = tiny_run(POET(block=4, merge_every=1000, lr=0.05, cayley="neumann", exclude=None),
                   probes=[OrthogonalityError(every=1)])
    run.train(30, progress=False)
    with torch.no_grad():
        blocks = [g.double() for g in run.model[0].rotations().values()]
    eye = torch.eye(4, dtype=torch.float64)
    expected = max(float(torch.linalg.matrix_norm(g.transpose(-1, -2) @ g - eye).max() / 2) for g in blocks)
    assert run.history["orth_err/0"].last() == pytest.approx(expected, rel=1e-6)
    assert run.history["orth_err/0"].last() > 1e-7


def test_a_poet_method_keeps_no_per_run_state():
    """One POET object attached to two models: each run merges its own layers with its own random stream, and the
    method object is unchanged by attaching (it is a pure description of the method)."""
    import copy

    from orthoscope import Run
    from orthoscope.tasks import ModularArithmetic
    from orthoscope.models import MLP

    method = POET(block=4, merge_every=2, lr=1e-2, exclude=None)
    before = copy.deepcopy(vars(method))
    task = ModularArithmetic(p=8, train_frac=0.5, batch_size=8)
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        runs.append(Run(MLP(vocab_size=8, n_tokens=2, d_embed=8, hidden=(16,), d_out=8), task, method, seed=seed,
                        probes=[]))
    assert vars(method).keys() == before.keys()
    merges = [next(iv for iv in run.interventions if type(iv).__name__ == "POETMerge") for run in runs]
    assert merges[0].layers[0][1] is not merges[1].layers[0][1]                # each run merges its own layers
    assert merges[0].generator is not merges[1].generator
    for run in runs:
        run.train(4, progress=False)
    assert [m.merges for m in merges] == [2, 2]
    with pytest.raises(RuntimeError, match="needs the model"):
        method.interventions(nn.Sequential(nn.Linear(4, 4)))
