"""Hostile and damaged run directories (issue 30 item 3): the hostile-file tests of single checkpoints
(tests/test_checkpoint_hostile.py) extended to sharded checkpoints and their manifests.

A run directory trained by ``orthoscope train`` (in this process: one shard file per checkpoint) is copied and
damaged one way per case; resuming it (``orthoscope.config.rundir.resume``, what a re-invoked ``orthoscope train``
does) must raise ``CheckpointError`` naming the damaged file, and leave both the run (model, optimizer, RNG, History,
step) and every byte of the run directory as they were. A few cases load the damaged checkpoint directly with
``Run.load(directory)``, the notebook's way.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from orthoscope.config import save_config
from orthoscope.config.train import prepare, train
from orthoscope.core.checkpoint import CheckpointError
from orthoscope.distributed import manifest
from test_checkpoint_hostile import same, state_of    # everything a load could change, and its comparison

SHARD = "shard-00001-model-00001-of-00001.safetensors"
RECORD = "run.safetensors"
CONFIG = {
    "seed": 0, "steps": 6, "name": "hostile",
    "task": {"name": "ModularArithmetic", "p": 7, "train_frac": 0.5, "batch_size": 8},
    "model": {"name": "MLP", "vocab_size": 7, "n_tokens": 2, "d_embed": 8, "hidden": [16], "d_out": 7},
    "method": {"name": "AdamW", "lr": 1e-3},
    "probes": [{"name": "WeightNorm", "every": 2}],
    "checkpoint": {"every": 2, "keep": 3},
}


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:08d}"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """(config path, a finished run directory with checkpoints 2, 4, 6, another model's finished run directory)."""
    folder = tmp_path_factory.mktemp("hostile_rundir")
    config_path = save_config(CONFIG, folder / "hostile.yaml")
    run, cfg, run_dir = prepare(config_path, [], folder / "runs", None)
    train(run, cfg, run_dir, progress=False)
    other_cfg = {**CONFIG, "name": "wider", "model": {**CONFIG["model"], "hidden": [24]}}
    other, other_cfg, other_dir = prepare(save_config(other_cfg, folder / "wider.yaml"), [], folder / "runs", None)
    train(other, other_cfg, other_dir, progress=False)
    return config_path, run_dir, other_dir


def resign(directory: Path) -> None:
    """Rewrite the manifest so it matches the directory as it now is: only checks beyond the manifest refuse it."""
    manifest.write(directory, json.loads((directory / manifest.NAME).read_text())["step"])


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


# ---- the damage, one function per case: (latest checkpoint dir, the good run dir, another model's) -> damaged file
def flipped_shard_data(ckpt, run_dir, other):
    flip(ckpt / SHARD, -5)
    return ckpt / SHARD


def flipped_shard_header(ckpt, run_dir, other):
    flip(ckpt / SHARD, 20)
    return ckpt / SHARD


def flipped_record(ckpt, run_dir, other):
    flip(ckpt / RECORD, -3)
    return ckpt / RECORD


def truncated_shard(ckpt, run_dir, other):
    data = (ckpt / SHARD).read_bytes()
    (ckpt / SHARD).write_bytes(data[: len(data) // 2])
    return ckpt / SHARD


def empty_shard(ckpt, run_dir, other):
    (ckpt / SHARD).write_bytes(b"")
    return ckpt / SHARD


def missing_shard(ckpt, run_dir, other):
    (ckpt / SHARD).unlink()
    return ckpt / SHARD


def shard_of_step_2(ckpt, run_dir, other):          # same size, other values
    shutil.copy(step_dir(run_dir, 2) / SHARD, ckpt / SHARD)
    return ckpt / SHARD


def record_of_step_2(ckpt, run_dir, other):         # the "step 2 record beside step-6 shards"
    shutil.copy(step_dir(run_dir, 2) / RECORD, ckpt / RECORD)
    return ckpt / RECORD


def record_and_manifest_of_step_2(ckpt, run_dir, other):
    shutil.copy(step_dir(run_dir, 2) / RECORD, ckpt / RECORD)
    shutil.copy(step_dir(run_dir, 2) / manifest.NAME, ckpt / manifest.NAME)
    return ckpt / manifest.NAME                     # says step 2 in step-00000006/


def whole_checkpoint_of_step_2(ckpt, run_dir, other):
    shutil.rmtree(ckpt)
    shutil.copytree(step_dir(run_dir, 2), ckpt)
    return ckpt / manifest.NAME


def missing_manifest(ckpt, run_dir, other):
    (ckpt / manifest.NAME).unlink()
    return ckpt / manifest.NAME


def garbled_manifest(ckpt, run_dir, other):
    (ckpt / manifest.NAME).write_bytes(b"\x00\xff{not json")
    return ckpt / manifest.NAME


def manifest_json_list(ckpt, run_dir, other):
    (ckpt / manifest.NAME).write_text("[1, 2, 3]")
    return ckpt / manifest.NAME


def manifest_deeply_nested(ckpt, run_dir, other):
    (ckpt / manifest.NAME).write_text("[" * 100_000 + "]" * 100_000)
    return ckpt / manifest.NAME


def manifest_edit(change, named=manifest.NAME):
    def damage(ckpt, run_dir, other):
        doc = json.loads((ckpt / manifest.NAME).read_text())
        change(doc)
        (ckpt / manifest.NAME).write_text(json.dumps(doc))
        return ckpt / named
    return damage


def _escape(doc):
    doc["files"]["../../hostile.yaml"] = doc["files"].pop(RECORD)


def _drop_record(doc):
    doc["files"].pop(RECORD)


def stray_shard(ckpt, run_dir, other):              # DCP's reader would merge every *.safetensors in
    shutil.copy(ckpt / SHARD, ckpt / "shard-00002-model-00001-of-00001.safetensors")
    return ckpt / "shard-00002-model-00001-of-00001.safetensors"


def garbled_shard_header_resigned(ckpt, run_dir, other):
    flip(ckpt / SHARD, 10)
    resign(ckpt)
    return ckpt / SHARD


def bad_sharding_offsets_resigned(ckpt, run_dir, other):
    with safe_open(str(ckpt / SHARD), framework="pt") as f:
        tensors, extra = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    offsets = json.loads(extra["DCP_SHARDING_INFO"])
    offsets[next(iter(offsets))] = {"saved_offsets": "everywhere"}
    save_file(tensors, str(ckpt / SHARD), metadata={**extra, "DCP_SHARDING_INFO": json.dumps(offsets)})
    resign(ckpt)
    return ckpt / SHARD


def shard_of_another_model_resigned(ckpt, run_dir, other):   # same method, 24 hidden units instead of 16
    shutil.copy(step_dir(other, 6) / SHARD, ckpt / SHARD)
    resign(ckpt)
    return ckpt / SHARD


def shard_without_a_tensor_resigned(ckpt, run_dir, other):
    with safe_open(str(ckpt / SHARD), framework="pt") as f:
        tensors, extra = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    dropped = next(k for k in tensors if k.startswith("optim."))
    offsets = {k: v for k, v in json.loads(extra["DCP_SHARDING_INFO"]).items() if k != dropped}
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(ckpt / SHARD),
              metadata={**extra, "DCP_SHARDING_INFO": json.dumps(offsets)})
    resign(ckpt)
    return ckpt / SHARD


HOSTILE = [
    # (label, damage, words the message holds besides the file)
    ("flipped byte in shard data", flipped_shard_data, "SHA-256"),
    ("flipped byte in shard header", flipped_shard_header, "SHA-256"),
    ("flipped byte in run.safetensors", flipped_record, "SHA-256"),
    ("truncated shard", truncated_shard, "bytes"),
    ("empty shard", empty_shard, "bytes"),
    ("missing shard", missing_shard, "missing"),
    ("shard of step 2 (same size)", shard_of_step_2, "SHA-256"),
    ("run.safetensors of step 2 beside step-6 shards", record_of_step_2, "manifest.json says"),
    ("record and manifest of step 2", record_and_manifest_of_step_2, "manifest of step 2"),
    ("the whole checkpoint of step 2 named step 6", whole_checkpoint_of_step_2, "manifest of step 2"),
    ("missing manifest", missing_manifest, "missing"),
    ("garbled manifest", garbled_manifest, "corrupted"),
    ("manifest is a JSON list", manifest_json_list, "not an object"),
    ("manifest nested 100k deep", manifest_deeply_nested, "corrupted"),
    ("manifest step -1", manifest_edit(lambda d: d.update(step=-1)), "'step'"),
    ("manifest step 'six'", manifest_edit(lambda d: d.update(step="six")), "'step'"),
    ("manifest kind", manifest_edit(lambda d: d.update(kind="orthoscope.Run")), "'kind'"),
    ("manifest format 2", manifest_edit(lambda d: d.update(format=2)), "'format'"),
    ("manifest files empty", manifest_edit(lambda d: d.update(files={})), "'files'"),
    ("manifest names a path outside", manifest_edit(_escape), "not a plain file name"),
    ("manifest size negative", manifest_edit(lambda d: d["files"][SHARD].update(size=-1)), "size"),
    ("manifest size a string", manifest_edit(lambda d: d["files"][SHARD].update(size="9")), "size"),
    ("manifest digest short", manifest_edit(lambda d: d["files"][SHARD].update(sha256="ab")), "sha256"),
    ("manifest entry extra key", manifest_edit(lambda d: d["files"][SHARD].update(mode=1)), "exactly"),
    ("manifest omits run.safetensors", manifest_edit(_drop_record, RECORD), "not in its manifest"),
    ("stray shard file", stray_shard, "not in its manifest"),
    ("garbled shard header, manifest rewritten", garbled_shard_header_resigned, "cannot be read"),
    ("bad sharding offsets, manifest rewritten", bad_sharding_offsets_resigned, "offsets"),
    ("shard of another model, manifest rewritten", shard_of_another_model_resigned, "the run's is"),
    ("shard missing a tensor, manifest rewritten", shard_without_a_tensor_resigned, "no shard holds"),
]


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def damaged_copy(good, tmp_path, damage) -> tuple[Path, Path]:
    config_path, run_dir, other = good
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy, damage(step_dir(copy, 6), run_dir, other)


@pytest.mark.parametrize("label,damage,words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_run_directory_is_refused_and_nothing_changes(good, tmp_path, label, damage, words):
    copy, bad_file = damaged_copy(good, tmp_path, damage)
    run, cfg, run_dir = prepare(good[0], [], tmp_path / "runs", None)
    run.train(2, progress=False)                    # a run with state of its own, which must survive the refusal
    before, files = state_of(run), tree_bytes(copy)
    with pytest.raises(CheckpointError) as refused:
        train(run, cfg, run_dir, progress=False)
    message = str(refused.value)
    assert str(bad_file) in message and words in message, message
    assert same(state_of(run), before), "the run changed"
    assert tree_bytes(copy) == files, "the run directory changed"


@pytest.mark.parametrize("label,damage,words", [h for h in HOSTILE if "manifest rewritten" in h[0]
                                                or h[0] in ("flipped byte in shard data", "missing manifest")],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_run_load_of_a_damaged_directory_is_refused(good, tmp_path, label, damage, words):
    copy, bad_file = damaged_copy(good, tmp_path, damage)
    run, _, _ = prepare(good[0], [], tmp_path / "other_runs", None)
    run.train(2, progress=False)
    before = state_of(run)
    with pytest.raises(CheckpointError, match="checkpoint") as refused:
        run.load(step_dir(copy, 6))
    assert str(bad_file) in str(refused.value)
    assert same(state_of(run), before)


def test_dcp_failure_becomes_a_checkpoint_error_and_the_run_is_unchanged(good, tmp_path, monkeypatch):
    """DCP's ``CheckpointException`` derives from ``BaseException`` (``except Exception`` misses it): a load that
    fails inside DCP raises ``CheckpointError`` naming the shard files, and the run is as before."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.utils import _wrap_exception

    assert not issubclass(CheckpointException, Exception)
    run, _, _ = prepare(good[0], [], tmp_path / "runs", None)
    run.train(2, progress=False)
    before = state_of(run)

    def failing_load(state_dict, **kwargs):
        next(iter(state_dict.values())).fill_(7.0)     # DCP got part of the way before failing
        raise CheckpointException("read failed", {0: _wrap_exception(RuntimeError("boom"))})

    monkeypatch.setattr(dcp, "load", failing_load)
    ckpt = step_dir(good[1], 6)
    with pytest.raises(CheckpointError, match=r"rank 0: RuntimeError: boom\); the run is unchanged") as refused:
        run.load(ckpt)
    assert f"reading its shards ({str(ckpt / SHARD)!r}) failed".replace("'", "") in str(refused.value)
    assert same(state_of(run), before)


def test_a_good_run_directory_still_resumes(good, tmp_path):
    """The same copy, undamaged, resumes: the checks refuse the damage, not the checkpoint."""
    copy, _ = damaged_copy(good, tmp_path, lambda ckpt, run_dir, other: None)
    run, cfg, run_dir = prepare(good[0], [], tmp_path / "runs", None)
    assert train(run, cfg, run_dir, progress=False).step_count == 6
    listed = json.loads((step_dir(copy, 6) / manifest.NAME).read_text())
    assert sorted(listed["files"]) == [RECORD, SHARD] and listed["step"] == 6


def test_saving_again_into_a_directory_replaces_the_earlier_save(good, tmp_path):
    """``run.save(directory)`` over an earlier save: its files (a shard of another world size included) are
    removed first, so the manifest lists this save's files only and the directory loads."""
    from orthoscope.distributed.checkpoint import save

    run, _, _ = prepare(good[0], [], tmp_path / "runs", None)
    run.train(2, progress=False)
    save(run, tmp_path / "ckpt")
    shutil.copy(tmp_path / "ckpt" / SHARD, tmp_path / "ckpt" / "shard-00002-model-00001-of-00002.safetensors")
    run.train(1, progress=False)
    save(run, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [manifest.NAME, RECORD, SHARD]
    again, _, _ = prepare(good[0], [], tmp_path / "runs2", None)
    assert again.load(tmp_path / "ckpt").step_count == 3


def test_the_train_command_names_a_damaged_checkpoint_in_one_line(good, tmp_path, capsys):
    """Re-invoking ``orthoscope train`` on a damaged run directory: exit code 2 and one line naming the file, not a
    traceback (the command reports a refused checkpoint the way it reports a refused config)."""
    from orthoscope.__main__ import main as cli_main

    copy, bad_file = damaged_copy(good, tmp_path, flipped_shard_data)
    files = tree_bytes(copy)
    code = cli_main(["train", str(good[0]), "--runs", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad_file) in lines[0], err
    assert "Traceback" not in err
    assert tree_bytes(copy) == files


def test_a_sharded_checkpoint_refuses_a_model_of_another_structure(good, tmp_path):
    """Same parameter names and shapes, another module type (the activation): the record's module structure refuses
    it, naming the module, before anything is applied."""
    run, _, _ = prepare(good[0], [], tmp_path / "runs", None)
    run.model.act = torch.nn.GELU()                  # was ReLU: every shard still fits
    before = state_of(run)
    with pytest.raises(CheckpointError, match=r"'act' is a GELU in the run but a ReLU in the checkpoint"):
        run.load(step_dir(good[1], 6))
    assert same(state_of(run), before)
