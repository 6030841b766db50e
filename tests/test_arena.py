"""The stability–plasticity arena: task shifts, the pipeline on a tiny schedule, budgets, the base never changes,
interpolation endpoints and the orthogonal path's invariant, Pareto front, plots."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from orthoscope import AdamW  # noqa: E402
from orthoscope.adapters.lora import LoRA  # noqa: E402
from orthoscope.adapters.oft import OFT  # noqa: E402
from orthoscope.arena import (Arena, evaluate, interpolation_models, pareto_front, plot_frontier,  # noqa: E402
                              plot_geometry, plot_interpolation, plot_profile, shift_digits, trajectory)


def test_shifts_of_digits():
    x = torch.rand(5, 64)
    assert torch.equal(shift_digits(shift_digits(x, "mirror"), "mirror"), x)
    assert torch.equal(shift_digits(x, "mirror").view(5, 8, 8)[:, :, 0], x.view(5, 8, 8)[:, :, 7])
    assert torch.equal(shift_digits(x, "flip").view(5, 8, 8)[:, 0], x.view(5, 8, 8)[:, 7])
    p = shift_digits(x, "permute")
    assert torch.equal(p.sort(1).values, x.sort(1).values) and not torch.equal(p, x)
    assert torch.equal(shift_digits(x, "permute", seed=0), p)           # one fixed permutation
    assert torch.allclose(shift_digits(x, "invert"), 1 - x)
    with pytest.raises(ValueError, match="shift must be one of"):
        shift_digits(x, "rotate")


def test_pareto_front():
    pts = [(0.1, 0.5), (0.2, 0.4), (0.3, 0.9), (0.05, 0.1), (0.3, 0.8)]
    assert pareto_front(pts) == [3, 0, 2]           # (0.2, 0.4) is beaten by (0.1, 0.5); (0.3, 0.8) by (0.3, 0.9)


@pytest.fixture(scope="module")
def arena_results():
    arena = Arena.digits(hidden=(32,), pretrain_steps=60, finetune_steps=12, eval_every=4, geometry_tokens=200)
    base_before = {k: v.clone() for k, v in arena.base().state_dict().items()}
    results = arena.compare({"full": AdamW(lr=1e-3), "lora": LoRA(rank=2, alpha=4, lr=1e-2),
                             "oft": OFT(block=16, lr=1e-2)})
    return arena, base_before, results


def test_arena_results_budgets_and_scores(arena_results):
    arena, base_before, results = arena_results
    full, lora, oft = results
    assert full.trainable == 64 * 32 + 32 + 32 * 10 + 10
    assert lora.trainable == 2 * (64 + 32) + 2 * (32 + 10)
    assert oft.trainable == (64 // 16 + 32 // 16) * 16 * 15 // 2
    base = arena.base_scores()
    assert base["A"] > 0.6                                      # pretraining worked
    for r in results:
        assert r.base_scores == base and r.scores == evaluate(r.model, arena.evals)
        assert r.plasticity == pytest.approx(r.scores["B"] - base["B"])
        assert r.forgetting == pytest.approx(base["A"] - r.scores["A"])
        assert r.plasticity > 0                                 # every method learned something of B
        assert {"delta_erank", "cka_A", "procrustes_A", "csd_rel_A", "csd_rel_B", "csd_ratio"} <= set(r.geometry)
        f, p = trajectory(r)
        assert len(f) == 4 and f[-1] == pytest.approx(r.forgetting) and f[0] == pytest.approx(0.0)
    assert all(torch.equal(v, base_before[k]) for k, v in arena.base().state_dict().items())   # copies only
    from orthoscope.arena import score_table

    scores = score_table({"base": arena.base(), "full": full.model}, arena.evals)
    assert list(scores.columns) == ["A", "B", "mean"]
    assert scores.loc["full", "mean"] == pytest.approx((full.scores["A"] + full.scores["B"]) / 2)
    assert "sv/layers.0" in full.run.history                    # spectra recorded for the Dashboard
    table = Arena.table(results)
    assert list(table.index) == ["full", "lora", "oft"] and table.loc["lora", "trainable"] == lora.trainable


def _outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("mode", ["dense", "generator"])
def test_interpolation_endpoints(arena_results, mode):
    arena, _, results = arena_results
    x = arena.evals["A"][0][:50]
    base = arena.base()
    for r in results:
        m0, m1 = interpolation_models(base, r.model, [0.0, 1.0], mode)
        assert torch.allclose(_outputs(m0, x), _outputs(base, x), atol=1e-5)
        assert torch.allclose(_outputs(m1, x), _outputs(r.model, x), atol=1e-4)


def test_boft_and_qoft_paths_and_plain_copies(arena_results):
    from orthoscope.adapters import BOFT, QOFT
    from orthoscope.arena import plain_copy

    arena, _, _ = arena_results
    base, x = arena.base(), arena.evals["A"][0][:50]
    for method in (BOFT(block=8, factors=2, lr=1e-2), QOFT(block=16, bits=8, group_size=32, lr=1e-2)):
        r = arena.finetune(method, steps=4)
        out = _outputs(r.model, x)
        assert torch.allclose(_outputs(plain_copy(base, r.model), x), out, atol=1e-4)   # base architecture
        for mode in ("dense", "generator"):
            m0, m1 = interpolation_models(base, r.model, [0.0, 1.0], mode)
            assert torch.allclose(_outputs(m1, x), out, atol=1e-4)
            # α = 0 is the base (for QOFT's generator path: the base with its weights quantized to 8 bits)
            assert torch.allclose(_outputs(m0, x), _outputs(base, x), atol=1e-5 if mode == "dense" else 0.05)


def test_generator_path_of_oft_stays_on_the_group(arena_results):
    arena, _, results = arena_results
    base, oft = arena.base(), results[2]
    w0 = base.layers[0].weight
    sv0 = torch.linalg.svdvals(w0)
    (gen,) = interpolation_models(base, oft.model, [0.5], "generator")
    (dense,) = interpolation_models(base, oft.model, [0.5], "dense")
    assert torch.allclose(torch.linalg.svdvals(gen.layers[0].effective_weight()), sv0, rtol=1e-4)
    assert not torch.allclose(torch.linalg.svdvals(dense.layers[0].weight), sv0, rtol=1e-4)   # the chord leaves it
    path = arena.interpolate(oft, [0.0, 0.5, 1.0], mode="generator")
    assert path["alpha"] == [0.0, 0.5, 1.0] and path["B"][-1] == pytest.approx(oft.scores["B"])
    with pytest.raises(ValueError, match="mode must be one of"):
        arena.interpolate(oft, [0.5], mode="geodesic")


def test_plots_draw(arena_results):
    arena, _, results = arena_results
    paths = {"oft dense": arena.interpolate(results[2], [0, 0.5, 1]),
             "oft generator": arena.interpolate(results[2], [0, 0.5, 1], mode="generator")}
    fig, axes = plt.subplots(1, 4)
    assert plot_frontier(axes[0], results, paths=paths)
    assert len(plot_interpolation(axes[1], paths)) == 4
    assert len(plot_geometry(axes[2], results, "cka_A")) == 3
    assert len(plot_profile(axes[3], results, "layers.0")) == 3
    with pytest.raises(KeyError, match="available"):
        plot_geometry(axes[2], results, "nonsense")
    with pytest.raises(ValueError, match="at least one"):
        plot_frontier(axes[0], [])
    plt.close(fig)


def test_retarget_shares_the_base(arena_results):
    arena, _, _ = arena_results
    from orthoscope.arena import digits_task

    other = arena.retarget(digits_task("mirror"))
    assert other.base() is arena.base() and other.evals["A"] is arena.evals["A"]
    assert torch.equal(other.evals["B"][0], digits_task("mirror").x_test) and arena.task_b is not other.task_b


def test_sora_reports_the_ranks_it_would_prune_to(arena_results):
    import copy

    from orthoscope.adapters import SoRA
    from orthoscope.adapters.sora import prune
    from orthoscope.arena import sora_summary

    arena, _, _ = arena_results
    r = arena.finetune(SoRA(rank=4, alpha=8, lr=1e-2, sparse_lambda=0.0), steps=2)
    assert r.extra == {"sora_ranks": {"layers.0": 4, "layers.1": 4}, "trainable_pruned": 4 * (64 + 32) + 4 * (32 + 10)}
    assert Arena.table([r]).loc[r.name, "trainable_pruned"] == r.extra["trainable_pruned"]
    model = copy.deepcopy(r.model)
    with torch.no_grad():
        model.layers[0].gate[:3] = 0
        model.layers[1].gate[1] = 0
    summary = sora_summary(model)
    assert summary == {"sora_ranks": {"layers.0": 1, "layers.1": 3}, "trainable_pruned": 1 * (64 + 32) + 3 * (32 + 10)}
    prune(model)
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) == summary["trainable_pruned"]
    assert sora_summary(arena.base()) == {}


def test_bad_arena_arguments():
    with pytest.raises(ValueError, match="finetune_steps must be a positive integer"):
        Arena.digits(finetune_steps=0)


def test_arena_on_a_tiny_transformer_with_attention_targets():
    """The arena is generic: a TinyTransformer (sequence activations are flattened to tokens by the probes),
    modular addition → subtraction, LoRA and OFT on the attention projections."""
    from orthoscope.models.transformer import TinyTransformer, TransformerConfig
    from orthoscope.tasks import ModularArithmetic

    def make():
        torch.manual_seed(0)
        return TinyTransformer(TransformerConfig(vocab_size=7, n_ctx=2, d_model=16, n_heads=2, d_mlp=32))

    arena = Arena(ModularArithmetic(p=7, op="+", train_frac=0.8), ModularArithmetic(p=7, op="-", train_frac=0.8),
                  make, pretrain_steps=20, finetune_steps=4, eval_every=2, batch_size=None)
    lora, oft = arena.compare({"lora": LoRA(rank=2, targets=["q_proj", "v_proj"], lr=1e-2),
                               "oft": OFT(block=8, targets=["q_proj", "v_proj"], lr=1e-2)})
    assert lora.trainable == 2 * 2 * (16 + 16) and oft.trainable == 2 * 2 * 8 * 7 // 2
    keys = oft.run.history.keys("cka_A")
    assert any(k.endswith("attn.q_proj") for k in keys) and all(0 <= oft.run.history[k].last() <= 1 + 1e-6 for k in keys)
    path = arena.interpolate(oft, [0.0, 1.0], mode="generator")
    assert path["A"][0] == pytest.approx(arena.base_scores()["A"]) and path["B"][1] == pytest.approx(oft.scores["B"])
