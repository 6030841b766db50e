"""targets.select_modules: peft's target_modules rules (regex full-match vs list of names / suffixes), exclude."""
from types import SimpleNamespace

import pytest
import torch

from orthoscope.models import MLP, TinyTransformer
from orthoscope.probes import Spectrum
from orthoscope.core.targets import path_matches, select_modules


def transformer():
    torch.manual_seed(0)
    return TinyTransformer(vocab_size=7, n_ctx=3, d_model=8, n_heads=2, n_layers=2, d_mlp=16)


def paths(chosen):
    return [p for p, _ in chosen]


def test_regex_is_a_full_match():
    assert path_matches("blocks.0.attn.q_proj", r"blocks\.\d+\.attn\.(q|v)_proj")
    assert not path_matches("blocks.0.attn.q_proj", r"q_proj")            # fullmatch, not search
    assert not path_matches("blocks.0.attn.q_proj", r"blocks\.0")
    assert path_matches("blocks.0.attn.q_proj", r".*q_proj")


def test_list_matches_exact_names_and_dotted_suffixes():
    assert path_matches("blocks.0.attn.q_proj", ["q_proj"])
    assert path_matches("blocks.0.attn.q_proj", ["attn.q_proj"])
    assert path_matches("embed", ["embed"])
    assert not path_matches("blocks.0.attn.xq_proj", ["q_proj"])          # a suffix must start at a dot
    assert not path_matches("blocks.0.attn", ["q_proj"])
    assert path_matches("anything", None)


def test_select_modules_with_rules_and_exclude():
    model = transformer()
    assert paths(select_modules(model, ["q_proj", "v_proj"])) == [
        "blocks.0.attn.q_proj", "blocks.0.attn.v_proj", "blocks.1.attn.q_proj", "blocks.1.attn.v_proj"]
    assert paths(select_modules(model, r"blocks\.1\.mlp\.(up|down)")) == ["blocks.1.mlp.up", "blocks.1.mlp.down"]
    assert paths(select_modules(model, ["q_proj", "up"], exclude=r"blocks\.0\..*")) == [
        "blocks.1.attn.q_proj", "blocks.1.mlp.up"]
    assert paths(select_modules(model, ["up"], exclude=["blocks.1.mlp.up"])) == ["blocks.0.mlp.up"]
    everything = paths(select_modules(model))
    assert "" not in everything and "blocks.0.ln1" in everything           # the root is never selected


def test_unknown_target_lists_valid_paths():
    model = MLP(vocab_size=5, n_tokens=2, d_embed=4, hidden=(8,), d_out=5)
    with pytest.raises(ValueError, match=r"unknown module target\(s\) \['layer0'\].*'embed', 'layers', 'layers.0'"):
        select_modules(model, ["layers.0", "layer0"])                        # one typo in a list is an error
    with pytest.raises(ValueError, match=r"unknown module target\(s\) \['fc\\\\d'\]"):
        select_modules(model, r"fc\d")
    with pytest.raises(ValueError, match=r"^targets='layers.*\(0' is not a valid regular expression \(missing \)"):
        select_modules(model, r"layers\.(0")
    with pytest.raises(TypeError, match="targets must be a regex string or a list"):
        select_modules(model, 3)
    with pytest.raises(TypeError, match="exclude must be"):
        select_modules(model, None, exclude=[1])


def test_unknown_probe_target_names_the_weight_modules():
    class FakeRun:
        model = MLP(vocab_size=5, n_tokens=2, d_embed=4, hidden=(8,), d_out=5)

    with pytest.raises(ValueError, match=r"unknown weight module target.*valid weight module paths are: "
                                         r"'embed', 'layers.0', 'layers.1'$"):
        Spectrum(modules=["layers.7"])(FakeRun())


def test_agrees_with_peft_check_target_module_exists():
    from peft.tuners.tuners_utils import check_target_module_exists

    model = transformer()
    keys = [p for p, _ in model.named_modules() if p]
    rule_sets = [(["q_proj", "v_proj"], None), (r".*\.attn\.(k|o)_proj", None), (["mlp.up", "embed"], None),
                 (["q_proj", "up", "down"], r"blocks\.0\..*"), (r"blocks\.\d\.mlp\..*", ["blocks.1.mlp.down"]),
                 (["attn"], ["blocks.1.attn"])]
    for targets, exclude in rule_sets:
        config = SimpleNamespace(target_modules=targets, exclude_modules=exclude, target_parameters=None)
        expected = [k for k in keys if check_target_module_exists(config, k) is True
                    or hasattr(check_target_module_exists(config, k), "group")]
        assert paths(select_modules(model, targets, exclude)) == expected, (targets, exclude)


def test_exactly_selects_only_the_given_paths():
    from orthoscope.core.targets import exactly, path_matches

    rule = exactly(["layers.0.fc", "head"])
    assert path_matches("layers.0.fc", rule) and path_matches("head", rule)
    assert not path_matches("block.layers.0.fc", rule)          # a list rule ["layers.0.fc"] would match this suffix
    assert not path_matches("layersX0.fc", rule)                # dots are literal, not regex wildcards
