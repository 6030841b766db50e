"""Hostile and damaged checkpoint files (issue 18): each is refused with ``CheckpointError`` naming the file and the
field, and the run it was loaded into is exactly as before. Also: stale temp files of killed writers are removed, and
a halted run resumes deliberately with a smaller learning rate."""
import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from orthoscope import SGD, AdamW, NonFiniteError, Run
from orthoscope.core.checkpoint import CheckpointError, _digest, read_checked
from orthoscope.models import MLP
from orthoscope.probes import default_probes
from orthoscope.tasks import ModularArithmetic


def make_run(method=None, probes=None) -> Run:
    torch.manual_seed(0)
    model = MLP(vocab_size=7, n_tokens=2, d_embed=8, hidden=(16,), d_out=7)
    return Run(model, ModularArithmetic(p=7, train_frac=0.5, batch_size=8), method or AdamW(lr=1e-3),
               probes=default_probes(every=2) if probes is None else probes, seed=0)


def state_of(run: Run) -> dict:
    """Everything a load could change, comparable with ==."""
    return {"model": {k: v.clone() for k, v in run.model.state_dict().items()},
            "optimizer": repr(run.optimizer.state_dict()), "generator": run.generator.get_state().clone(),
            "torch_rng": torch.get_rng_state().clone(), "history": repr(run.history.state()),
            "step": run.step_count, "last_loss": run.last_loss, "overrides": dict(run.overrides)}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]) and \
        torch.equal(a["generator"], b["generator"]) and torch.equal(a["torch_rng"], b["torch_rng"]) and \
        all(a[k] == b[k] for k in ("optimizer", "history", "step", "last_loss", "overrides"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    make_run().train(6, progress=False).save(folder / "good.safetensors")
    tensors, meta = read_checked(folder / "good.safetensors", kind="orthoscope.Run")
    return folder / "good.safetensors", tensors, meta


def signed(path, tensors, meta):
    """Write a file whose checksum is *correct* for its (hostile) content: only the schema can refuse it."""
    meta = {k: v for k, v in meta.items() if k != "sha256"}
    save_file(tensors, str(path), metadata={"orthoscope": json.dumps({**meta, "sha256": _digest(tensors, meta)})})


def raw(path, tensors, header_text):
    save_file(tensors, str(path), metadata={"orthoscope": header_text})


def flip_text(path, good, old: str, new: str):
    """The good file with a same-length edit inside its JSON header (no re-signing)."""
    data = good.read_bytes()
    assert len(old) == len(new) and data.count(old.encode()) >= 1, old
    path.write_bytes(data.replace(old.encode(), new.encode(), 1))


def with_meta(**changes):
    def build(path, good, tensors, meta):
        signed(path, tensors, {**meta, **changes})
    return build


def with_optimizer_lr(value):
    def build(path, good, tensors, meta):
        optim = json.loads(json.dumps(meta["optimizer"]))
        optim["param_groups"][0]["lr"] = value
        signed(path, tensors, {**meta, "optimizer": optim})
    return build


def without_tensor(prefix):
    def build(path, good, tensors, meta):
        name = next(k for k in tensors if k.startswith(prefix))
        signed(path, {k: v for k, v in tensors.items() if k != name}, meta)
    return build


def with_tensor(name, value):
    def build(path, good, tensors, meta):
        signed(path, {**tensors, name: value}, meta)
    return build


def raw_header(text):
    def build(path, good, tensors, meta):
        raw(path, tensors, text)
    return build


def edited(old, new):
    def build(path, good, tensors, meta):
        flip_text(path, good, old, new)
    return build


def without_sha(path, good, tensors, meta):
    raw(path, tensors, json.dumps({k: v for k, v in meta.items() if k != "sha256"}))


HOSTILE = [
    # (label, builder, words the error names)
    ("step 6 -> 8 (unsigned edit)", edited(r'\"step\": 6', r'\"step\": 8'), "checksum"),
    ("lr 0.001 -> 0.009 (unsigned edit)", edited(r'\"lr\": 0.001', r'\"lr\": 0.009'), "checksum"),
    ("step 'abc'", with_meta(step="abc"), "'step'"),
    ("step -5", with_meta(step=-5), "'step'"),
    ("step 1e308", with_meta(step=1e308), "'step'"),
    ("step true", with_meta(step=True), "'step'"),
    ("format 999", with_meta(format=999), "'format'"),
    ("param_groups lr 1e6", with_optimizer_lr(1e6), "param_groups[0].lr"),
    ("wall_time negative", with_meta(wall_time=-1.0), "'wall_time'"),
    ("last_loss string", with_meta(last_loss="low"), "'last_loss'"),
    ("seed 1.5", with_meta(seed=1.5), "'seed'"),
    ("method a list", with_meta(method=[1, 2]), "'method'"),
    ("signature a string", with_meta(signature="big"), "'signature'"),
    ("history steps not a list", with_meta(history={"loss/train": {"steps": 3, "values": [1.0]}}), "history"),
    ("optimizer state index out of range",
     lambda p, g, t, m: signed(p, t, {**m, "optimizer": {**m["optimizer"], "state": {"999": {}}}}), "optimizer"),
    ("overrides a list", with_meta(overrides=[1]), "'overrides'"),
    ("kind another", with_meta(kind="orthoscope.History"), "kind"),
    ("5000-digit number", raw_header('{"step": ' + "9" * 5000 + "}"), "5000-character"),
    ("100k-deep nesting", raw_header("[" * 100_000 + "]" * 100_000), "nests"),
    ("a list, not an object", raw_header("[1, 2, 3]"), "not an object"),
    ("missing signature field", without_sha, "'sha256'"),
    ("missing optimizer tensor", without_tensor("optim."), "optimizer"),
    ("missing history tensor", without_tensor("history."), "history"),
    ("model tensor of another shape", with_tensor("model.layers.0.weight", torch.zeros(3, 3)), "model.layers.0.weight"),
    ("bad RNG state", with_tensor("rng.generator", torch.zeros(10, dtype=torch.uint8)), "rng.generator"),
    ("RNG state of another dtype", with_tensor("rng.torch", torch.zeros(10)), "rng.torch"),
]


@pytest.mark.parametrize("label,build,words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_file_is_refused_and_the_run_is_unchanged(saved, tmp_path, label, build, words):
    good, tensors, meta = saved
    bad = tmp_path / "bad.safetensors"
    build(bad, good, dict(tensors), dict(meta))
    run = make_run().train(2, progress=False)
    before = state_of(run)
    with pytest.raises(CheckpointError) as error:
        run.load(bad)
    assert str(bad) in str(error.value) and words in str(error.value), str(error.value)[:300]
    assert same(before, state_of(run)), f"{label}: the run changed"


def test_a_flipped_byte_in_every_region_is_refused(saved, tmp_path):
    good, tensors, _ = saved
    data = good.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    positions = {"length prefix": [0, 3]}
    positions["JSON header"] = list(range(8, 8 + header_len, max(1, header_len // 40)))
    for name, info in header.items():
        if name != "__metadata__":
            start, end = info["data_offsets"]
            if end > start:
                positions[f"tensor {name}"] = [8 + header_len + start, 8 + header_len + end - 1]
    assert len(positions) > 10
    run = make_run().train(2, progress=False)
    before = state_of(run)
    for region, offsets in positions.items():
        for offset in offsets:
            damaged = bytearray(data)
            damaged[offset] ^= 0x04
            (tmp_path / "flip.safetensors").write_bytes(bytes(damaged))
            with pytest.raises(CheckpointError):
                run.load(tmp_path / "flip.safetensors")
    assert same(before, state_of(run))


def test_a_failure_while_applying_restores_the_run(saved, monkeypatch):
    good, _, _ = saved
    run = make_run().train(2, progress=False)
    before = state_of(run)
    import orthoscope.core.history

    def broken(*args, **kwargs):
        raise RuntimeError("disk hiccup")

    monkeypatch.setattr(orthoscope.core.history.History, "from_state", broken)   # after model + optimizer were applied
    with pytest.raises(CheckpointError, match="the run is unchanged"):
        run.load(good)
    assert same(before, state_of(run))


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import safetensors.torch
    import torch
    from orthoscope.core.checkpoint import write_atomic

    real = safetensors.torch.save_file

    def slow(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)     # the temp file is on disk ...
        print("WRITING", flush=True)
        time.sleep(600)                                # ... and the writer is killed before the rename

    safetensors.torch.save_file = slow
    write_atomic(sys.argv[1], {"w": torch.randn(256, 256)}, {"kind": "k"})
""")


@pytest.mark.slow
def test_kills_inside_the_write_leave_no_temp_files_after_the_next_save(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    target = tmp_path / "ckpt" / "c.safetensors"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            assert proc.stdout.readline().strip() == "WRITING"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            proc.stdout.close()
    # each new writer removed the orphan of the one killed before it: one orphan is left, the last one's
    assert len(list(target.parent.glob("*.tmp"))) == 1
    run = make_run()
    run.save(target)                                           # the next save in that folder
    assert list(target.parent.glob("*.tmp")) == []
    assert make_run().load(target).step_count == 0


def test_halt_then_resume_with_a_smaller_learning_rate(tmp_path):
    run = make_run(SGD(lr=300.0), probes=[])
    run.train(1, progress=False).save(tmp_path / "early.safetensors")
    with pytest.raises(NonFiniteError, match=r"overflowed.*override=\{'lr'") as halt:
        run.train(50, progress=False)
    assert "input batch" not in str(halt.value)                 # overflow, not bad data
    with pytest.raises(CheckpointError, match="saved by another method"):
        make_run(SGD(lr=1e-2), probes=[]).load(tmp_path / "early.safetensors")   # other settings, silently: no
    resumed = make_run(SGD(lr=300.0), probes=[]).load(tmp_path / "early.safetensors", override={"lr": 1e-2})
    assert resumed.step_count == 1 and resumed.optimizer.param_groups[0]["lr"] == 1e-2
    assert resumed.history["override/lr"].values == [1e-2] and resumed.history["override/lr"].steps == [1]
    resumed.train(20, progress=False)                            # goes on, finite, past where the first run died
    assert resumed.step_count == 21 and math.isfinite(resumed.last_loss)
    resumed.save(tmp_path / "after.safetensors")                 # the override travels with the checkpoint
    again = make_run(SGD(lr=300.0), probes=[]).load(tmp_path / "after.safetensors")
    assert again.overrides == {"lr": 1e-2} and again.optimizer.param_groups[0]["lr"] == 1e-2


class FloatTask:
    """Four float features, three classes; one NaN in the data."""
    default_loss, n_classes = "cross_entropy", 3

    def __init__(self):
        self.x, self.y = torch.randn(16, 4, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 3
        self.x[5, 2] = float("nan")

    def batch(self, generator):
        return self.x, self.y

    def eval_sets(self):
        return {"train": (self.x, self.y)}


def test_nan_in_the_input_is_named_as_data_not_learning_rate():
    torch.manual_seed(0)
    run = Run(MLP(d_in=4, hidden=(8,), d_out=3), FloatTask(), AdamW(), probes=[])
    with pytest.raises(NonFiniteError, match="input batch of step 1 holds 1 non-finite value.*the data, not the lea"):
        run.step()


def test_a_history_file_with_a_malformed_field_is_refused(tmp_path):
    from orthoscope import History

    h = History()
    h.log(0, {"loss/train": 1.0})
    h.save(tmp_path / "h.safetensors")
    tensors, meta = read_checked(tmp_path / "h.safetensors", kind="orthoscope.History")
    signed(tmp_path / "bad.safetensors", tensors, {**meta, "history": {"loss/train": {"steps": [0], "values": "x"}}})
    with pytest.raises(CheckpointError, match="history.loss/train"):
        History.load(tmp_path / "bad.safetensors")
