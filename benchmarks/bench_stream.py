"""Run-directory benchmarks (issue 15): the cost of streaming the History to disk, and token-file throughput.

    .venv/bin/python benchmarks/bench_stream.py            # full sizes
    .venv/bin/python benchmarks/bench_stream.py --quick    # seconds (CI runs this)

(a) stream: a run trained with ``orthoscope.config.rundir.HistoryStream`` subscribed (what ``orthoscope train`` does) at
    the default probe schedule; the time spent inside the stream callback (JSON encoding + write + flush of every
    record) is added up with ``perf_counter`` and divided by the run's training time. Two runs: the tour's MLP on
    modular addition with ``default_probes()`` (every 20 steps; millisecond steps, the worst case for the ratio) and
    the "tiny" Llama on a token file with ``llm_probes()`` (every 50). Target: ≤ 2 %.
(b) tokens: ``TokenFile.batch`` tokens per second (batch 8 × 256 tokens of ``data/tinylang.txt``, memory-mapped)
    against the tokens per second the "small" Llama consumes training on them (AdamW, CPU). Target: ≥ 10×.

Prints a table and, last, one line with the headline numbers.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


class TimedStream:
    """``HistoryStream`` with the time spent inside it added up."""

    def __init__(self, path):
        from orthoscope.config.rundir import HistoryStream

        self.stream, self.seconds = HistoryStream(path), 0.0

    def __call__(self, run, record):
        t = time.perf_counter()
        self.stream(run, record)
        self.seconds += time.perf_counter() - t


def stream_share(run, steps: int, folder: Path) -> tuple[float, float]:
    """(share of training time spent streaming, seconds per step)."""
    timed = TimedStream(folder / f"{run.name}.jsonl")
    run.on_step(timed)
    t = time.perf_counter()
    run.train(steps, progress=False)
    total = time.perf_counter() - t
    timed.stream.close()
    return timed.seconds / total, total / steps


def mlp_run():
    from orthoscope import AdamW, Run
    from orthoscope.models import MLP
    from orthoscope.probes import default_probes
    from orthoscope.tasks import ModularArithmetic

    torch.manual_seed(0)
    model = MLP(vocab_size=97, n_tokens=2, d_embed=64, hidden=(128,), d_out=97)
    return Run(model, ModularArithmetic(p=97, train_frac=0.5), AdamW(lr=1e-2, weight_decay=0.5),
               probes=default_probes(), seed=0, name="mlp")


def llama_run(task, size: str):
    from orthoscope import Run
    from orthoscope.recipes.llm import build_llama, llama_config, llm_method, llm_probes

    model = build_llama(llama_config(size, task.vocab_size, task.n_ctx), seed=0)
    return Run(model, task, llm_method("adamw"), probes=llm_probes(model), seed=0, name=f"llama-{size}")


def token_rates(task, steps: int) -> tuple[float, float]:
    """(tokens/s TokenFile yields, tokens/s the small Llama trains on)."""
    g = torch.Generator().manual_seed(0)
    n = 200
    t = time.perf_counter()
    for _ in range(n):
        task.batch(g)
    data = n * task.batch_size * task.n_ctx / (time.perf_counter() - t)
    run = llama_run(task, "small")
    run.probes = []
    run.train(2, progress=False)                                   # warm-up
    t = time.perf_counter()
    run.train(steps, progress=False)
    model = steps * task.batch_size * task.n_ctx / (time.perf_counter() - t)
    return data, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps (seconds)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from orthoscope.tasks import TokenFile
    from orthoscope.tasks.tokenfile import tokenize

    mlp_steps, llama_steps, model_steps = (100, 100, 2) if args.quick else (1000, 400, 6)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenize(ROOT / "data" / "tinylang.txt", folder / "tinylang.bin")
        task = TokenFile(str(folder / "tinylang.bin"), n_ctx=256, batch_size=8, n_eval=8)
        mlp_share, mlp_step = stream_share(mlp_run(), mlp_steps, folder)
        small = TokenFile(str(folder / "tinylang.bin"), n_ctx=64, batch_size=8, n_eval=8)
        llama_share, llama_step = stream_share(llama_run(small, "tiny"), llama_steps, folder)
        data, model = token_rates(task, model_steps)
    print(f"{'run':<28}{'steps':>7}{'s/step':>10}{'streaming share':>18}")
    print(f"{'MLP, default_probes (20)':<28}{mlp_steps:>7}{mlp_step:>10.4f}{mlp_share:>17.2%}")
    print(f"{'tiny Llama, llm_probes (50)':<28}{llama_steps:>7}{llama_step:>10.4f}{llama_share:>17.2%}")
    print(f"TokenFile: {data:,.0f} tokens/s; small Llama trains on {model:,.0f} tokens/s ({data / model:,.0f}x)")
    print(f"stream: {max(mlp_share, llama_share):.2%} of step time at most (target <= 2%); "
          f"token file {data / model:,.0f}x the small Llama's consumption (target >= 10x)")


if __name__ == "__main__":
    main()
