"""`orthoscope train` against broken configs (issue 30, part 4): every one is refused with exit status 2 and one line
`error: FILE[:LINE]: …` naming the file and the key (or the line, for a file that is not a config), no traceback, and
the folder of run directories — holding a finished run the broken configs point at — byte-identical afterwards.

Most cases run in-process through the command line's own `main` (fast); a handful run as real subprocesses with a
60 s bound, the alias bomb among them. A finished run re-invoked writes nothing, even on a read-only directory."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orthoscope.__main__ import main as cli_main
from orthoscope.config import ConfigError
from orthoscope.config.yamlfile import MAX_DEPTH, MAX_EXPANDED, load_yaml, where
from orthoscope.core.validate import bounded

ROOT = Path(__file__).resolve().parents[1]

# The finished run every broken config points at (name: done). Line numbers below refer to this text.
GOOD = """\
name: done
seed: 0
steps: 2
task:
  name: ModularArithmetic
  p: 7
  train_frac: 0.5
  batch_size: 8
model:
  name: MLP
  vocab_size: 7
  n_tokens: 2
  d_embed: 4
  hidden: [8]
  d_out: 7
method:
  name: AdamW
  lr: 0.01
probes: []
checkpoint: {every: null, keep: 1}
"""


def line_of(text: str, key: str) -> int:
    """The 1-based line where ``key:`` is first written in ``text``."""
    return next(i + 1 for i, line in enumerate(text.splitlines()) if line.strip().startswith(f"{key}:"))


def edit(key: str, new: str) -> str:
    """GOOD with the first line of ``key`` replaced by ``new`` (one or more lines)."""
    lines = GOOD.splitlines()
    return "\n".join(new if i + 1 == line_of(GOOD, key) else line for i, line in enumerate(lines)) + "\n"


def section(key: str, new: str) -> str:
    """GOOD with the top-level section ``key`` (its line and the indented lines under it) replaced by ``new``."""
    lines, start = GOOD.splitlines(), line_of(GOOD, key) - 1
    end = next(i for i in range(start + 1, len(lines) + 1) if i == len(lines) or not lines[i].startswith(" "))
    return "\n".join([*lines[:start], new, *lines[end:]]) + "\n"


BOMB = "".join(f"{c}: &{c} [" + ", ".join([f"*{p}"] * 9 if p else ['"lol"'] * 9) + "]\n"
               for p, c in zip([None, *"abcdefgh"], "abcdefghi"))          # 9 levels of 9 aliases: 9⁹ strings
MERGE_BOMB = ("a: &a {" + ", ".join(f"k{i}: 1" for i in range(10)) + "}\n"
              + "".join(f"m{j}: &m{j} {{<<: [{', '.join([f'*m{j - 1}' if j else '*a'] * 10)}]}}\n" for j in range(8)))
DEEP_ALIASES = "".join(f"l{i}: &l{i} " + "[" * 30 + (f"*l{i - 1}" if i else "1") + "]" * 30 + "\n" for i in range(4))
LLAMA = "model: {name: Llama, size: tiny, config: 5}"

# (id, file content (str or bytes; None: no file), extra arguments, words the one line must hold).
# "{line:KEY}" in a word stands for "FILE:<line of KEY in GOOD>:".
CASES = [
    # -- the file itself --
    ("alias-bomb", BOMB, [], ["alias bomb", f"{MAX_EXPANDED:,}"]),
    ("merge-bomb", MERGE_BOMB, [], ["alias bomb"]),
    ("recursive-alias", "a: &a [1, *a]\n", [], [":1:", "recursive alias"]),
    ("duplicate-top-key", GOOD + "seed: 1\n", [], [":21:", "duplicate key 'seed'", "first at line 2"]),
    ("duplicate-nested-key", edit("lr", "  lr: 0.01\n  lr: 0.1"), [], [":19:", "duplicate key 'lr' in method"]),
    ("flow-not-closed", edit("hidden", "  hidden: [8"), [], [":15:", "expected ',' or ']'"]),
    ("tab-indent", edit("lr", "\tlr: 0.01"), [], [":18:", "tab character"]),
    ("binary", bytes(range(256)) * 4, [], [":2:", "not UTF-8", "0x80"]),
    ("nul-byte", GOOD.replace("seed: 0", "seed: 0\x00"), [], [":2:", "control character (U+0000)"]),
    ("utf16", GOOD.encode("utf-16"), [], ["not UTF-8", "0xff"]),
    ("latin1-comment", (GOOD + "# caf\xe9\n").encode("latin-1"), [], [":21:", "not UTF-8"]),
    ("deep-nesting", "a: " + "[" * 200 + "]" * 200 + "\n", [], [":1:", f"deeper than {MAX_DEPTH}"]),
    ("deep-through-aliases", DEEP_ALIASES, [], [f"deeper than {MAX_DEPTH} levels once aliases"]),
    ("huge-int", edit("seed", "seed: 1180591620717411303424"), [], ["{line:seed}", "seed:", "64 bits"]),
    ("5000-digit-int", edit("seed", "seed: " + "9" * 5000), [], ["{line:seed}", "seed:", "5000 digits"]),
    ("seed-2**70", edit("seed", "seed: 2**70"), [], ["{line:seed}", "seed must be an integer", "'2**70'"]),
    ("empty-file", "", [], ["the config is empty"]),
    ("only-comments", "# nothing here\n", [], ["the config is empty"]),
    ("top-level-list", "- seed\n- steps\n", [], ["a config must be a mapping", "list"]),
    ("top-level-scalar", "just words\n", [], ["a config must be a mapping", "str"]),
    ("missing-file", None, [], ["no such config file"]),
    ("python-tag", edit("seed", "seed: !!python/object/apply:os.system [echo]"), [], ["{line:seed}", "plain data"]),
    ("unknown-tag", edit("seed", "seed: !pickle 3"), [], ["{line:seed}", "could not determine a constructor"]),
    ("two-documents", GOOD + "---\nseed: 1\n", [], [":21:", "single document"]),
    ("unclosed-quote", edit("name", 'name: "done'), [], ["found unexpected end of stream"]),
    ("mapping-in-scalar", edit("steps", "steps: 2: 3"), [], ["{line:steps}", "mapping values are not allowed"]),
    ("unhashable-key", GOOD + "? [a, b]\n: 1\n", [], [":21:", "unhashable key"]),
    ("too-large", "# " + "x" * (5 << 20) + "\n", [], ["larger than 4 MiB"]),
    ("expands-too-far", edit("name", "name: " + "x" * (MAX_EXPANDED + 10)), [], ["{line:name}", "expands"]),
    # -- the top level --
    ("unknown-top-key", GOOD + "stepz: 3\n", [], [":21:", "stepz: unknown top-level key", "valid keys"]),
    ("no-model", GOOD.replace("model:", "modell:"), [], [":9:", "modell: unknown top-level key"]),
    ("seed-negative", edit("seed", "seed: -1"), [], ["{line:seed}", "seed must be an integer >= 0"]),
    ("steps-zero", edit("steps", "steps: 0"), [], ["{line:steps}", "steps must be an integer > 0"]),
    ("steps-float", edit("steps", "steps: 1.5"), [], ["{line:steps}", "steps must be an integer"]),
    ("grad-accum-bool", GOOD + "grad_accum: true\n", [], [":21:", "grad_accum must be an integer"]),
    ("device-gpu", GOOD + "device: gpu\n", [], [":21:", "device: 'gpu' is not a device"]),
    ("device-absent", GOOD + "device: cuda:99\n", [], [":21:", "device: 'cuda:99' is not available"]),
    ("device-list", GOOD + "device: [cpu]\n", [], [":21:", "device must be a string"]),
    ("loss-list", GOOD + "loss: [a, b]\n", [], [":21:", "loss: unknown ['a', 'b']"]),
    ("loss-unknown", GOOD + "loss: l3\n", [], [":21:", "loss: unknown 'l3'", "cross_entropy"]),
    ("another-config", edit("seed", "seed: 5"), [], ["holds a run of another config", "seed differs"]),
    # -- the run directory's name --
    ("name-dotdot", edit("name", "name: '..'"), [], ["{line:name}", "is '.' or '..'"]),
    ("name-nul", edit("name", 'name: "a\\0b"'), [], ["{line:name}", "control character"]),
    ("name-newline", edit("name", 'name: "a\\nb"'), [], ["{line:name}", "control character"]),
    ("name-too-long", edit("name", "name: " + "n" * 300), [], ["{line:name}", "longer than 255 bytes"]),
    ("name-number", edit("name", "name: 123"), [], ["{line:name}", "name must be a string"]),
    ("cli-name-dotdot", GOOD, ["--name", ".."], ["--name '..'", "is '.' or '..'"]),
    ("cli-name-empty", GOOD, ["--name", ""], ["--name ''", "is empty"]),
    ("cli-name-nothing-safe", GOOD, ["--name", "/ /"], ["--name '/ /'", "no letter or digit"]),
    # names with spaces or separators become safe folder names: tests/test_elastic.py
    # -- sections --
    ("task-unknown", GOOD.replace("ModularArithmetic", "Nope"), [], [":5:", "task.name: unknown 'Nope'"]),
    ("task-name-list", GOOD.replace("ModularArithmetic", "[x]"), [], [":5:", "task.name: unknown ['x']"]),
    ("task-p-word", edit("p", "  p: eleven"), [], ["{line:p}", "task.p must be an integer"]),
    ("task-p-one", edit("p", "  p: 1"), [], ["{line:task}", "task (ModularArithmetic): p must be an integer ≥ 2"]),
    ("task-list", section("task", "task: [a]"), [], ["{line:task}", "task must be a mapping"]),
    ("task-device", section("task", "task:\n  name: TokenTask\n  device: gpu\n  task: {name: ModularArithmetic, p: 7}"),
     [], ["{line:device}", "task.device: 'gpu' is not a device"]),
    ("model-unknown", GOOD.replace("name: MLP", "name: Nope"), [], [":10:", "model.name: unknown 'Nope'"]),
    ("model-hidden", edit("hidden", "  hidden: 7"), [], ["{line:hidden}", "model.hidden must be a list"]),
    ("model-init-seed", edit("model", "model:\n  init_seed: -3"), [], ["{line:init_seed}", "model.init_seed"]),
    ("model-llama-config", section("model", LLAMA), [], ["{line:model}", "model.config must be a mapping"]),
    # -- the model against the task --
    ("shape-outputs", edit("d_out", "  d_out: 5"), [], ["{line:d_out}", "model.d_out", "5", "7 (task.p)"]),
    ("shape-vocab", edit("vocab_size", "  vocab_size: 5"), [], ["{line:vocab_size}", "model.vocab_size", "5",
                                                                  "7 (task.p)"]),
    ("shape-n-tokens", edit("n_tokens", "  n_tokens: 3"), [], ["{line:n_tokens}", "model.n_tokens", "3", "gives 2"]),
    ("shape-vector-model", edit("vocab_size", "  d_in: 2").replace("  n_tokens: 2\n", ""), [],
     ["{line:model}", "token ids", "model.d_in"]),
    ("shape-kan", section("model", "model: {name: KAN, width: [2, 7]}"), [],
     ["{line:model}", "model KAN does not fit", "model.width[0]"]),
    ("shape-context", section("model", "model: {name: TinyTransformer, vocab_size: 7, n_ctx: 1, d_model: 8, "
                                       "n_heads: 2, d_mlp: 8}"), [],
     ["{line:model}", "model.n_ctx", "context is 1"]),
    ("shape-readout", section("model", "model: {name: TinyTransformer, vocab_size: 7, n_ctx: 2, d_model: 8, "
                                       "n_heads: 2, d_mlp: 8, readout: all}"), [],
     ["{line:model}", "model.readout", "set model.readout: last"]),
    # -- the method, schedule, probes, checkpoints --
    ("method-unknown", GOOD.replace("AdamW", "Adamm"), [], [":17:", "method.name: unknown 'Adamm'"]),
    ("method-lr-word", edit("lr", "  lr: fast"), [], ["{line:lr}", "method.lr must be a number", "'fast'"]),
    ("method-lr-negative", edit("lr", "  lr: -1"), [], ["{line:method}", "method (AdamW)", "lr"]),
    ("method-lr-nan", edit("lr", "  lr: .nan"), [], ["{line:method}", "finite"]),
    ("method-unknown-key", edit("lr", "  lrr: 1"), [], ["{line:lrr}", "method.lrr: unknown key for AdamW"]),
    ("method-betas", edit("lr", "  betas: [a, b]"), [], ["{line:method}", "method (AdamW)"]),
    ("method-list", section("method", "method: [AdamW]"), [], ["{line:method}", "method must be a mapping"]),
    ("schedule-decay-list", GOOD + "schedule: {decay: [cosine]}\n", [], [":21:", "schedule.decay must be one of"]),
    ("schedule-warmup", GOOD + "schedule: {warmup: -1}\n", [], [":21:", "schedule.warmup must be an integer"]),
    ("schedule-number", GOOD + "schedule: 5\n", [], [":21:", "schedule must be null or a mapping"]),
    ("probes-number", edit("probes", "probes: 7"), [], ["{line:probes}", "probes must be 'default'"]),
    ("probes-every", edit("probes", "probes: [{name: Spectrum, every: 0}]"), [], ["{line:probes}", "probes[0]"]),
    ("probes-preset", edit("probes", "probes: {preset: nope}"), [], ["{line:probes}", "probes.preset"]),
    ("checkpoint-every", edit("checkpoint", "checkpoint: {every: 0, keep: 1}"), [],
     ["{line:checkpoint}", "checkpoint.every must be a positive integer"]),
    ("checkpoint-extra", edit("checkpoint", "checkpoint: {every: 1, keep: 1, foo: 2}"), [],
     ["{line:checkpoint}", "checkpoint must be a mapping"]),
    # -- overrides --
    ("override-yaml", GOOD, ["method.lr=["], ["override 'method.lr=['", "expected the node content"]),
    ("override-no-equals", GOOD, ["method.lr"], ["override 'method.lr' must look like key.path=value"]),
    ("override-not-section", GOOD, ["task.p.x=1"], ["'task.p' is not a section"]),
    ("override-type", GOOD, ["steps=many"], ["(override 'steps=many')", "steps must be an integer"]),
    ("override-shape", GOOD, ["model.d_out=9"], ["(override 'model.d_out=9')", "model.d_out", "9", "7 (task.p)"]),
    ("override-bomb-value", GOOD, ["method.lr=" + BOMB.replace("\n", ", ").join("{}")], ["override", "alias bomb"]),
]
SUBPROCESS = ["alias-bomb", "binary", "deep-nesting", "huge-int", "tab-indent", "cli-name-dotdot", "missing-file"]


def snapshot(folder: Path) -> dict:
    """Every file's and folder's bytes hash and mtime (ns) under ``folder``: equal snapshots mean nothing was written."""
    out = {}
    for path in sorted(folder.rglob("*")):
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(folder))] = (digest, stat.st_mtime_ns)
    out["."] = ("dir", folder.stat().st_mtime_ns)
    return out


def run_cli(*argv) -> tuple[int, str, str]:
    """``python -m orthoscope train ARGV…`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(["train", *map(str, argv)])
        except SystemExit as e:                      # argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder of run directories holding one finished run (``done``), made by a tiny real run."""
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "done.yaml"
    config.write_text(GOOD)
    code, out, err = run_cli(config, "--runs", folder / "runs", "--no-progress")
    assert code == 0, err
    assert (folder / "runs" / "done" / "checkpoints" / "latest").read_text() == "step-00000002\n"
    return folder / "runs"


def write_case(folder: Path, case_id: str, content) -> Path:
    path = folder / f"{case_id}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    return path


def expected(words, path: Path, content) -> list[str]:
    """The words, with ``{line:KEY}`` made ``PATH:<line of KEY in the case's file>:``, ``:N:`` made ``PATH:N:``."""
    out = []
    for word in words:
        if word.startswith("{line:"):
            word = f":{line_of(content, word[6:-1])}:"
        out.append(f"{path}{word}" if word.startswith(":") else word)
    return out


def check_refusal(code, out, err, path, words, content):
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err                                  # exactly one line
    assert lines[0].startswith(f"error: {path}"), lines[0]      # naming the file
    assert "Traceback" not in err and out == "", (out, err)
    for word in expected(words, path, content):
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("case_id, content, extra, words", CASES, ids=[c[0] for c in CASES])
def test_a_broken_config_is_refused_in_one_line_and_writes_nothing(runs, tmp_path, case_id, content, extra, words):
    path = write_case(tmp_path, case_id, content)
    before = snapshot(runs)
    start = time.monotonic()
    code, out, err = run_cli(path, *extra, "--runs", runs, "--no-progress")
    assert time.monotonic() - start < 60
    check_refusal(code, out, err, path, words, content)
    assert snapshot(runs) == before


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_a_broken_config_as_a_real_command(runs, tmp_path, case_id):
    _, content, extra, words = next(c for c in CASES if c[0] == case_id)
    path = write_case(tmp_path, case_id, content)
    before = snapshot(runs)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "orthoscope", "train", str(path), *extra, "--runs", str(runs),
                          "--no-progress"], env=env, capture_output=True, text=True, timeout=60)
    check_refusal(out.returncode, out.stdout, out.stderr, path, words, content)
    assert snapshot(runs) == before


def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


# ---- a finished run re-invoked writes nothing ------------------------------------------------------------------------

def test_a_finished_run_re_invoked_writes_nothing(runs, tmp_path):
    config = tmp_path / "done.yaml"
    config.write_text(GOOD)
    before = snapshot(runs)
    code, out, err = run_cli(config, "--runs", runs, "--no-progress")
    assert code == 0, err
    assert out.splitlines() == [f"run directory: {runs / 'done'}", f"{runs / 'done'}: step 2, loss " + out.split(
        "loss ")[-1].strip()] and snapshot(runs) == before


READ_ONLY_MOUNT = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && ! test -w "$1/done"'


def test_a_finished_run_re_invoked_on_a_read_only_directory(runs, tmp_path):
    """chmod -R a-w on the folder of runs; as root, where permissions do not bind, a read-only bind mount of it in a
    private mount namespace (``unshare --mount``) instead. Either way the command runs on a directory it cannot
    write, and must finish (the run is done) without writing."""
    import shutil

    config = tmp_path / "done.yaml"
    config.write_text(GOOD)
    before = snapshot(runs)
    cmd = [sys.executable, "-m", "orthoscope", "train", str(config), "--runs", str(runs), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    modes = {p: p.stat().st_mode for p in [runs, *runs.rglob("*")]}
    try:
        for p in modes:
            os.chmod(p, modes[p] & ~0o222)
        if not os.access(runs / "done", os.W_OK):           # the permissions bind: not root
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        else:
            unshare = shutil.which("unshare")
            probe = unshare and subprocess.run([unshare, "--mount", "sh", "-c", READ_ONLY_MOUNT, "sh", str(runs)],
                                               capture_output=True, timeout=60)
            if not probe or probe.returncode != 0:
                pytest.skip("root, and no read-only bind mount (unshare --mount) here: see "
                            "test_a_finished_run_re_invoked_writes_nothing for the byte and mtime check")
            out = subprocess.run([unshare, "--mount", "sh", "-c", READ_ONLY_MOUNT + ' && shift && exec "$@"', "sh",
                                  str(runs), *cmd], env=env, capture_output=True, text=True, timeout=120)
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)
    assert out.returncode == 0, out.stderr
    assert "step 2" in out.stdout and snapshot(runs) == before


# ---- the loader and the bounded messages -------------------------------------------------------------------------

def test_the_alias_bomb_is_refused_before_anything_is_expanded():
    start = time.monotonic()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_yaml(BOMB, "bomb.yaml")
    assert time.monotonic() - start < 5      # generous: the refusal counts 90 nodes, it takes about a millisecond
    assert len(BOMB.encode()) < 600


def test_aliases_and_merge_keys_within_bounds_still_work():
    data, lines = load_yaml("base: &b {lr: 0.1, eps: 2}\nm:\n  <<: *b\n  lr: 3e-4\nlist: [*b, *b]\n", "ok.yaml")
    assert data["m"] == {"lr": 3e-4, "eps": 2} and data["list"] == [data["base"]] * 2
    assert lines["m.lr"] == 4 and lines["list"] == 5


def test_bounded_renders_a_prefix_whatever_the_value():
    import yaml

    shared = yaml.load(BOMB, Loader=yaml.SafeLoader)        # 9⁹ strings sharing one list: repr would never end
    start = time.monotonic()
    text = bounded(shared)
    assert len(text) <= 60 and text.startswith("{'a': ['lol'")
    assert len(bounded("x" * 10 ** 7, 20)) <= 20
    assert bounded(10 ** 5000) == "<an integer of 16610 bits>"
    assert bounded([1, "a", None]) == "[1, 'a', None]"
    assert time.monotonic() - start < 5


def test_where_points_at_the_line_or_the_override():
    lines = {"method": 3, "method.lr": 4}
    assert where("method.lr must be a number", "c.yaml", lines) == "c.yaml:4: method.lr must be a number"
    assert where("method (AdamW): lr must be ≥ 0", "c.yaml", lines).startswith("c.yaml:3: ")
    assert where("method.eps must be", "c.yaml", lines).startswith("c.yaml:3: ")   # nearest key written in the file
    assert where("seed must be", "c.yaml", lines) == "c.yaml: seed must be"
    assert where("method.lr must\nbe", "c.yaml", lines, {"method.lr": "method.lr=x"}) == \
        "c.yaml (override 'method.lr=x'): method.lr must be"


# ---- the model against the task, beyond ModularArithmetic ------------------------------------------------------------

TINYLANG = {"name": "TinyLang", "n_ctx": 8, "n_sentences": 200, "n_eval": 4, "batch_size": 4}
SYNTHETIC = {"name": "SyntheticTokens", "vocab_size": 50, "n_ctx": 8, "batch_size": 2, "n_eval": 2}
TRANSFORMER = {"name": "TinyTransformer", "vocab_size": 60, "n_ctx": 8, "d_model": 8, "n_heads": 2, "d_mlp": 8}


@pytest.mark.parametrize("task, model", [
    ({"name": "Digits", "n_train": 100}, {"name": "MLP", "d_in": 64, "hidden": [8], "d_out": 10}),
    ({"name": "Digits", "n_train": 100}, {"name": "KAN", "width": [64, 10]}),
    (TINYLANG, {**TRANSFORMER, "readout": "all"}),
    (SYNTHETIC, {"name": "Llama", "size": "tiny"}),                       # vocabulary from the task
    (SYNTHETIC, {"name": "Llama", "size": "tiny", "vocab_size": 64}),     # padded: every id fits, outputs ≥ vocab
    ({"name": "ModularArithmetic", "p": 7, "equals_token": True},
     {"name": "TinyTransformer", "vocab_size": 8, "n_ctx": 3, "d_model": 8, "n_heads": 2, "d_mlp": 8, "n_out": 7}),
], ids=["digits-mlp", "digits-kan", "tinylang-transformer", "tokens-llama", "tokens-llama-padded", "equals-token"])
def test_models_that_fit_their_task_are_accepted_and_step(task, model):
    from orthoscope.config import build_run

    run = build_run({"seed": 0, "task": task, "model": model, "method": {"name": "AdamW"}, "probes": []})
    run.train(1, progress=False)


@pytest.mark.parametrize("task, model, words", [
    (TINYLANG, {**TRANSFORMER, "readout": "last"}, ["model.readout", "next token at each position",
                                                    "set model.readout: all"]),
    (TINYLANG, {**TRANSFORMER, "vocab_size": 30, "readout": "all"}, ["model.vocab_size", "30", "60",
                                                                     "the TinyLang vocabulary"]),
    (TINYLANG, {**TRANSFORMER, "n_ctx": 4, "readout": "all"}, ["model.n_ctx", "context is 4", "8 (task.n_ctx)"]),
    (TINYLANG, {"name": "MLP", "vocab_size": 60, "n_tokens": 8, "d_out": 60}, ["model MLP", "one per example",
                                                                              "TinyTransformer (readout: all)"]),
    (SYNTHETIC, {"name": "Llama", "size": "tiny", "vocab_size": 40}, ["model.vocab_size", "40",
                                                                      "50 (task.vocab_size)"]),
    (SYNTHETIC, {"name": "Llama", "config": {"vocab_size": 40, "hidden_size": 16, "intermediate_size": 32,
                                             "num_hidden_layers": 1, "num_attention_heads": 2}},
     ["model.config.vocab_size", "40"]),
    ({"name": "Digits", "n_train": 100}, {"name": "KAN", "width": [64, 9]}, ["model.width[1]", "9", "10 (digits)"]),
    ({"name": "Digits", "n_train": 100}, {**TRANSFORMER, "vocab_size": 16}, ["vector of numbers", "64 (8×8 pixels)"]),
])
def test_models_that_do_not_fit_are_named_with_both_numbers(task, model, words):
    from orthoscope.config import build_run

    with pytest.raises(ConfigError) as err:
        build_run({"seed": 0, "task": task, "model": model, "method": {"name": "AdamW"}, "probes": []})
    for word in words:
        assert word in str(err.value), (word, str(err.value))
