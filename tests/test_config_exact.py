"""run.config is the run or it refuses (issue 30, part 1): runs built the ways a notebook builds them — heads swapped,
adapters attached by hand, interventions added or removed, dtypes changed, modules replaced by others of the same
shapes, weights edited — either round-trip through their config to bit-identical losses, or ``run.config`` raises a
``ConfigError`` naming the part. Checkpoints refuse a model of another structure (module types, not only shapes)."""
import json

import pytest
import torch
from torch import nn

from orthoscope import AdamW, ClipGradNorm, Run, SGD, models, tasks
from orthoscope.adapters import POET, LoRAConfig, OFTConfig, attach
from orthoscope.config import ConfigError
from orthoscope.core.checkpoint import CheckpointError, read_checked, write_atomic
from orthoscope.methods.schedules import add_schedule
from orthoscope.models.heads import HarmonicHead, use_harmonic_head
from test_run import assert_same_history

STEPS = 3


def task():
    return tasks.ModularArithmetic(p=11, train_frac=0.5)


def mlp(seed=0, **kw):
    torch.manual_seed(seed)
    return models.MLP(**{"vocab_size": 11, "n_tokens": 2, "d_out": 11, "hidden": (16,), "d_embed": 8, **kw})


def transformer(seed=0):
    torch.manual_seed(seed)
    return models.TinyTransformer(vocab_size=11, n_ctx=2, d_model=16, n_heads=2, n_layers=1, d_mlp=32)


def run_of(model, method=None, seed=0):
    return Run(model, task(), method or AdamW(lr=0.01), probes=[], seed=seed)


# ---- constructions that a config expresses: the rebuilt run trains to the same losses, bit for bit --------------

def mlp_harmonic():
    model = mlp()
    use_harmonic_head(model)                          # the case: exported as a plain MLP before
    return run_of(model)


def mlp_harmonic_tied_with_exponent():
    model = mlp(hidden=(8,))
    use_harmonic_head(model, tie=True, n=3.0)
    return run_of(model)


def transformer_harmonic():
    model = transformer()
    use_harmonic_head(model)
    return run_of(model)


def oft_by_hand():
    model = mlp()
    attach(model, OFTConfig(block=4, targets=["layers.0"]))    # before Run(model, task, AdamW()): was dropped
    return run_of(model, AdamW(lr=0.02, weight_decay=0.1))


def lora_by_hand():
    model = mlp()
    attach(model, LoRAConfig(rank=2, targets=["layers.0", "layers.1"]))
    return run_of(model)


def float64_model():
    return run_of(mlp().double())


def built_after_another_seed_and_says_so():
    model = mlp(seed=7)
    model.init_seed = 7
    return run_of(model, seed=0)


def harmonic_then_float64_with_schedule():
    model = mlp()
    use_harmonic_head(model)
    run = run_of(model.double())
    add_schedule(run, warmup=1, total=5)
    return run


EXPRESSED = {
    "mlp_harmonic": (mlp_harmonic, lambda cfg: cfg["model"]["head"]["module"] == "layers.1"),
    "mlp_harmonic_tied_n3": (mlp_harmonic_tied_with_exponent,
                             lambda cfg: cfg["model"]["head"]["tie"] and cfg["model"]["head"]["n"] == 3.0),
    "transformer_harmonic": (transformer_harmonic, lambda cfg: cfg["model"]["head"]["module"] == "unembed"),
    "oft_by_hand": (oft_by_hand, lambda cfg: cfg["method"]["name"] == "OFT" and cfg["method"]["lr"] == 0.02
                    and cfg["method"]["weight_decay"] == 0.1),
    "lora_by_hand": (lora_by_hand, lambda cfg: cfg["method"]["name"] == "LoRA" and cfg["method"]["rank"] == 2),
    "float64": (float64_model, lambda cfg: cfg["model"]["dtype"] == "float64"),
    "other_seed_recorded": (built_after_another_seed_and_says_so, lambda cfg: cfg["model"]["init_seed"] == 7),
    "harmonic_float64_schedule": (harmonic_then_float64_with_schedule,
                                  lambda cfg: cfg["model"]["dtype"] == "float64" and cfg["schedule"]["total"] == 5),
}


@pytest.mark.parametrize("case", sorted(EXPRESSED))
def test_expressed_constructions_round_trip_exactly(case):
    build, expressed = EXPRESSED[case]
    run = build()
    rng = torch.get_rng_state()
    cfg = json.loads(json.dumps(run.config))
    assert torch.equal(rng, torch.get_rng_state()), "asking for the config moved the global random stream"
    assert expressed(cfg), cfg
    run.train(STEPS, progress=False)
    again = Run.from_config(cfg).train(STEPS, progress=False)
    assert_same_history(run.history, again.history)
    assert len(run.history["loss/batch"].values) == STEPS
    assert json.loads(json.dumps(run.config)) == cfg          # asked again after training: the same config


# ---- constructions a config cannot hold: a ConfigError names the part ------------------------------------------

class SameShapesLinear(nn.Linear):
    """A Linear of another type: the same parameter names and shapes, another computation."""

    def forward(self, x):
        return super().forward(x).tanh()


def oft_by_hand_under_sgd():
    model = mlp()
    attach(model, OFTConfig(block=4, targets=["layers.0"]))
    return run_of(model, SGD(lr=0.1))


def poet_by_hand_under_adamw():
    model = mlp()
    POET(block=4, skip_indivisible=True).attach(model)       # POET layers without POET's merges and optimizer
    return run_of(model)


def clipping_added_by_hand():
    run = run_of(mlp())
    run.interventions.append(ClipGradNorm(0.5))
    return run


def poet_merges_removed():
    run = run_of(mlp(), POET(block=4, skip_indivisible=True, merge_every=2))
    run.interventions.clear()
    return run


def one_layer_float64():
    model = mlp()
    model.layers[1].double()
    return run_of(model)


def activation_replaced():
    model = mlp()
    model.act = nn.GELU()                             # no parameters at all: names and shapes cannot tell
    return run_of(model)


def linear_replaced_by_same_shapes():
    model = mlp()
    old = model.layers[1]
    new = SameShapesLinear(old.in_features, old.out_features)
    new.load_state_dict(old.state_dict())
    model.layers[1] = new
    return run_of(model)


def harmonic_head_by_hand():
    model = mlp()
    model.layers[1] = HarmonicHead(16, 11)            # fresh random centres: no config rebuilds these values
    return run_of(model)


def built_after_another_seed():
    return run_of(mlp(seed=7), seed=0)


def weights_edited_after_run():
    run = run_of(mlp())
    with torch.no_grad():
        run.model.layers[0].weight.mul_(2)
    return run


def layer_frozen_by_hand():
    model = mlp()
    model.embed.weight.requires_grad_(False)
    return run_of(model)


def optimizer_replaced():
    run = run_of(mlp())
    run.optimizer = torch.optim.SGD(run.model.parameters(), lr=0.1)
    return run


def adapter_attached_after_run():
    run = run_of(mlp())
    attach(run.model, OFTConfig(block=4, targets=["layers.0"]))   # the optimizer was made before: trains the rest
    return run


def two_heads():
    model = mlp(hidden=(11, 11))
    use_harmonic_head(model)
    use_harmonic_head(model, module="layers.1")
    return run_of(model)


REFUSED = {
    "oft_by_hand_under_sgd": (oft_by_hand_under_sgd, r"'layers\.0' is a OFTLinear attached by hand.*SGD"),
    "poet_by_hand": (poet_by_hand_under_adamw, r"module 'layers\.0' is a POETLinear.* but a Linear"),
    "clipping_added": (clipping_added_by_hand, r"interventions\[0\] is ClipGradNorm\(max_norm=0\.5\) in this run "
                                               r"but nothing"),
    "poet_merges_removed": (poet_merges_removed, r"interventions\[0\] is nothing in this run but POETMerge"),
    "one_layer_float64": (one_layer_float64, r"tensor 'layers\.1\.weight' is float64 .* but float32"),
    "activation_replaced": (activation_replaced, r"module 'act' is a GELU.* but a ReLU"),
    "same_shapes_other_type": (linear_replaced_by_same_shapes,
                               r"module 'layers\.1' is a SameShapesLinear.* but a Linear"),
    "harmonic_head_by_hand": (harmonic_head_by_hand, r"values of 'layers\.1\.weight'"),
    "other_seed": (built_after_another_seed, r"values of 'embed\.weight'.*manual_seed\(0\)"),
    "weights_edited": (weights_edited_after_run, r"values of 'layers\.0\.weight'"),
    "frozen_by_hand": (layer_frozen_by_hand, r"tensor 'embed\.weight' is .*frozen in this run but .*trains"),
    "optimizer_replaced": (optimizer_replaced, r"the optimizer is a SGD in this run but a AdamW"),
    "adapter_after_run": (adapter_attached_after_run, r"optimizer parameter group 0 trains \['embed\.weight'"),
    "two_heads": (two_heads, r"2 harmonic heads \(\['layers\.1', 'layers\.2'\]\)"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_constructions_a_config_cannot_hold_are_named(case):
    build, words = REFUSED[case]
    run = build()
    rng = torch.get_rng_state()
    with pytest.raises(ConfigError, match=words):
        run.config
    assert torch.equal(rng, torch.get_rng_state())


def test_the_family_is_large_enough():
    assert len(EXPRESSED) + len(REFUSED) >= 12


def test_weights_edited_before_the_first_step_and_trained_are_still_named():
    run = weights_edited_after_run()
    run.train(2, progress=False)                       # the values training started from were recorded
    with pytest.raises(ConfigError, match=r"values of 'layers\.0\.weight'"):
        run.config


def test_a_large_model_is_compared_on_the_meta_device(monkeypatch):
    """Above GUARD_MAX_PARAMS the twin is built on the meta device (structure only), and the model must say which
    seed it was built after."""
    import orthoscope.training.run as run_module

    monkeypatch.setattr(run_module, "GUARD_MAX_PARAMS", 10)
    model = mlp()
    use_harmonic_head(model)
    run = run_of(model)
    assert run.initial_digests is None
    with pytest.raises(ConfigError, match="does not record the seed"):
        run.config
    model = mlp()
    model.init_seed = 0
    model.act = nn.GELU()
    with pytest.raises(ConfigError, match=r"module 'act' is a GELU"):
        run_of(model).config
    model = mlp()
    model.init_seed = 0
    use_harmonic_head(model)
    cfg = run_of(model).config
    assert cfg["model"]["head"]["module"] == "layers.1"


# ---- checkpoints: the module structure, not only names and shapes -------------------------------------------------

def test_checkpoint_refuses_a_module_of_another_type(tmp_path):
    run = run_of(harmonic_mlp())                       # HarmonicHead.weight [11, 16] = Linear.weight [11, 16]
    run.train(2, progress=False)
    run.save(tmp_path / "h.safetensors")
    plain = run_of(mlp(bias=False))
    before = {k: v.clone() for k, v in plain.model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"h\.safetensors.*module 'layers\.1' is a Linear in the run but a "
                                              r"HarmonicHead in the checkpoint"):
        plain.load(tmp_path / "h.safetensors")
    assert all(torch.equal(before[k], v) for k, v in plain.model.state_dict().items())    # unchanged
    again = run_of(harmonic_mlp())
    again.load(tmp_path / "h.safetensors")             # the same structure loads
    assert again.step_count == 2


def harmonic_mlp():
    model = mlp(bias=False)
    use_harmonic_head(model)
    return model


def test_checkpoint_refuses_a_parameterless_module_and_a_dtype(tmp_path):
    run_of(mlp()).save(tmp_path / "relu.safetensors")
    gelu = mlp()
    gelu.act = nn.GELU()
    with pytest.raises(CheckpointError, match=r"module 'act' is a GELU in the run but a ReLU in the checkpoint"):
        run_of(gelu).load(tmp_path / "relu.safetensors")
    run_of(mlp().double()).save(tmp_path / "f64.safetensors")
    with pytest.raises(CheckpointError, match=r"tensor 'embed\.weight' is float32 .* but float64"):
        run_of(mlp()).load(tmp_path / "f64.safetensors")


def test_checkpoint_without_a_structure_still_loads_and_a_malformed_one_is_named(tmp_path):
    run = run_of(mlp())
    run.train(2, progress=False)
    run.save(tmp_path / "new.safetensors")
    tensors, meta = read_checked(tmp_path / "new.safetensors", kind="orthoscope.Run")
    meta.pop("format")
    old = {k: v for k, v in meta.items() if k != "structure"}          # as written before the field existed
    write_atomic(tmp_path / "old.safetensors", tensors, old)
    assert run_of(mlp()).load(tmp_path / "old.safetensors").step_count == 2
    for bad in ({"modules": "x", "tensors": []}, {"modules": [], "tensors": [["w", [-1], "float32"]]},
                {"modules": []}, [1]):
        write_atomic(tmp_path / "bad.safetensors", tensors, {**meta, "structure": bad})
        with pytest.raises(CheckpointError, match=r"bad\.safetensors.*field 'structure"):
            run_of(mlp()).load(tmp_path / "bad.safetensors")
