"""A Run on a DataLoader task that checkpoints as it goes and, on its first attempt, SIGKILLs itself mid-run.

    python tests/dataset_kill_worker.py OUT_DIR STEPS [KILL_AFTER_STEP]

Builds the same model, data and run every time; resumes from ``OUT_DIR/ckpt.safetensors`` when it exists (printing
``resumed at step N``); checkpoints every 4 steps. With ``KILL_AFTER_STEP`` and no ``OUT_DIR/killed`` marker yet, it
writes the marker and SIGKILLs itself right after that step (before any checkpoint of it), so the next attempt
resumes from an older checkpoint and redoes the steps the killed process had already taken. At the end it saves
``OUT_DIR/final.safetensors`` for the test to compare with an uninterrupted run's.

The dataset augments every item with noise from torch's global generator, so the resume must restore that generator
as well as the task's (seed, epoch, position); 37 items in batches of 5 with a 20 % evaluation split put the
checkpoints mid-epoch.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class NoisyBlobs(Dataset):
    """``n`` points of 3 Gaussian blobs in 4-D; every read adds fresh noise (an augmentation) from torch's RNG."""

    def __init__(self, n: int = 37):
        g = torch.Generator().manual_seed(123)
        self.y = torch.arange(n) % 3
        self.x = torch.randn(n, 4, generator=g) + 2.0 * nn.functional.one_hot(self.y, 4).float()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn(4), int(self.y[i])


def build_run():
    from orthoscope import AdamW, Run
    from orthoscope.probes import default_probes
    from orthoscope.tasks import DatasetTask

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    task = DatasetTask(DataLoader(NoisyBlobs(), batch_size=5, shuffle=True), eval_fraction=0.2)
    return Run(model, task, AdamW(lr=1e-2, weight_decay=0.1), probes=default_probes(every=3), seed=7)


def main(argv: list[str]) -> int:
    out, steps = Path(argv[0]), int(argv[1])
    kill_after = int(argv[2]) if len(argv) > 2 else None
    out.mkdir(parents=True, exist_ok=True)
    ckpt, marker = out / "ckpt.safetensors", out / "killed"
    run = build_run()
    if ckpt.exists():
        run.load(ckpt)
        print(f"resumed at step {run.step_count}", flush=True)
    if kill_after is not None and not marker.exists():
        def die(run, record):
            if run.step_count == kill_after:
                marker.write_text(str(run.step_count))
                os.kill(os.getpid(), signal.SIGKILL)
        run.on_step(die)
    run.train(steps - run.step_count, progress=False, checkpoint_every=4, checkpoint_path=ckpt)
    run.save(out / "final.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
