"""The adapter contract, as a peft-style table: (name, model, config class, kwargs, expected paths, overrides).

Every row is checked for: the targets it hits (before and after attaching); identity at initialization; that a few SGD
steps change exactly the adapter parameters; that merge → unmerge restores the base weights (≤ 1e-5); that the merged
forward equals the unmerged one; that ``effective_weight()`` is the weight the layer computes with; and (exact Cayley)
that every rotation is orthogonal to 10·b·eps. Per-method tolerances live in the row's overrides, not in the tests.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from orthoscope.adapters import adapter_layers, merge_all, remove_adapters, unmerge_all
from orthoscope.adapters.lora import LoRAConfig
from orthoscope.adapters.oft import OFTConfig
from orthoscope.adapters.registry import attach, list_targets
from orthoscope.adapters.sora import SoRAConfig
from orthoscope.models import MLP, TinyTransformer

EPS32 = torch.finfo(torch.float32).eps


# ---- tiny models and their inputs ---------------------------------------------------------------------------------
def make_mlp():
    return MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(16,), d_out=11)   # embed, layers.0 (16→16), layers.1


def make_tf():
    return TinyTransformer(vocab_size=11, n_ctx=4, d_model=16, n_heads=2, n_layers=1, d_mlp=32)


def make_cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, dilation=1),
                         nn.Flatten(), nn.Linear(4 * 3 * 3, 5))


def make_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=16)
    return LlamaForCausalLM(cfg)


MODELS = {"mlp": make_mlp, "tf": make_tf, "cnn": make_cnn, "llama": make_llama}


def make_input(kind: str, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "mlp":
        return torch.randint(0, 11, (6, 2), generator=g)
    if kind == "tf":
        return torch.randint(0, 11, (6, 4), generator=g)
    if kind == "cnn":
        return torch.randn(2, 3, 8, 8, generator=g)
    return torch.randint(0, 32, (2, 6), generator=g)


def output(model, x):
    y = model(x)
    return y.logits if hasattr(y, "logits") else y


def build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[kind]().eval()


LLAMA_QV = [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
LLAMA_ALL = [f"model.layers.{i}.{p}" for i in range(2) for p in (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
TF_ATTN = [f"blocks.0.attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")]

# (name, model, config class, kwargs, expected paths, overrides)
CASES = [
    ("lora-mlp", "mlp", LoRAConfig, dict(rank=2, targets=["layers.0", "layers.1"]), ["layers.0", "layers.1"], {}),
    ("lora-mlp-embed", "mlp", LoRAConfig, dict(rank=2, alpha=4.0, targets=["embed", "layers.0"]),
     ["embed", "layers.0"], {}),
    ("lora-tf-dropout", "tf", LoRAConfig, dict(rank=4, dropout=0.1, rslora=True, targets=["q_proj", "v_proj"]),
     ["blocks.0.attn.q_proj", "blocks.0.attn.v_proj"], {}),
    ("lora-cnn", "cnn", LoRAConfig, dict(rank=2, targets=["0", "2"]), ["0", "2"], {}),
    ("lora-llama", "llama", LoRAConfig, dict(rank=2, targets=["q_proj", "v_proj"]), LLAMA_QV, {}),
    ("sora-tf-regex", "tf", SoRAConfig, dict(rank=4, targets=r"blocks\.0\.mlp\..*"),
     ["blocks.0.mlp.up", "blocks.0.mlp.down"], {}),
    ("sora-llama", "llama", SoRAConfig, dict(rank=3, targets=["o_proj", "down_proj"]),
     [f"model.layers.{i}.{p}" for i in range(2) for p in ("self_attn.o_proj", "mlp.down_proj")], {}),
    ("oft-mlp", "mlp", OFTConfig, dict(block=4, targets=["layers.0", "layers.1"]), ["layers.0", "layers.1"], {}),
    ("oft-mlp-embed-neumann", "mlp", OFTConfig, dict(block=4, cayley="neumann", targets=["embed"]), ["embed"], {}),
    ("oft-tf-nblocks-shared", "tf", OFTConfig, dict(n_blocks=2, block_share=True, targets=[*TF_ATTN, "up", "down"]),
     [*TF_ATTN, "blocks.0.mlp.up", "blocks.0.mlp.down"], {}),
    ("oft-tf-coft", "tf", OFTConfig, dict(block=8, coft=True, eps=1e-2, targets=["up"]), ["blocks.0.mlp.up"], {}),
    ("oft-cnn", "cnn", OFTConfig, dict(block=9, targets=["0", "2"]), ["0", "2"], {}),
    ("oft-llama-all-but-head", "llama", OFTConfig, dict(block=8, exclude=["lm_head"]), LLAMA_ALL, {}),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    name, kind, config_cls, kwargs, expected, overrides = request.param
    return dict(name=name, kind=kind, config=config_cls(**kwargs), expected=expected,
                atol=overrides.get("atol", 1e-5), merge_atol=overrides.get("merge_atol", 1e-5),
                init_reference=overrides.get("init_reference", "original"))


def perturb(model, scale=0.1, seed=0):
    """Move every adapter parameter away from its identity initialization."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g))


# ---- the contract ------------------------------------------------------------------------------------------------
def test_targets_hit_exactly_the_expected_paths(case):
    model = build(case["kind"])
    assert list_targets(model, case["config"]) == case["expected"]
    attach(model, case["config"])
    assert [p for p, _ in adapter_layers(model)] == case["expected"]
    # adapted layers and the base layers inside them are no longer candidates (attaching twice cannot double-wrap)
    left = list_targets(model, type(case["config"])(targets=r".*"))
    assert not any(p == e or p.startswith(e + ".") for p in left for e in case["expected"])


def test_identity_at_init(case):
    model = build(case["kind"])
    x = make_input(case["kind"])
    before = output(model, x)
    attach(model, case["config"])
    if case["init_reference"] == "unadapted":          # e.g. QOFT: compare with its (quantized) base layers
        before = output(remove_adapters(copy.deepcopy(model), merge=False), x)
    torch.testing.assert_close(output(model, x), before, atol=case["atol"], rtol=0)


def test_only_adapter_parameters_change(case):
    model = attach(build(case["kind"]), case["config"]).train()
    prefix = case["config"].prefix
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.rsplit(".", 1)[-1].startswith(prefix) for n in trainable)
    perturb(model, scale=0.05)       # off the identity, so every adapter parameter gets a gradient at step 1
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = make_input(case["kind"])
    target = torch.randn(output(model, x).shape, generator=torch.Generator().manual_seed(2))
    for _ in range(3):
        opt.zero_grad()
        (output(model, x) - target).pow(2).mean().backward()
        opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(p.detach(), before[n])
        assert changed == (n in trainable), f"{n}: changed={changed}, trainable={n in trainable}"


def test_merge_unmerge_round_trip_and_merged_forward(case):
    model = attach(build(case["kind"]), case["config"])
    perturb(model)
    x = make_input(case["kind"])
    with torch.no_grad():
        y = output(model, x)
        bases = {p: layer.base_weight().clone() for p, layer in adapter_layers(model)}
        merge_all(model)
        assert all(layer.merged for _, layer in adapter_layers(model))
        torch.testing.assert_close(output(model, x), y, atol=case["merge_atol"], rtol=1e-5)
        merge_all(model)                                           # idempotent
        unmerge_all(model)
        unmerge_all(model)
        for path, layer in adapter_layers(model):
            assert not layer.merged
            torch.testing.assert_close(layer.base_weight(), bases[path], atol=1e-5, rtol=0)
        torch.testing.assert_close(output(model, x), y, atol=case["atol"], rtol=1e-5)


def test_effective_weight_is_what_the_layer_computes(case):
    model = attach(build(case["kind"]), case["config"])
    perturb(model)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for path, layer in adapter_layers(model):
            base = layer.base_layer
            w = layer.effective_weight()
            assert w.shape == layer.base_weight().shape
            if isinstance(base, nn.Linear):
                x = torch.randn(5, base.in_features, generator=g)
                expected = F.linear(x, w, base.bias)
            elif isinstance(base, nn.Embedding):
                x = torch.randint(0, base.num_embeddings, (7,), generator=g)
                expected = F.embedding(x, w)
            else:
                x = torch.randn(2, base.in_channels, 7, 7, generator=g)
                expected = base._conv_forward(x, w, base.bias)
            torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5, msg=path)


def test_rotations_are_orthogonal(case):
    model = attach(build(case["kind"]), case["config"])
    perturb(model, scale=0.3)
    layers = [layer for _, layer in adapter_layers(model) if hasattr(layer, "rotation")]
    if not layers or getattr(case["config"], "cayley", "exact") != "exact":
        pytest.skip("no exact-Cayley rotation in this row")
    with torch.no_grad():
        for layer in layers:
            for r in layer.rotations() if hasattr(layer, "rotations") else [layer.rotation()]:
                b = r.shape[-1]
                err = (r.transpose(-1, -2) @ r - torch.eye(b)).abs().max().item()
                assert err <= 10 * b * EPS32, (layer.path, err)
