"""``python -m orthoscope train CONFIG [key.path=value ...]``: run a config into a run directory, resumably.

    python -m orthoscope train poet.yaml method.lr=3e-4 steps=2000 --runs runs --name poet-small

writes ``runs/poet-small/`` (``orthoscope.config.rundir``): the config, the History streamed line by line, and
checkpoints every ``checkpoint.every`` steps (the newest ``checkpoint.keep`` kept) plus one at the end. Run it again with the
same config and it resumes from the newest complete checkpoint; a different config in the same directory is refused.

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

from .format import ConfigError, load_config, normalize, save_config
from .build import build_run
from .rundir import CONFIG, HISTORY, HistoryStream, resume, save_checkpoint


def prepare(config_path, overrides, runs: str = "runs", name: str | None = None) -> tuple[object, dict, Path]:
    """The run (built, so every key is checked), its normalized config and its run directory; refuses a
    directory that holds another config. Nothing is written before the config passed every check.

    Under torchrun every rank builds the run (which joins the process group) and reads the saved config; rank 0
    alone writes it, after every rank has read it."""
    from .format import parse_yaml

    cfg = normalize(load_config(config_path, overrides))
    run = build_run(cfg)
    run_dir = Path(runs) / (name or cfg["name"] or Path(config_path).stem)
    saved = run_dir / CONFIG
    other = saved.is_file() and parse_yaml(saved.read_text()) != cfg
    if run.dist is not None:
        run.dist.barrier()                             # every rank has read the file before rank 0 rewrites it
    if other:
        raise ConfigError(f"{str(run_dir)!r} holds a run of another config; resume it with the same config, or pass "
                          "--name for a new run directory")
    if run.dist is None or run.dist.is_main:
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
    if run.dist is None or run.dist.is_main:
        print(f"{run_dir}: step {run.step_count}, loss {run.last_loss}")
    if run.dist is not None:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return 0
