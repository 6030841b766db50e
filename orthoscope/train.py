"""``python -m orthoscope train CONFIG [key.path=value ...]``: run a config into a run directory, resumably.

    python -m orthoscope train poet.yaml method.lr=3e-4 steps=2000 --runs runs --name poet-small

writes ``runs/poet-small/`` (``orthoscope.rundir``): the config, the History streamed line by line, and checkpoints
every ``checkpoint.every`` steps (the newest ``checkpoint.keep`` kept) plus one at the end. Run it again with the
same config and it resumes from the newest checkpoint; a different config in the same directory is refused.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, load_config, normalize, save_config
from .config_run import build_run
from .rundir import CONFIG, HISTORY, HistoryStream, resume, save_checkpoint


def prepare(config_path, overrides, runs: str = "runs", name: str | None = None) -> tuple[object, dict, Path]:
    """The run (built, so every key is checked), its normalized config and its run directory; refuses a
    directory that holds another config. Nothing is written before the config passed every check."""
    from .config import parse_yaml

    cfg = normalize(load_config(config_path, overrides))
    run = build_run(cfg)
    run_dir = Path(runs) / (name or cfg["name"] or Path(config_path).stem)
    saved = run_dir / CONFIG
    if saved.is_file() and parse_yaml(saved.read_text()) != cfg:
        raise ConfigError(f"{str(run_dir)!r} holds a run of another config; resume it with the same config, or pass "
                          "--name for a new run directory")
    save_config(cfg, saved)
    return run, cfg, run_dir


def train(run, cfg: dict, run_dir, progress: bool = True):
    """Resume ``run`` (built from ``cfg``) from ``run_dir`` and train it to ``cfg["steps"]``; returns it."""
    start = resume(run, run_dir)
    remaining = cfg["steps"] - start
    if remaining <= 0:
        return run
    stream = HistoryStream(Path(run_dir) / HISTORY)
    every, keep = cfg["checkpoint"]["every"], cfg["checkpoint"]["keep"]
    unsubscribe = run.on_step(stream)            # the stream first: a checkpoint never runs ahead of the History

    def checkpoint(run, record):
        if every and run.step_count % every == 0 and run.step_count > start:
            save_checkpoint(run, run_dir, keep)

    run.on_step(checkpoint)
    try:
        run.train(remaining, progress=progress)
        save_checkpoint(run, run_dir, keep)
    finally:
        unsubscribe()
        stream.close()
    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m orthoscope train", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a YAML or JSON run config (orthoscope.config)")
    parser.add_argument("overrides", nargs="*", help="key.path=value, e.g. method.lr=3e-4 steps=500")
    parser.add_argument("--runs", default="runs", help="folder of run directories (default: runs)")
    parser.add_argument("--name", default=None, help="run directory name (default: the config's name, else its "
                                                     "file name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_intermixed_args(argv)
    try:
        run, cfg, run_dir = prepare(args.config, args.overrides, args.runs, args.name)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    train(run, cfg, run_dir, progress=not args.no_progress)
    print(f"{run_dir}: step {run.step_count}, loss {run.last_loss}")
    return 0
