"""Adapters side by side: step time and peak memory of full finetuning, LoRA, OFT, BOFT and QOFT — ours and peft's.

Setup (issue 4 targets): a randomly initialized transformers ``LlamaForCausalLM`` (hidden 256, 4 layers, 4 heads,
intermediate 704 = 22·32 so block 32 divides every layer; vocab 2048), batch 8 × seq 128 of random tokens, next-token
loss, CPU, ``torch.set_num_threads(2)`` (``--threads``), AdamW (lr 1e-4) over the trainable parameters. Adapters go on all seven
linear layers of every block (q, k, v, o, gate, up, down). LoRA rank 7 has the trainable-parameter count of OFT with
block 32 (138.0k vs 138.9k). peft OFT uses its default Cayley–Neumann with 5 terms, ours k = 3 (the same formula).
BOFT uses block 4 with one butterfly factor on both sides: on a CPU peft cannot build its CUDA extension and silently
runs one factor whatever is asked (a row with our 2-factor BOFT is added for information).

Method. Time: all methods live in one process (each its own copy of the same random model and its own AdamW) and
take turns, one training step each (forward + backward + AdamW step), in a freshly shuffled order every cycle; after
warm-up cycles the median step time per method is reported, and each ratio is the median over cycles of the ratio
*within* a cycle. Interleaving at the step level makes a noisy machine's slow phases hit every method alike.
Memory: first, every method runs a few steps in its own fresh process:
* peak RSS — ``VmHWM`` at the end (includes the ~0.5 GB of torch/transformers/peft code and the model);
* Δ RSS — peak RSS minus the RSS just before the first step (the training's own peak);
* saved — bytes of activations autograd keeps for backward in one step (unique storages that are not parameters,
  via ``torch.autograd.graph.saved_tensors_hooks``): deterministic, unlike RSS.

    .venv/bin/python benchmarks/bench_adapters.py              # 20 timed cycles (~5 min on a quiet 2-core machine)
    .venv/bin/python benchmarks/bench_adapters.py --quick      # 3 cycles, 2 memory steps (smoke)

The last line holds the headline ratios against the targets (OFT ≤ 1.15× LoRA and ≤ 1.0× peft OFT in time;
BOFT ≤ 0.5× peft BOFT; OFT peak RSS ≤ LoRA + 5 %).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import warnings

LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
METHODS = {
    "full FT": "full",
    "LoRA r=7 (ours)": "lora",
    "LoRA r=7 (peft)": "peft-lora",
    "OFT b=32 CNP k=3 (ours)": "oft",
    "OFT b=32 exact (ours)": "oft-exact",
    "OFT b=32 CNP 5 terms (peft)": "peft-oft",
    "BOFT b=4 m=1 (ours)": "boft",
    "BOFT b=4 m=2 (ours)": "boft-2",
    "BOFT b=4 m=1 (peft)": "peft-boft",
    "QOFT b=32 4-bit g64 k=3 (ours)": "qoft",
}


def build_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=2048, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


def adapt(model, kind: str):
    """Attach the adapter of ``kind``; returns the model whose trainable parameters the optimizer gets."""
    from orthoscope.adapters import BOFTConfig, LoRAConfig, OFTConfig, QOFTConfig, attach

    if kind == "full":
        return model
    if kind.startswith("peft-"):
        import peft

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")              # peft BOFT warns that its CUDA extension cannot build
            config = {"peft-lora": lambda: peft.LoraConfig(r=7, lora_alpha=14, target_modules=LINEAR),
                      "peft-oft": lambda: peft.OFTConfig(oft_block_size=32, r=0, target_modules=LINEAR,
                                                         use_cayley_neumann=True, num_cayley_neumann_terms=5),
                      "peft-boft": lambda: peft.BOFTConfig(boft_block_size=4, boft_n_butterfly_factor=1,
                                                           target_modules=LINEAR)}[kind]()
            return peft.get_peft_model(model, config)
    config = {"lora": LoRAConfig(rank=7, alpha=14.0, targets=LINEAR),
              "oft": OFTConfig(block=32, cayley="neumann", neumann_terms=3, targets=LINEAR),
              "oft-exact": OFTConfig(block=32, targets=LINEAR),
              "boft": BOFTConfig(block=4, factors=1, targets=LINEAR),
              "boft-2": BOFTConfig(block=4, factors=2, targets=LINEAR),
              "qoft": QOFTConfig(block=32, cayley="neumann", bits=4, group_size=64, targets=LINEAR)}[kind]
    return attach(model, config)


def rss_mb(field: str = "VmRSS") -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MiB. VmHWM belongs to the address space, so unlike
    ``ru_maxrss`` it is not inherited from the parent across ``exec``."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def saved_activation_bytes(model, tokens) -> int:
    """Bytes of the distinct non-parameter storages autograd saves for backward in one forward."""
    from orthoscope.core.memory import model_state, saved_tensor_bytes

    nbytes, loss = saved_tensor_bytes(lambda: model(input_ids=tokens, labels=tokens).loss, exclude=model_state(model))
    loss.backward()
    model.zero_grad(set_to_none=True)
    return nbytes


def make_trainer(kind: str):
    """``(step, n_trainable)`` for one method on its own copy of the model."""
    import torch

    model = adapt(build_model(), kind).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    tokens = torch.randint(0, 2048, (8, 128), generator=torch.Generator().manual_seed(1))

    def step():
        opt.zero_grad(set_to_none=True)
        model(input_ids=tokens, labels=tokens).loss.backward()
        opt.step()

    return step, sum(p.numel() for p in params), model, tokens


def time_interleaved(cycles: int, warmup: int, threads: int) -> dict[str, list[float]]:
    """Step times (s) per method over ``cycles`` shuffled cycles, after ``warmup`` cycles."""
    import torch

    torch.set_num_threads(threads)
    trainers = {name: make_trainer(kind) for name, kind in METHODS.items()}
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    order = list(METHODS)
    for c in range(warmup + cycles):
        random.Random(c).shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            trainers[name][0]()
            if c >= warmup:
                times[name].append(time.perf_counter() - t0)
        if c >= warmup:
            print(f"  cycle {c - warmup + 1}/{cycles}: " + " ".join(f"{times[n][-1] * 1e3:.0f}" for n in METHODS),
                  file=sys.stderr)
    return times, {name: t[1] for name, t in trainers.items()}


def memory_worker(kind: str, steps: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    step, _, model, tokens = make_trainer(kind)
    saved = saved_activation_bytes(model, tokens)
    rss_before = rss_mb()
    for _ in range(steps):
        step()
    peak = rss_mb("VmHWM")
    return {"rss_before_mb": rss_before, "peak_rss_mb": peak, "saved_mb": saved / 2**20}


def measure_memory(steps: int, threads: int) -> dict[str, dict]:
    out = {}
    for name, kind in METHODS.items():
        run = subprocess.run([sys.executable, __file__, "--memory-worker", kind, "--steps", str(steps),
                              "--threads", str(threads)],
                             capture_output=True, text=True, check=True)
        out[name] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over cycles of the within-cycle ratio of step times."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def report(times, params, memory, cycles: int, threads: int) -> None:
    print(f"Llama hidden 256 × 4 layers, inter 704, vocab 2048; batch 8×128; CPU, {threads} threads; AdamW; "
          f"{cycles} interleaved cycles; step time median (quartiles)")
    print(f"{'method':<32} {'trainable':>10} {'step ms':>8} {'(q1–q3)':>13} {'peak RSS MB':>12} {'Δ RSS MB':>9} "
          f"{'saved MB':>9}")
    for name in METHODS:
        q1, q2, q3 = statistics.quantiles([1e3 * t for t in times[name]], n=4)
        m = memory[name]
        print(f"{name:<32} {params[name]:>10,} {q2:>8.1f} {q1:>6.1f}–{q3:<6.1f} {m['peak_rss_mb']:>12.0f} "
              f"{m['peak_rss_mb'] - m['rss_before_mb']:>9.0f} {m['saved_mb']:>9.1f}")
    oft, lora, p_oft = "OFT b=32 CNP k=3 (ours)", "LoRA r=7 (ours)", "OFT b=32 CNP 5 terms (peft)"
    boft, p_boft = "BOFT b=4 m=1 (ours)", "BOFT b=4 m=1 (peft)"
    ratios = {"OFT/LoRA time": (ratio(times, oft, lora), 1.15), "OFT/peft-OFT time": (ratio(times, oft, p_oft), 1.0),
              "BOFT/peft-BOFT time": (ratio(times, boft, p_boft), 0.5),
              "OFT/LoRA peak RSS": (memory[oft]["peak_rss_mb"] / memory[lora]["peak_rss_mb"], 1.05)}
    print(f"also: OFT exact/LoRA time {ratio(times, 'OFT b=32 exact (ours)', lora):.2f}×, "
          f"QOFT/OFT time {ratio(times, 'QOFT b=32 4-bit g64 k=3 (ours)', oft):.2f}×, "
          f"LoRA ours/peft time {ratio(times, lora, 'LoRA r=7 (peft)'):.2f}×, "
          f"saved activations OFT/LoRA {memory[oft]['saved_mb'] / memory[lora]['saved_mb']:.3f}×")
    print("headline: " + " · ".join(f"{k} {v:.2f}× ({'ok' if v <= t else 'MISSED'}, target ≤ {t})"
                                    for k, (v, t) in ratios.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=20, help="timed cycles (one step of every method each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed cycles first")
    parser.add_argument("--memory-steps", type=int, default=5, help="steps per fresh memory process")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the targets use 2)")
    parser.add_argument("--quick", action="store_true", help="3 cycles, 1 warm-up, 2 memory steps (smoke)")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.steps, args.threads)))
        return
    if args.quick:
        args.cycles, args.warmup, args.memory_steps = 3, 1, 2
    memory = measure_memory(args.memory_steps, args.threads)   # first, while this process is still small
    times, params = time_interleaved(args.cycles, args.warmup, args.threads)
    report(times, params, memory, args.cycles, args.threads)


if __name__ == "__main__":
    main()
