"""The memory plan (orthoscope.distributed.plan) against measured peaks of real training steps on the CPU.

Measured: ``LiveBytes`` (tests/plan_measure.py) counts every live tensor storage during a real ``Run.step`` of the
tiny Llama — the second step, so the optimizer state exists (and, for POET with ``merge_every=2``, a merge runs in
it). Predicted: ``memory_plan`` for the same model, method, batch and sequence length. The peak must agree within
10 % of the measured one, per method, in a step dominated by the optimizer (batch 4 × 16 tokens) and in one
dominated by activations (batch 8 × 128 tokens).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from plan_measure import LiveBytes  # noqa: E402

METHODS = ["adamw", "muon", "pion", "poet", "oft", "lora"]
SHAPES = {"optimizer-bound": (4, 16), "activation-bound": (8, 128)}


def build_run(name: str, batch: int, seq: int):
    from orthoscope import Run
    from orthoscope.recipes.llm import TokenTask, build_llama, llama_config, llm_method
    from orthoscope.tasks.tinylang import TinyLang

    task = TokenTask(TinyLang(n_ctx=seq, batch_size=batch, n_sentences=300), n_eval=8)
    model = build_llama(llama_config("tiny", task.vocab_size, task.n_ctx), seed=0)
    method = llm_method(name, merge_every=2) if name == "poet" else llm_method(name)
    return Run(model, task, method, probes=[], seed=0), method


def measured_peak(run) -> int:
    """Peak live bytes during the run's second step (the first creates the optimizer state)."""
    tracker = LiveBytes()
    with tracker:
        tracker.track_run(run.model, run.optimizer)
        run.step()
        tracker.reset_peak()
        run.step()
    return tracker.peak


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
