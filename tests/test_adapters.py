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

from orthoscope.adapters import adapter_layers, matched_modules, merge_all, remove_adapters, unmerge_all
from orthoscope.adapters.boft import BOFTConfig
from orthoscope.adapters.lora import LoRAConfig
from orthoscope.adapters.oft import OFTConfig
from orthoscope.adapters.qoft import QOFTConfig
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
    ("sora-cnn", "cnn", SoRAConfig, dict(rank=2, targets=["0", "4"]), ["0", "4"], {}),
    ("sora-llama", "llama", SoRAConfig, dict(rank=3, targets=["o_proj", "down_proj"]),
     [f"model.layers.{i}.{p}" for i in range(2) for p in ("self_attn.o_proj", "mlp.down_proj")], {}),
    ("oft-mlp", "mlp", OFTConfig, dict(block=4, targets=["layers.0", "layers.1"]), ["layers.0", "layers.1"], {}),
    ("oft-mlp-embed-neumann", "mlp", OFTConfig, dict(block=4, cayley="neumann", targets=["embed"]), ["embed"], {}),
    ("oft-tf-nblocks-shared", "tf", OFTConfig, dict(n_blocks=2, block_share=True, targets=[*TF_ATTN, "up", "down"]),
     [*TF_ATTN, "blocks.0.mlp.up", "blocks.0.mlp.down"], {}),
    ("oft-tf-coft", "tf", OFTConfig, dict(block=8, coft=True, eps=1e-2, targets=["up"]), ["blocks.0.mlp.up"], {}),
    ("oft-cnn", "cnn", OFTConfig, dict(block=9, targets=["0", "2"]), ["0", "2"], {}),
    ("oft-llama-all-but-head", "llama", OFTConfig, dict(block=8, exclude=["lm_head"]), LLAMA_ALL, {}),
    ("boft-mlp", "mlp", BOFTConfig, dict(block=4, targets=["layers.0", "layers.1"]), ["layers.0", "layers.1"], {}),
    ("boft-tf-3-factors", "tf", BOFTConfig, dict(block=4, factors=3, dense=False, targets=["q_proj", "up", "down"]),
     ["blocks.0.attn.q_proj", "blocks.0.mlp.up", "blocks.0.mlp.down"], {}),
    ("boft-tf-dense-neumann", "tf", BOFTConfig, dict(block=2, factors=2, dense=True, cayley="neumann",
                                                    targets=["v_proj"]), ["blocks.0.attn.v_proj"], {}),
    ("boft-llama", "llama", BOFTConfig, dict(block=4, factors=2, targets=["q_proj", "v_proj"]), LLAMA_QV, {}),
    # QOFT: identity is relative to the quantized base; a merge re-quantizes (error ≤ scale/2 per weight).
    ("qoft-mlp-int8", "mlp", QOFTConfig, dict(block=4, bits=8, group_size=8, targets=["layers.0", "layers.1"]),
     ["layers.0", "layers.1"], dict(init_reference="unadapted", merge_atol=5e-3)),   # measured 2.7e-3
    ("qoft-tf-4bit", "tf", QOFTConfig, dict(block=8, bits=4, group_size=16, targets=["q_proj", "down"]),
     ["blocks.0.attn.q_proj", "blocks.0.mlp.down"], dict(init_reference="unadapted", merge_atol=5e-2)),  # 1.9e-2
    ("qoft-llama-4bit", "llama", QOFTConfig, dict(block=8, bits=4, group_size=16, targets=["q_proj", "v_proj"]),
     LLAMA_QV, dict(init_reference="unadapted", merge_atol=2e-2)),                                 # 5.4e-3
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
    left = matched_modules(model, None, types=(nn.Linear, nn.Embedding, nn.Conv2d))
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
            if hasattr(base, "in_features"):                      # nn.Linear or QOFT's QuantLinear
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
    layers = [layer for _, layer in adapter_layers(model) if hasattr(layer, "rotation") or hasattr(layer, "rotations")]
    if not layers or getattr(case["config"], "cayley", "exact") != "exact":
        pytest.skip("no exact-Cayley rotation in this row")
    with torch.no_grad():
        for layer in layers:
            for r in layer.rotations() if hasattr(layer, "rotations") else [layer.rotation()]:
                b = r.shape[-1]
                err = (r.transpose(-1, -2) @ r - torch.eye(b)).abs().max().item()
                assert err <= 10 * b * EPS32, (layer.path, err)


# ---- bad input ---------------------------------------------------------------------------------------------------
def test_unknown_target_lists_the_candidates():
    model = build("mlp")
    with pytest.raises(ValueError, match=r"nope.*'layers\.0', 'layers\.1'"):
        attach(model, OFTConfig(block=4, targets=["nope"]))
    with pytest.raises(ValueError, match="ln1"):          # a LayerNorm is not a candidate of OFT
        attach(build("tf"), OFTConfig(block=4, targets=["ln1"]))


@pytest.mark.parametrize("config, message", [
    (OFTConfig(block=5, targets=["q_proj"]), r"block=5 does not divide in_features = 16 of layer "
                                             r"'blocks\.0\.attn\.q_proj'.*\[1, 2, 4, 8, 16\]"),
    (OFTConfig(n_blocks=3, targets=["down"]), r"n_blocks=3 .* 32 of layer 'blocks\.0\.mlp\.down'.*\[1, 2, 4, 8, 16, 32\]"),
    (QOFTConfig(block=3, group_size=16, targets=["q_proj"]), r"block=3 .*'blocks\.0\.attn\.q_proj'"),
    (BOFTConfig(block=8, factors=3, targets=["q_proj"]), r"factors=3 .*'blocks\.0\.attn\.q_proj'.*valid block sizes: "
                                                         r"\[2, 4\]"),
    (QOFTConfig(block=4, group_size=5, targets=["q_proj"]), r"'blocks\.0\.attn\.q_proj'.*group_size=5 does not "
                                                            r"divide.*valid group sizes for it: \[1, 2, 4, 8, 16\]"),
    (QOFTConfig(block=4, bits=4, group_size=1, targets=["q_proj"]), r"even.*valid group sizes for it: \[2, 4, 8, 16\]"),
], ids=["oft-block", "oft-n-blocks", "qoft-block", "boft-butterfly", "qoft-group", "qoft-4bit-odd-group"])
def test_layers_that_do_not_fit_raise_and_leave_the_model_unchanged(config, message):
    model = build("tf")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        attach(model, config)
    assert not list(adapter_layers(model))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("make", [
    lambda: LoRAConfig(rank=0), lambda: LoRAConfig(rank=-2), lambda: LoRAConfig(rank=2.5), lambda: SoRAConfig(rank=0),
    lambda: LoRAConfig(rank=2, alpha=0.0), lambda: LoRAConfig(rank=2, dropout=1.0),
    lambda: SoRAConfig(rank=2, sparse_lambda=-1.0),
    lambda: OFTConfig(block=4, n_blocks=2), lambda: OFTConfig(block=0), lambda: OFTConfig(cayley="pade"),
    lambda: OFTConfig(cayley="neumann", neumann_terms=0), lambda: OFTConfig(coft=True, eps=0.0),
    lambda: BOFTConfig(factors=0), lambda: QOFTConfig(bits=3), lambda: QOFTConfig(group_size=0),
], ids=["rank0", "rank-neg", "rank-float", "sora-rank0", "alpha0", "dropout1", "lambda-neg", "block-and-n", "block0",
        "cayley", "k0", "eps0", "factors0", "bits3", "group0"])
def test_bad_config_values_raise(make):
    with pytest.raises(ValueError):
        make()


# ---- methods in a Run --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [
    "LoRA(rank=4, alpha=8.0, targets=['layers.0', 'layers.1'], lr=3e-2)",
    "SoRA(rank=4, alpha=8.0, sparse_lambda=1e-3, targets=['layers.0', 'layers.1'], lr=3e-2)",
    "OFT(block=8, targets=['layers.0', 'layers.1'], lr=3e-2)",
    "BOFT(block=4, factors=2, targets=['layers.0', 'layers.1'], lr=3e-2)",
    "QOFT(block=8, bits=8, group_size=8, targets=['layers.0', 'layers.1'], lr=3e-2)",
], ids=["lora", "sora", "oft", "boft", "qoft"])
def test_methods_train_only_their_adapter_in_a_run(method):
    from orthoscope import Run
    from orthoscope.adapters.boft import BOFT
    from orthoscope.adapters.lora import LoRA
    from orthoscope.adapters.oft import OFT
    from orthoscope.adapters.qoft import QOFT
    from orthoscope.adapters.sora import SoRA
    from orthoscope.probes import Spectrum
    from orthoscope.tasks import ModularArithmetic

    method = eval(method)
    torch.manual_seed(0)
    model = MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(32,), d_out=11)
    embed = model.embed.weight.detach().clone()
    run = Run(model, ModularArithmetic(p=11, train_frac=0.6), method, probes=[Spectrum(every=10)], seed=0)
    first = None
    for _ in range(30):
        run.step()
        first = first if first is not None else run.last_loss
    assert run.last_loss < first
    assert torch.equal(run.model.embed.weight, embed)                       # not a target: untouched
    assert all(n.rsplit(".", 1)[-1].startswith(method.prefix)
               for n, p in run.model.named_parameters() if p.requires_grad)
    # weight probes see the adapted layer's effective weight (not its frozen base): last record is at step 30
    with torch.no_grad():
        sv = torch.linalg.svdvals(run.model.get_submodule("layers.0").effective_weight().float())
    torch.testing.assert_close(run.history["sv/layers.0"].last(), sv, atol=1e-5, rtol=1e-5)
    assert "sv/layers.0.base_layer" not in run.history.keys()


def test_sora_proximal_step_sparsifies_and_prune_gives_an_equal_lora():
    from orthoscope import Run
    from orthoscope.adapters.lora import LoRALinear
    from orthoscope.adapters.sora import SoRA, gate_ranks, prune, soft_threshold
    from orthoscope.tasks import ModularArithmetic

    g = torch.tensor([0.5, -0.05, 0.0, -2.0])
    torch.testing.assert_close(soft_threshold(g, 0.1), torch.tensor([0.4, 0.0, 0.0, -1.9]))
    torch.manual_seed(0)
    model = MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(32,), d_out=11)
    run = Run(model, ModularArithmetic(p=11, train_frac=0.6),
              SoRA(rank=6, targets=["layers.0", "layers.1"], sparse_lambda=30.0, lr=1e-2), probes=[], seed=0)
    run.train(20, progress=False)
    ranks = gate_ranks(run.model)
    assert set(ranks) == {"layers.0", "layers.1"} and min(ranks.values()) < 6     # λ·lr = 0.3 per step
    x = torch.randint(0, 11, (9, 2), generator=torch.Generator().manual_seed(0))
    run.model.eval()
    with torch.no_grad():
        y = run.model(x)
        kept = prune(run.model)
        assert kept == ranks
        torch.testing.assert_close(run.model(x), y, atol=1e-6, rtol=1e-6)
    for path, rank in kept.items():
        layer = run.model.get_submodule(path)
        if rank:
            assert isinstance(layer, LoRALinear) and layer.gate is None and layer.rank == rank
            assert layer.lora_A.shape[0] == rank and layer.lora_A.requires_grad
        else:
            assert isinstance(layer, nn.Linear)


def test_boft_butterfly_matches_a_dense_product_of_permutation_matrices():
    """Oracle: M = Π_{m−1} ⋯ Π_0 with Π_i = P_i blockdiag(R_i) P_iᵀ, P_i[j, perm_i[j]] = 1 (peft's perm2mat)."""
    from orthoscope.ortho import blockdiag, butterfly_permutation

    torch.manual_seed(0)
    lin = nn.Linear(16, 5)
    layer = BOFTConfig(block=2, factors=3).make_layer("lin", lin)
    with torch.no_grad():
        layer.boft_q.normal_(0, 0.5)
        layer.boft_s.uniform_(0.5, 1.5)
        rs = layer.rotations()
        dense = torch.eye(16)
        for i in range(3):
            perm = butterfly_permutation(16, 2, i)
            p = torch.zeros(16, 16)
            p[torch.arange(16), perm] = 1.0
            dense = (p @ blockdiag(rs[i]) @ p.T) @ dense
        torch.testing.assert_close(layer.rotation_matrix(), dense, atol=1e-6, rtol=0)
        x = torch.randn(4, 16)
        expected = (F.linear(x @ dense, lin.weight) * layer.boft_s) + lin.bias
        for forced in (True, False):
            layer.dense = forced
            torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    # both paths give the same gradients
    grads = []
    for forced in (True, False):
        layer.dense = forced
        layer.zero_grad()
        layer(x).pow(2).sum().backward()
        grads.append(layer.boft_q.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_coft_keeps_every_block_inside_its_radius():
    model = attach(build("tf"), OFTConfig(block=4, coft=True, eps=1e-3, targets=["q_proj", "up"]))
    perturb(model, scale=1.0)
    output(model, make_input("tf"))
    for _, layer in adapter_layers(model):
        radius = layer.eps / layer.q.shape[0] ** 0.5
        assert (layer.q.norm(dim=1) * 2 ** 0.5 <= radius * (1 + 1e-6)).all()


def test_parameter_counts_and_block_sharing():
    d_in, d_out = 16, 32
    counts = {}
    for name, config in [("oft", OFTConfig(block=4)), ("shared", OFTConfig(block=4, block_share=True)),
                         ("lora", LoRAConfig(rank=3)), ("boft", BOFTConfig(block=4, factors=2)),
                         ("qoft", QOFTConfig(n_blocks=2, group_size=8))]:
        layer = config.make_layer("x", nn.Linear(d_in, d_out))
        counts[name] = sum(p.numel() for p in layer.adapter_parameters())
    assert counts == {"oft": 4 * 6, "shared": 6, "lora": 3 * (d_in + d_out), "boft": 2 * 4 * 6 + d_out,
                      "qoft": 2 * 28}


def test_qoft_stores_codes_not_floats():
    model = attach(build("tf"), QOFTConfig(block=8, bits=4, group_size=16, targets=["down"]))
    base = model.get_submodule("blocks.0.mlp.down").base_layer
    assert base.codes.dtype == torch.uint8 and base.codes.numel() == 16 * 32 // 2
    assert not any(t.dtype.is_floating_point and t.numel() >= 16 * 32 for t in base.state_dict().values())


def test_every_config_field_has_help_and_every_method_is_registered():
    from dataclasses import fields

    from orthoscope.adapters.registry import ADAPTERS

    assert {"lora", "sora", "oft", "boft", "qoft"} <= set(ADAPTERS)
    for cls in ADAPTERS.values():
        assert all(f.metadata.get("help") for f in fields(cls)), cls.__name__


def test_list_targets_changes_nothing():
    model = build("llama")
    names = [n for n, _ in model.named_modules()]
    assert list_targets(model, OFTConfig(block=8, targets=r".*\.mlp\.(up|down)_proj")) == [
        f"model.layers.{i}.mlp.{p}" for i in range(2) for p in ("up_proj", "down_proj")]
    assert [n for n, _ in model.named_modules()] == names


@pytest.mark.parametrize("config", [LoRAConfig(rank=2), SoRAConfig(rank=2), OFTConfig(block=8),
                                    OFTConfig(block=8, cayley="neumann"), BOFTConfig(block=4, factors=2),
                                    QOFTConfig(block=8, bits=8, group_size=16)],
                         ids=["lora", "sora", "oft", "oft-cnp", "boft", "qoft"])
def test_half_precision_base_keeps_float32_adapters(config):
    model = build("llama").to(torch.bfloat16)
    config.targets = ["q_proj", "down_proj"]
    attach(model, config)
    x = make_input("llama")
    y = output(model, x)
    assert y.dtype == torch.bfloat16
    y.float().pow(2).mean().backward()
    adapter = [p for p in model.parameters() if p.requires_grad]
    assert adapter and all(p.dtype == torch.float32 and p.grad is not None for p in adapter)
    with torch.no_grad():
        merge_all(model)
        torch.testing.assert_close(output(model, x).float(), y.float(), atol=0.1, rtol=0.05)   # bf16 rounding


def test_quantized_base_keeps_no_float_weight_for_backward():
    """QuantLinear saves codes, not a dequantized float weight, and its gradients equal a plain dequantized linear's."""
    from orthoscope.ortho import cayley, skew_from_packed

    torch.manual_seed(0)
    layer = QOFTConfig(block=8, bits=4, group_size=16).make_layer("x", nn.Linear(32, 64))
    perturb(layer)
    x = torch.randn(5, 32, requires_grad=True)
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(tuple(t.shape)) or t, lambda t: t):
        y = layer(x)
    assert (64, 32) not in shapes and (32, 64) not in shapes
    y.pow(2).sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    q_ref = layer.qoft_q.detach().clone().requires_grad_()
    rotated = torch.einsum("nrk,rkc->nrc", x_ref.view(5, 4, 8), cayley(skew_from_packed(q_ref, 8))).reshape(5, 32)
    F.linear(rotated, layer.base_layer.dequantized_weight(), layer.base_layer.bias).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.qoft_q.grad, q_ref.grad, atol=1e-5, rtol=1e-5)
