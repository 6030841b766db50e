"""``orthoscope train`` with a fault injected: one rank SIGKILLs itself, on the first attempt only.

    ORTHOSCOPE_TEST_KILL=rank:step:where torchrun --max-restarts 1 ... tests/train_kill_worker.py CONFIG [args]

``where`` is ``step`` (die right after training step ``step``, before its checkpoint) or ``save`` (die inside the
checkpoint of step ``step``, after every rank wrote its shards and before the manifest, which the ranks compute
together, is written: the checkpoint stays a ``.partial`` directory). torchrun sets ``TORCHELASTIC_RESTART_COUNT``; the kill happens only when it is 0, so the
restarted attempt trains to the end. Before dying the rank writes ``killed-<rank>`` into the run directory's parent,
so the test can tell the fault really happened.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def die(runs: Path, rank: int) -> None:
    (runs / f"killed-{rank}").write_text("")
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    import faulthandler
    faulthandler.register(signal.SIGUSR1)          # `kill -USR1 PID` prints a hung worker's Python stacks
    from orthoscope.training import run as run_module
    from orthoscope.config.train import main as train_main

    rank_s, step_s, where = os.environ["ORTHOSCOPE_TEST_KILL"].split(":")
    kill_rank, kill_step = int(rank_s), int(step_s)
    runs = Path(argv[argv.index("--runs") + 1])
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if first_attempt and int(os.environ["RANK"]) == kill_rank:
        if where == "step":
            step = run_module.Run.step

            def step_then_die(self):
                record = step(self)
                if self.step_count == kill_step:
                    die(runs, kill_rank)
                return record

            run_module.Run.step = step_then_die
        elif where == "save":
            from orthoscope.distributed import manifest
            write = manifest.write

            def write_or_die(directory, step, seam=None):
                if step == kill_step:             # every rank's shards and the record on disk, no manifest yet:
                    die(runs, kill_rank)          # the checkpoint is not complete
                return write(directory, step, seam)

            manifest.write = write_or_die
        else:
            raise ValueError(f"ORTHOSCOPE_TEST_KILL where must be 'step' or 'save', got {where!r}")
    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
