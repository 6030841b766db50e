"""`orthoscope train` (issue 15): a run directory on the tiny Llama reading a token file; SIGKILL and resume."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from orthoscope.config import save_config
from orthoscope.config.rundir import checkpoints, latest_checkpoint, read_history, read_records
from orthoscope.tasks.tokenfile import tokenize

ROOT = Path(__file__).resolve().parents[1]
STEPS = 40


@pytest.fixture()
def config(tmp_path):
    tokenize(ROOT / "data" / "tinylang.txt", tmp_path / "tiny.bin")
    cfg = {"seed": 0, "steps": STEPS,
           "task": {"name": "TokenFile", "path": str(tmp_path / "tiny.bin"), "n_ctx": 16, "batch_size": 4,
                    "n_eval": 4},
           "model": {"name": "Llama", "size": "tiny"},
           "method": {"name": "AdamW", "lr": 3e-3},
           "schedule": {"warmup": 5, "decay": "cosine"},
           "probes": {"preset": "llm", "every": 5},
           "checkpoint": {"every": 5, "keep": 2}}
    return save_config(cfg, tmp_path / "tiny.yaml")


def train_cmd(config, runs, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return [sys.executable, "-m", "orthoscope", "train", str(config), "--runs", str(runs), "--no-progress", *extra], env


def test_train_writes_a_run_directory(config, tmp_path):
    cmd, env = train_cmd(config, tmp_path / "runs", "steps=10")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "runs" / "tiny"
    assert (run_dir / "config.yaml").is_file()
    assert [s for s, _ in checkpoints(run_dir)] == [5, 10]              # keep=2
    assert latest_checkpoint(run_dir)[0] == 10 and (run_dir / "checkpoints" / "latest").read_text() == "step-00000010\n"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step-00000005", "step-00000010"]
    frame = pd.read_json(run_dir / "history.jsonl", lines=True)
    assert list(frame["step"]) == list(range(11)) and "loss/val" in frame
    assert read_history(run_dir)["loss/batch"].steps == list(range(1, 11))


def test_bad_override_is_refused_before_training(config, tmp_path):
    cmd, env = train_cmd(config, tmp_path / "runs", "method.lr=fast")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "method.lr" in out.stderr and "a number" in out.stderr
    assert not (tmp_path / "runs" / "tiny" / "history.jsonl").exists()


def test_sigkill_and_resume_leave_exactly_one_record_per_step(config, tmp_path):
    cmd, env = train_cmd(config, tmp_path / "killed")
    run_dir = tmp_path / "killed" / "tiny"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(read_records(run_dir / "history.jsonl")[0]) < 13:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        assert time.monotonic() < deadline, "the run wrote too slowly"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert len(read_records(run_dir / "history.jsonl")[0]) < STEPS + 1     # it was killed mid-run
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    steps = [r["step"] for r in read_records(run_dir / "history.jsonl")[0]]
    assert steps == list(range(STEPS + 1))                                  # no duplicate, none missing
    cmd, env = train_cmd(config, tmp_path / "straight")                     # the same run without a kill
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    a, b = read_history(run_dir), read_history(tmp_path / "straight" / "tiny")
    for key in ("loss/batch", "loss/val", "grad_norm/total"):
        assert a[key].steps == b[key].steps and a[key].values == b[key].values, key


def test_latest_names_the_last_complete_checkpoint_and_leftovers_are_removed(tmp_path):
    """A ``.partial`` directory and a step directory newer than ``latest`` (killed between rename and pointer) are
    leftovers: ``checkpoints`` ignores them, ``resume`` removes them and loads what ``latest`` names."""
    import torch

    from orthoscope import Run
    from orthoscope.models import MLP
    from orthoscope.config.rundir import CHECKPOINTS, HistoryStream, resume, save_checkpoint
    from orthoscope.tasks import ModularArithmetic

    def tiny():
        torch.manual_seed(0)
        return Run(MLP(vocab_size=7, n_tokens=2, d_embed=4, hidden=(8,), d_out=7),
                   ModularArithmetic(p=7, train_frac=0.5, batch_size=8), probes=[], seed=0)

    run = tiny()
    run.on_step(HistoryStream(tmp_path / "history.jsonl"))
    for _ in range(3):
        run.train(2, progress=False)
        save_checkpoint(run, tmp_path, keep=2)
    folder = tmp_path / CHECKPOINTS
    assert [s for s, _ in checkpoints(tmp_path)] == [4, 6] and latest_checkpoint(tmp_path)[0] == 6
    (folder / "step-00000008.partial").mkdir()                     # killed while writing
    (folder / "step-00000006").rename(folder / "step-00000009")     # killed before the pointer moved...
    (folder / "latest").write_text("step-00000004\n")               # ...to 9 (here: latest still says 4)
    assert [s for s, _ in checkpoints(tmp_path)] == [4]
    fresh = tiny()
    assert resume(fresh, tmp_path) == 4
    assert sorted(p.name for p in folder.iterdir()) == ["latest", "step-00000004"]
    assert [r["step"] for r in read_records(tmp_path / "history.jsonl")[0]] == [0, 1, 2, 3, 4]
    (folder / "latest").write_text("step-00000099\n")
    with pytest.raises(Exception, match="names 'step-00000099', which is not a checkpoint directory"):
        latest_checkpoint(tmp_path)
