"""LLM scale: ``Run`` on a transformers ``LlamaForCausalLM`` built from a config, one method per fresh process.

Methods: AdamW, LoRA (r 8, all projections), OFT (b 32, CNP), POET (b 256 on a GPU, 32 on CPU; plain and memory
mode), Pion, Muon — ``orthoscope.recipes.llm.llm_method``. Every method trains the same model (same seed) on the same
batches with gradient checkpointing on every decoder layer and, on CUDA, bf16 autocast (fp32 weights and states).

* GPU (default ``--size 1b``: hidden 2048, 22 layers, MLP 5632, vocab 32000 — TinyLlama-1.1B's shape):
  ``SyntheticTokens`` (random sparse bigram language), batch 8 × 1024 tokens. Peak memory is
  ``torch.cuda.max_memory_allocated`` over the timed steps; targets: POET memory mode ≤ 0.40× AdamW's peak and
  ≥ 0.7× its tokens/s.
* CPU (default ``--size tiny`` on TinyLang, batch 8 × 64): the same code path at toy scale. Memory is counted, not
  sampled: parameters + gradients + optimizer state after the steps ("state"), plus the bytes autograd saves for
  backward in one step ("saved"); their sum is the "model memory" column. At toy scale the embeddings and head
  dominate, so CPU ratios say nothing about the 1B target. CPU times are the worker's process CPU time (one thread),
  which a busy shared machine does not inflate.

Also reported: the time of one pass of ``llm_probes`` (spectra, norms and energy of 3 sampled layers + evaluation
on ≤ 16 windows), to show that observation stays cheap relative to a training step.

    .venv/bin/python benchmarks/bench_llm.py                       # CPU: tiny config; GPU: 1b config
    .venv/bin/python benchmarks/bench_llm.py --size small --steps 10 --methods adamw poet_mem

The last line holds the headline ratios of POET memory mode to AdamW (memory, tokens/s).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from orthoscope.core.memory import model_state, saved_tensor_bytes

DEFAULTS = {"cpu": dict(size="tiny", batch=8, seq=64, steps=10, warmup=2, block=32),
            "cuda": dict(size="1b", batch=8, seq=1024, steps=10, warmup=3, block=256)}
ORDER = ("adamw", "lora", "oft", "poet", "poet_mem", "pion", "muon")
LABELS = {"adamw": "AdamW", "lora": "LoRA r 8", "oft": "OFT b 32 (CNP)", "poet": "POET-X fast b {b}",
          "poet_mem": "POET-X mem b {b}", "pion": "Pion", "muon": "Muon"}


def state_bytes(run) -> int:
    """Parameters, buffers, gradients and optimizer state (unique storages)."""
    seen = {}
    tensors = list(run.model.parameters()) + list(run.model.buffers())
    tensors += [p.grad for p in run.model.parameters() if p.grad is not None]
    tensors += [v for s in run.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    for t in tensors:
        seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
    return sum(seen.values())


def saved_bytes(run) -> int:
    """Bytes autograd saves for backward in one training forward (excluding parameters and buffers)."""
    x, y = run.task.batch(torch.Generator().manual_seed(123))
    nbytes, loss = saved_tensor_bytes(lambda: run.loss_fn(run.model(x), y), exclude=model_state(run.model))
    loss.backward()
    run.optimizer.zero_grad(set_to_none=True)
    return nbytes


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def worker(args) -> dict:
    """One method in this process: build, warm up, time ``steps`` steps, measure memory and a probe pass."""
    from orthoscope import Run
    from orthoscope.recipes.llm import SyntheticTokens, TokenTask, build_llama, llama_config, llm_method, llm_probes

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if not cuda:
        torch.set_num_threads(args.threads)
    if args.size == "tiny":
        from orthoscope.tasks.tinylang import TinyLang

        inner = TinyLang(n_ctx=args.seq, batch_size=args.batch)
    else:
        inner = SyntheticTokens(vocab_size=32000, n_ctx=args.seq, batch_size=args.batch, seed=0)
    task = TokenTask(inner, device=device, n_eval=16)
    model = build_llama(llama_config(args.size, task.vocab_size, args.seq), seed=0, checkpointing=True,
                        device=device)
    run = Run(model, task, llm_method(args.worker, block=args.block), probes=[], seed=0)
    for _ in range(args.warmup):
        run.step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock = time.perf_counter if cuda else time.process_time    # CPU: process time (one thread; busy machines)
    t0 = clock()
    for _ in range(args.steps):
        run.step()
    sync()
    elapsed = clock() - t0
    out = {"method": args.worker, "label": run.method.label(), "loss": run.last_loss,
           "tokens_per_s": args.steps * args.batch * args.seq / elapsed, "step_ms": 1e3 * elapsed / args.steps,
           "trainable": sum(p.numel() for p in run.model.parameters() if p.requires_grad),
           "params": sum(p.numel() for p in run.model.parameters())}
    if cuda:
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        out["state_mb"] = state_bytes(run) / 2 ** 20
        out["saved_mb"] = saved_bytes(run) / 2 ** 20
        out["peak_mb"] = out["state_mb"] + out["saved_mb"]
    probes = llm_probes(run.model, every=1, max_eval=16)
    sync()
    t0 = clock()
    for probe in probes:
        probe(run)
    sync()
    out["probe_ms"] = 1e3 * (clock() - t0)
    return out


def launch(method: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--size", args.size, "--batch", str(args.batch),
           "--seq", str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--block", str(args.block), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"method": method, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(rows: list[dict], args) -> None:
    cuda = torch.cuda.is_available()
    memory = "peak memory (MB)" if cuda else "model memory = state + saved (MB)"
    print(f"\n| method | trainable params | loss after {args.warmup + args.steps} steps | step (ms) | tokens/s | "
          f"{memory} | × AdamW memory | × AdamW tokens/s | probe pass (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = next((r for r in rows if r["method"] == "adamw" and "error" not in r), None)
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | error: {r['error']} |")
            continue
        mem = f"{r['peak_mb']:.1f}" if cuda else f"{r['peak_mb']:.1f} = {r['state_mb']:.1f} + {r['saved_mb']:.1f}"
        rel_m = f"{r['peak_mb'] / base['peak_mb']:.2f}" if base else "—"
        rel_t = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}" if base else "—"
        label = LABELS[r["method"]].format(b=args.block)
        print(f"| {label} | {r['trainable']:,} | {r['loss']:.3f} | {r['step_ms']:.1f} | {r['tokens_per_s']:.0f} | "
              f"{mem} | {rel_m} | {rel_t} | {r['probe_ms']:.1f} |")


def main(argv=None):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    d = DEFAULTS[device]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default=d["size"], choices=("tiny", "small", "1b"))
    parser.add_argument("--batch", type=int, default=d["batch"])
    parser.add_argument("--seq", type=int, default=d["seq"])
    parser.add_argument("--steps", type=int, default=d["steps"], help="timed steps")
    parser.add_argument("--warmup", type=int, default=d["warmup"])
    parser.add_argument("--block", type=int, default=d["block"], help="POET block size (OFT keeps 32)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per worker")
    parser.add_argument("--methods", nargs="*", default=list(ORDER), choices=ORDER)
    parser.add_argument("--rounds", type=int, default=1, help="repeat each method; report the median round")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny Llama, 1 warm-up + 1 timed step, AdamW and POET memory mode only")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.batch, args.seq, args.steps, args.warmup = "tiny", 2, 32, 1, 1
        args.methods = ["adamw", "poet_mem"]
    if args.worker:
        print(json.dumps(worker(args)))
        return
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {args.threads} thread(s) per worker"
    print(f"device: {name}; torch {torch.__version__}; Llama {args.size}, batch {args.batch} × {args.seq} tokens, "
          f"{args.warmup} warm-up + {args.steps} timed steps, gradient checkpointing"
          f"{', bf16 autocast' if device == 'cuda' else ''}; {args.rounds} round(s), median")
    rows = []
    for method in args.methods:
        rounds = [launch(method, args) for _ in range(args.rounds)]
        ok = [r for r in rounds if "error" not in r]
        if not ok:
            rows.append(rounds[0])
            continue
        best = sorted(ok, key=lambda r: r["step_ms"])[len(ok) // 2]
        best["step_ms"] = statistics.median(r["step_ms"] for r in ok)
        best["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in ok)
        rows.append(best)
    report(rows, args)
    by = {r["method"]: r for r in rows if "error" not in r}
    if "adamw" in by and "poet_mem" in by:
        m = by["poet_mem"]["peak_mb"] / by["adamw"]["peak_mb"]
        t = by["poet_mem"]["tokens_per_s"] / by["adamw"]["tokens_per_s"]
        where = "GPU peak memory" if device == "cuda" else "CPU model memory (toy scale, not the 1B target)"
        print(f"\nHEADLINE: POET memory mode / AdamW: {where} {m:.2f}× (target ≤ 0.40 at 1B), tokens/s {t:.2f}× "
              f"(target ≥ 0.7)")


if __name__ == "__main__":
    main()
