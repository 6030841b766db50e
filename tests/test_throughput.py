"""Throughput in every Run's History (training/throughput.py), the Dashboard's line for it, the FLOP count against the
textbook formula (models/flops.py), and per-block torch.compile as a switch (models/compiled.py, ``model.compile``).

No test asserts a speed: the timings are checked for what they must be whatever the machine's load (positive, at
the right steps, consistent with the batch and the FLOP count), never for how large they are.
"""
from __future__ import annotations

import pytest
import torch

from orthoscope import AdamW, Run
from orthoscope.models import MLP
from orthoscope.tasks import ModularArithmetic
from orthoscope.training import throughput as tp
from orthoscope.training.throughput import MEASURED, Throughput, batch_items, device_peak_flops


def mlp_run(every=None, **kw) -> Run:
    torch.manual_seed(0)
    model = MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(16,), d_out=11)
    run = Run(model, ModularArithmetic(p=11, train_frac=0.5, batch_size=16), AdamW(lr=1e-2), probes=[], seed=0, **kw)
    if every is not None:
        run.throughput = Throughput(every=every)
    return run


def tiny_llama(batch=3, n_ctx=16, seed=0):
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config
    from orthoscope.tasks.tinylang import TinyLang

    task = TokenTask(TinyLang(n_ctx=n_ctx, batch_size=batch, n_sentences=200), n_eval=4)
    return task, build_llama(llama_config("tiny", task.vocab_size, task.n_ctx), seed=seed)


# ---- what a Run records --------------------------------------------------------------------------------------------
def test_every_run_records_step_time_and_examples_per_second_at_multiples_of_every():
    run = mlp_run().train(25, progress=False)
    h = run.history
    assert h["throughput/step_s"].steps == [10, 20] == h["throughput/examples_per_s"].steps
    assert "throughput/tokens_per_s" not in h                     # modular arithmetic: one example per row
    for step_s, rate in zip(h["throughput/step_s"].values, h["throughput/examples_per_s"].values):
        assert step_s > 0 and rate * step_s == pytest.approx(16, rel=1e-9)      # 16 rows per step
    # every timed step is inside run.wall_time (which times the same span): 9 + 10 timed steps of the 25
    assert 9 * h["throughput/step_s"].values[0] + 10 * h["throughput/step_s"].values[1] <= run.wall_time
    assert "loss/batch" in run.step() and run.step_count == 26     # a step's own record is unchanged between


def test_a_token_task_counts_tokens_and_flops_give_tflops_and_mfu_with_a_peak():
    task, model = tiny_llama(batch=3, n_ctx=16)
    run = Run(model, task, AdamW(lr=1e-3), probes=[], seed=0)
    run.throughput = Throughput(every=2, peak_flops=1e12)
    run.train(4, progress=False)
    h = run.history
    assert h["throughput/tokens_per_s"].steps == [2, 4] and "throughput/examples_per_s" not in h
    for step_s, tokens, tflops, mfu in zip(*(h[f"throughput/{k}"].values
                                             for k in ("step_s", "tokens_per_s", "tflops", "mfu"))):
        assert tokens * step_s == pytest.approx(3 * 16, rel=1e-9)                 # B·T tokens per step
        assert tflops * 1e12 * step_s == pytest.approx(run.throughput.flops_per_step, rel=1e-9)
        assert mfu == pytest.approx(tflops * 1e12 / 1e12, rel=1e-12)              # achieved ÷ the given peak


def test_on_a_cpu_mfu_is_absent_with_the_reason():
    run = mlp_run().train(10, progress=False)
    assert "throughput/tflops" in run.history and "throughput/mfu" not in run.history
    assert "no reliable peak FLOP/s for a cpu device" in run.throughput.mfu_note
    assert "run.throughput.peak_flops" in run.throughput.mfu_note


def test_grad_accum_counts_every_micro_batch():
    one, two = mlp_run(every=2), mlp_run(every=2)
    two.grad_accum = 2
    one.train(2, progress=False), two.train(2, progress=False)
    assert two.throughput.flops_per_step == pytest.approx(2 * one.throughput.flops_per_step)
    step_s, rate = two.history["throughput/step_s"].values[0], two.history["throughput/examples_per_s"].values[0]
    assert rate * step_s == pytest.approx(32, rel=1e-9)                             # 2 batches of 16 rows


def test_every_one_records_from_the_first_step_and_none_records_nothing():
    run = mlp_run(every=1).train(3, progress=False)
    assert run.history["throughput/step_s"].steps == [1, 2, 3]          # the first step, alone, is better than none
    off = mlp_run()
    off.throughput = Throughput(every=None)
    off.train(10, progress=False)
    assert not off.history.keys("throughput") and off.throughput.flops_per_step is None


def test_a_resumed_run_records_at_the_same_steps(tmp_path):
    straight = mlp_run(every=5).train(10, progress=False)
    first = mlp_run(every=5).train(4, progress=False)
    first.save(tmp_path / "c.safetensors")
    resumed = mlp_run(every=5).load(tmp_path / "c.safetensors").train(6, progress=False)
    for key in straight.history.keys("throughput"):
        assert resumed.history[key].steps == straight.history[key].steps == [5, 10], key
    assert all(k.startswith(MEASURED) for k in straight.history.keys("throughput"))


def test_bad_settings_are_refused_by_name():
    for every in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="every"):
            Throughput(every=every)
    for peak in (0, -1.0, float("nan"), "989e12"):
        with pytest.raises(ValueError, match="peak_flops"):
            Throughput(peak_flops=peak)


# ---- the peak table ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                                        ("NVIDIA H100 NVL", 835e12), ("NVIDIA H200", 989e12),
                                        ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A100 80GB PCIe", 312e12),
                                        ("NVIDIA GeForce RTX 3090", None)])
def test_peak_table_by_device_name(monkeypatch, name, peak):
    monkeypatch.delenv(tp.ENV_PEAK, raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    got, note = device_peak_flops(torch.device("cuda", 0))
    assert got == peak and name in note
    if peak is None:
        assert "not in orthoscope.training.throughput.PEAK_FLOPS" in note


def test_peak_from_the_environment_and_its_errors(monkeypatch):
    monkeypatch.setenv(tp.ENV_PEAK, "4e14")
    assert device_peak_flops(torch.device("cpu"))[0] == 4e14
    monkeypatch.setenv(tp.ENV_PEAK, "fast")
    with pytest.raises(ValueError, match=r"\$ORTHOSCOPE_PEAK_FLOPS must be a positive number.*'fast'"):
        device_peak_flops(torch.device("cpu"))
    monkeypatch.delenv(tp.ENV_PEAK)
    peak, note = device_peak_flops(torch.device("cpu"))
    assert peak is None and "cpu" in note


def test_batch_items_tokens_only_for_language_model_batches():
    tokens = torch.zeros(4, 7, dtype=torch.long)
    assert batch_items(tokens, tokens) == (28, "tokens")
    assert batch_items(tokens, torch.zeros(4, dtype=torch.long)) == (4, "examples")      # a label per row
    assert batch_items(torch.zeros(4, 7), torch.zeros(4, 7)) == (4, "examples")            # regression targets


# ---- FLOPs: FlopCounterMode against 6·N·D + attention -------------------------------------------------------------
def test_counted_flops_of_a_llama_equal_the_textbook_formula():
    from orthoscope.models.flops import llama_matmul_params, llama_train_flops

    task, model = tiny_llama(batch=3, n_ctx=16)
    run = Run(model, task, AdamW(lr=1e-3), probes=[], seed=0)
    run.train(1, progress=False)
    config, tokens = model.config, 3 * 16
    counted = run.throughput.flops_per_step
    assert counted == llama_train_flops(config, 3, 16, recomputed_scores=True)
    # the parts: every linear layer 6 FLOPs per weight and token; attention 4·L·T·d forward, 10·L·T·d backward
    d, layers = config.hidden_size, config.num_hidden_layers
    assert counted == 6 * llama_matmul_params(config) * tokens + 14 * layers * 16 * d * tokens
    assert llama_train_flops(config, 3, 16) == counted - 2 * layers * 16 * d * tokens    # textbook: 12, no recompute
    n = sum(p.numel() for name, p in model.named_parameters() if "proj" in name or "lm_head" in name)
    assert llama_matmul_params(config) == n                       # N is the linear layers' weights, counted


def test_counting_leaves_every_gradient_bitwise_as_eager():
    """The counted step must be the step eager runs (a resumed run's first step is counted): FlopCounterMode's own
    decompositions changed every gradient of the tiny Llama in its last bits."""
    task, _ = tiny_llama()
    x, y = task.batch(torch.Generator().manual_seed(0))

    def grads(count: bool):
        _, model = tiny_llama()
        with tp.flop_counter() if count else torch.enable_grad():
            torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        return [p.grad for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(grads(False), grads(True)))


def test_flop_counter_counts_the_cpu_fused_attention():
    q = torch.randn(2, 4, 8, 16, requires_grad=True)
    with tp.flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
    forward = 2 * (2 * 2 * 4 * 8 * 8 * 16)                         # Q·Kᵀ and P·V: 2·b·h·s·s·d each
    assert counter.get_total_flops() == forward + 5 * forward // 2  # backward: five such products


# ---- the Dashboard -------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:orthoscope Dashboard. ipympl")
def test_dashboard_status_shows_throughput_and_why_mfu_is_missing():
    from orthoscope.probes import default_probes
    from orthoscope.viz.dashboard import Dashboard
    from orthoscope.viz.dashboard_text import _si

    run = mlp_run(every=2)
    run.probes = default_probes(every=2)
    run.train(4, progress=False)
    dash = Dashboard(run, live_every_s=None)
    status = dash.status.value
    rate, step_s = run.history["throughput/examples_per_s"].values[-1], run.history["throughput/step_s"].values[-1]
    assert f"{_si(rate)} examples/s" in status and f"{1e3 * step_s:.3g} ms/step" in status
    assert "MFU n/a" in status and "no reliable peak FLOP/s for a cpu device" in status     # the reason, as tooltip
    run.throughput.peak_flops = 1e12
    run.train(2, progress=False)
    dash.redraw()
    mfu = run.history["throughput/mfu"].values[-1]
    assert f"MFU {100 * mfu:.3g}%" in dash.status.value
    dash.close()


# ---- torch.compile of each block -----------------------------------------------------------------------------------
def losses(run, steps):
    run.train(steps, progress=False)
    return run.history["loss/batch"].values


def counting(backend: str, graphs: list):
    """The ``backend`` of torch.compile, keeping each graph Dynamo hands it (so a test sees that it compiled)."""
    from torch._dynamo.backends.registry import lookup_backend

    def compile_graph(gm, inputs):
        graphs.append(gm.code)
        return lookup_backend(backend)(gm, inputs)

    return compile_graph


def test_compiled_llama_blocks_train_to_the_same_losses_with_inductor():
    """Inductor (C++ on this CPU) fuses fp32 arithmetic, so the losses agree to rounding, not bitwise: within 1e-5
    relative over 6 steps (measured 1.2e-7). The first step runs eagerly (its FLOPs are counted), the second
    compiles."""
    from orthoscope.models.blocks import repeated_blocks
    from orthoscope.models.compiled import compile_blocks, compile_options

    task, eager_model = tiny_llama(batch=2, n_ctx=16)
    _, model = tiny_llama(batch=2, n_ctx=16)
    keys, graphs = list(model.state_dict()), []
    names = compile_blocks(model, backend=counting("inductor", graphs))
    assert names == [n for n, _ in repeated_blocks(model)] and len(names) == 2
    assert list(model.state_dict()) == keys                       # names and checkpoints unchanged
    eager = losses(Run(eager_model, task, AdamW(lr=1e-3), probes=[], seed=0), 6)
    compiled = losses(Run(model, task, AdamW(lr=1e-3), probes=[], seed=0), 6)
    assert graphs and all("self_attn" in code for code in graphs)   # decoder layers went through Inductor
    worst = max(abs(a - b) / abs(b) for a, b in zip(compiled, eager))
    assert worst <= 1e-5, f"compiled vs eager losses differ by {worst:.2e} relative"
    with pytest.raises(ValueError, match="compiled already"):
        compile_blocks(model)
    _, lazy = tiny_llama()
    compile_blocks(lazy)
    assert compile_options(lazy) == {}                            # torch's defaults (Inductor)


def test_compiled_blocks_with_an_adapter_attached_after_compiling():
    """LoRA replaces the blocks' projections after compile_blocks (Run attaches the method): Dynamo traces the
    adapted block at its first call. aot_eager (no code generation) keeps the arithmetic eager's: equal losses."""
    from orthoscope.adapters import LoRA
    from orthoscope.models.compiled import compile_blocks
    from orthoscope.recipes.llm import LLAMA_TARGETS

    graphs = []
    task, eager_model = tiny_llama(batch=2, n_ctx=16)
    _, model = tiny_llama(batch=2, n_ctx=16)
    compile_blocks(model, backend=counting("aot_eager", graphs))
    def run(model):
        torch.manual_seed(1)                                      # LoRA's A is drawn at attach
        return Run(model, task, LoRA(rank=4, targets=LLAMA_TARGETS, lr=1e-2), probes=[], seed=0)

    eager, compiled = losses(run(eager_model), 4), losses(run(model), 4)
    assert len(graphs) >= 2 and all("lora_A" in code for code in graphs)   # each block compiled, with its LoRA
    assert compiled == pytest.approx(eager, rel=1e-6, abs=0)


def test_compile_in_a_config_round_trips_and_bad_settings_are_config_errors():
    from orthoscope.config.format import ConfigError

    cfg = {"task": {"name": "ModularArithmetic", "p": 11, "batch_size": 16},
           "model": {"name": "MLP", "vocab_size": 11, "n_tokens": 2, "d_embed": 8, "hidden": [16, 16], "d_out": 11,
                     "compile": {"backend": "aot_eager"}},
           "method": {"name": "AdamW", "lr": 0.01}, "probes": [], "steps": 3}
    run = Run.from_config(cfg)
    assert run.model.compile_options == {"backend": "aot_eager"}
    assert run.config["model"]["compile"] == {"backend": "aot_eager"}
    eager = Run.from_config({**cfg, "model": {k: v for k, v in cfg["model"].items() if k != "compile"}})
    assert "compile" not in eager.config["model"]
    assert losses(run, 3) == pytest.approx(losses(eager, 3), rel=1e-6, abs=0)
    for bad, says in (("yes", "model.compile must be true, false or a mapping"),
                      ({"backend": "aot_eager", "speed": 3}, "model.compile: unknown option 'speed'"),
                      ({"fullgraph": "no"}, "option 'fullgraph' must be bool")):
        with pytest.raises(ConfigError, match=says):
            Run.from_config({**cfg, "model": {**cfg["model"], "compile": bad}})
    single = {**cfg, "model": {**cfg["model"], "hidden": [], "compile": True}}
    with pytest.raises(ConfigError, match="model.compile: MLP has no repeated blocks"):
        Run.from_config(single)


def test_compile_true_is_described_as_true():
    from orthoscope.config.specs import describe_model
    from orthoscope.models.compiled import compile_blocks

    torch.manual_seed(0)
    model = MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(16, 16), d_out=11)
    model.arguments = {"vocab_size": 11, "n_tokens": 2, "d_embed": 8, "hidden": [16, 16], "d_out": 11}
    compile_blocks(model)                                      # lazily: nothing is compiled until the first call
    assert describe_model(model, 0)["compile"] is True


# ---- under torchrun -----------------------------------------------------------------------------------------------
def test_under_torchrun_global_tokens_global_flops_and_the_slowest_rank(tmp_path):
    """DDP and FSDP2, world size 2 (tests/throughput_worker.py): tokens and FLOPs are the global batch's (equal to
    one process's on the same batch), and the step time is the slowest rank's — rank 1 adds 100 s to each step it
    times, so rank 0 records ≥ 100 s only through the all-reduce (MAX)."""
    import json
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    import throughput_worker as worker
    from test_distributed import torchrun

    torchrun(here / "throughput_worker.py", tmp_path)
    one = worker.build()
    one.train(1, progress=False)
    for mode in ("ddp", "fsdp"):
        got = json.loads((tmp_path / f"{mode}.json").read_text())
        series = got["series"]
        assert got["world"] == 2 and got["flops_per_step"] == one.throughput.flops_per_step, mode
        assert series["throughput/step_s"]["steps"] == [2, 4], mode
        for step_s, tokens, tflops in zip(*(series[f"throughput/{k}"]["values"]
                                            for k in ("step_s", "tokens_per_s", "tflops"))):
            assert step_s >= worker.SLOW_S, mode                                     # rank 1's, the slowest
            assert tokens * step_s == pytest.approx(worker.BATCH * worker.N_CTX, rel=1e-9), mode   # all ranks' tokens
            assert tflops * 1e12 * step_s * 2 == pytest.approx(got["flops_per_step"], rel=1e-9), mode   # per device
