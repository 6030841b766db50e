"""The memory plan (orthoscope.distributed.plan) against measured peaks of real training steps on the CPU.

Measured: ``LiveBytes`` (orthoscope/distributed/live_bytes.py) counts every live tensor storage during a real
``Run.step`` of the
tiny Llama — the second step, so the optimizer state exists (and, for POET with ``merge_every=2``, a merge runs in
it). Predicted: ``memory_plan`` for the same model, method, batch and sequence length. The peak must agree within
10 % of the measured one, per method, in a step dominated by the optimizer (batch 4 × 16 tokens) and in one
dominated by activations (batch 8 × 128 tokens).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from orthoscope.distributed.live_bytes import second_step_peak  # noqa: E402

METHODS = ["adamw", "muon", "pion", "poet", "oft", "lora"]
SHAPES = {"optimizer-bound": (4, 16), "activation-bound": (8, 128)}


def build_run(name: str, batch: int, seq: int, checkpointing: bool = False):
    from orthoscope import Run
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config, llm_method
    from orthoscope.tasks.tinylang import TinyLang

    task = TokenTask(TinyLang(n_ctx=seq, batch_size=batch, n_sentences=300), n_eval=8)
    model = build_llama(llama_config("tiny", task.vocab_size, task.n_ctx), seed=0, checkpointing=checkpointing)
    method = llm_method(name, merge_every=2) if name == "poet" else llm_method(name)
    return Run(model, task, method, probes=[], seed=0), method


def measured_peak(run) -> int:
    """Peak live bytes during the run's second step (the first creates the optimizer state)."""
    return second_step_peak(run)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", METHODS)
def test_plan_predicts_the_measured_peak_within_10_percent(name, shape):
    from orthoscope.distributed.plan import memory_plan

    batch, seq = SHAPES[shape]
    run, method = build_run(name, batch, seq)
    plan = memory_plan(run.model.config, method, world_size=1, batch_size=batch, seq_len=seq)
    measured = measured_peak(run)
    assert abs(plan.peak - measured) <= 0.10 * measured, (
        f"{name} {shape}: predicted {plan.peak} ({plan.peak_phase}), measured {measured}\n{plan.table()}")


@pytest.mark.parametrize("name", METHODS)
def test_plan_with_activation_checkpointing_within_10_percent(name):
    """Activation checkpointing (batch 8 × 128 tokens): the plan measures one checkpointed layer's backward, its
    recompute included (``layer_fit(..., checkpointing=True)``)."""
    from orthoscope.distributed.plan import memory_plan

    run, method = build_run(name, 8, 128, checkpointing=True)
    plan = memory_plan(run.model.config, method, world_size=1, batch_size=8, seq_len=128, checkpointing=True)
    measured = measured_peak(run)
    assert abs(plan.peak - measured) <= 0.10 * measured, (
        f"{name}: predicted {plan.peak} ({plan.peak_phase}), measured {measured}\n{plan.table()}")


# ---- world size 2: torchrun, per-block FSDP2 ---------------------------------------------------------------------

TORCHRUN = Path(sys.executable).with_name("torchrun")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCHES = 3


@pytest.fixture(scope="module")
def measured_at_2(tmp_path_factory):
    """``{method: [peaks of both ranks over LAUNCHES torchrun launches of tests/plan_worker.py]}``: each is compared
    with the plan."""
    peaks: dict[str, list[int]] = {}
    for _ in range(LAUNCHES):
        for name, values in launch(tmp_path_factory.mktemp("plan") / "peaks.json").items():
            peaks.setdefault(name, []).extend(values)
    return peaks


def launch(out: Path) -> dict:
    import json
    import os
    import signal
    import subprocess

    cmd = [str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           str(Path(__file__).parent / "plan_worker.py"), str(out), *METHODS]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        raise AssertionError(f"torchrun timed out:\n{log[-4000:]}")
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{log[-4000:]}"
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", METHODS)
def test_plan_at_world_size_2_within_10_percent(measured_at_2, name):
    """Per-block FSDP2 at N = 2 (tests/plan_worker.py): the predicted per-rank peak within 10 % of the range of
    measured peaks (every rank, every launch): 0.9 × the smallest ≤ predicted ≤ 1.1 × the largest. A range, because
    the measured peak still varies now and then between launches on the busy CPU machine: gloo's worker threads drop
    finished works, and with them tensors FSDP2 has let go of, when they are scheduled (seen: AdamW 1.93 / 1.96 /
    2.13 MB, LoRA 1.50 / 1.67 MB; docs/distributed.md "Memory plan"). ``LiveBytes`` leaves out gloo's own copy of the
    reduce-scatter input (orthoscope/distributed/live_bytes.py), and the plan counts what FSDP2 holds in a block's
    backward (``plan._fsdp_backward_items``): AdamW, which missed by 13 %, is within 10 % of every outcome seen. And
    within 10 % of the median, both ways: the typical launch (LoRA's 1.67 MB came in 3 of 32 launches measured on
    2026-12-07, the other 29 at 1.50 MB; the plan says 1.49 MB)."""
    from orthoscope.distributed.plan import memory_plan
    from orthoscope.recipes.llm import llama_config, llm_method
    from orthoscope.tasks.tinylang import TinyLang

    vocab = TinyLang(n_ctx=16, batch_size=4, n_sentences=300).vocab_size
    method = llm_method(name, merge_every=2) if name == "poet" else llm_method(name)
    plan = memory_plan(llama_config("tiny", vocab, 16), method, world_size=2, batch_size=4, seq_len=16)
    peaks = sorted(measured_at_2[name])
    low, high, median = peaks[0], peaks[-1], statistics.median(peaks)
    assert 0.9 * low <= plan.peak <= 1.1 * high, (
        f"{name}: predicted {plan.peak} ({plan.peak_phase}), measured {peaks}\n{plan.table()}")
    assert abs(plan.peak - median) <= 0.10 * median, (     # the typical launch: within 10 % both ways
        f"{name}: predicted {plan.peak} ({plan.peak_phase}), median of measured {median} ({peaks})\n{plan.table()}")


# ---- the command and its errors ------------------------------------------------------------------------------------

LLAMA_CONFIG = """\
name: tiny-llama
task: {name: TokenTask, task: {name: TinyLang, n_ctx: 16, batch_size: 4, n_sentences: 300}}
model: {name: Llama, size: tiny}
method: {name: LoRA, rank: 8, targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}
"""


def test_plan_command_prints_the_table_and_json(tmp_path, capsys):
    import json

    from orthoscope.__main__ import main
    from orthoscope.distributed.plan import memory_plan
    from orthoscope.recipes.llm import llama_config, llm_method
    from orthoscope.tasks.tinylang import TinyLang

    path = tmp_path / "llama.yaml"
    path.write_text(LLAMA_CONFIG)
    assert main(["plan", str(path), "--world-size", "2"]) == 0
    table = capsys.readouterr().out
    assert "memory plan: LoRA, world size 2" in table and "← peak" in table and "optimizer state" in table
    assert main(["plan", str(path), "--world-size", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    vocab = TinyLang(n_ctx=16, batch_size=4, n_sentences=300).vocab_size
    expected = memory_plan(llama_config("tiny", vocab, 16), llm_method("lora"), 2, 4, 16)
    assert data["peak_bytes"] == expected.peak and data["peak_phase"] == expected.peak_phase
    assert sum(i["bytes"] for i in data["items"] if data["peak_phase"] in i["phases"]) == data["peak_bytes"]


@pytest.mark.parametrize("edit, message", [
    (("model: {name: Llama, size: tiny}", "model: {name: MLP, vocab_size: 60, n_tokens: 16}"),
     "the memory plan covers Llama models"),
    (("method: {name: LoRA, rank: 8,", "method: {name: FOCUS, lr: 0.001} #"), "the memory plan covers the methods"),
    (("batch_size: 4", "batch_size: 3"), "does not divide the global batch size 3"),
])
def test_plan_command_refuses_what_it_cannot_plan(tmp_path, capsys, edit, message):
    from orthoscope.__main__ import main

    path = tmp_path / "bad.yaml"
    path.write_text(LLAMA_CONFIG.replace(*edit))
    assert main(["plan", str(path), "--world-size", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_guard_threshold_is_the_runs():
    from orthoscope.distributed.plan import GUARD_MAX_PARAMS
    from orthoscope.training.run import GUARD_MAX_PARAMS as RUN_GUARD

    assert GUARD_MAX_PARAMS == RUN_GUARD
