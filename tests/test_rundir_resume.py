"""A run directory resumes at every step (issue 30 item 2): POET, whose merge resets the Adam state of its Q
factors, used to fail to load a checkpoint written on a merge step ("Missing key optim.layers.0.poet_q_in.exp_avg"),
so re-running the command of a finished POET run whose step count is a multiple of ``merge_every`` crashed.

One uninterrupted ``orthoscope train`` run (in this process) checkpoints every step; for each step k of the window —
merges at 3, 6 and 9, the last step — a copy of its run directory is turned back to the moment after checkpoint k
(``latest`` names step k; the later checkpoints are leftovers a restart removes) and trained on to the end. The
History and the final parameters equal the uninterrupted run's bitwise. Every method resumes the same way from a
sharded checkpoint at steps before, on and after its first update (``test_every_method_resumes_at_any_step``).
"""
from __future__ import annotations

import shutil

import pytest
import torch

from orthoscope import Run
from orthoscope.config import save_config
from orthoscope.config.rundir import CHECKPOINTS, LATEST, latest_checkpoint, read_history
from orthoscope.config.train import prepare, train
from orthoscope.training.throughput import MEASURED

STEPS, MERGE_EVERY = 9, 3
POET_CONFIG = {
    "seed": 1, "steps": STEPS, "name": "poet",
    "task": {"name": "ModularArithmetic", "p": 13, "train_frac": 0.5, "batch_size": 8},
    "model": {"name": "MLP", "vocab_size": 13, "n_tokens": 2, "d_embed": 8, "hidden": [16, 16], "d_out": 13},
    "method": {"name": "POET", "block": 4, "merge_every": MERGE_EVERY, "targets": ["layers.0", "layers.1"],
               "lr": 0.01},
    "probes": [{"name": "WeightNorm", "every": 1}],
    "checkpoint": {"every": 1, "keep": STEPS + 1},
}


def train_in(runs, config_path):
    run, cfg, run_dir = prepare(config_path, [], runs, None)
    return train(run, cfg, run_dir, progress=False), run_dir


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("poet_rundir")
    config_path = save_config(POET_CONFIG, folder / "poet.yaml")
    run, run_dir = train_in(folder / "runs", config_path)
    assert run.interventions[-1].merges == STEPS // MERGE_EVERY       # the window holds merges, the last step too
    return config_path, run, run_dir


def rewind(run_dir, to_step: int, into) -> None:
    """A copy of ``run_dir`` as a run killed right after checkpoint ``to_step`` would have left it."""
    shutil.copytree(run_dir, into)
    pointer = into / CHECKPOINTS / LATEST
    if to_step == 0:
        pointer.unlink()
    else:
        pointer.write_text(f"step-{to_step:08d}\n")


def params(run) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


@pytest.mark.parametrize("k", range(STEPS + 1))
def test_poet_run_directory_resumes_at_every_step(uninterrupted, tmp_path, k):
    config_path, ref, ref_dir = uninterrupted
    rewind(ref_dir, k, tmp_path / "runs" / "poet")
    run, run_dir = train_in(tmp_path / "runs", config_path)
    assert run.step_count == STEPS and latest_checkpoint(run_dir)[0] == STEPS
    got, want = read_history(run_dir), read_history(ref_dir)
    assert sorted(got.keys()) == sorted(want.keys())
    for key in want.keys():
        assert got[key].steps == want[key].steps, key
        if not key.startswith(MEASURED):                                 # timings differ between any two runs
            assert got[key].values == want[key].values, key             # bitwise: floats compare exactly
    assert run.history["loss/batch"].values == ref.history["loss/batch"].values
    mine, theirs = params(run), params(ref)
    assert all(torch.equal(mine[n], theirs[n]) for n in theirs)


METHODS = [("AdamW", {"lr": 0.01, "weight_decay": 0.1}), ("SGD", {"lr": 0.1, "momentum": 0.9}),
           ("Muon", {"lr": 0.02, "adamw_lr": 0.01}), ("Pion", {"lr": 0.01, "adamw_lr": 0.01}),
           ("Hyperball", {"lr": 0.01, "adamw_lr": 0.01}), ("FOCUS", {"lr": 0.01}),
           ("LoRA", {"rank": 4, "targets": ["layers.0"], "lr": 0.01}),
           ("OFT", {"block": 4, "targets": ["layers.0"], "lr": 0.01}),
           ("SoRA", {"rank": 4, "targets": ["layers.0"], "lr": 0.01}),
           ("POET", {"block": 4, "merge_every": 2, "targets": ["layers.0", "layers.1"], "lr": 0.01})]


def build(method: str, kwargs: dict) -> Run:
    import orthoscope
    from orthoscope import adapters
    from orthoscope.models import MLP
    from orthoscope.optim import methods as optim_methods
    from orthoscope.tasks import ModularArithmetic

    cls = next(getattr(m, method) for m in (orthoscope, optim_methods, adapters) if hasattr(m, method))
    torch.manual_seed(0)
    model = MLP(vocab_size=13, n_tokens=2, d_embed=8, hidden=(16, 16), d_out=13)
    return Run(model, ModularArithmetic(p=13, train_frac=0.5, batch_size=8), cls(**kwargs), probes=[], seed=1)


@pytest.mark.parametrize("method,kwargs", METHODS, ids=[m for m, _ in METHODS])
def test_every_method_resumes_at_any_step(method, kwargs, tmp_path):
    """Sharded save at step k (0: before the first update, when the optimizer holds no state; 2: a POET merge),
    load into a fresh run, train on: equal to the uninterrupted run, and the saved run itself is not changed by
    saving (DCP's own optimizer state dict would create Adam state, step counter included, at step 0)."""
    from orthoscope.distributed.checkpoint import save

    ref = build(method, kwargs)
    ref.train(4, progress=False)
    for k in (0, 1, 2, 3):
        saver = build(method, kwargs)
        if k:
            saver.train(k, progress=False)
        save(saver, tmp_path / f"step{k}")
        resumed = build(method, kwargs).load(tmp_path / f"step{k}")
        assert resumed.step_count == k
        for run in (saver, resumed):
            run.train(4 - k, progress=False)
            assert run.history["loss/batch"].values == ref.history["loss/batch"].values, (k, run is saver)
            mine, theirs = params(run), params(ref)
            assert all(torch.equal(mine[n], theirs[n]) for n in theirs), (k, run is saver)
