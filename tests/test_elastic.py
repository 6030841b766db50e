"""Elastic runs (issue 26 item 5): any world size with the same global batch, so a checkpoint resumes at any world
size; a batch the world size does not divide is split unevenly and each rank's loss weighted by its rows.

Resume 3 → 2 with global batch 9: one torchrun launch at world size 3 (``tests/elastic_worker.py``) trains 12 steps,
saving a sharded checkpoint after step 6; a launch at world size 2 (shards of 4 and 5 rows) resumes it for the last
6 steps. Its losses and weights equal the uninterrupted run at world size 3 (shards of 3) and one process.

Tolerance: 1e-5 relative to the largest entry (tests/test_distributed.py's ``RTOL``). The three runs add the same
nine rows' gradients in other orders (3 + 3 + 3, 4 + 5 weighted by 2·4/9 and 2·5/9, and 9 in one process), which in
fp32 differs by a few ulps per step; the weighting factors are rounded once each. Measured (this machine, gloo):
losses ≤ 8.9e-8 and weights ≤ 1.7e-7 (AdamW) / 4.7e-7 (Muon) relative, so 1e-5 leaves a 20× margin while a wrong
weighting fails it (checked: with every rank's factor set to 1, the unweighted mean of the 4- and 5-row shards, the
AdamW DDP case fails at 3.3e-3 on the embedding).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from elastic_worker import build  # noqa: E402
from test_distributed import assert_close, load, torchrun  # noqa: E402

BATCH, STEPS, SAVE_AT = 9, 12, 6
LAUNCH_TIMEOUT_S = 300
METHODS = [("AdamW", {"lr": 0.01, "weight_decay": 0.1}), ("Muon", {"lr": 0.02, "adamw_lr": 0.01})]
CASES = [{"name": f"{method}_{mode}", "method": method, "kwargs": kwargs, "mode": mode, "batch": BATCH,
          "steps": STEPS} for method, kwargs in METHODS for mode in ("ddp", "fsdp")]
EMPTY = [{"name": f"empty_{mode}", "method": "AdamW", "kwargs": {"lr": 0.01}, "mode": mode, "batch": 2, "steps": 5}
         for mode in ("ddp", "fsdp")]          # 2 rows at world size 3: rank 0 has none and still joins


def one_process(case: dict) -> dict[str, torch.Tensor]:
    run = build(case)
    run.train(case["steps"], progress=False)
    series = run.history["loss/batch"]
    out = {f"model.{k}": v.detach() for k, v in run.model.state_dict().items()}
    out["steps"] = torch.tensor(series.steps, dtype=torch.float64)
    out["loss"] = torch.tensor(series.values, dtype=torch.float64)
    return out


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    out = tmp_path_factory.mktemp("elastic")
    at3 = [dict(case, name=f"{case['name']}_3", save_at=SAVE_AT, save_to=str(out / f"{case['name']}_ckpt"))
           for case in CASES] + EMPTY
    (out / "at3.json").write_text(json.dumps(at3))
    torchrun(HERE / "elastic_worker.py", out / "at3.json", out, nproc=3, timeout=LAUNCH_TIMEOUT_S)
    at2 = [dict(case, name=f"{case['name']}_2", steps=STEPS - SAVE_AT, resume_from=str(out / f"{case['name']}_ckpt"))
           for case in CASES]
    (out / "at2.json").write_text(json.dumps(at2))
    torchrun(HERE / "elastic_worker.py", out / "at2.json", out, nproc=2, timeout=LAUNCH_TIMEOUT_S)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_resume_3_to_2_with_global_batch_9_equals_the_uninterrupted_run(launched, case):
    ref = one_process(case)
    at3, resumed = load(launched / f"{case['name']}_3.safetensors"), load(launched / f"{case['name']}_2.safetensors")
    assert resumed["steps"].tolist() == list(range(1, STEPS + 1))      # the History came along with the checkpoint
    assert_close(at3, ref)                                              # world size 3 = one process
    assert_close(resumed, ref)                                          # 3 then 2 = one process
    assert_close(resumed, at3)                                          # 3 then 2 = 3 throughout


@pytest.mark.parametrize("case", EMPTY, ids=[c["name"] for c in EMPTY])
def test_a_rank_with_no_rows_joins_and_the_run_equals_one_process(launched, case):
    assert_close(load(launched / f"{case['name']}.safetensors"), one_process(case))


class FakeSeam:
    """``Seam``'s arithmetic alone (no process group)."""

    def __new__(cls, rank: int, world: int):
        from orthoscope.distributed.seam import Seam

        seam = object.__new__(Seam)
        seam.mode, seam.rank, seam.world = "ddp", rank, world
        return seam


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_shards_cover_every_row_once_and_weights_make_the_global_mean(world):
    for batch in range(1, 20):
        seams = [FakeSeam(r, world) for r in range(world)]
        spans = [s.rows(batch) for s in seams]
        assert spans[0][0] == 0 and spans[-1][1] == batch
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))      # contiguous, in order, no gaps
        assert max(hi - lo for lo, hi in spans) - min(hi - lo for lo, hi in spans) <= 1   # balanced
        # (1/N) Σ_r w_r · mean_r == the global mean, for the row losses 0, 1, …, B-1
        rows = torch.arange(batch, dtype=torch.float64)
        averaged = sum(s.loss_weight(batch) * rows[lo:hi].mean() for s, (lo, hi) in zip(seams, spans)
                       if hi > lo) / world
        assert averaged.item() == pytest.approx(rows.mean().item(), rel=1e-12)
        if batch % world == 0:
            assert all(s.loss_weight(batch) == 1.0 for s in seams)    # even shards: exactly the old computation



# ---- extending a run directory (orthoscope train on a run whose config differs only in steps and cadences) ----------

EXTEND = {
    "seed": 1, "steps": 40, "name": "extend",
    "task": {"name": "ModularArithmetic", "p": 13, "train_frac": 0.5, "batch_size": 8},
    "model": {"name": "MLP", "vocab_size": 13, "n_tokens": 2, "d_embed": 8, "hidden": [16], "d_out": 13},
    "method": {"name": "AdamW", "lr": 0.01, "weight_decay": 0.1},
    "probes": [{"name": "WeightNorm", "every": 10}],
    "checkpoint": {"every": 20, "keep": 2},
}


def train_config(folder: Path, cfg: dict, overrides=(), runs=None):
    from orthoscope.config import save_config
    from orthoscope.config.train import prepare, train

    path = save_config(cfg, folder / "extend.yaml")
    said = []
    run, cfg, run_dir = prepare(path, list(overrides), runs or folder / "runs", None, say=said.append)
    return train(run, cfg, run_dir, progress=False), run_dir, said


def test_extending_40_to_60_steps_equals_a_60_step_run(tmp_path):
    from orthoscope.config.format import load_config
    from orthoscope.config.rundir import CONFIG, latest_checkpoint, read_history

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, run_dir, said = train_config(tmp_path / "a", EXTEND)
    assert first.step_count == 40 and not said
    longer = {**EXTEND, "steps": 60, "checkpoint": {"every": 30, "keep": 3}, "probes": [{"name": "WeightNorm",
                                                                                          "every": 5}]}
    extended, run_dir, said = train_config(tmp_path / "a", longer)
    assert extended.step_count == 60 and latest_checkpoint(run_dir)[0] == 60
    assert said and "steps 40 → 60" in said[0] and "checkpoint.every 20 → 30" in said[0]
    assert load_config(run_dir / CONFIG)["steps"] == 60                  # the recorded config is the new one
    straight, ref_dir, _ = train_config(tmp_path / "b", {**EXTEND, "steps": 60})
    got, want = read_history(run_dir)["loss/batch"], read_history(ref_dir)["loss/batch"]
    assert got.steps == list(range(1, 61)) and got.values == want.values          # bitwise: floats compare exactly
    mine, theirs = extended.model.state_dict(), straight.model.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    norms = read_history(run_dir)[next(k for k in read_history(run_dir).keys() if k.startswith("weight_norm"))]
    assert [s for s in norms.steps if s <= 40] == [0, 10, 20, 30, 40]              # the old cadence, then the new
    assert [s for s in norms.steps if s > 40] == [45, 50, 55, 60]


@pytest.mark.parametrize("change,words", [
    ({"method": {**EXTEND["method"], "lr": 0.02}}, ["method.lr differs", "0.01", "0.02"]),
    ({"seed": 2}, ["seed differs"]),
    ({"task": {**EXTEND["task"], "batch_size": 4}}, ["task.batch_size differs"]),
    ({"model": {**EXTEND["model"], "hidden": [32]}}, ["model.hidden[0] differs"]),
    ({"probes": [{"name": "Spectrum", "every": 10}]}, ["probes[0].name differs"]),
    ({"steps": 30}, ["steps 30 is below the 40 steps"]),
])
def test_a_change_that_alters_the_math_is_refused_with_the_field_named(tmp_path, change, words):
    from orthoscope.config.format import ConfigError

    train_config(tmp_path, EXTEND)
    with pytest.raises(ConfigError, match="holds a run of another config") as err:
        train_config(tmp_path, {**EXTEND, **change})
    assert all(w in str(err.value) for w in words), str(err.value)


def test_a_schedule_whose_length_is_the_steps_is_not_stretched_silently(tmp_path):
    from orthoscope.config.format import ConfigError

    scheduled = {**EXTEND, "steps": 10, "schedule": {"warmup": 2, "decay": "cosine"}}
    train_config(tmp_path, scheduled)
    with pytest.raises(ConfigError, match="would stretch the learning-rate schedule.*schedule.total: 10"):
        train_config(tmp_path, {**scheduled, "steps": 15})
    run, _, _ = train_config(tmp_path, {**scheduled, "steps": 15, "schedule": {**scheduled["schedule"], "total": 10}})
    assert run.step_count == 15


# ---- safe run directory names -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,folder", [("toy poet", "toy-poet"), ("a/b", "a-b"), ("../escaped", "escaped"),
                                         ("/tmp/abs", "tmp-abs"), ("a\\b", "a-b"), ("poet-small", "poet-small")])
def test_a_run_name_with_spaces_or_slashes_gives_a_safe_directory(tmp_path, name, folder):
    from orthoscope.config.rundir import run_directory

    assert run_directory(tmp_path, None, name, "x.yaml") == tmp_path / folder
    assert run_directory(tmp_path, name, None, "x.yaml") == tmp_path / folder      # --name too


def test_the_cli_says_which_directory_it_uses(tmp_path):
    import subprocess

    from orthoscope.config import save_config

    path = save_config({**EXTEND, "steps": 2, "name": "toy poet"}, tmp_path / "c.yaml")
    done = subprocess.run([sys.executable, "-m", "orthoscope", "train", str(path), "--runs", str(tmp_path / "runs"),
                           "--no-progress"], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(HERE.parent)})
    assert done.returncode == 0, done.stderr
    assert f"run directory: {tmp_path / 'runs' / 'toy-poet'}" in done.stdout
    assert (tmp_path / "runs" / "toy-poet" / "config.yaml").is_file()


# ---- config paths are relative to the config file -----------------------------------------------------------------

def token_config(path: str) -> dict:
    return {"seed": 0, "steps": 2, "task": {"name": "TokenFile", "path": path, "n_ctx": 8, "batch_size": 2,
                                            "n_eval": 2},
            "model": {"name": "TinyTransformer", "vocab_size": 64, "n_ctx": 8, "d_model": 8, "n_heads": 2,
                      "d_mlp": 8, "readout": "all"},
            "method": {"name": "AdamW", "lr": 0.01}, "probes": []}


@pytest.fixture
def project(tmp_path):
    """``proj/configs/c.yaml`` naming ``data/tok.bin`` (so ``proj/configs/data/tok.bin``), and an unrelated cwd."""
    from orthoscope.config import save_config
    from orthoscope.tasks.tokenfile import tokenize

    configs = tmp_path / "proj" / "configs"
    (configs / "data").mkdir(parents=True)
    (tmp_path / "text.txt").write_text(" ".join(f"w{i % 40}" for i in range(400)))
    tokenize(tmp_path / "text.txt", configs / "data" / "tok.bin")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return save_config(token_config("data/tok.bin"), configs / "c.yaml"), elsewhere


def test_a_path_in_a_config_file_is_relative_to_the_file_from_any_cwd(project, monkeypatch):
    from orthoscope.config.format import load_config
    from orthoscope.config.rundir import CONFIG
    from orthoscope.config.train import prepare, train

    config, elsewhere = project
    monkeypatch.chdir(elsewhere)
    want = str(config.parent / "data" / "tok.bin")
    assert load_config(config)["task"]["path"] == want
    run, cfg, run_dir = prepare(config, [], elsewhere / "runs", None)
    assert run.task.path == want and cfg["task"]["path"] == want
    train(run, cfg, run_dir, progress=False)
    assert f"path: {want}" in (run_dir / CONFIG).read_text()          # recorded absolute: readable from anywhere
    run, _, _ = prepare("../proj/configs/c.yaml", [], elsewhere / "runs", None)   # a relative config path too
    assert run.task.path == want and run.step_count == 0


def test_a_path_given_as_an_override_is_relative_to_the_working_directory(project, monkeypatch):
    from orthoscope.config.format import load_config
    from orthoscope.config.paths import resolve_path

    config, elsewhere = project
    monkeypatch.chdir(config.parent.parent)                             # proj/: the override names configs/data/…
    assert load_config(config, ["task.path=configs/data/tok.bin"])["task"]["path"] == str(config.parent / "data" /
                                                                                           "tok.bin")
    assert resolve_path("/abs/x", elsewhere) == "/abs/x" and resolve_path(None, elsewhere) is None
    assert resolve_path("w/", elsewhere) == str(elsewhere / "w")        # what model.pretrained calls


def test_a_config_given_as_data_resolves_against_the_working_directory(project, monkeypatch):
    from orthoscope import Run

    config, _ = project
    monkeypatch.chdir(config.parent)
    run = Run.from_config(token_config("data/tok.bin"))                  # no file: the path is the cwd's
    assert run.task.path == "data/tok.bin" and run.task.vocab


# ---- malformed overrides: the clean error, exit status 2 --------------------------------------------------------------

MALFORMED = [
    (["name=toy", "poet"], ["override 'poet' has no '='", "unquoted space", "'name=toy poet'"]),
    (["=5"], ["override '=5' has no key before '='"]),
    (["a.b=[1,"], ["override 'a.b'", "'a' is not a section"]),
    (["steps=[1,"], ["override 'steps=[1,'", "read as YAML"]),
    (["method..lr=1"], ["empty key between dots"]),
]


@pytest.mark.parametrize("overrides,words", MALFORMED, ids=[" ".join(o) for o, _ in MALFORMED])
def test_a_malformed_override_is_a_config_error_naming_it(overrides, words):
    from orthoscope.config.format import ConfigError, apply_overrides

    with pytest.raises(ConfigError) as err:
        apply_overrides(EXTEND, overrides)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_a_malformed_override_on_the_command_line_exits_2_with_one_line(tmp_path):
    import os
    import subprocess

    from orthoscope.config import save_config

    path = save_config(EXTEND, tmp_path / "c.yaml")
    for overrides, words in MALFORMED:
        done = subprocess.run([sys.executable, "-m", "orthoscope", "train", str(path), *overrides, "--runs",
                               str(tmp_path / "runs"), "--no-progress"], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(HERE.parent)})
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert all(w in lines[0] for w in words) and "Traceback" not in done.stderr, lines[0]
    assert not (tmp_path / "runs").exists()                             # nothing written


# ---- a config error is not retried by --max-restarts -----------------------------------------------------------------

def orthoscope_train(*argv, timeout=LAUNCH_TIMEOUT_S):
    import os
    import subprocess

    return subprocess.run([sys.executable, "-m", "orthoscope", "train", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent), "OMP_NUM_THREADS": "1"})


def test_a_config_error_with_max_restarts_fails_once_with_exit_2_and_one_line(tmp_path):
    """The config is checked before torchrun starts: one line naming the key, exit 2, and no torchrun output (its
    agent would log every restart attempt: 'Worker group FAILED. 3/3 attempts left')."""
    from orthoscope.config import save_config

    path = save_config({**EXTEND, "method": {"name": "AdamW", "lrr": 0.01}}, tmp_path / "bad.yaml")
    done = orthoscope_train(path, "--nproc-per-node", 2, "--max-restarts", 3, "--runs", tmp_path / "runs")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {path}:") and "method.lrr: unknown key for AdamW" in lines[0]
    assert "attempts left" not in done.stderr and "torch.distributed" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "runs").exists()
    done = orthoscope_train(path, "--check", "method.lrr=0.1", "--runs", tmp_path / "runs")      # --check alike
    assert done.returncode == 2 and "method.lrr: unknown key" in done.stderr


def test_a_good_config_is_launched_under_torchrun_by_nproc_per_node(tmp_path):
    from orthoscope.config import save_config
    from orthoscope.config.rundir import latest_checkpoint

    path = save_config({**EXTEND, "steps": 3}, tmp_path / "good.yaml")
    done = orthoscope_train(path, "--nproc-per-node", 2, "--max-restarts", 1, "--runs", tmp_path / "runs",
                            "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 3, loss" in done.stdout and latest_checkpoint(tmp_path / "runs" / "extend")[0] == 3
    shards = sorted(p.name for p in (tmp_path / "runs" / "extend" / "checkpoints" / "step-00000003").glob("shard-*"))
    assert len(shards) == 2, shards                                    # written by two ranks


def test_check_config_builds_no_weights_or_falls_back_for_a_model_that_needs_them(tmp_path):
    """A Llama is checked on the meta device; a KAN (its init reads weight values) is built on the CPU instead of
    failing with a meta-tensor traceback; a shape error is still the one-line config error."""
    from orthoscope.config import save_config
    from orthoscope.config.check import check_config
    from orthoscope.config.format import ConfigError

    kan = {"steps": 2, "task": {"name": "Digits"}, "model": {"name": "KAN", "width": [64, 10]},
           "method": {"name": "AdamW"}, "probes": []}
    llama = {"steps": 2, "task": {"name": "TinyLang", "n_ctx": 16, "batch_size": 4, "n_sentences": 100},
             "model": {"name": "Llama", "size": "tiny"}, "method": {"name": "POET", "block": 16}, "probes": []}
    for name, cfg in (("kan", kan), ("llama", llama)):
        check_config(save_config(cfg, tmp_path / f"{name}.yaml"), [], tmp_path / "runs", None)
    with pytest.raises(ConfigError, match="model.vocab_size"):
        check_config(tmp_path / "llama.yaml", ["model.vocab_size=5"], tmp_path / "runs", None)
    assert not (tmp_path / "runs").exists()
