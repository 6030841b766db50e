"""Issue 26 item 3 under torchrun (N = 2 and 3, FSDP2): owner-only Muon/Pion checkpoint state, owners balanced by
size, bucketed asynchronous gathers, POET's merge once per layer — each checked against one process.

The worker (tests/owner_state_worker.py) runs every case with one matrix per collective bucket. Runs are the seeded
token MLP of tests/test_distributed.py with hidden widths of several sizes (so balancing matters) and a global
batch of 12 (divisible by 2 and 3).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from distributed_worker import build  # noqa: E402

TORCHRUN = Path(sys.executable).with_name("torchrun")
TIMEOUT_S = 420
RTOL = 1e-5
HIDDEN = [24, 16, 16, 16, 8, 8]                       # hidden matrices of 384, 384, 256, 256, 128 and 64 elements
BASE = {"hidden": HIDDEN, "batch": 12, "mode": "fsdp"}
MATRIX = {"Muon": {"lr": 0.02, "adamw_lr": 0.01}, "Pion": {"lr": 0.01, "adamw_lr": 0.01}}
POET = {"method": "POET", "kwargs": {"block": 4, "merge_every": 7, "targets": ["layers.0", "layers.1"], "lr": 0.01},
        "hidden": [16, 16, 8], "batch": 12, "mode": "fsdp", "steps": 15}      # merges at steps 7 and 14
SAVE_STEPS, RESUME_STEPS = 5, 3


def torchrun(nproc: int, *args) -> str:
    """The worker under ``torchrun --standalone`` (its rendezvous binds its own free port: no race for one), in its
    own process group, killed whole on failure or timeout."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), OMP_NUM_THREADS="1")
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(nproc), str(HERE / "owner_state_worker.py"),
           *map(str, args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"torchrun timed out after {TIMEOUT_S}s:\n{out[-4000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{out[-4000:]}"
    return out


def cases(out: Path) -> list[dict]:
    """Per optimizer: train and save (measured); resume a one-process checkpoint (written here) and train on. And
    POET merging twice inside the window."""
    from orthoscope.distributed.checkpoint import save

    spec = []
    for method, kwargs in MATRIX.items():
        case = dict(BASE, method=method, kwargs=kwargs)
        one = build(case)
        one.train(SAVE_STEPS, progress=False)
        save(one, out / f"{method}_one")
        spec.append(dict(case, name=f"{method}_save", steps=SAVE_STEPS, save_to=str(out / f"{method}_saved")))
        spec.append(dict(case, name=f"{method}_resume", steps=RESUME_STEPS, resume_from=str(out / f"{method}_one")))
    return spec + [dict(POET, name="POET")]


@pytest.fixture(scope="module", params=[2, 3], ids=["N2", "N3"])
def launched(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"owner_state_{request.param}")
    spec = out / "spec.json"
    spec.write_text(json.dumps(cases(out)))
    torchrun(request.param, spec, out)
    return request.param, out


def ranks(out: Path, name: str, world: int) -> list[dict]:
    return [json.loads((out / f"{name}.rank{r}.json").read_text()) for r in range(world)]


def one_process(case: dict, steps: int):
    run = build(case)
    run.train(steps, progress=False)
    return run


def assert_close(got: dict, ref: dict, rtol: float = RTOL) -> None:
    assert sorted(got) == sorted(ref), f"keys differ: {sorted(set(got) ^ set(ref))}"
    for key in ref:
        if "throughput/" in key:                 # step times (training/throughput.py): measured, never equal
            continue
        if isinstance(ref[key], torch.Tensor):
            scale = ref[key].double().abs().max().clamp_min(1e-30)
            err = ((got[key].double() - ref[key].double()).abs().max() / scale).item()
        else:
            err = abs(got[key] - ref[key]) / max(abs(ref[key]), 1e-30)
        assert err <= rtol, f"{key}: relative difference {err:.2e} > {rtol:.0e}"


def final(out: Path, name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / f"{name}.safetensors"))


def expected(run) -> dict:
    from distributed_worker import outcome

    return outcome(run)


@pytest.mark.parametrize("method", sorted(MATRIX))
def test_save_holds_only_the_owned_share_of_the_state(launched, method):
    """Peak optimizer-state bytes on each rank while a save writes ≤ 1.1/N of one process's optimizer state + one
    matrix's state (measured as tests/owner_state_worker.py's docstring says: the distinct storages of the
    ``optim.*`` tensors handed to DCP and of the optimizer state this rank holds, at the moment DCP is called)."""
    from orthoscope.distributed.matrix_state import optimizer_tensors
    from owner_state_worker import storage_bytes

    world, out = launched
    one = one_process(dict(BASE, method=method, kwargs=MATRIX[method]), SAVE_STEPS)
    total = storage_bytes(optimizer_tensors(one)[0].values())
    per_matrix = max(storage_bytes([v for v in one.optimizer.state[p].values() if isinstance(v, torch.Tensor)])
                     for g in one.optimizer.param_groups if g["matrix"] for p in g["params"])
    bound = 1.1 * total / world + per_matrix
    for r, record in enumerate(ranks(out, f"{method}_save", world)):
        assert record["save_bytes"] <= bound, (f"rank {r} of {world} held {record['save_bytes']} bytes of "
                                               f"optimizer state while saving; bound {bound:.0f} "
                                               f"(one process: {total}, one matrix: {per_matrix})")


@pytest.mark.parametrize("method", sorted(MATRIX))
def test_owner_only_checkpoint_loads_in_one_process(launched, method):
    """The checkpoint each owner wrote its own matrices' state into loads in one process, with the optimizer state
    and weights of one process trained as long."""
    from orthoscope.distributed.matrix_state import optimizer_tensors

    world, out = launched
    case = dict(BASE, method=method, kwargs=MATRIX[method])
    loaded = build(case).load(out / f"{method}_saved")
    reference = one_process(case, SAVE_STEPS)
    assert_close(optimizer_tensors(loaded)[0], optimizer_tensors(reference)[0])
    assert_close(dict(loaded.model.state_dict()), dict(reference.model.state_dict()))


@pytest.mark.parametrize("method", sorted(MATRIX))
def test_owners_are_balanced_and_each_matrix_has_one(launched, method):
    """Every hidden matrix's state is on exactly one rank, the one ``balanced_owners`` names (largest first to the
    least-loaded rank), and no rank's share exceeds the mean by more than the largest matrix."""
    from orthoscope.distributed.matrices import balanced_owners

    world, out = launched
    one = one_process(dict(BASE, method=method, kwargs=MATRIX[method]), 1)
    names = {id(p): n for n, p in one.model.named_parameters()}
    params = [p for g in one.optimizer.param_groups if g["matrix"] for p in g["params"]]
    sizes = [math.prod(p.shape) for p in params]
    expect = balanced_owners(sizes, world)
    for r, record in enumerate(ranks(out, f"{method}_save", world)):
        assert sorted(record["owned"]) == sorted(names[id(p)] for p, o in zip(params, expect) if o == r)
    loads = [sum(s for s, o in zip(sizes, expect) if o == r) for r in range(world)]
    assert max(loads) - sum(sizes) / world <= max(sizes)


@pytest.mark.parametrize("method", sorted(MATRIX))
def test_training_and_resume_equal_one_process(launched, method):
    """Training at N with one matrix per bucket equals one process (the save case), and so does resuming a
    one-process checkpoint at N, each new owner reading only its matrices' state (the resume case)."""
    world, out = launched
    case = dict(BASE, method=method, kwargs=MATRIX[method])
    assert_close(final(out, f"{method}_save"), expected(one_process(case, SAVE_STEPS)))
    assert_close(final(out, f"{method}_resume"), expected(one_process(case, SAVE_STEPS + RESUME_STEPS)))


def test_poet_merges_once_per_layer_equal_one_process(launched):
    """POET under FSDP2 merging at steps 7 and 14 (each layer's merge on its owner, rows scattered back, the
    permutations drawn on every rank) equals one process: losses, probe values and final weights."""
    world, out = launched
    assert_close(final(out, "POET"), expected(one_process(POET, POET["steps"])))


def test_balanced_owners_known_answers():
    from orthoscope.distributed.matrices import balanced_owners

    assert balanced_owners([4, 4, 4, 4], 2) == [0, 1, 0, 1]
    assert balanced_owners([1, 9, 1, 1], 2) == [1, 0, 1, 1]       # the large matrix alone, not two with it
    assert balanced_owners([5, 3, 3, 2, 2], 3) == [0, 1, 2, 1, 2]
    assert balanced_owners([], 3) == []
