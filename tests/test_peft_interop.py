"""Our adapters against Hugging Face peft (a test-only dependency): equal parameters give equal outputs.

Conventions checked here (docs/adapters.md): OFT stores the same packed skew blocks and rotates the input the same
way; our Cayley–Neumann k = 3 is peft's ``num_cayley_neumann_terms=5``; peft's exact branch is the transpose
(``oft_q = −peft``); BOFT stores full b×b blocks A with ``S = ½(A − Aᵀ)``, ``R = cayley(−S)``.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from orthoscope.adapters import adapter_layers, merge_all  # noqa: E402
from orthoscope.adapters.boft import BOFTConfig  # noqa: E402
from orthoscope.adapters.lora import LoRAConfig  # noqa: E402
from orthoscope.adapters.oft import OFTConfig  # noqa: E402
from orthoscope.adapters.peft_format import load_oft_peft, oft_to_peft, save_oft_peft  # noqa: E402
from orthoscope.adapters.registry import attach  # noqa: E402
from orthoscope.ortho import packed_from_skew  # noqa: E402


def tiny_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16)
    return LlamaForCausalLM(cfg).eval()


def logits(model, x):
    y = model(x)
    return y.logits if hasattr(y, "logits") else y


def peft_oft(base, targets, cayley, **kw):
    return peft.get_peft_model(copy.deepcopy(base), peft.OFTConfig(
        target_modules=targets, use_cayley_neumann=cayley == "neumann", num_cayley_neumann_terms=5, **kw)).eval()


def copy_oft_into_peft(ours, theirs, cayley):
    """Write our packed blocks into peft's ``oft_R`` (negated for the exact branch, which is cayley(Q)ᵀ)."""
    sign = 1.0 if cayley == "neumann" else -1.0
    with torch.no_grad():
        for path, layer in adapter_layers(ours):
            rot = theirs.base_model.model.get_submodule(path)
            holder = rot.oft_embedding_R if isinstance(layer.base_layer, nn.Embedding) else rot.oft_R
            holder["default"].weight.copy_(sign * layer.q)


def randomize(model, scale=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("cayley", ["neumann", "exact"])
@pytest.mark.parametrize("kw", [dict(block=4), dict(n_blocks=2), dict(block=8, block_share=True)],
                         ids=["block", "n_blocks", "shared"])
def test_oft_equals_peft_on_a_tiny_mlp(cayley, kw):
    base = tiny_mlp()
    ours = attach(copy.deepcopy(base), OFTConfig(cayley=cayley, targets=["0", "2"], **kw))
    randomize(ours)
    peft_kw = dict(oft_block_size=kw.get("block", 0), r=kw.get("n_blocks", 0), block_share=kw.get("block_share", False))
    theirs = peft_oft(base, ["0", "2"], cayley, **peft_kw)
    copy_oft_into_peft(ours, theirs, cayley)
    x = torch.randn(7, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)
    # merged weights agree too
    merge_all(ours)
    merged = theirs.merge_and_unload()
    for path in ("0", "2"):
        torch.testing.assert_close(ours.get_submodule(path).base_layer.weight, merged.get_submodule(path).weight,
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("cayley", ["neumann", "exact"])
def test_oft_equals_peft_on_a_tiny_llama(cayley):
    base = tiny_llama()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    ours = attach(copy.deepcopy(base), OFTConfig(block=8, cayley=cayley, targets=targets))
    randomize(ours, scale=0.05)
    theirs = peft_oft(base, targets, cayley, oft_block_size=8, r=0)
    copy_oft_into_peft(ours, theirs, cayley)
    x = torch.randint(0, 32, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(logits(ours, x), logits(theirs, x), atol=1e-5, rtol=0)


def test_oft_embedding_and_conv2d_merge_like_peft():
    torch.manual_seed(0)
    base = nn.ModuleDict({"emb": nn.Embedding(10, 8), "conv": nn.Conv2d(2, 4, 3)})
    ours = attach(copy.deepcopy(base), OFTConfig(block=2, cayley="neumann", targets=["emb", "conv"]))
    randomize(ours)
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.OFTConfig(target_modules=["emb", "conv"], oft_block_size=2,
                                                                     r=0, use_cayley_neumann=True))
    copy_oft_into_peft(ours, theirs, "neumann")
    ids = torch.arange(10)
    torch.testing.assert_close(ours["emb"](ids), theirs.base_model.model["emb"](ids), atol=1e-6, rtol=0)
    # Conv2d: peft's *merged* weight is W·blockdiag(R)ᵀ, as ours; its unmerged forward (unfold → rotate → F.fold,
    # which sums overlapping patches) is another map, so only the merged layers are compared.
    x = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    y = ours["conv"](x)
    merged = theirs.merge_and_unload()
    torch.testing.assert_close(y, merged["conv"](x), atol=1e-5, rtol=0)


def _peft_boft_vector(layer, ours_q):
    """peft's full b×b storage A for our packed q: S = ½(A − Aᵀ) = −Q, so A = −Q (already skew) works."""
    from orthoscope.ortho import skew_from_packed

    return -skew_from_packed(ours_q, layer.block)


def test_boft_one_factor_equals_peft_on_cpu():
    """On CPU peft cannot build its CUDA extension and runs one factor; that path must equal ours."""
    base = tiny_mlp()
    ours = attach(copy.deepcopy(base), BOFTConfig(block=4, factors=1, targets=["0", "2"]))
    randomize(ours)
    with pytest.warns(UserWarning):
        theirs = peft.get_peft_model(copy.deepcopy(base), peft.BOFTConfig(
            target_modules=["0", "2"], boft_block_size=4, boft_n_butterfly_factor=1)).eval()
    with torch.no_grad():
        for path, layer in adapter_layers(ours):
            mod = theirs.base_model.model.get_submodule(path)
            mod.boft_R["default"].copy_(_peft_boft_vector(layer, layer.boft_q))
            mod.boft_s["default"].copy_(layer.boft_s[:, None])
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


class _FakeFBD:
    """Stands in for peft's CUDA ``fbd_cuda`` extension (block-diagonal assembly) so its butterfly path runs on CPU."""

    @staticmethod
    def forward(blocks):                                     # [N, D, b, b] → [N, D·b, D·b]
        return [torch.stack([torch.block_diag(*x.unbind(0)) for x in blocks])]


def test_boft_butterfly_factors_equal_peft(monkeypatch):
    import peft.tuners.boft.layer as boft_layer

    monkeypatch.setattr(boft_layer, "get_fbd_cuda", lambda: _FakeFBD())
    base = tiny_mlp()
    ours = attach(copy.deepcopy(base), BOFTConfig(block=2, factors=3, targets=["0", "2"]))
    randomize(ours, scale=0.3)
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.BOFTConfig(
        target_modules=["0", "2"], boft_block_size=2, boft_n_butterfly_factor=3)).eval()
    with torch.no_grad():
        for path, layer in adapter_layers(ours):
            mod = theirs.base_model.model.get_submodule(path)
            assert mod.boft_R["default"].shape[0] == 3
            mod.boft_R["default"].copy_(_peft_boft_vector(layer, layer.boft_q))
            mod.boft_s["default"].copy_(layer.boft_s[:, None])
        x = torch.randn(5, 16, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_lora_equals_peft():
    base = tiny_mlp()
    ours = attach(copy.deepcopy(base), LoRAConfig(rank=4, alpha=8.0, targets=["0", "2"]))
    randomize(ours)
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0", "2"]))
    with torch.no_grad():
        for path, layer in adapter_layers(ours):
            mod = theirs.base_model.model.get_submodule(path)
            mod.lora_A["default"].weight.copy_(layer.lora_A)
            mod.lora_B["default"].weight.copy_(layer.lora_B)
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cayley", ["neumann", "exact"])
def test_export_loads_in_peft_and_peft_adapters_load_here(tmp_path, cayley):
    base = tiny_llama()
    targets = ["q_proj", "v_proj", "embed_tokens"]
    ours = attach(copy.deepcopy(base), OFTConfig(block=8, cayley=cayley, targets=targets))
    randomize(ours, scale=0.05)
    x = torch.randint(0, 32, (2, 7), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = logits(ours, x)
        save_oft_peft(ours, tmp_path / "ours")
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "ours")).eval()
        torch.testing.assert_close(logits(theirs, x), expected, atol=1e-5, rtol=0)
        theirs.save_pretrained(str(tmp_path / "theirs"))
        back = load_oft_peft(copy.deepcopy(base), tmp_path / "theirs").eval()
        torch.testing.assert_close(logits(back, x), expected, atol=1e-5, rtol=0)
        tensors, config = oft_to_peft(back)
        assert config["num_cayley_neumann_terms"] == 5 and config["oft_block_size"] == 8


def test_import_refuses_pre_018_cayley_neumann_adapters():
    from orthoscope.adapters.peft_format import oft_from_peft

    tensors, config = oft_to_peft(attach(tiny_mlp(), OFTConfig(block=4, cayley="neumann", targets=["0"])))
    with pytest.raises(ValueError, match="0.17.1"):
        oft_from_peft(tiny_mlp(), tensors, {**config, "peft_version": "0.17.1"})
    with pytest.raises(ValueError, match="peft_type"):
        oft_from_peft(tiny_mlp(), tensors, {**config, "peft_type": "LORA"})


def test_export_refuses_mixed_configs_and_conv():
    model = attach(tiny_mlp(), OFTConfig(block=4, targets=["0"]))
    attach(model, OFTConfig(block=8, targets=["2"]))
    with pytest.raises(ValueError, match="one OFT config"):
        oft_to_peft(model)
    conv = attach(nn.Sequential(nn.Conv2d(2, 4, 3)), OFTConfig(block=2, targets=["0"]))
    with pytest.raises(ValueError, match="Conv2d"):
        oft_to_peft(conv)


def test_packing_is_peft_triu_order():
    q = torch.randn(3, 5, 5)
    q = q - q.transpose(-1, -2)
    rows, cols = torch.triu_indices(5, 5, 1)
    torch.testing.assert_close(packed_from_skew(q), q[:, rows, cols])
