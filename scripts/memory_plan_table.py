"""The memory-plan table of docs/distributed.md ("Memory plan"): ``python scripts/memory_plan_table.py [--quick]``.

Per-rank predicted peak (``orthoscope.distributed.plan.memory_plan``) for a 1B Llama (TinyLlama-1.1B's shape) and an
8B Llama (Llama-3-8B's shape: hidden 4096, 32 layers, MLP 14336, 32 heads, 8 KV heads, vocab 128256) per method at
N = 1, 8, 64 ranks: one sequence of 1024 tokens per rank (POET-X's 8B memory setting), bf16 autocast, CUDA's foreach
AdamW, no activation checkpointing. ``--quick``: the 1B model only.
"""
from __future__ import annotations

import sys

from orthoscope.adapters import LoRA, OFT, POET
from orthoscope.distributed.plan import memory_plan
from orthoscope.methods.base import AdamW
from orthoscope.models.llama import LLAMA_TARGETS, llama_config
from orthoscope.optim.methods import Muon, Pion

import torch

MODELS = {"1B": llama_config("1b", n_ctx=1024),
          "8B": llama_config("1b", vocab_size=128256, n_ctx=1024, hidden_size=4096, num_hidden_layers=32,
                             intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8)}
METHODS = {"AdamW": AdamW(), "Muon": Muon(), "Pion": Pion(),
           "POET b=256": POET(block=256, targets=LLAMA_TARGETS),
           "POET-X mem b=256": POET(block=256, targets=LLAMA_TARGETS, memory_mode=True),
           "OFT b=32": OFT(block=32, targets=LLAMA_TARGETS), "LoRA r=8": LoRA(rank=8, targets=LLAMA_TARGETS)}
WORLDS = (1, 8, 64)


def main(argv: list[str]) -> int:
    models = {"1B": MODELS["1B"]} if "--quick" in argv else MODELS
    print("| model | method | " + " | ".join(f"N = {n}" for n in WORLDS) + " |")
    print("|---|---|" + "---|" * len(WORLDS))
    for model, config in models.items():
        for label, method in METHODS.items():
            cells = []
            for n in WORLDS:
                plan = memory_plan(config, method, n, batch_size=n, seq_len=1024, autocast_dtype=torch.bfloat16,
                                   device="cuda")
                cells.append(f"{plan.peak / 1e9:.2f} GB ({plan.peak_phase})")
            print(f"| {model} | {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
