"""GPU proof in one prepared run: every figure the kernels and LLM-scale targets need, in ≤ 8 minutes on one H100/H200.

Parts, most important first; each has its own time budget and is recorded as ``ok``, ``failed`` (with the error text)
or ``skipped`` (budget spent, or no time left overall) — a part never stops the ones after it:

  1a correctness   every Triton kernel against its torch twin on this hardware (``orthoscope.kernels.check``: the
                   rule CI applies in the interpreter): forward and gradients, fp32 and bf16, ragged shapes, the
                   rotation with and without its folded permutation; ``KANLinear(compile=True)`` against eager
  1b kernel speed  CNP and block rotation vs the twin eager and ``torch.compile``d, achieved HBM bandwidth;
                   hyperspherical energy and KAN spline (``bench_kernels.py``'s cases at its GPU shapes)
  1c POET-X layer  at Llama-8B layer shapes (tokens 2048, 4096 → 4096, b 256) vs ``nn.Linear``, fwd+bwd
  1d 1B Llama      peak memory and tokens/s for AdamW and POET memory mode, then LoRA, OFT, Muon, Pion
                   (``bench_llm.py``'s worker, one fresh process per method)
  1e harmonic      fused harmonic loss at vocabulary 32k: peak memory vs unfused; liger-kernel if importable
  1f per-block     the 1B Llama under per-block FSDP2 on every lent GPU (torchrun, nproc = the GPU count, one
     FSDP2         process per GPU; world size 1 on one GPU): tokens/s and peak memory for AdamW with bf16
                   parameters / fp32 reduction and POET memory mode in fp32 (``orthoscope.distributed.sharding``)

Writes ``gpu_proof.json`` (everything) and ``gpu_proof.md`` (the target table) into ``--out`` (default ``$OUT`` when
set, else ``gpu-proof-out``) and prints the headline line last.

    python3 benchmarks/bench_gpu_proof.py                 # on the GPU machine (see BENCHMARKS.md for the command)
    .venv/bin/python benchmarks/bench_gpu_proof.py --dry-run    # CPU: tiny shapes, Triton's interpreter (CI runs it)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

DRY = "--dry-run" in sys.argv
if DRY:                                     # the interpreter must be chosen before anything imports Triton
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

import bench_kernels  # noqa: E402  (a sibling script: sys.path[0] is benchmarks/ when run as a script)
import bench_llm  # noqa: E402

BUDGET_S = {"correctness": 150, "kernel_speed": 120, "poet_layer": 30, "llm_1b": 150, "harmonic": 40,
            "fsdp_blocks": 120}
WALL_S = 470                                # ≤ 8 min including start-up; parts that would overrun are skipped


class OverBudget(Exception):
    pass


def _alarm(signum, frame):
    raise OverBudget("time budget spent")


def run_part(name: str, fn, report: dict, started: float) -> None:
    """Run one part under its own budget (SIGALRM), recording status, seconds and results or the error text."""
    budget = BUDGET_S[name]
    left = WALL_S - (time.monotonic() - started)
    if left < min(budget, 20):
        report[name] = {"status": "skipped", "why": f"{left:.0f} s left of the {WALL_S} s wall budget"}
        print(f"[{name}] skipped: {report[name]['why']}", flush=True)
        return
    budget = int(min(budget, left))
    print(f"[{name}] budget {budget} s", flush=True)
    t0 = time.monotonic()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(budget)
    try:
        report[name] = {"status": "ok", **fn()}
    except OverBudget:
        report[name] = {"status": "skipped", "why": f"its {budget} s budget ran out"}
    except Exception as e:   # noqa: BLE001 — a failure on real hardware is a result: record it and go on
        report[name] = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                        "traceback": traceback.format_exc()[-2000:]}
    finally:
        signal.alarm(0)
    report[name]["seconds"] = round(time.monotonic() - t0, 1)
    print(f"[{name}] {report[name]['status']} in {report[name]['seconds']} s"
          + (f": {report[name].get('error') or report[name].get('why')}" if report[name]["status"] != "ok" else ""),
          flush=True)


# ---- 1a: correctness on the hardware ------------------------------------------------------------------------------

def correctness_cases(device: str):
    """(name, op, tensors, args, kwargs, frozen) with ragged shapes: nothing a multiple of a tile size."""
    from orthoscope.kernels.bspline import uniform_grid

    g = torch.Generator().manual_seed(0)

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g)).to(device)

    cases = []
    for b in (4, 32, 64, 96):                                       # fused (b ≤ 64) and tiled (b > 64) CNP paths
        cases.append((f"cayley_neumann b={b} r=7", "cayley_neumann", [randn(7, b * (b - 1) // 2, scale=0.05)],
                      (b, 3), {}, ()))
    for b, perm in ((8, False), (8, True), (32, True)):
        x, R = randn(37, 5 * b), randn(5, b, b, scale=b ** -0.5)
        p = torch.randperm(5 * b, generator=g).to(device) if perm else None
        cases.append((f"block_rotate N=37 r=5 b={b}{' perm' if perm else ''}", "block_rotate", [x, R], (p,), {}, ()))
    for s in (1.0, 0.0):
        cases.append((f"pairwise_energy 37×20 s={s:g}", "pairwise_energy", [randn(37, 20)], (s,), {}, ()))
    h, c = randn(33, 24, scale=0.5), randn(101, 24, scale=0.5)
    t = torch.randint(0, 101, (33,), generator=g).to(device)
    cases.append(("harmonic_nll N=33 V=101 D=24", "harmonic_nll", [h, c, t], (24 ** 0.5,), {}, ()))
    x = (1.3 * randn(45, 3)).clamp(-1.6, 1.6)
    cases.append(("kan_spline B=45 3→5 G=5 k=3", "kan_spline", [x, uniform_grid(3, 5, 3).to(device),
                                                               randn(3, 5, 8)], (3,), {}, (1,)))
    return cases


def correctness(device: str, dtypes) -> dict:
    from orthoscope.kernels.check import TOLERANCE, max_error, mismatch, run_both

    rows, failures = [], []
    for name, op, tensors, args, kwargs, frozen in correctness_cases(device):
        for dtype in dtypes:
            cast = [t.to(dtype) if t.is_floating_point() else t for t in tensors]
            try:
                ref, got = run_both(op, cast, *args, frozen=frozen, **kwargs)
                problem, err = mismatch(ref, got, TOLERANCE[dtype]), max_error(ref, got)
            except Exception as e:  # noqa: BLE001 — a kernel that raises on the hardware is a failed check
                problem, err = f"{type(e).__name__}: {e}", float("nan")
            rows.append({"case": name, "dtype": str(dtype).replace("torch.", ""), "max_rel_err": err,
                         "ok": problem is None, **({"problem": problem} if problem else {})})
            print(f"  {name:<40} {rows[-1]['dtype']:<9} err {err:.1e}  {'ok' if problem is None else 'FAIL ' + problem}",
                  flush=True)
            if problem:
                failures.append(f"{name} {rows[-1]['dtype']}: {problem}")
    kan = kan_compiled_vs_eager(device)
    rows.append(kan)
    if not kan["ok"]:
        failures.append(f"{kan['case']}: {kan.get('problem')}")
    if failures:
        raise AssertionError(f"{len(failures)} kernel check(s) failed: " + "; ".join(failures))
    return {"checks": rows}


def kan_compiled_vs_eager(device: str) -> dict:
    """``KANLinear(compile=True)`` (inductor generates Triton on CUDA) against the eager layer: output and grads."""
    from orthoscope.kernels.check import FP32_TOL, max_error
    from orthoscope.models.kan import KANLinear

    torch.manual_seed(0)
    eager = KANLinear(16, 8, grid=5, k=3, device=device)
    compiled = KANLinear(16, 8, grid=5, k=3, compile=True, device=device)
    compiled.load_state_dict(eager.state_dict())
    x = torch.rand(64, 16, device=device) * 2 - 1
    outs = []
    for layer in (eager, compiled):
        xi = x.clone().requires_grad_()
        y = layer(xi)
        grads = torch.autograd.grad(y.square().sum(), [xi, *[p for p in layer.parameters() if p.requires_grad]])
        outs.append((y, grads))
    err = max_error(outs[0], outs[1])
    ok = err <= 10 * FP32_TOL          # different fp32 summation order: a few ulps of the largest value
    return {"case": "KANLinear(compile=True) vs eager 16→8 B=64", "dtype": "float32", "max_rel_err": err, "ok": ok,
            **({} if ok else {"problem": f"max relative error {err:.1e} > {10 * FP32_TOL:.0e}"})}


# ---- 1b, 1c, 1e: bench_kernels' cases; 1d: bench_llm's worker --------------------------------------------------------

def kernel_args(dry: bool):
    cuda = torch.cuda.is_available()
    return argparse.Namespace(reps=1 if dry else 20, warmup=0 if dry else 3, compile=not dry, device="cuda" if cuda
                              else "cpu", peak=bench_kernels.peak_bandwidth())


def kernel_speed(dtype, dry: bool) -> dict:
    results: dict = {}
    args = kernel_args(dry)
    bench_kernels.bench_cnp(args, dtype, results)
    bench_kernels.bench_rotate(args, dtype, results)
    if not dry:
        bench_kernels.bench_energy_kan(args, dtype, results)
    return {"ms": {f"{case} b={b} {impl}": 1e3 * t for case in ("cnp", "rotate")
                   for (b, impl), t in results.get(case, {}).items()},
            "peak_hbm_bytes_per_s": args.peak, "raw": {k: {str(kk): v for kk, v in d.items()}
                                                       for k, d in results.items()}}


def poet_layer(dtype, dry: bool) -> dict:
    results: dict = {}
    bench_kernels.bench_poet_layer(kernel_args(dry), dtype, results)
    return {"poet_fast_vs_linear": results["poet_fast"], "poet_mem_vs_linear": results["poet_mem"]}


def harmonic(dtype, dry: bool) -> dict:
    results: dict = {}
    bench_kernels.bench_harmonic(kernel_args(dry), dtype, results)
    out = {"impls": {k: {"seconds": v[0], "peak_bytes": v[1]} for k, v in results["harmonic"].items()}}
    if "harmonic_saved" in results:
        out["saved_fused_vs_unfused"] = results["harmonic_saved"][0] / results["harmonic_saved"][1]
    return out


def llm(dry: bool) -> dict:
    cuda = torch.cuda.is_available()
    d = bench_llm.DEFAULTS["cuda" if cuda else "cpu"]
    args = argparse.Namespace(**{**d, "threads": 1, "rounds": 1})
    if dry:
        args.size, args.batch, args.seq, args.steps, args.warmup = "tiny", 2, 32, 1, 0
    rows = {}
    # the rehearsal proves the path with the two headline methods; the GPU run measures all six
    for method in ("adamw", "poet_mem") if dry else ("adamw", "poet_mem", "lora", "oft", "muon", "pion"):
        rows[method] = bench_llm.launch(method, args)
        print(f"  {method}: {rows[method]}", flush=True)
    return {"size": args.size, "batch": args.batch, "seq": args.seq, "steps": args.steps, "methods": rows}


# ---- 1f: per-block FSDP2 on the lent GPUs -------------------------------------------------------------------------

FSDP_METHODS = (("adamw", "bf16"), ("poet_mem", "fp32"))     # POET's merge is refused under bf16 (fp32 masters)


def fsdp_blocks(dry: bool) -> dict:
    """torchrun with one process per GPU (2 gloo processes on the CPU rehearsal) runs ``fsdp_worker``; its rank 0
    writes the rows. The launch is a process group of its own, killed if the part's budget runs out."""
    import socket
    import subprocess
    import tempfile

    nproc = torch.cuda.device_count() if torch.cuda.is_available() else 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        rows_path = Path(tmp) / "fsdp_rows.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
               "127.0.0.1", "--master_port", str(port), str(Path(__file__).resolve()), "--fsdp-worker",
               str(rows_path), *(["--dry-run"] if dry else [])]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            log, _ = proc.communicate()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.returncode != 0 or not rows_path.exists():
            raise RuntimeError(f"torchrun exited {proc.returncode}: {log[-1500:]}")
        return {"nproc": nproc, **json.loads(rows_path.read_text())}


def fsdp_worker(rows_path: str, dry: bool) -> None:
    """One rank: for each of ``FSDP_METHODS``, the 1B Llama (tiny on the CPU) under ``distributed="fsdp"`` at
    ``precision``, 8 sequences of 1024 tokens per rank, 2 warm-up + 5 timed steps; tokens/s of the global batch,
    peak ``torch.cuda.max_memory_allocated`` (the largest over ranks)."""
    import torch.distributed as dist

    from orthoscope import Run
    from orthoscope.distributed import init_process_group
    from orthoscope.recipes.llm import SyntheticTokens, TokenTask, build_llama, llama_config, llm_method

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    init_process_group("nccl" if cuda else "gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    size, per_rank, seq, warmup, steps = ("tiny", 2, 32, 1, 2) if dry else ("1b", 8, 1024, 2, 5)
    rows = {}
    for method, precision in FSDP_METHODS:
        os.environ["ORTHOSCOPE_PRECISION"] = precision
        try:
            task = TokenTask(SyntheticTokens(vocab_size=32000 if not dry else 256, n_ctx=seq,
                                             batch_size=per_rank * world, seed=0), device="cuda" if cuda else "cpu",
                             n_eval=None)
            model = build_llama(llama_config(size, task.vocab_size, seq), seed=0, checkpointing=True)
            run = Run(model, task, llm_method(method, block=32 if dry else 256), probes=[], seed=0,
                      distributed="fsdp")
            rows[f"{method} {precision}"] = time_steps(run, warmup, steps, per_rank * world * seq, cuda)
        except Exception as e:  # noqa: BLE001 — one method failing on the hardware is a result; the next still runs
            rows[f"{method} {precision}"] = {"error": f"{type(e).__name__}: {e}"[:300]}
        run = model = None
        if cuda:
            torch.cuda.empty_cache()
    if rank == 0:
        Path(rows_path).write_text(json.dumps({"world_size": world, "size": size, "seq": seq,
                                               "batch_per_rank": per_rank, "rows": rows}))
    from orthoscope.distributed.seam import teardown
    teardown()                      # barrier, destroy the group, os._exit(0): see its docstring


def time_steps(run, warmup: int, steps: int, tokens_per_step: int, cuda: bool) -> dict:
    import torch.distributed as dist

    for _ in range(warmup):
        run.step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        run.step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = torch.tensor(time.perf_counter() - t0, dtype=torch.float64, device=run.dist.device)
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)                # the slowest rank sets the pace
    peak = torch.tensor(torch.cuda.max_memory_allocated() if cuda else 0, dtype=torch.float64,
                        device=run.dist.device)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    return {"tokens_per_s": steps * tokens_per_step / float(elapsed), "step_ms": 1e3 * float(elapsed) / steps,
            "peak_mb": float(peak) / 2 ** 20 if cuda else None, "loss": run.last_loss}


# ---- targets and report ---------------------------------------------------------------------------------------------

def targets(report: dict) -> list[tuple[str, str, str, str]]:
    """(target, limit, measured, verdict) rows; 'unmeasured' where a part did not produce the figure."""
    rows = []

    def add(name, limit, value, ok):
        rows.append((name, limit, "unmeasured" if value is None else value,
                     "—" if value is None else ("pass" if ok else "MISS")))

    checks = report.get("correctness", {})
    n_ok = sum(r["ok"] for r in checks.get("checks", []))
    add("every kernel matches its twin (fwd + grads, fp32 + bf16)", "all",
        None if checks.get("status") is None or checks.get("status") == "skipped" else
        f"{checks['status']}" + (f" ({n_ok}/{len(checks['checks'])})" if "checks" in checks else ""),
        checks.get("status") == "ok")
    ms = report.get("kernel_speed", {}).get("ms", {})
    for case, label in (("cnp", "CNP"), ("rotate", "block rotation")):
        for b in sorted({k.split()[1] for k in ms if k.startswith(case)}):
            eager, comp, tri = (ms.get(f"{case} {b} {i}") for i in ("eager", "compile", "triton"))
            add(f"{label} {b}: Triton vs eager", "≥ 2×", tri and eager and f"{eager / tri:.2f}×",
                bool(tri and eager and eager / tri >= 2))
            add(f"{label} {b}: Triton vs torch.compile", "≥ 1.0×", tri and comp and f"{comp / tri:.2f}×",
                bool(tri and comp and comp / tri >= 1))
    layer = report.get("poet_layer", {})
    add("POET-X layer (mem) vs nn.Linear", "≤ 1.4×", layer.get("poet_mem_vs_linear") and
        f"{layer['poet_mem_vs_linear']:.2f}×", layer.get("poet_mem_vs_linear", 9) <= 1.4)
    methods = report.get("llm_1b", {}).get("methods", {})
    a, p = methods.get("adamw", {}), methods.get("poet_mem", {})
    if "peak_mb" in a and "peak_mb" in p:
        add("1B POET memory mode peak memory vs AdamW", "≤ 0.40×", f"{p['peak_mb'] / a['peak_mb']:.2f}×",
            p["peak_mb"] / a["peak_mb"] <= 0.40)
        add("1B POET memory mode tokens/s vs AdamW", "≥ 0.7×", f"{p['tokens_per_s'] / a['tokens_per_s']:.2f}×",
            p["tokens_per_s"] / a["tokens_per_s"] >= 0.7)
    else:
        add("1B POET memory mode vs AdamW", "≤ 0.40× memory, ≥ 0.7× tokens/s", None, False)
    impl = report.get("harmonic", {}).get("impls", {})
    fused, unfused, liger = impl.get("triton", {}), impl.get("eager", {}), impl.get("liger", {})
    mem = fused.get("peak_bytes") and unfused.get("peak_bytes") and fused["peak_bytes"] / unfused["peak_bytes"]
    add("fused harmonic peak memory vs unfused (vocab 32k)", "≤ 0.5×", mem and f"{mem:.2f}×", bool(mem and mem <= 0.5))
    vs = fused.get("seconds") and liger.get("seconds") and fused["seconds"] / liger["seconds"]
    add("fused harmonic time vs liger-kernel FLCE", "≤ 1.2×", vs and f"{vs:.2f}×", bool(vs and vs <= 1.2))
    return rows


def fsdp_row(name: str, r: dict) -> str:
    if "error" in r:
        return f"| {name} | — | — | — | {r['error']} |"
    peak = "—" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}"
    return f"| {name} | {r['tokens_per_s']:.0f} | {r['step_ms']:.1f} | {peak} | |"


def write(report: dict, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    rows = targets(report)
    (out / "gpu_proof.json").write_text(json.dumps({**report, "targets": rows}, indent=1, default=str))
    lines = [f"# GPU proof — {report['device']}, {report['date']}", "",
             f"torch {report['torch']}, Triton {report['triton']}; {report['command']}", "",
             "| target | limit | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    fsdp = report.get("fsdp_blocks", {})
    if fsdp.get("rows"):
        lines += ["", f"Per-block FSDP2, {fsdp['size']} Llama, {fsdp['world_size']} rank(s), "
                      f"{fsdp['batch_per_rank']} × {fsdp['seq']} tokens per rank:", "",
                  "| method precision | tokens/s | step ms | peak MB per rank | note |", "|---|---|---|---|---|"]
        lines += [fsdp_row(name, r) for name, r in fsdp["rows"].items()]
    lines += ["", "| part | status | seconds | note |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['status']} | {v['seconds']} | {v.get('error') or v.get('why') or ''} |"
              for k, v in report.items() if isinstance(v, dict) and "status" in v]
    (out / "gpu_proof.md").write_text("\n".join(lines) + "\n")
    passed = sum(r[3] == "pass" for r in rows)
    missed = [r[0] for r in rows if r[3] == "MISS"]
    unmeasured = sum(r[3] == "—" for r in rows)
    return (f"HEADLINE: {report['device']}: {passed}/{len(rows)} targets pass, {len(missed)} missed"
            f"{' (' + '; '.join(missed) + ')' if missed else ''}, {unmeasured} unmeasured; "
            f"kernels on hardware: {report.get('correctness', {}).get('status', 'not run')}; wrote {out}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU rehearsal: tiny shapes, Triton's interpreter, every part end to end")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-proof-out", help="folder for the results")
    parser.add_argument("--fsdp-worker", metavar="ROWS_JSON", help=argparse.SUPPRESS)   # part 1f, under torchrun
    args = parser.parse_args(argv)
    if args.fsdp_worker:
        fsdp_worker(args.fsdp_worker, args.dry_run)
        return 0
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        parser.error("no CUDA device: run with --dry-run for the CPU rehearsal")
    started = time.monotonic()
    device = "cuda" if cuda else "cpu"
    import triton

    report = {"device": torch.cuda.get_device_name() if cuda else "CPU (dry run, Triton interpreter)",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
              "triton": triton.__version__, "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}
    dtype = torch.bfloat16 if cuda else torch.float32
    run_part("correctness", lambda: correctness(device, (torch.float32, torch.bfloat16)), report, started)
    run_part("kernel_speed", lambda: kernel_speed(dtype, args.dry_run), report, started)
    run_part("poet_layer", lambda: poet_layer(dtype, args.dry_run), report, started)
    run_part("llm_1b", lambda: llm(args.dry_run), report, started)
    run_part("fsdp_blocks", lambda: fsdp_blocks(args.dry_run), report, started)
    run_part("harmonic", lambda: harmonic(torch.float32 if not cuda else dtype, args.dry_run), report, started)
    print("\n" + (Path(args.out) / "gpu_proof.md").as_posix() + ":")
    line = write(report, Path(args.out))
    print((Path(args.out) / "gpu_proof.md").read_text())
    print(line)
    return 0 if all(v.get("status") != "failed" for v in report.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
