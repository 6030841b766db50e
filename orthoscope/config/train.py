"""``python -m orthoscope train CONFIG [key.path=value ...]``: run a config into a run directory, resumably.

    python -m orthoscope train poet.yaml method.lr=3e-4 steps=2000 --runs runs --name poet-small

writes ``runs/poet-small/`` (``orthoscope.config.rundir``): the config, the History streamed line by line, and
checkpoints every ``checkpoint.every`` steps (the newest ``checkpoint.keep`` kept) plus one at the end. Run it again
with the same config and it resumes from the newest complete checkpoint (a finished run: nothing is written); a
different config in the same directory is refused, unless it only extends the run: more ``steps``, another
checkpoint or probe cadence (``orthoscope.config.rundir.extension_problem``) — then the run goes on from its last
checkpoint, its History continues and the directory's config becomes the new one.

A config that cannot run is refused before anything is written, with exit status 2 and one line
``error: FILE:LINE: what is wrong`` (``orthoscope.config.yamlfile``; docs/scale.md lists what is refused).

The same command runs unchanged under torchrun (DDP by default, ``ORTHOSCOPE_DISTRIBUTED=fsdp`` for FSDP2)::

    torchrun --nproc_per_node 2 --max-restarts 1 -m orthoscope train poet.yaml

rank 0 writes the config, the History and the progress bar; every rank writes its shards of each checkpoint. A
rank killed mid-run makes torchrun restart all of them (``--max-restarts``), and the restarted run resumes from the
last checkpoint every rank finished. torchrun retries a config error too (its agent cannot tell one from a lost
rank): ``orthoscope train CONFIG --nproc-per-node 2 --max-restarts 1`` checks the config in this process first and
only then starts torchrun on this machine (``orthoscope.config.launch``); ``--check`` checks and starts nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .build import build_run
from ..core.checkpoint import CheckpointError
from .check import directory_problem, read_checked
from .format import ConfigError, save_config
from .rundir import CONFIG, HISTORY, HistoryStream, resume, save_checkpoint
from .yamlfile import read_config


def prepare(config_path, overrides, runs: str = "runs", name: str | None = None,
            say=None) -> tuple[object, dict, Path]:
    """The run (built, so every key is checked), its normalized config and its run directory; refuses a
    directory that holds another config — one that differs only in ``steps`` or the checkpoint and probe cadences
    *extends* the run instead (``rundir.extension_problem``; the directory's config is updated). Nothing is written
    before the config passed every check, and nothing at all when the directory already holds this config (a
    finished run re-invoked on a read-only disk).

    Every refusal is a one-line ``ConfigError`` naming the file and, where the key came from the file, its line
    (``orthoscope.config.yamlfile.where``). Under torchrun every rank builds the run (which joins the process group)
    and reads the saved config; rank 0 alone writes it, after every rank has read it. ``say(line)``, when given, is
    told what an extension changes (the CLI prints it on rank 0)."""
    cfg, run_dir, located = read_checked(config_path, overrides, runs, name)
    with located():
        run = build_run(cfg)
    saved = run_dir / CONFIG
    before = read_config(saved)[0] if saved.is_file() else None
    problem = directory_problem(config_path, run_dir, before, cfg)
    if run.dist is not None:
        run.dist.barrier()                             # every rank has read the file before rank 0 writes it
    if problem:
        raise ConfigError(problem)
    if before != cfg and (run.dist is None or run.dist.is_main):
        save_config(cfg, saved)                        # a new run, or the extended run's config
    if before is not None and before != cfg and say is not None:
        say(f"{run_dir}: continuing the run with {_changes(before, cfg)}")
    return run, cfg, run_dir


def _changes(before: dict, cfg: dict) -> str:
    """``steps 40 → 60, checkpoint.every 10 → 20``: the top-level and checkpoint keys an extension changed (probe
    cadences are summed up in one word)."""
    words = [f"steps {before['steps']} → {cfg['steps']}"] if before["steps"] != cfg["steps"] else []
    words += [f"checkpoint.{k} {before['checkpoint'].get(k)} → {cfg['checkpoint'].get(k)}" for k in ("every", "keep")
              if before["checkpoint"].get(k) != cfg["checkpoint"].get(k)]
    words += ["new probe cadences"] if before["probes"] != cfg["probes"] else []
    return ", ".join(words) or "an equivalent config"


def train(run, cfg: dict, run_dir, progress: bool = True):
    """Resume ``run`` (built from ``cfg``) from ``run_dir`` and train it to ``cfg["steps"]``; returns it.

    Under torchrun every rank calls this: checkpoints are collective (each rank writes its shards), while the
    History stream and the progress bar are rank 0's (``Run`` calls ``on_step`` callbacks on rank 0 only)."""
    start = resume(run, run_dir)
    remaining = cfg["steps"] - start
    if remaining <= 0:
        return run
    every, keep = cfg["checkpoint"]["every"], cfg["checkpoint"]["keep"]
    main = run.dist is None or run.dist.is_main
    stream = HistoryStream(Path(run_dir) / HISTORY) if main else None
    # the stream subscribes first and runs inside the step, before the checkpoint that follows it: a checkpoint
    # never runs ahead of the History
    unsubscribe = run.on_step(stream) if main else (lambda: None)
    try:
        run.train(remaining, progress=progress, checkpoint_every=every,
                  checkpoint_path=lambda run: save_checkpoint(run, run_dir, keep))
        if not every or run.step_count % every:        # the final step, unless it was just saved
            save_checkpoint(run, run_dir, keep)
    finally:
        unsubscribe()
        if stream is not None:
            stream.close()
    return run


MESSAGE_CHARS = 2000


def bounded_line(message: str) -> str:
    """``message`` on one line and at most ``MESSAGE_CHARS`` long: a value a method or task formatted in full (the
    config's own messages are bounded already) can never flood the terminal."""
    line = " ".join(message.split())
    return line if len(line) <= MESSAGE_CHARS else line[:MESSAGE_CHARS - 1] + "…"


def _say(line: str) -> None:
    """Print ``line`` once (rank 0 under torchrun)."""
    import os

    if os.environ.get("RANK", "0") == "0":
        print(line, flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m orthoscope train", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a YAML or JSON run config (orthoscope.config)")
    parser.add_argument("overrides", nargs="*", help="key.path=value, e.g. method.lr=3e-4 steps=500")
    parser.add_argument("--runs", default="runs", help="folder of run directories (default: runs)")
    parser.add_argument("--name", default=None, help="run directory name (default: the config's name, else its "
                                                     "file name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--check", action="store_true", help="check the config and the run directory, start "
                        "nothing (exit 0, or 2 with the error)")
    parser.add_argument("--nproc-per-node", type=int, default=None, help="start torchrun with N ranks on this "
                        "machine, after checking the config here (a config error is never retried)")
    parser.add_argument("--max-restarts", type=int, default=0, help="with --nproc-per-node: torchrun's restarts "
                        "after a rank fails (the run resumes from its last checkpoint)")
    args = parser.parse_intermixed_args(argv)
    if args.nproc_per_node is not None and args.nproc_per_node < 1 or args.max_restarts < 0:
        parser.error("--nproc-per-node must be ≥ 1 and --max-restarts ≥ 0")
    if args.check or args.nproc_per_node is not None:
        from .check import check_config
        from .launch import launch
        try:
            if args.check:
                check_config(args.config, args.overrides, args.runs, args.name)
                print(f"{args.config}: ok")
                return 0
            return launch(args)
        except (ConfigError, CheckpointError) as e:
            print(f"error: {bounded_line(str(e))}", file=sys.stderr)
            return 2
    try:
        run, cfg, run_dir = prepare(args.config, args.overrides, args.runs, args.name, say=_say)
        _say(f"run directory: {run_dir}")
        train(run, cfg, run_dir, progress=not args.no_progress)
    except (ConfigError, CheckpointError) as e:         # a damaged checkpoint is named like a bad config: one line
        print(f"error: {bounded_line(str(e))}", file=sys.stderr)
        return 2
    if run.dist is None or run.dist.is_main:
        print(f"{run_dir}: step {run.step_count}, loss {run.last_loss}")
    if run.dist is not None:
        from ..distributed.seam import teardown
        teardown(0)                                     # every file is written (atomic, fsynced): no finalization
    return 0
