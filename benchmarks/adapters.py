"""Adapters side by side: step time and peak memory of full finetuning, LoRA, OFT, BOFT and QOFT — ours and peft's.

Setup (issue 4 targets): a randomly initialized transformers ``LlamaForCausalLM`` (hidden 256, 4 layers, 4 heads,
intermediate 704 = 22·32 so block 32 divides every layer; vocab 2048), batch 8 × seq 128 of random tokens, next-token
loss, CPU, ``torch.set_num_threads(2)``, AdamW (lr 1e-4) over the trainable parameters. Adapters go on all seven
linear layers of every block (q, k, v, o, gate, up, down). LoRA rank 7 has the trainable-parameter count of OFT with
block 32 (138.0k vs 138.9k). peft OFT uses its default Cayley–Neumann with 5 terms, ours k = 3 (the same formula).
BOFT uses block 4 with one butterfly factor on both sides: on a CPU peft cannot build its CUDA extension and silently
runs one factor whatever is asked (a row with our 2-factor BOFT is added for information).

Method. Every (method, round) runs in a fresh process: warm-up steps, then timed steps (forward + backward + AdamW
step); the reported time is the median over rounds of each round's median. Memory, per process:
* peak RSS — ``ru_maxrss`` at the end (includes the ~0.5 GB of torch/transformers/peft code and the model);
* Δ RSS — peak RSS minus the RSS just before the first step (the training's own peak);
* saved — bytes of activations autograd keeps for backward in one step (unique storages that are not parameters,
  via ``torch.autograd.graph.saved_tensors_hooks``): deterministic, unlike RSS.
Rounds interleave the methods in a shuffled order, so slow phases of a noisy machine hit all methods alike.

    .venv/bin/python benchmarks/adapters.py              # 3 rounds × 15 timed steps (~6 min on 2 cores)
    .venv/bin/python benchmarks/adapters.py --quick      # 1 round × 4 steps (smoke)

The last line holds the headline ratios against the targets (OFT ≤ 1.15× LoRA and ≤ 1.0× peft OFT in time;
BOFT ≤ 0.5× peft BOFT; OFT peak RSS ≤ LoRA + 5 %).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
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


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def saved_activation_bytes(model, tokens) -> int:
    """Bytes of the distinct non-parameter storages autograd saves for backward in one forward."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=tokens, labels=tokens).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def worker(kind: str, warmup: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(2)
    model = adapt(build_model(), kind).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    tokens = torch.randint(0, 2048, (8, 128), generator=torch.Generator().manual_seed(1))
    saved = saved_activation_bytes(model, tokens)
    rss_before = rss_mb()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(input_ids=tokens, labels=tokens).loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"params": sum(p.numel() for p in params), "median_ms": 1e3 * statistics.median(times),
            "rss_before_mb": rss_before, "peak_rss_mb": peak, "saved_mb": saved / 2**20}


def run_rounds(rounds: int, warmup: int, steps: int) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {name: [] for name in METHODS}
    order = list(METHODS)
    for r in range(rounds):
        random.Random(r).shuffle(order)
        for name in order:
            out = subprocess.run([sys.executable, __file__, "--worker", METHODS[name], "--warmup", str(warmup),
                                  "--steps", str(steps)], capture_output=True, text=True, check=True)
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  round {r + 1}/{rounds}  {name:<32} {results[name][-1]['median_ms']:7.1f} ms", file=sys.stderr)
    return results


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    table = {}
    for name, runs in results.items():
        ms = [r["median_ms"] for r in runs]
        table[name] = {"params": runs[0]["params"], "ms": statistics.median(ms), "ms_min": min(ms), "ms_max": max(ms),
                       "peak": statistics.median(r["peak_rss_mb"] for r in runs),
                       "delta": statistics.median(r["peak_rss_mb"] - r["rss_before_mb"] for r in runs),
                       "saved": statistics.median(r["saved_mb"] for r in runs)}
    return table


def report(table: dict[str, dict], rounds: int, steps: int) -> None:
    print(f"Llama hidden 256 × 4 layers, inter 704, vocab 2048; batch 8×128; CPU, 2 threads; AdamW; "
          f"{rounds} rounds × {steps} steps; medians (min–max over rounds)")
    print(f"{'method':<32} {'trainable':>10} {'step ms':>9} {'(min–max)':>15} {'peak RSS MB':>12} {'Δ RSS MB':>9} "
          f"{'saved MB':>9}")
    for name, row in table.items():
        print(f"{name:<32} {row['params']:>10,} {row['ms']:>9.1f} {row['ms_min']:>7.1f}–{row['ms_max']:<7.1f} "
              f"{row['peak']:>12.0f} {row['delta']:>9.0f} {row['saved']:>9.1f}")
    oft, lora, p_oft = table["OFT b=32 CNP k=3 (ours)"], table["LoRA r=7 (ours)"], table["OFT b=32 CNP 5 terms (peft)"]
    boft, p_boft = table["BOFT b=4 m=1 (ours)"], table["BOFT b=4 m=1 (peft)"]
    ratios = {"OFT/LoRA time": (oft["ms"] / lora["ms"], 1.15), "OFT/peft-OFT time": (oft["ms"] / p_oft["ms"], 1.0),
              "BOFT/peft-BOFT time": (boft["ms"] / p_boft["ms"], 0.5),
              "OFT/LoRA peak RSS": (oft["peak"] / lora["peak"], 1.05)}
    print(f"saved activations OFT/LoRA: {oft['saved'] / lora['saved']:.3f}×;  Δ RSS OFT/LoRA: "
          f"{oft['delta'] / max(lora['delta'], 1e-9):.3f}×")
    print("headline: " + " · ".join(f"{k} {v:.2f}× ({'ok' if v <= t else 'MISSED'}, target ≤ {t})"
                                    for k, (v, t) in ratios.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round × 4 steps (smoke)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.warmup, args.steps)))
        return
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 4, 1
    report(summarize(run_rounds(args.rounds, args.warmup, args.steps)), args.rounds, args.steps)


if __name__ == "__main__":
    main()
