"""DatasetTask (issue 25, part 3): your own Dataset / DataLoader / HF dataset in a Run, with an order that resumes
exactly (in process, through a sharded checkpoint, and after a SIGKILL) and clear errors for what cannot."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import (DataLoader, Dataset, IterableDataset, RandomSampler, TensorDataset,
                              WeightedRandomSampler)

from orthoscope import AdamW, Run
from orthoscope.core.checkpoint import CheckpointError
from orthoscope.probes import Evaluate, GradNorm, default_probes
from orthoscope.tasks import DatasetTask
from orthoscope.training.throughput import MEASURED

ROOT = Path(__file__).resolve().parents[1]
N = 23


def blobs(n=N):
    g = torch.Generator().manual_seed(5)
    y = torch.arange(n) % 3
    return TensorDataset(torch.randn(n, 4, generator=g) + nn.functional.one_hot(y, 4).float(), y)


def epoch_targets(task, generator, n_batches):
    """The row indices of ``n_batches`` batches (the TensorDataset's x[:, 0] identifies each row)."""
    return [task.batch(generator)[0][:, 0] for _ in range(n_batches)]


def row_of(data, values):
    return [int((data.tensors[0][:, 0] == v).nonzero()) for v in values.tolist()]


# ---- the order -----------------------------------------------------------------------------------------------------
def test_shuffled_epochs_visit_every_item_once_in_a_seeded_order():
    data = blobs()
    task = DatasetTask(data, batch_size=5)
    g = torch.Generator().manual_seed(0)
    batches = epoch_targets(task, g, 10)                       # 23 items: 5 5 5 5 3 | 5 5 5 5 3
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3] * 2
    first = [r for b in batches[:5] for r in row_of(data, b)]
    second = [r for b in batches[5:] for r in row_of(data, b)]
    assert sorted(first) == sorted(second) == list(range(N))
    assert first != second and first != list(range(N))       # a new permutation each epoch
    assert task.state_dict(g)["epoch"] == 1 and task.state_dict(g)["position"] == N
    # the permutation depends on (seed, epoch) only: another batch size reads it in other slices
    other = DatasetTask(data, batch_size=7)
    again = [r for b in epoch_targets(other, torch.Generator().manual_seed(0), 4) for r in row_of(data, b)]
    assert again == first
    # Run(seed=...) seeds the order (seed=None draws it from the run's generator); a fixed seed ignores it
    assert [r for b in epoch_targets(DatasetTask(data, batch_size=5), torch.Generator().manual_seed(1), 5)
            for r in row_of(data, b)] != first
    fixed = [DatasetTask(data, batch_size=5, seed=3) for _ in range(2)]
    a, b = (epoch_targets(t, torch.Generator().manual_seed(s), 5) for t, s in zip(fixed, (0, 1)))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("drop_last", [False, True])
def test_unshuffled_batches_equal_the_dataloader_s(drop_last):
    data = blobs()
    loader = DataLoader(data, batch_size=4, shuffle=False, drop_last=drop_last)
    task = DatasetTask(loader)
    assert task.shuffle is False and task.drop_last is drop_last and task.batch_size == 4
    g = torch.Generator()
    for _ in range(2):                                          # two epochs, each exactly the loader's
        for x, y in loader:
            tx, ty = task.batch(g)
            assert torch.equal(tx, x) and torch.equal(ty, y)


def test_full_batch_and_eval_split():
    data = blobs()
    task = DatasetTask(data, eval_fraction=0.25, split_seed=1)
    assert len(task.train_indices) + len(task.eval_indices) == N and set(task.train_indices).isdisjoint(
        task.eval_indices)
    x, y = task.batch(torch.Generator())
    assert len(x) == len(task.train_indices)                   # batch_size=None: the whole training set
    sets = task.eval_sets()
    assert sorted(sets) == ["eval", "train"]
    assert torch.equal(sets["eval"][0], data.tensors[0][task.eval_indices])
    assert torch.equal(sets["train"][1], data.tensors[1][task.train_indices])
    assert task.has_accuracy                                   # integer targets: classes
    # the same split_seed, the same split; an explicit eval set instead
    assert DatasetTask(data, eval_fraction=0.25, split_seed=1).eval_indices == task.eval_indices
    explicit = DatasetTask(data, blobs(7), max_eval=5)
    assert len(explicit.eval_sets()["eval"][0]) == 5 and len(explicit.eval_sets()["train"][0]) == 5


def test_dict_items_through_columns_and_a_custom_collate_fn():
    class Rows(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return {"pixels": torch.full((2,), float(i)), "label": i % 2, "id": i}

    task = DatasetTask(Rows(), input_column="pixels", target_column="label", batch_size=3, shuffle=False)
    x, y = task.batch(torch.Generator())
    assert torch.equal(x[:, 0], torch.tensor([0.0, 1.0, 2.0])) and torch.equal(y, torch.tensor([0, 1, 0]))

    def collate(items):                                         # a DataLoader's own collate_fn gets raw items
        return torch.stack([it["pixels"] for it in items]), torch.tensor([float(it["id"]) for it in items])

    task = DatasetTask(DataLoader(Rows(), batch_size=2, collate_fn=collate))
    x, y = task.batch(torch.Generator())
    assert y.dtype == torch.float32 and not task.has_accuracy   # float targets: regression, no accuracy


# ---- exact resume --------------------------------------------------------------------------------------------------
def make_run(task=None, seed=0, d_in=4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, 3))
    task = task or DatasetTask(DataLoader(blobs(), batch_size=5, shuffle=True), eval_fraction=0.2)
    return Run(model, task, AdamW(lr=1e-2), probes=[Evaluate(every=2), GradNorm(every=1)], seed=seed)


def assert_same_run(a: Run, b: Run):
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v, w), k
    assert a.history.keys() == b.history.keys()
    for key in a.history:
        assert a.history[key].steps == b.history[key].steps, key
        assert key.startswith(MEASURED) or a.history[key].values == b.history[key].values, key   # timings differ
    assert a.task.state_dict(a.generator) == b.task.state_dict(b.generator)


def test_save_and_load_resume_bit_identically(tmp_path):
    straight = make_run().train(13, progress=False)
    first = make_run().train(6, progress=False)      # 19 training items: 5 5 5 4 | 5 5 — mid-way through epoch 2
    first.save(tmp_path / "ckpt.safetensors")
    from safetensors import safe_open

    meta = json.loads(safe_open(tmp_path / "ckpt.safetensors", "pt").metadata()["orthoscope"])
    assert {k: meta["task"][k] for k in ("epoch", "position")} == {"epoch": 1, "position": 10}
    resumed = make_run().load(tmp_path / "ckpt.safetensors").train(7, progress=False)
    assert_same_run(straight, resumed)


def test_runs_that_share_a_task_each_keep_their_own_order():
    shared = DatasetTask(blobs(), batch_size=4)
    a, b = make_run(shared, seed=1), make_run(shared, seed=2)
    for _ in range(5):                                           # interleaved, as a comparison steps them
        a.step()
        b.step()
    assert_same_run(a, make_run(DatasetTask(blobs(), batch_size=4), seed=1).train(5, progress=False))


def test_sharded_checkpoint_resumes_the_order_too(tmp_path):
    pytest.importorskip("torch.distributed.checkpoint")
    straight = make_run().train(9, progress=False)
    first = make_run().train(4, progress=False)
    first.save(tmp_path / "sharded")                             # a directory: torch.distributed.checkpoint
    resumed = make_run()
    resumed.load(tmp_path / "sharded")
    assert_same_run(straight, resumed.train(5, progress=False))


def test_a_dataloader_task_resumes_bit_identically_after_sigkill(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    worker = [sys.executable, str(ROOT / "tests" / "dataset_kill_worker.py")]
    killed = subprocess.run(worker + [str(tmp_path / "killed"), "20", "10"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (tmp_path / "killed" / "killed").read_text() == "10"            # it died after step 10 ...
    resumed = subprocess.run(worker + [str(tmp_path / "killed"), "20", "10"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at step 8" in resumed.stdout                            # ... so steps 9, 10 ran twice
    straight = subprocess.run(worker + [str(tmp_path / "straight"), "20"], env=env, capture_output=True,
                              text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    from safetensors import safe_open

    files = [safe_open(tmp_path / d / "final.safetensors", "pt") for d in ("killed", "straight")]
    tensors = [{k: f.get_tensor(k) for k in f.keys()} for f in files]
    metas = [json.loads(f.metadata()["orthoscope"]) for f in files]
    assert tensors[0].keys() == tensors[1].keys()
    for k in tensors[0]:                                        # model, optimizer, RNG states, array history
        assert torch.equal(tensors[0][k], tensors[1][k]), k
    for meta in metas:                                          # timings differ between any two runs: steps only
        meta["history"] = {k: {"steps": v["steps"]} if k.startswith(MEASURED) else v for k, v in meta["history"].items()}
    for field in ("step", "history", "task", "last_loss"):
        assert metas[0][field] == metas[1][field], field
    assert metas[0]["task"]["epoch"] > 0 and metas[0]["step"] == 20


# ---- what is refused, and how --------------------------------------------------------------------------------------
def test_a_checkpoint_of_other_data_or_without_a_position_is_refused(tmp_path):
    make_run().train(3, progress=False).save(tmp_path / "a.safetensors")
    other = make_run(DatasetTask(DataLoader(blobs(N + 1), batch_size=5, shuffle=True), eval_fraction=0.2))
    before = other.task.state_dict(other.generator)
    with pytest.raises(CheckpointError, match=r"field 'task'.*n_train: saved 19, now 20"):
        other.load(tmp_path / "a.safetensors")
    assert other.task.state_dict(other.generator) == before and other.step_count == 0       # unchanged
    with pytest.raises(CheckpointError, match=r"field 'task'.*n_train"):
        make_run(DatasetTask(blobs(), batch_size=5, seed=None, eval_fraction=0.3)).load(tmp_path / "a.safetensors")
    # a checkpoint of a run whose task has no position of its own (the same model and method)
    from safetensors import safe_open
    from orthoscope.core.checkpoint import write_atomic

    f = safe_open(tmp_path / "a.safetensors", "pt")
    meta = json.loads(f.metadata()["orthoscope"])
    meta.pop("sha256"), meta.pop("format")
    write_atomic(tmp_path / "b.safetensors", {k: f.get_tensor(k) for k in f.keys()}, {**meta, "task": None})
    with pytest.raises(CheckpointError, match=r"field 'task' is missing"):
        make_run().load(tmp_path / "b.safetensors")


class Stream(IterableDataset):
    def __iter__(self):
        return iter([(torch.zeros(2), 0)] * 4)


class Triples(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return (torch.zeros(2), 0, "extra") if i == 5 else (torch.zeros(2), 0)


@pytest.mark.parametrize("make, error, match", [
    (lambda: DatasetTask(Stream()), TypeError, "iterable dataset, which cannot be resumed exactly"),
    (lambda: DatasetTask(DataLoader(Stream(), batch_size=2)), TypeError, "cannot be resumed exactly"),
    (lambda: DatasetTask(DataLoader(blobs(), batch_size=2, sampler=WeightedRandomSampler([1.0] * N, N))),
     ValueError, "sampler WeightedRandomSampler cannot be reproduced from a saved"),
    (lambda: DatasetTask(DataLoader(blobs(), batch_size=2, sampler=RandomSampler(range(N), replacement=True))),
     ValueError, r"RandomSampler \(replacement=True or num_samples\)"),
    (lambda: DatasetTask(DataLoader(blobs(), batch_sampler=[[0, 1], [2, 3]])), ValueError, "batch_sampler list"),
    (lambda: DatasetTask(DataLoader(blobs(), batch_size=None)), ValueError, "batch_size=None"),
    (lambda: DatasetTask(DataLoader(blobs(), batch_size=2), batch_size=4), ValueError,
     "batch_size is set by the DataLoader"),
    (lambda: DatasetTask(blobs(), blobs(), eval_fraction=0.5), ValueError, "eval_data or eval_fraction, not both"),
    (lambda: DatasetTask(blobs(), eval_fraction=1.5), ValueError, r"eval_fraction=...\) must lie in \(0, 1\)"),
    (lambda: DatasetTask(blobs(), batch_size=0), ValueError, "batch_size"),
    (lambda: DatasetTask(blobs(), batch_size=50, drop_last=True), ValueError, "gives no batch at all"),
    (lambda: DatasetTask(blobs(), shuffle="yes"), TypeError, "shuffle"),
    (lambda: DatasetTask({"train": blobs()}), TypeError, "pass one split as data"),
    (lambda: DatasetTask([1, 2, 3]), TypeError, r"item 0 of data is a int \(1\), not an \(input, target\) pair"),
    (lambda: DatasetTask([{"a": 1}]), TypeError, r"item 0 of data is a mapping with keys \['a'\]"),
    (lambda: DatasetTask([{"a": 1}], input_column="a", target_column="b"), KeyError, "no field 'b'"),
    (lambda: DatasetTask(blobs(), input_column="a"), ValueError, "give both input_column and target_column"),
])
def test_bad_input_is_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_an_item_that_is_not_a_pair_is_named_by_its_index():
    task = DatasetTask(Triples(), batch_size=4, shuffle=False)       # item 0 is fine; item 5 is a triple
    g = torch.Generator()
    task.batch(g)
    with pytest.raises(TypeError, match=r"item 5 of data is a tuple of 3 elements, not an \(input, target\) pair"):
        task.batch(g)


def test_num_workers_is_not_used_and_says_so():
    with pytest.warns(UserWarning, match="num_workers=2 is not used"):
        DatasetTask(DataLoader(blobs(), batch_size=2, num_workers=2))


# ---- Hugging Face datasets -----------------------------------------------------------------------------------------
def test_a_hugging_face_dataset_by_its_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    x = [[float(i), float(-i)] for i in range(10)]
    ds = datasets.Dataset.from_dict({"features": x, "label": [i % 2 for i in range(10)], "note": ["n"] * 10})
    task = DatasetTask(ds, input_column="features", target_column="label", batch_size=4, shuffle=False,
                       eval_fraction=0.2)
    xb, yb = task.batch(torch.Generator())
    rows = task.train_indices[:4]
    assert torch.equal(xb, torch.tensor([x[i] for i in rows])) and torch.equal(yb, torch.tensor([i % 2 for i in rows]))
    assert task.has_accuracy and sorted(task.eval_sets()) == ["eval", "train"]
    run = make_run(DatasetTask(ds, input_column="features", target_column="label", batch_size=4), d_in=2)
    run.train(3, progress=False)                                # trains from the HF dataset
    assert run.history["loss/batch"].steps == [1, 2, 3]
    with pytest.raises(ValueError, match=r"needs input_column and target_column; its columns are \['features'"):
        DatasetTask(ds)
    with pytest.raises(KeyError, match="no column 'labels'"):
        DatasetTask(ds, input_column="features", target_column="labels")
    with pytest.raises(TypeError, match="cannot be resumed exactly"):
        DatasetTask(ds.to_iterable_dataset(), input_column="features", target_column="label")


def test_under_torchrun_a_short_last_batch_is_accepted():
    """Uneven shards are weighted (tests/test_elastic.py), so the 3-row batch that ends each epoch runs at world
    size 2 too: the check no longer refuses it."""
    from types import SimpleNamespace

    from orthoscope.distributed.seam import Seam, global_batch_size

    task = DatasetTask(blobs(), batch_size=4)                   # 23 items: 4 × 5, then 3
    assert task.batch_sizes() == [4, 3] and global_batch_size(task) == 4
    assert DatasetTask(blobs(), batch_size=4, drop_last=True).batch_sizes() == [4]
    assert DatasetTask(blobs()).batch_sizes() == [N]
    seam = object.__new__(Seam)                                 # the check alone, at world size 2
    seam.mode, seam.world, seam.rank, seam.precision = "ddp", 2, 1, "fp32"
    seam.check(SimpleNamespace(method=AdamW(), task=task))
    assert seam.rows(3) == (1, 3) and seam.loss_weight(3) == 2 * 2 / 3


def test_a_config_cannot_hold_your_data():
    from orthoscope.core.validate import ConfigError

    with pytest.raises(ConfigError, match="DatasetTask holds your own Dataset/DataLoader objects"):
        make_run().config
    with pytest.raises(ConfigError, match="unknown|valid"):
        Run.from_config({"task": {"name": "DatasetTask"}, "model": {"name": "MLP"}, "method": {"name": "AdamW"}})


def test_a_dataloader_task_under_torchrun_equals_one_process_and_resumes_there(tmp_path):
    """World size 2 (DDP, gloo) for 7 steps equals one process (tolerance as in test_distributed.py: the two ranks'
    gradients are averaged in another order, a few ulps); the task's position is the same on rank 0 exactly; and the
    sharded checkpoint the two ranks wrote resumes in one process to equal 10 uninterrupted steps."""
    from safetensors.torch import load_file

    from dataset_ddp_worker import STEPS, build
    from test_distributed import RTOL, assert_close, torchrun

    torchrun(ROOT / "tests" / "dataset_ddp_worker.py", tmp_path)
    one = build().train(STEPS, progress=False)
    assert_close(load_file(tmp_path / "ddp.safetensors"), dict(one.model.state_dict()))
    saved = json.loads((tmp_path / "ddp.json").read_text())
    assert saved["task"] == one.task.state_dict(one.generator) and saved["task"]["epoch"] == 1
    assert saved["loss"] == pytest.approx(one.history["loss/batch"].values, rel=RTOL)
    resumed = build()
    resumed.load(tmp_path / "two")
    resumed.train(3, progress=False)
    straight = build().train(STEPS + 3, progress=False)
    assert resumed.task.state_dict(resumed.generator) == straight.task.state_dict(straight.generator)
    assert_close(dict(resumed.model.state_dict()), dict(straight.model.state_dict()))
