"""``orthoscope train CONFIG --nproc-per-node N [--max-restarts R]``: check the config here, then start torchrun.

torchrun's elastic agent restarts every rank after *any* failure, up to ``--max-restarts`` times: it cannot tell a
rank killed by a lost node (worth retrying: the run resumes from its last checkpoint) from a config error (which
fails the same way on every attempt, each after the process group and the model are set up again). So the launching
process checks the config first — every key, the task, the method, the model's structure against the task (the
model built on the ``meta`` device: no weights, no memory) and the run directory (another run's config, an
extension that cannot be one) — and a config error ends the command at once: one line ``error: FILE:LINE: …``,
exit status 2, no torchrun started. Only a config that passed starts

    python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts R -m orthoscope train CONFIG …

(one machine, a local rendezvous on a free port), whose exit status this command returns. For several machines,
run torchrun yourself and check first with ``orthoscope train CONFIG --check`` (the same checks, nothing started).
What a worker itself finds later (a first forward that fails, a damaged checkpoint) is still retried by the agent.
"""
from __future__ import annotations

import os
import subprocess
import sys

from .check import check_config
from .format import ConfigError


def launch(args) -> int:
    """Check the config (``check_config``), then run torchrun on this machine with the same config, overrides and
    options; returns torchrun's exit status (a config error raises before anything starts)."""
    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:
        raise ConfigError("--nproc-per-node starts torchrun, and this process already runs under torchrun; drop "
                          "--nproc-per-node/--max-restarts (torchrun's own options set them)")
    check_config(args.config, args.overrides, args.runs, args.name)
    return subprocess.call(torchrun_command(args))


def torchrun_command(args) -> list[str]:
    """``python -m torch.distributed.run --standalone … -m orthoscope train CONFIG OVERRIDES --runs R [--name N]``."""
    worker = [args.config, *args.overrides, "--runs", args.runs]
    worker += ["--name", args.name] if args.name is not None else []
    worker += ["--no-progress"] if args.no_progress else []
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(args.nproc_per_node), "--max-restarts", str(args.max_restarts), "-m", "orthoscope", "train", *worker]
