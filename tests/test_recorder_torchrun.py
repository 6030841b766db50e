"""Your own loop under torchrun (world size 2, gloo, CPU), DDP and FSDP2, with ``orthoscope.observe``: rank 0 records
the History one process records (within the reordered-fp32-sum tolerance of tests/test_distributed.py), FSDP2's
weights are gathered only on steps where a probe that reads them is due, and another rank reading the History is
told where it lives."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from recorder_worker import EVERY, STEPS, series, train_loop  # noqa: E402
from test_distributed import assert_close, load, torchrun  # noqa: E402


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    out = tmp_path_factory.mktemp("recorder_torchrun")
    torchrun(HERE / "recorder_worker.py", out)
    return out


@pytest.fixture(scope="module")
def one_process():
    return series(train_loop(None).history)


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_rank_0_records_the_history_of_one_process(launched, one_process, mode):
    got = load(launched / f"{mode}.safetensors")
    assert any(k.startswith("history.sv/") for k in got) and "history.loss/test" in got
    # the condition number (σ_max/σ_min) amplifies the reordered sums; its spectrum is compared
    assert_close(got, one_process, skip=("history.condition_number/",))


def test_fsdp_gathers_only_when_a_weight_probe_is_due(launched):
    # step 0 and every EVERY steps; the gradient norm, due every step, runs on the shards
    assert int((launched / "fsdp.gathers").read_text()) == 1 + STEPS // EVERY


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_another_rank_reading_the_history_is_told_where_it_lives(launched, mode):
    text = (launched / f"{mode}.rank1.txt").read_text()
    assert "rank 1 does not record: the History lives on rank 0" in text, text
