"""``python -m orthoscope train CONFIG [key.path=value ...]``: run a config into a run directory, resumably.

    python -m orthoscope train poet.yaml method.lr=3e-4 steps=2000 --runs runs --name poet-small

writes ``runs/poet-small/`` (``orthoscope.config.rundir``): the config, the History streamed line by line, and
checkpoints every ``checkpoint.every`` steps (the newest ``checkpoint.keep`` kept) plus one at the end. Run it again
with the same config and it resumes from the newest complete checkpoint (a finished run: nothing is written); a
different config in the same directory is refused.

A config that cannot run is refused before anything is written, with exit status 2 and one line
``error: FILE:LINE: what is wrong`` (``orthoscope.config.yamlfile``; docs/scale.md lists what is refused).

The same command runs unchanged under torchrun (DDP by default, ``ORTHOSCOPE_DISTRIBUTED=fsdp`` for FSDP2)::

    torchrun --nproc_per_node 2 --max-restarts 1 -m orthoscope train poet.yaml

rank 0 writes the config, the History and the progress bar; every rank writes its shards of each checkpoint. A
rank killed mid-run makes torchrun restart all of them (``--max-restarts``), and the restarted run resumes from the
last checkpoint every rank finished.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .build import build_run
from ..core.checkpoint import CheckpointError
from .format import ConfigError, apply_overrides, bounded, normalize, save_config
from .rundir import CONFIG, HISTORY, HistoryStream, resume, run_directory, save_checkpoint
from .specs import resolve_pretrained
from .yamlfile import read_config, shown_path, where


def prepare(config_path, overrides, runs: str = "runs", name: str | None = None) -> tuple[object, dict, Path]:
    """The run (built, so every key is checked), its normalized config and its run directory; refuses a
    directory that holds another config. Nothing is written before the config passed every check, and nothing at
    all when the directory already holds this config (a finished run re-invoked on a read-only disk).

    Every refusal is a one-line ``ConfigError`` naming the file and, where the key came from the file, its line
    (``orthoscope.config.yamlfile.where``). Under torchrun every rank builds the run (which joins the process group)
    and reads the saved config; rank 0 alone writes it, after every rank has read it."""
    source = shown_path(config_path)
    data, lines = read_config(config_path)
    data = resolve_pretrained(data, config_path)          # model.pretrained relative to the config file
    overridden = {item.split("=", 1)[0].strip(): item for item in overrides if "=" in item}
    try:
        cfg = normalize(apply_overrides(data, overrides))
        run_dir = run_directory(runs, name, cfg["name"], config_path)
        run = build_run(cfg)
    except ConfigError as e:
        raise ConfigError(where(str(e), source, lines, overridden)) from None
    saved = run_dir / CONFIG
    exists = saved.is_file()
    other = exists and read_config(saved)[0] != cfg
    if run.dist is not None:
        run.dist.barrier()                             # every rank has read the file before rank 0 writes it
    if other:
        raise ConfigError(f"{source}: {bounded(str(run_dir))} holds a run of another config; resume it with the same "
                          "config, or pass --name for a new run directory")
    if not exists and (run.dist is None or run.dist.is_main):
        save_config(cfg, saved)
    return run, cfg, run_dir


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
        train(run, cfg, run_dir, progress=not args.no_progress)
    except (ConfigError, CheckpointError) as e:         # a damaged checkpoint is named like a bad config: one line
        print(f"error: {bounded_line(str(e))}", file=sys.stderr)
        return 2
    if run.dist is None or run.dist.is_main:
        print(f"{run_dir}: step {run.step_count}, loss {run.last_loss}")
    if run.dist is not None:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return 0
