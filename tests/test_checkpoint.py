"""Checkpoints: SIGKILL + resume is bit-identical; bad files and other shapes are refused; nothing is unpickled."""
import ast
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from orthoscope import AdamW, Run
from orthoscope.core.checkpoint import CheckpointError, read_checked, write_atomic
from orthoscope.models import MLP, TinyTransformer
from orthoscope.probes import default_probes
from orthoscope.tasks import ModularArithmetic
from orthoscope.training.throughput import MEASURED

ROOT = Path(__file__).resolve().parents[1]


# A run whose every source of randomness matters: minibatches (the run's generator), dropout (torch's global RNG),
# AdamW state, a clipping intervention and probes that record arrays.
SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    from orthoscope import AdamW, Run
    from orthoscope.models import TinyTransformer
    from orthoscope.probes import default_probes
    from orthoscope.tasks import ModularArithmetic

    mode, ckpt, out = sys.argv[1], sys.argv[2], sys.argv[3]
    TOTAL, EVERY, HANG_AT = 30, 10, 25
    torch.manual_seed(0)
    task = ModularArithmetic(p=13, train_frac=0.5, batch_size=32)
    model = TinyTransformer(vocab_size=13, n_ctx=2, d_model=16, n_heads=2, d_mlp=32, dropout=0.1)
    run = Run(model, task, AdamW(lr=1e-2, weight_decay=0.5, grad_clip=1.0), probes=default_probes(every=3), seed=7)
    if mode == "resume":
        run.load(ckpt)
    if mode == "killed":
        def hang(r, record):
            if r.step_count == HANG_AT:          # past the last checkpoint (step 20): wait to be killed
                print("HANGING", flush=True)
                time.sleep(600)
        run.on_step(hang)
    run.train(TOTAL - run.step_count, progress=False, checkpoint_every=EVERY, checkpoint_path=ckpt)
    run.save(out)
""")


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_script(tmp_path, *args):
    return subprocess.run([sys.executable, str(tmp_path / "train.py"), *map(str, args)], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    full = run_script(tmp_path, "full", tmp_path / "full_ckpt.safetensors", tmp_path / "full.safetensors")
    assert full.returncode == 0, full.stderr

    ckpt = tmp_path / "ckpt.safetensors"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "train.py"), "killed", str(ckpt), str(tmp_path / "x")],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "HANGING", proc.stderr.read() if proc.poll() is not None else line
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    _, meta = read_checked(ckpt, kind="orthoscope.Run")
    assert meta["step"] == 20                      # the kill came after the last checkpoint, before the end

    resumed = run_script(tmp_path, "resume", ckpt, tmp_path / "resumed.safetensors")
    assert resumed.returncode == 0, resumed.stderr

    a_tensors, a_meta = read_checked(tmp_path / "full.safetensors", kind="orthoscope.Run")
    b_tensors, b_meta = read_checked(tmp_path / "resumed.safetensors", kind="orthoscope.Run")
    assert a_meta["step"] == b_meta["step"] == 30
    assert a_tensors.keys() == b_tensors.keys()
    for name in a_tensors:                         # model, optimizer state, RNG states and history arrays
        assert torch.equal(a_tensors[name], b_tensors[name]), name
    timed = lambda h: {k: {"steps": v["steps"]} if k.startswith(MEASURED) else v for k, v in h.items()}
    assert timed(a_meta["history"]) == timed(b_meta["history"])  # every float of every scalar series, exactly
    # (but the throughput timings, which differ between any two runs: their steps only)
    assert a_meta["optimizer"] == b_meta["optimizer"]
    assert a_meta["last_loss"] == b_meta["last_loss"]
    assert "sv/embed" in a_meta["history"] and len(a_meta["history"]["loss/test"]["steps"]) == 11


def make_run(hidden=(16,), seed=0) -> Run:
    torch.manual_seed(0)
    model = MLP(vocab_size=7, n_tokens=2, d_embed=8, hidden=hidden, d_out=7)
    return Run(model, ModularArithmetic(p=7, train_frac=0.5, batch_size=8), AdamW(lr=1e-2),
               probes=default_probes(every=2), seed=seed)


def test_in_process_save_load_continues_identically(tmp_path):
    reference = make_run().train(10, progress=False)
    first = make_run().train(4, progress=False)
    first.save(tmp_path / "c.safetensors")
    first.train(3, progress=False)                 # diverge the live object; the file must win on load
    resumed = make_run().load(tmp_path / "c.safetensors")
    assert resumed.step_count == 4
    resumed.train(6, progress=False)
    for k, v in reference.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    for key in reference.history:
        assert reference.history[key].steps == resumed.history[key].steps
    assert reference.history["loss/test"].values == resumed.history["loss/test"].values
    assert isinstance(resumed.optimizer.param_groups[0]["betas"], tuple)


def test_checkpoint_from_another_shape_is_refused(tmp_path):
    make_run(hidden=(16,)).train(2, progress=False).save(tmp_path / "c.safetensors")
    with pytest.raises(CheckpointError, match=r"another shape: layers.0.weight: run has \[12, 16\], checkpoint has"):
        make_run(hidden=(12,)).load(tmp_path / "c.safetensors")
    with pytest.raises(CheckpointError, match="layers.2.weight missing from checkpoint"):
        make_run(hidden=(16, 16)).load(tmp_path / "c.safetensors")
    torch.manual_seed(0)
    other = Run(TinyTransformer(vocab_size=7, n_ctx=2, d_model=8, n_heads=2, d_mlp=16),
                ModularArithmetic(p=7, train_frac=0.5), AdamW(), probes=[])
    with pytest.raises(CheckpointError, match="another shape"):
        other.load(tmp_path / "c.safetensors")


def test_truncated_and_corrupted_files_are_refused(tmp_path):
    good = tmp_path / "c.safetensors"
    make_run().train(2, progress=False).save(good)
    data = good.read_bytes()
    header_len = int.from_bytes(data[:8], "little")

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        make_run().load(truncated)

    in_tensors = bytearray(data)
    in_tensors[8 + header_len + 40] ^= 0x01       # one bit of one tensor
    (tmp_path / "flipped.safetensors").write_bytes(bytes(in_tensors))
    with pytest.raises(CheckpointError, match="checksum does not match"):
        make_run().load(tmp_path / "flipped.safetensors")

    in_header = bytearray(data)
    in_header[12] ^= 0xFF                           # a byte of the JSON header
    (tmp_path / "header.safetensors").write_bytes(bytes(in_header))
    with pytest.raises(CheckpointError):
        make_run().load(tmp_path / "header.safetensors")

    with pytest.raises(CheckpointError, match="does not exist"):
        make_run().load(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="is a directory, not a file"):
        make_run().load(tmp_path)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        make_run().load(tmp_path / "empty.safetensors")


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    write_atomic(path, {"x": torch.ones(3)}, {"kind": "k"})
    before = path.read_bytes()

    import safetensors.torch

    def failing_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, {"x": torch.zeros(3)}, {"kind": "k"})
    assert path.read_bytes() == before             # the old checkpoint is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]   # and no temp file is left


def test_scalar_and_bool_tensors_round_trip(tmp_path):
    tensors = {"step": torch.tensor(3.0), "flag": torch.tensor([True, False]), "half": torch.ones(2, dtype=torch.bfloat16)}
    write_atomic(tmp_path / "t.safetensors", tensors, {"kind": "k"})
    back, meta = read_checked(tmp_path / "t.safetensors", kind="k")
    assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in tensors.items())


@pytest.mark.parametrize("module", ["orthoscope/core/checkpoint.py", "orthoscope/training/run.py", "orthoscope/core/history.py"])
def test_loading_never_unpickles(module):
    tree = ast.parse((ROOT / module).read_text())
    unsafe_modules = {"pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & unsafe_modules, ast.unparse(node)
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in unsafe_modules, ast.unparse(node)
        if isinstance(node, ast.Attribute) and node.attr == "load":
            assert ast.unparse(node.value) not in {"torch", "np", "numpy", "pickle"}, ast.unparse(node)
        if isinstance(node, ast.keyword) and node.arg in ("allow_pickle", "weights_only"):
            raise AssertionError(f"{module}: {ast.unparse(node)}")


def test_checkpoint_from_another_method_is_refused(tmp_path):
    make_run().train(2, progress=False).save(tmp_path / "c.safetensors")
    torch.manual_seed(0)
    model = MLP(vocab_size=7, n_tokens=2, d_embed=8, hidden=(16,), d_out=7)
    other_lr = Run(model, ModularArithmetic(p=7, train_frac=0.5, batch_size=8), AdamW(lr=5e-2), probes=[])
    with pytest.raises(CheckpointError, match=r"another method: lr: run has 0.05, checkpoint has 0.01"):
        other_lr.load(tmp_path / "c.safetensors")
    from orthoscope import SGD

    sgd = Run(model, ModularArithmetic(p=7, train_frac=0.5, batch_size=8), SGD(lr=1e-2), probes=[])
    with pytest.raises(CheckpointError, match=r"method: run has 'SGD', checkpoint has 'AdamW'"):
        sgd.load(tmp_path / "c.safetensors")
