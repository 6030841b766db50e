"""Adapters on the Hugging Face models people finetune (issue 13), on tiny random configs built in code (no download).

The contract table {GPT-2, OPT, BERT, Llama} × {OFT, BOFT, QOFT, LoRA, SoRA}: only adapter parameters train; three
steps change the output; merged output equals adapted output (≤ 1e-5 in fp32; merges run in float64); unmerge gives
the adapted output back; removing the adapter gives the original model back. GPT-2's projections are
``transformers`` Conv1D layers (weight ``[in, out]``). The tied head/embedding of GPT-2 and OPT is refused, or untied
on request, and the other module never changes. POET's removal restores the attached model. peft parity per adapter
on GPT-2 (Conv1D) and Llama: equal parameters give equal outputs and input gradients (1e-5), through peft's own
on-disk format both ways.
"""
from __future__ import annotations

import copy
import re
import warnings

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from orthoscope.adapters import (POET, adapter_layers, attach, list_targets, load_peft, merge_all,  # noqa: E402
                                 remove_adapters, save_peft, to_peft, unmerge_all)
from orthoscope.adapters.boft import BOFTConfig  # noqa: E402
from orthoscope.adapters.lora import LoRAConfig  # noqa: E402
from orthoscope.adapters.oft import OFTConfig  # noqa: E402
from orthoscope.adapters.qoft import QOFTConfig  # noqa: E402
from orthoscope.adapters.sora import SoRAConfig  # noqa: E402
from orthoscope.adapters.hf import TiedExportWarning  # noqa: E402

V = 97


# ---- tiny models ------------------------------------------------------------------------------------------------
def make_gpt2():
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=V,
                                                                n_positions=32, bos_token_id=0, eos_token_id=0))


def make_opt():
    return transformers.OPTForCausalLM(transformers.OPTConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2,
        max_position_embeddings=32, word_embed_proj_dim=32, bos_token_id=0, eos_token_id=0, pad_token_id=1))


def make_bert():
    return transformers.BertModel(transformers.BertConfig(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32))


def make_llama():
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32, bos_token_id=0, eos_token_id=0))


MODELS = {"gpt2": make_gpt2, "opt": make_opt, "bert": make_bert, "llama": make_llama}
# the tied pairs (head, input embedding)
TIED = {"gpt2": ("lm_head", "transformer.wte"), "opt": ("lm_head", "model.decoder.embed_tokens")}
IDS = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(1))


def build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[kind]().eval()                   # eval: no dropout, so every comparison is deterministic


def out(model, ids=IDS, **kw):
    y = model(ids, **kw) if ids is not None else model(**kw)
    return y.logits if hasattr(y, "logits") else y.last_hidden_state


ADAPTERS = {
    "oft": lambda **kw: OFTConfig(block=8, **kw),
    "boft": lambda **kw: BOFTConfig(block=4, factors=2, **kw),
    "qoft": lambda **kw: QOFTConfig(block=8, bits=8, group_size=16, **kw),
    "lora": lambda **kw: LoRAConfig(rank=2, **kw),
    "sora": lambda **kw: SoRAConfig(rank=2, **kw),
}
# default targets; the tied heads are excluded here and tested on their own below
DEFAULT = {"gpt2": dict(exclude=["lm_head"]), "opt": dict(exclude=["lm_head"]), "bert": {}, "llama": {}}
N_TARGETS = {"gpt2": 8, "opt": 12, "bert": 13, "llama": 15}       # Conv1D ×4/block; Linear ×6/layer; + pooler / head


def train_steps(model, steps=3, lr=1e-2):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    target = torch.randn(out(model).shape, generator=torch.Generator().manual_seed(2))
    for _ in range(steps):
        opt.zero_grad()
        ((out(model) - target) ** 2).mean().backward()
        opt.step()


# ---- the contract table ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("adapter", list(ADAPTERS))
@pytest.mark.parametrize("kind", list(MODELS))
def test_contract(kind, adapter):
    model = build(kind)
    with torch.no_grad():
        original = out(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = ADAPTERS[adapter](**DEFAULT[kind])
    paths = list_targets(model, config)
    assert len(paths) == N_TARGETS[kind]
    if kind == "gpt2":
        assert all(type(model.get_submodule(p)).__name__ == "Conv1D" for p in paths)
    attach(model, config)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.rsplit(".", 1)[-1].startswith(config.prefix) for n in trainable)
    with torch.no_grad():
        at_init = out(model)
    # QOFT quantizes the base at attach: identity is relative to the quantized model (int8, ≤ scale/2 per weight)
    torch.testing.assert_close(at_init, original, atol=3e-3 if adapter == "qoft" else 1e-6, rtol=0)

    train_steps(model)
    with torch.no_grad():
        adapted = out(model)
        assert (adapted - at_init).abs().max() > 1e-3                     # three steps moved the output
        for name, p in model.named_parameters():                           # nothing but the adapter changed
            if not p.requires_grad:
                plain = name.replace(".base_layer", "")
                if plain in frozen and "qoft" not in config.prefix:
                    assert torch.equal(p, frozen[plain]), name
        merge_all(model)
        merged = out(model)
        # a QOFT merge re-quantizes deq(W)·Rᵀ (lossy by design, docs/adapters.md)
        torch.testing.assert_close(merged, adapted, atol=5e-3 if adapter == "qoft" else 1e-5, rtol=0)
        unmerge_all(model)
        torch.testing.assert_close(out(model), adapted, atol=1e-5, rtol=0)
        remove_adapters(model, merge=False)
        assert not list(adapter_layers(model))
        torch.testing.assert_close(out(model), at_init, atol=1e-5, rtol=0)   # the model it was attached to


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_conv1d_effective_weight_is_what_the_layer_computes(adapter):
    from orthoscope.adapters import out_in_weight
    from orthoscope.probes.base import weight_matrices

    model = build("gpt2")
    attach(model, ADAPTERS[adapter](targets=["c_attn"]))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    layer = model.get_submodule("transformer.h.0.attn.c_attn")
    x = torch.randn(5, 32, generator=g)
    with torch.no_grad():
        w = out_in_weight(layer)                                   # [out, in] = [96, 32]
        assert w.shape == (96, 32)
        bias = layer.base_layer.bias
        torch.testing.assert_close(layer(x), x @ w.T + bias, atol=5e-6, rtol=0)
    assert layer.effective_weight().shape == (32, 96)              # the Conv1D layout, what merge writes
    shapes = dict((p, tuple(m.shape)) for p, m in weight_matrices(model, modules=["c_attn", "c_fc"]))
    assert shapes == {"transformer.h.0.attn.c_attn": (96, 32), "transformer.h.1.attn.c_attn": (96, 32),
                      "transformer.h.0.mlp.c_fc": (128, 32), "transformer.h.1.mlp.c_fc": (128, 32)}


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_plain_copy_of_an_adapted_gpt2_loads_into_gpt2(adapter):
    from orthoscope.arena import plain_copy

    base = build("gpt2")
    tuned = attach(copy.deepcopy(base), ADAPTERS[adapter](targets=["c_attn", "c_fc"]))
    train_steps(tuned)
    with torch.no_grad():
        torch.testing.assert_close(out(plain_copy(base, tuned)), out(tuned), atol=1e-5, rtol=0)


# ---- tied weights -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("adapter", list(ADAPTERS))
@pytest.mark.parametrize("kind", list(TIED))
def test_tied_head_is_refused_naming_both_modules(kind, adapter):
    head, embed = TIED[kind]
    model = build(kind)
    before = dict(model.named_modules())
    for kw in (dict(targets=[head]), {}):                              # explicit, and default targets
        with pytest.raises(ValueError) as info:
            attach(model, ADAPTERS[adapter](**kw))
        message = str(info.value)
        assert head in message and embed in message and "tied='untie'" in message and "exclude" in message
    assert dict(model.named_modules()) == before                         # refused before anything changed
    assert model.get_submodule(head).weight is model.get_submodule(embed).weight


@pytest.mark.parametrize("kind", list(TIED))
def test_tied_embedding_side_is_refused_too(kind):
    head, embed = TIED[kind]
    with pytest.raises(ValueError, match=head):
        attach(build(kind), LoRAConfig(rank=2, targets=[embed]))


@pytest.mark.parametrize("adapter", ["oft", "lora", "boft"])
@pytest.mark.parametrize("kind", list(TIED))
def test_untie_keeps_the_other_module(kind, adapter):
    head, embed = TIED[kind]
    model = build(kind)
    embedding = model.get_submodule(embed).weight.detach().clone()
    attach(model, ADAPTERS[adapter](targets=[head], tied="untie"))
    assert model.config.tie_word_embeddings is False
    train_steps(model)
    with torch.no_grad():
        adapted = out(model)
        merge_all(model)
        torch.testing.assert_close(out(model), adapted, atol=1e-5, rtol=0)
    assert torch.equal(model.get_submodule(embed).weight, embedding)   # the input embedding never moved


def test_ties_survive_save_and_load_as_the_user_chose(tmp_path):
    from orthoscope.adapters import shared_weights

    tied = build("gpt2")
    tied.save_pretrained(str(tmp_path / "tied"))
    loaded = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "tied"))
    assert shared_weights(loaded) == {"transformer.wte": ["lm_head"], "lm_head": ["transformer.wte"]}
    llama = build("llama")                                    # untied, loaded from one memory-mapped file:
    llama.save_pretrained(str(tmp_path / "llama"))            # views into one storage are not ties
    assert shared_weights(transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "llama"))) == {}
    model = attach(build("gpt2"), LoRAConfig(rank=2, targets=["lm_head"], tied="untie"))
    train_steps(model)
    remove_adapters(model, merge=True)
    model.tie_weights()                                       # config.tie_word_embeddings is False: stays untied
    model.save_pretrained(str(tmp_path / "untied"))
    back = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "untied"))
    assert shared_weights(back) == {} and torch.equal(back.lm_head.weight, model.lm_head.weight)


def test_bad_tied_value_names_the_choices():
    with pytest.raises(ValueError, match="refuse.*untie"):
        OFTConfig(block=8, tied="share")


# ---- POET removal -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bert", "llama", "opt"])
def test_poet_removal_restores_the_attached_model(kind):
    model = build(kind)
    with torch.no_grad():
        original = out(model)
    for merge in (False, True):
        adapted_model = copy.deepcopy(model)
        POET(block=8, init="keep").attach(adapted_model)
        with torch.no_grad():
            remove_adapters(adapted_model, merge=merge)
            torch.testing.assert_close(out(adapted_model), original, atol=1e-5, rtol=0)
    trained = copy.deepcopy(model)
    POET(block=8, init="keep").attach(trained)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if name.endswith(("poet_q_in", "poet_q_out")):
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(4)))
        adapted = out(trained)
        dropped = remove_adapters(copy.deepcopy(trained), merge=False)
        torch.testing.assert_close(out(dropped), original, atol=1e-5, rtol=0)    # rotations dropped: W₀ back
        torch.testing.assert_close(out(remove_adapters(trained, merge=True)), adapted, atol=1e-5, rtol=0)


def test_poet_on_gpt2_says_why_nothing_matched():
    with pytest.raises(ValueError, match="Conv1D"):
        POET(block=8).attach(build("gpt2"))


# ---- errors that name the module and the valid choices ------------------------------------------------------------
@pytest.mark.parametrize("config, pattern", [
    (OFTConfig(block=8, targets=["ln_1"]), r"'ln_1' matches 2 module\(s\) of type \['LayerNorm'\].*Conv1D"),
    (OFTConfig(block=5, targets=["c_attn"]), r"block=5 does not divide in_features = 32 of layer "
                                             r"'transformer.h.0.attn.c_attn'.*\[1, 2, 4, 8, 16, 32\]"),
    (BOFTConfig(block=4, factors=5, targets=["c_fc"]), r"'transformer.h.0.mlp.c_fc'.*valid block sizes"),
    (QOFTConfig(block=8, group_size=24, targets=["c_proj"]), r"'transformer.h.0.attn.c_proj'.*valid group sizes"),
    (LoRAConfig(rank=2, targets=["c_atn"]), r"unknown .* target\(s\) \['c_atn'\].*transformer.h.0.attn.c_attn"),
    (POET(block=8, targets=["c_attn"]), r"POET cannot adapt.*'c_attn'.*Conv1D.*\['Linear'\]"),
])
def test_bad_targets_and_blocks_name_the_module_and_the_choices(config, pattern):
    model = build("gpt2")
    with pytest.raises(ValueError, match=pattern):
        config.attach(model) if isinstance(config, POET) else attach(model, config)
    assert not list(adapter_layers(model))


def test_default_targets_warn_about_layers_they_leave_out():
    def cnn():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))

    model = cnn()
    with pytest.warns(UserWarning, match=r"'0' \(Conv2d\) are of a type boft has no layer for"):
        attach(model, BOFTConfig(block=4))
    assert [p for p, _ in adapter_layers(model)] == ["2"]
    with pytest.warns(UserWarning, match=r"'0' \(Conv2d\) are of a type lora supports but does not adapt by default"):
        attach(cnn(), LoRAConfig(rank=2))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                   # excluded on purpose: nothing to say
        attach(cnn(), LoRAConfig(rank=2, exclude=["0"]))


# ---- dtype moves (BOFTLinear._apply used to shadow nn.Module._apply) ----------------------------------------------
@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_to_float64_and_double_work_for_every_adapter(adapter):
    model = build("gpt2")
    attach(model, ADAPTERS[adapter](exclude=["lm_head"]))
    with torch.no_grad():
        y32 = out(model)
        model.to(torch.float64)
        assert all(p.dtype == torch.float64 for p in model.parameters())
        torch.testing.assert_close(out(model).float(), y32, atol=1e-5, rtol=0)
        model.float()
        model.double()
        assert all(p.dtype == torch.float64 for _, layer in adapter_layers(model) for p in layer.adapter_parameters())


# ---- peft: same parameters → same outputs and input gradients, through peft's own files both ways ------------------
peft = pytest.importorskip("peft")


class _FakeFBD:
    """peft's CUDA ``fbd_cuda`` extension (block-diagonal assembly) in torch, so its butterfly runs on CPU."""

    @staticmethod
    def forward(blocks):
        return [torch.stack([torch.block_diag(*x.unbind(0)) for x in blocks])]


def out_and_input_grad(model):
    embed = model.get_input_embeddings()
    e = embed(IDS).detach().requires_grad_(True)
    y = out(model, ids=None, inputs_embeds=e)
    (y * torch.linspace(-1, 1, y.shape[-1])).mean().backward()          # a mean, so 1e-5 is not below fp32 rounding
    return y.detach(), e.grad


PEFT_CASES = {
    "lora-gpt2": ("gpt2", LoRAConfig(rank=2, alpha=4.0, targets=["c_attn", "c_proj", "c_fc"])),
    "sora-gpt2": ("gpt2", SoRAConfig(rank=4, targets=["c_attn", "c_fc"])),
    # peft has no OFT/BOFT for Conv1D (refused below); GPT-2's one Linear is its head, tied: untied here
    "oft-gpt2-head": ("gpt2", OFTConfig(block=8, targets=["lm_head"], tied="untie")),
    "boft-gpt2-head": ("gpt2", BOFTConfig(block=4, factors=2, targets=["lm_head"], tied="untie")),
    "lora-llama": ("llama", LoRAConfig(rank=2, rslora=True, targets=["q_proj", "v_proj", "down_proj"])),
    "sora-llama": ("llama", SoRAConfig(rank=4, targets=["q_proj", "up_proj"])),
    "oft-llama": ("llama", OFTConfig(block=8, targets=["q_proj", "v_proj", "gate_proj"])),
    "oft-neumann-llama": ("llama", OFTConfig(block=8, cayley="neumann", targets=["k_proj", "o_proj"])),
    "boft-llama": ("llama", BOFTConfig(block=4, factors=1, targets=["q_proj", "v_proj", "up_proj"])),
    "boft-2-factors-llama": ("llama", BOFTConfig(block=4, factors=2, targets=["q_proj", "down_proj"])),
    # the other two families of the contract table, one row per adapter
    "lora-opt": ("opt", LoRAConfig(rank=2, targets=["q_proj", "fc1"])),
    "sora-bert": ("bert", SoRAConfig(rank=3, targets=["query", "value", "dense"])),
    "oft-opt": ("opt", OFTConfig(block=8, targets=["k_proj", "fc2"])),
    "oft-bert": ("bert", OFTConfig(block=8, cayley="neumann", targets=["query", "key"])),
    "boft-opt": ("opt", BOFTConfig(block=4, factors=2, targets=["v_proj", "out_proj"])),
    "boft-bert": ("bert", BOFTConfig(block=8, targets=["value", "intermediate.dense"])),
    "lora-bert": ("bert", LoRAConfig(rank=2, targets=["query", "value"])),
    "sora-opt": ("opt", SoRAConfig(rank=3, targets=["q_proj", "v_proj"])),
}


@pytest.mark.parametrize("case", list(PEFT_CASES))
def test_peft_parity_and_round_trip(case, tmp_path, monkeypatch):
    import peft.tuners.boft.layer as boft_layer

    monkeypatch.setattr(boft_layer, "get_fbd_cuda", lambda: _FakeFBD())     # multi-factor BOFT on CPU
    kind, config = PEFT_CASES[case]
    base = build(kind)
    ours = attach(copy.deepcopy(base), config)
    train_steps(ours)                                                      # trained here …
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, layer in adapter_layers(ours):
            for p in layer.adapter_parameters():                           # … and moved further, so every
                p.add_(0.1 * torch.randn(p.shape, generator=g))            # parameter is far from its init
            if getattr(layer, "gate", None) is not None:
                layer.gate[0] = 0.0                                        # a pruned rank: exported as rank r−1
    y, grad = out_and_input_grad(ours)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_peft(ours, tmp_path / "ours")
    tied = [w for w in caught if issubclass(w.category, TiedExportWarning)]
    assert len(tied) == (1 if case.endswith("-head") else 0), [str(w.message) for w in caught]
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "ours")).eval()
    y_peft, grad_peft = out_and_input_grad(theirs)
    torch.testing.assert_close(y_peft, y, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad_peft, grad, atol=1e-5, rtol=0)
    theirs.save_pretrained(str(tmp_path / "theirs"))
    back = load_peft(copy.deepcopy(base), tmp_path / "theirs", tied=config.tied).eval()
    y_back, grad_back = out_and_input_grad(back)
    torch.testing.assert_close(y_back, y, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad_back, grad, atol=1e-5, rtol=0)


def qoft_layer_inputs(model) -> dict:
    """The input every QOFT layer sees on IDS."""
    inputs, hooks = {}, []
    for path, layer in adapter_layers(model):
        hooks.append(layer.register_forward_hook(lambda m, args, y, path=path: inputs.__setitem__(path, args[0])))
    with torch.no_grad():
        out(model)
    for h in hooks:
        h.remove()
    return inputs


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("kind", list(MODELS))
def test_qoft_merge_stays_within_the_bound_in_terms_of_the_weights(kind, bits):
    """issue 30, part 6 (docs/adapters.md, "QOFT merge bound"): after three Adam steps, merging every QOFT layer
    moves each weight by at most half a quantization step of its merged group, which is at most
    ‖W[j, block]‖₂ / (2^bits − 1) of the pre-merge weights, and each layer's output by at most
    ½ Σ_g step[j, g]·‖x_g‖₁ — without a MergeBoundWarning."""
    from orthoscope.adapters.qoft import MergeBoundWarning

    model = attach(build(kind), QOFTConfig(block=8, bits=bits, group_size=16, **DEFAULT[kind]))
    train_steps(model)
    inputs = qoft_layer_inputs(model)
    layers = dict(adapter_layers(model))
    with torch.no_grad():
        adapted = {p: layer(inputs[p]).double() for p, layer in layers.items()}
        effective = {p: layer.effective_weight().double() for p, layer in layers.items()}
        blocks = {p: layer.base_layer.dequantized_weight(torch.float64) for p, layer in layers.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("error", MergeBoundWarning)
            merge_all(model)
        for path, layer in layers.items():
            assert layer.merge_error <= layer.merge_bound, path
            w = blocks[path]                                              # deq(W) before the merge, [out, in]
            row_block_norm = w.reshape(w.shape[0], -1, 8).norm(dim=-1).amax(-1, keepdim=True)   # max_B ‖W[j,B]‖₂
            target = effective[path] if not layer.fan_in_fan_out else effective[path].T
            moved = (layer.base_layer.dequantized_weight(torch.float64) - target).abs()
            assert (moved <= row_block_norm / (2 ** bits - 1) * (1 + 1e-5)).all(), path
            x = inputs[path].double().reshape(-1, w.shape[1])
            step = layer.base_layer.scale.double()                         # the merged groups' steps [out, in/16]
            bound = 0.5 * x.abs().reshape(x.shape[0], -1, 16).sum(-1) @ step.T
            rounding = 64 * 2.0 ** -24 * (x.abs() @ w.abs().T)             # float32 matmuls of both outputs
            diff = (layer(inputs[path]).double() - adapted[path]).reshape(x.shape[0], -1).abs()
            assert (diff <= bound + rounding).all(), (path, float((diff - bound).max()))


def test_qoft_merge_warns_when_it_exceeds_the_bound(monkeypatch):
    """A re-quantization that lands off its grid (forced: codes moved by 3 steps) is named, layer and size."""
    import orthoscope.adapters.qoft as qoft

    real = qoft.quantize_groupwise

    def off_by_three(w, bits, group_size):
        qt = real(w, bits=bits, group_size=group_size)
        if bits == 8:
            qt.codes[..., 0] = (qt.codes[..., 0].int() + 3).clamp(0, 255).to(torch.uint8)
        return qt

    model = attach(build("llama"), QOFTConfig(block=8, bits=8, group_size=16, targets=["q_proj"]))
    train_steps(model)
    monkeypatch.setattr(qoft, "quantize_groupwise", off_by_three)
    with pytest.warns(qoft.MergeBoundWarning, match=r"QOFT merge of 'model\.layers\.0\.self_attn\.q_proj'.*"
                                                   r"further than the re-quantization bound"):
        merge_all(model)
    layer = model.get_submodule("model.layers.0.self_attn.q_proj")
    assert layer.merge_error > layer.merge_bound


@pytest.mark.parametrize("kind, adapter", [("gpt2", "lora"), ("gpt2", "oft"), ("opt", "lora")])
def test_export_of_a_tied_head_warns_and_peft_merge_moves_the_embedding(kind, adapter, tmp_path):
    """issue 30, part 6: the warning is true — peft's merge_and_unload on the tied base moves the input embedding,
    and on a base loaded with tie_word_embeddings=False it does not."""
    head, embed = TIED[kind]
    base = build(kind)
    ours = attach(copy.deepcopy(base), ADAPTERS[adapter](targets=[head], tied="untie"))
    train_steps(ours)
    with pytest.warns(TiedExportWarning, match=rf"'{head}' is tied to \['{re.escape(embed)}'\].*merge_and_unload"):
        save_peft(ours, tmp_path / "a")
    before = base.get_submodule(embed).weight.detach().clone()
    merged = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "a")).merge_and_unload()
    moved = (merged.get_submodule(embed).weight.detach() - before).abs().max().item()
    assert moved > 1e-3, moved                       # 0.008–0.045 measured (docs/adapters.md)
    untied = copy.deepcopy(base)
    untied.config.tie_word_embeddings = False
    untied.get_submodule(head).weight = nn.Parameter(base.get_submodule(head).weight.detach().clone())
    kept = peft.PeftModel.from_pretrained(untied, str(tmp_path / "a")).merge_and_unload()
    assert torch.equal(kept.get_submodule(embed).weight.detach(), before)
    with torch.no_grad():
        torch.testing.assert_close(out(kept), out(ours), atol=1e-5, rtol=0)


def test_export_of_untied_targets_does_not_warn(tmp_path):
    ours = attach(build("gpt2"), LoRAConfig(rank=2, targets=["c_attn"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TiedExportWarning)
        save_peft(ours, tmp_path / "a")


def test_sora_on_conv1d_prunes_to_an_equal_lora():
    from orthoscope.adapters.lora import LoRAConv1D
    from orthoscope.adapters.sora import prune

    model = attach(build("gpt2"), SoRAConfig(rank=4, targets=["c_attn", "c_fc"]))
    train_steps(model)
    with torch.no_grad():
        model.get_submodule("transformer.h.0.attn.c_attn").sora_gate[:2].zero_()
        before = out(model)
        assert prune(model)["transformer.h.0.attn.c_attn"] == 2
        layer = model.get_submodule("transformer.h.0.attn.c_attn")
        assert type(layer) is LoRAConv1D and layer.gate is None and layer.lora_A.shape == (2, 32)
        torch.testing.assert_close(out(model), before, atol=1e-6, rtol=0)


def test_sora_exports_per_layer_ranks_as_a_rank_pattern():
    model = attach(build("gpt2"), SoRAConfig(rank=4, targets=["c_attn"]))
    with torch.no_grad():
        model.get_submodule("transformer.h.1.attn.c_attn").sora_gate[1:].zero_()
    tensors, config = to_peft(model)
    assert config["r"] == 4 and config["rank_pattern"] == {r"transformer\.h\.1\.attn\.c_attn": 1}
    assert config["fan_in_fan_out"] is True
    assert tensors["base_model.model.transformer.h.1.attn.c_attn.lora_A.weight"].shape == (1, 32)


@pytest.mark.parametrize("config, pattern", [
    (OFTConfig(block=8, targets=["c_attn"]), "peft's OFT has no Conv1D layer"),
    (BOFTConfig(block=4, targets=["c_attn"]), "peft's BOFT has no Conv1D layer"),
    (QOFTConfig(block=8, group_size=16, targets=["c_attn"]), "QOFT layer .* has no peft counterpart"),
])
def test_export_refuses_what_peft_cannot_build(config, pattern):
    model = attach(build("gpt2"), config)
    with pytest.raises(ValueError, match=pattern):
        to_peft(model)
    if not isinstance(config, QOFTConfig):                  # and peft indeed refuses the Conv1D target
        kind = peft.OFTConfig(target_modules=["c_attn"], oft_block_size=8, r=0) if isinstance(config, OFTConfig) \
            else peft.BOFTConfig(target_modules=["c_attn"], boft_block_size=4)
        with pytest.raises(TypeError, match="Conv1D"):
            peft.get_peft_model(build("gpt2"), kind)


def test_export_refuses_neumann_boft_mixed_types_and_merged_layers():
    llama = attach(build("llama"), BOFTConfig(block=4, cayley="neumann", targets=["q_proj"]))
    with pytest.raises(ValueError, match="exact Cayley only"):
        to_peft(llama)
    mixed = attach(build("llama"), LoRAConfig(rank=2, targets=["q_proj"]))
    attach(mixed, OFTConfig(block=8, targets=["v_proj"]))
    with pytest.raises(ValueError, match="one adapter type"):
        to_peft(mixed)
    merged = attach(build("llama"), LoRAConfig(rank=2, targets=["q_proj"]))
    merge_all(merged)
    with pytest.raises(ValueError, match="unmerge"):
        to_peft(merged)


def test_import_refuses_dora_and_tied_targets(tmp_path):
    tensors, config = to_peft(attach(build("gpt2"), LoRAConfig(rank=2, targets=["c_attn"])))
    from orthoscope.adapters import from_peft

    with pytest.raises(ValueError, match="use_dora"):
        from_peft(build("gpt2"), tensors, {**config, "use_dora": True})
    with pytest.raises(ValueError, match="peft_type='IA3'.*supported"):
        from_peft(build("gpt2"), tensors, {**config, "peft_type": "IA3"})
    theirs = peft.get_peft_model(build("gpt2"), peft.LoraConfig(r=2, target_modules=["wte"]))
    theirs.save_pretrained(str(tmp_path / "wte"))
    with pytest.raises(ValueError, match="lm_head"):
        load_peft(build("gpt2"), tmp_path / "wte")
    untied = load_peft(build("gpt2"), tmp_path / "wte", tied="untie")
    assert untied.lm_head.weight is not untied.transformer.wte.base_layer.weight


@pytest.mark.parametrize("config_cls", [LoRAConfig, SoRAConfig])
def test_lora_conv2d_and_embedding_round_trip_through_peft(config_cls, tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, dilation=1)
            self.head = nn.Linear(8 + 4 * 3 * 3, 5)

        def forward(self, batch):
            ids, img = batch
            return self.head(torch.cat([self.emb(ids).mean(1), self.conv(img).flatten(1)], 1))

    torch.manual_seed(0)
    base = Net().eval()
    ours = attach(copy.deepcopy(base), config_cls(rank=3, alpha=6.0, targets=["emb", "conv", "head"]))
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for p in ours.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    batch = (torch.randint(0, 10, (4, 3), generator=g), torch.randn(4, 2, 6, 6, generator=g))
    with torch.no_grad():
        expected = ours(batch)
        save_peft(ours, tmp_path / "ours")
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "ours")).eval()
        torch.testing.assert_close(theirs(batch), expected, atol=1e-5, rtol=0)
        theirs.save_pretrained(str(tmp_path / "theirs"))
        back = load_peft(copy.deepcopy(base), tmp_path / "theirs").eval()
        torch.testing.assert_close(back(batch), expected, atol=1e-5, rtol=0)
