"""POET-X memory mode vs plain POET, and spectrum preservation over a long run.

Part 1 — activation memory at equal output (issue 3 target: memory mode ≤ 0.6× plain).
A stack of POET layers (BS, b = 32, CNP k = 3), run in plain mode and in memory mode from the same weights,
rotations and input, once input-centric (``centric="input"``: POET-X's algorithm, which the target is about) and
once weight-centric (``centric="weight"``: W_eff built once per call; what ``"auto"`` picks at these token counts).
Three stacks:
* "POET stack": 4 POET layers of width 512, back to back (the target's setting);
* "MLP stack": 3 blocks of 512 → 1024 → GELU → 512 (activations between layers are the same in both modes);
* "transformer": TinyTransformer (d 256, 2 blocks, MLP 1024, seq 64), every projection is POET except the head.

Method: bytes of the tensors autograd saves for backward during one forward pass, counted through
``torch.autograd.graph.saved_tensors_hooks``, as unique storages that are not parameters or buffers. That is the
activation memory a training step holds at its peak (end of forward). It is deterministic, unlike RSS. The same script checks
that every mode gives the outputs and gradients of input-centric plain mode (max abs difference), and times
forward + backward (process CPU time, median of 7 runs).

Part 2 — spectrum preservation over ``--steps`` (default 10,000) steps in fp32.
An MLP 64 → 128 → 128 → 10 on Digits (batch 64). POET-BS b = 16 on the two hidden layers, T_m = 400, lr 1e-3
(× poet_scale 0.5), with exact Cayley, CNP k = 3 (the default) and CNP k = 4. Every 400 steps (right after each merge) the script records:
* the orthogonality error ``‖AᵀA − I‖_F/√n`` of the **accumulated** input and output rotations A = R_total, P_total. These
  are the dense products of every rotation folded in so far, tracked by the script;
* the spectrum drift ``‖σ(W_t) − σ(W_0)‖₂ / ‖σ(W_0)‖₂`` — the ``SpectrumDrift`` probe's ``sv_drift``, one definition
  (``probes.orthogonal.spectrum_drift``) — and the largest single singular value's relative move
  ``max_i |σ_i(W_t)/σ_i(W_0) − 1|``;
* the largest block orthogonality error seen during the run.

    .venv/bin/python benchmarks/bench_poet.py                 # both parts (~10 min on 2 busy cores)
    .venv/bin/python benchmarks/bench_poet.py --steps 2000    # shorter run
    .venv/bin/python benchmarks/bench_poet.py --steps 0       # part 1 only
    .venv/bin/python benchmarks/bench_poet.py --no-memory --merge-every 100 400 1600   # part 2 at three T_m

The drift of Cayley–Neumann depends on the merge interval T_m: each merge folds the contraction of the rotation
accumulated over T_m steps into W₀. With several ``--merge-every`` values, T_m = 400 runs all three Cayley
variants and the others CNP k = 3 only.

The last line holds the headline: memory-mode / plain saved-activation ratio of the POET stack, and the worst
post-merge orthogonality error with exact Cayley.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import nn

from orthoscope.adapters.poet import POET, poet_layers
from orthoscope.core.memory import model_state, saved_tensor_bytes
from orthoscope.probes.metrics import orthogonality_error
from orthoscope.probes.orthogonal import spectrum_drift


# ---- part 1: memory ---------------------------------------------------------------------------------------------

def poet_stack(kind: str, memory_mode: bool, centric: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if kind == "POET stack":
        model, x = nn.Sequential(*[nn.Linear(512, 512) for _ in range(4)]), torch.randn(16, 128, 512)
    elif kind == "MLP stack":
        model = nn.Sequential(*[m for _ in range(3) for m in (nn.Linear(512, 1024), nn.GELU(), nn.Linear(1024, 512))])
        x = torch.randn(16, 128, 512)
    else:
        from orthoscope.models import TinyTransformer

        model = TinyTransformer(vocab_size=256, n_ctx=64, d_model=256, n_heads=4, n_layers=2, d_mlp=1024,
                                readout="all")
        x = torch.randint(0, 256, (16, 64))
    POET(block=32, memory_mode=memory_mode, centric=centric,
         exclude=["unembed"] if kind == "transformer" else None).attach(model)
    for i, (_, layer) in enumerate(poet_layers(model)):       # non-trivial rotations, identical in both modes
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            layer.poet_q_in.copy_(torch.randn(layer.poet_q_in.shape, generator=g) * 0.05)
            layer.poet_q_out.copy_(torch.randn(layer.poet_q_out.shape, generator=g) * 0.05)
    return model, x


def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor, list[torch.Tensor]]:
    xi = x.clone().requires_grad_() if x.is_floating_point() else x
    nbytes, y = saved_tensor_bytes(lambda: model(xi), exclude=model_state(model))
    y.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return nbytes, y.detach(), grads


def step_time(model: nn.Module, x: torch.Tensor, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        t0 = time.process_time()
        model(x).square().mean().backward()
        times.append(time.process_time() - t0)
    return statistics.median(times[1:])


def memory_table() -> float:
    print("Part 1 — saved activations for backward, plain vs memory mode, input- and weight-centric (same weights "
          "and input; Δ against input-centric plain)")
    print(f"{'model':<13} {'centric':<7} {'plain MiB':>10} {'mem MiB':>9} {'ratio':>6} {'max|Δy|':>9} "
          f"{'max|Δgrad|':>10} {'plain ms':>9} {'mem ms':>8}")
    headline = math.nan
    for kind in ("POET stack", "MLP stack", "transformer"):
        ref = None
        for centric in ("input", "weight"):
            rows = []
            for mm in (False, True):
                model, x = poet_stack(kind, mm, centric)
                nbytes, y, grads = saved_activation_bytes(model, x)
                rows.append((nbytes, y, grads, step_time(model, x)))
            ref = ref or rows[0]
            dy = max((r[1] - ref[1]).abs().max().item() for r in rows)
            dg = max((a - b).abs().max().item() for r in rows for a, b in zip(ref[2], r[2]))
            (b0, _, _, t0), (b1, _, _, t1) = rows
            if kind == "POET stack" and centric == "input":
                headline = b1 / b0
            print(f"{kind:<13} {centric:<7} {b0 / 2**20:>10.2f} {b1 / 2**20:>9.2f} {b1 / b0:>6.3f} {dy:>9.1e} "
                  f"{dg:>10.1e} {t0 * 1e3:>9.1f} {t1 * 1e3:>8.1f}")
    return headline


# ---- part 2: spectrum preservation ------------------------------------------------------------------------------

def spectrum_run(cayley: str, k: int, steps: int, merge_every: int = 400) -> dict:
    from orthoscope import Run
    from orthoscope.tasks import Digits

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    method = POET(block=16, merge_every=merge_every, lr=1e-3, cayley=cayley, k=k, exclude=["4"])
    run = Run(model, Digits(batch_size=64), method, probes=[], seed=0)
    layers = poet_layers(run.model)
    sv0 = {p: torch.linalg.svdvals(layer.effective_weight().detach().double()) for p, layer in layers}
    acc = {p: [torch.eye(layer.perm_in.numel(), dtype=torch.float64),
               torch.eye(layer.perm_out.numel(), dtype=torch.float64)] for p, layer in layers}
    out = {"orth_after_merge": 0.0, "sv_drift": 0.0, "sv_max_rel": 0.0, "block_orth": 0.0}

    for path, layer in layers:                   # fold the dense rotations into R_total, P_total at each merge
        def spy(generator, path=path, layer=layer, original=layer.merge_then_reinitialize):
            with torch.no_grad():
                r = layer.input_rotation(torch.eye(layer.perm_in.numel())).double()
                p_ = layer.output_rotation(torch.eye(layer.perm_out.numel())).double()
            acc[path][0] = r @ acc[path][0]                           # R_total = R_new R_old
            acc[path][1] = acc[path][1] @ p_                          # P_total = P_old P_new
            original(generator)
        layer.merge_then_reinitialize = spy

    for _ in range(steps):
        run.step()
        with torch.no_grad():
            for path, layer in layers:
                for g in layer.rotations().values():
                    out["block_orth"] = max(out["block_orth"], orthogonality_error(g.double()).max().item())
        if run.step_count % merge_every == 0:
            for path, layer in layers:
                with torch.no_grad():
                    sv = torch.linalg.svdvals(layer.effective_weight().double())
                out["sv_drift"] = max(out["sv_drift"], spectrum_drift(sv, sv0[path]))
                out["sv_max_rel"] = max(out["sv_max_rel"], (sv / sv0[path] - 1).abs().max().item())
                out["orth_after_merge"] = max(out["orth_after_merge"],
                                              *(orthogonality_error(a).item() for a in acc[path]))
    out["loss"] = run.last_loss
    out["merges"] = run.interventions[-1].merges
    return out


def spectrum_table(steps: int, merge_intervals=(400,)) -> float:
    print(f"\nPart 2 — {steps} steps, fp32, MLP 64-128-128-10 on Digits, POET-BS b=16 "
          "(maxima over the post-merge checkpoints; sv_drift = ‖σ_t − σ_0‖/‖σ_0‖, the probe's)")
    print(f"{'Cayley':<12} {'T_m':>5} {'merges':>6} {'orth err of R_total,P_total':>27} {'sv_drift':>9} "
          f"{'max|σi/σi0−1|':>14} {'max block orth err':>19} {'final loss':>10}")
    exact = math.nan
    for merge_every in merge_intervals:
        variants = (("exact", 3), ("neumann", 3), ("neumann", 4)) if merge_every == 400 else (("neumann", 3),)
        for cayley, k in variants:
            r = spectrum_run(cayley, k, steps, merge_every)
            name = "exact" if cayley == "exact" else f"CNP k={k}"
            if cayley == "exact":
                exact = r["orth_after_merge"]
            print(f"{name:<12} {merge_every:>5} {r['merges']:>6} {r['orth_after_merge']:>27.2e} "
                  f"{r['sv_drift']:>9.2e} {r['sv_max_rel']:>14.2e} {r['block_orth']:>19.2e} {r['loss']:>10.4f}")
    return exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a busy machine)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 steps instead of 10,000")
    parser.add_argument("--merge-every", type=int, nargs="+", default=[400],
                        help="merge intervals T_m for part 2 (400: all Cayley variants; others: CNP k = 3)")
    parser.add_argument("--no-memory", action="store_true", help="skip part 1")
    args = parser.parse_args()
    if args.quick:
        args.steps = 100
    torch.set_num_threads(args.threads)
    ratio = math.nan if args.no_memory else memory_table()
    orth = spectrum_table(args.steps, args.merge_every) if args.steps > 0 else math.nan
    memory = ("not measured (--no-memory)" if args.no_memory else
              f"(input-centric) saves {ratio:.3f}x the activations of plain input-centric POET (target <= 0.6)")
    print(f"\nPOET-X memory mode {memory}; "
          f"orthogonality error after merges with exact Cayley {orth:.1e} (target <= 1e-5)")


if __name__ == "__main__":
    main()
