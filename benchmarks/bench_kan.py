"""KAN layer forward+backward: orthoscope's KANLinear vs pykan's KANLayer (and inkan, when installed), side by side.

    python benchmarks/bench_kan.py                 # default sizes, 2 threads, 15 interleaved rounds
    python benchmarks/bench_kan.py --threads 1 --rounds 25
    python benchmarks/bench_kan.py --quick --fresh-compile-cache     # headline size; compile time without inductor's cache

Every implementation computes the same function (pykan's B-splines of order k on G intervals + a SiLU branch;
inkan: uniform cubic only). Each round times one forward+backward of every implementation in turn (so machine
load hits all of them alike), each right after an untimed call of the same implementation: the steady state of a
training loop (``--cold`` drops that call: each implementation then runs right after another one, with caches and
allocator left as that one left them). The table shows the median over rounds of the wall-clock time and of the
process CPU time (``time.process_time``: with 1 thread it is the least sensitive to other processes on a busy
machine). "saved" is the activation memory autograd
keeps between forward and backward (bytes of the tensors saved for backward, counted once each), measured with
``torch.autograd.graph.saved_tensors_hooks``. The last line is the headline ratio at in = out = 64, batch 1024,
G = 5, k = 3.

"orthoscope, torch.compile" is ``KANLinear(..., compile=True)`` (``orthoscope/models/kan_compiled.py``), compiled
afresh for every size (``torch._dynamo.reset()``, static shapes); its one-off compile time is the wall time of its
first forward+backward, printed per size (inductor caches generated code on disk: ``--fresh-compile-cache`` points
the cache at an empty folder to time a first run on a machine).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

SIZES = [(64, 64, 1024, 5, 3), (16, 16, 1024, 5, 3), (128, 128, 1024, 5, 3), (64, 64, 1024, 20, 3),
         (64, 64, 4096, 5, 3)]


def implementations(n_in, n_out, G, k, with_inkan):
    from kan.KANLayer import KANLayer

    from orthoscope.models.kan import KANLinear

    torch.manual_seed(0)
    theirs = KANLayer(n_in, n_out, num=G, k=k)
    impls = {"pykan": lambda x: theirs(x)[0], "orthoscope": KANLinear.from_pykan(theirs),
             "orthoscope, torch.compile": KANLinear.from_pykan(theirs, compile=True)}
    if with_inkan and k == 3:
        import inkan

        impls["inkan (eager)"] = inkan.KANLayer(n_in, n_out, grid_size=G, compile_basis=False)
    return impls


def fwd_bwd(fn, x):
    y = fn(x)
    y.sum().backward()


def saved_bytes(fn, x) -> int:
    seen, total = set(), [0]

    def pack(t):
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x)
    y.sum().backward()
    return total[0]


def bench_size(size, rounds, with_inkan, warm=True):
    """Rows ``(name, wall ms, CPU ms, saved MiB)`` and the compiled layer's first-call (compile) seconds."""
    n_in, n_out, batch, G, k = size
    torch._dynamo.reset()                                  # compile for this size's static shapes
    impls = implementations(n_in, n_out, G, k, with_inkan)
    x = (torch.rand(batch, n_in, generator=torch.Generator().manual_seed(1)) * 2 - 1).requires_grad_()
    wall, cpu = {name: [] for name in impls}, {name: [] for name in impls}
    first_call = {}
    for name, fn in impls.items():                         # warm-up; the compiled layer compiles here
        t0 = time.perf_counter()
        fwd_bwd(fn, x)
        first_call[name] = time.perf_counter() - t0
    check_compiled(impls, x)
    slow = rounds if batch * n_in * n_out <= 64 * 64 * 1024 * 2 else max(3, rounds // 3)
    for r in range(rounds):
        for name, fn in impls.items():
            if name == "pykan" and r >= slow:
                continue
            if warm:                                       # steady state: the same implementation just ran
                fwd_bwd(fn, x)
            t0, c0 = time.perf_counter(), time.process_time()
            fwd_bwd(fn, x)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    rows = []
    for name, fn in impls.items():
        rows.append((name, statistics.median(wall[name]) * 1e3, statistics.median(cpu[name]) * 1e3,
                     saved_bytes(fn, x) / 2**20))
    return rows, first_call["orthoscope, torch.compile"]


def check_compiled(impls, x):
    """The compiled layer computes what the eager one does (output and every gradient, ≤ 1e-5 relative to the
    largest entry) — else the benchmark stops."""
    results = []
    for layer in (impls["orthoscope"], impls["orthoscope, torch.compile"]):
        xx = x.detach().clone().requires_grad_()
        y = layer(xx)
        params = [layer.coef, layer.scale_sp, layer.scale_base]
        grads = torch.autograd.grad(y, [xx] + params, torch.randn(y.shape, generator=torch.Generator().manual_seed(2)))
        results.append([y.detach(), *grads])
    for name, a, b in zip(["y", "dx", "dcoef", "dscale_sp", "dscale_base"], *results):
        err = float((a - b).abs().max() / a.abs().max())
        if not err <= 1e-5:
            raise SystemExit(f"compiled layer differs from the eager one in {name}: max error {err:.2e} (relative)")


def reproduce_hellokan():
    """pykan's hellokan (float64) with orthoscope's PyKAN wrapper and a Run; pykan's published numbers beside."""
    from orthoscope.recipes.kan_fit import hellokan

    published = {"fit": (1.85e-2, 1.77e-2), "prune+fit": (1.79e-2, 1.72e-2), "refine(10)+fit": (4.67e-4, 4.73e-4),
                 "auto_symbolic+fit": (3.33e-10, 7.20e-11)}
    t0 = time.perf_counter()
    out = hellokan()
    print(f"{'phase':<20} {'train RMSE':>11} {'test RMSE':>11}   {'pykan train':>11} {'pykan test':>11}")
    for phase, (tr, te) in published.items():
        ours = out[phase]
        print(f"{phase:<20} {ours[0]:>11.3g} {ours[1]:>11.3g}   {tr:>11.3g} {te:>11.3g}")
    print("width after prune:", out["width_after_prune"], "| symbolic edges:", out["edges"])
    print(f"hellokan reproduced in {time.perf_counter() - t0:.0f} s: test RMSE after refine(10) "
          f"{out['refine(10)+fit'][1]:.3g} (pykan 4.73e-4); formula {out['formula']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds per size")
    parser.add_argument("--no-inkan", action="store_true", help="leave inkan out even if installed")
    parser.add_argument("--quick", action="store_true", help="headline size only")
    parser.add_argument("--cold", action="store_true",
                        help="time each call right after the previous implementation's (no same-implementation "
                             "warm-up call in each round)")
    parser.add_argument("--hellokan", action="store_true", help="reproduce pykan's hellokan numbers instead")
    parser.add_argument("--fresh-compile-cache", action="store_true",
                        help="point inductor's on-disk cache at an empty folder (times a cold compile)")
    args = parser.parse_args(argv)
    if args.fresh_compile_cache:
        import atexit
        import shutil
        import tempfile

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="kan-bench-inductor-")
        atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
    torch.set_num_threads(args.threads)
    if args.hellokan:
        return reproduce_hellokan()
    try:
        import inkan  # noqa: F401
        with_inkan = not args.no_inkan
    except ImportError:
        with_inkan = False
    sizes = SIZES[:1] if args.quick else SIZES
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds, fp32, CPU, "
          f"{'cold' if args.cold else 'steady state'}")
    print(f"{'in':>4} {'out':>4} {'batch':>6} {'G':>3} {'k':>2}  {'implementation':<26} {'wall ms':>9} "
          f"{'× pykan':>8} {'CPU ms':>9} {'× pykan':>8} {'saved MiB':>10}")
    headline, compile_s = None, []
    for size in sizes:
        rows, first_call = bench_size(size, args.rounds, with_inkan, warm=not args.cold)
        compile_s.append(first_call)
        base_wall, base_cpu = rows[0][1], rows[0][2]
        for name, ms, cpu_ms, mib in rows:
            print(f"{size[0]:>4} {size[1]:>4} {size[2]:>6} {size[3]:>3} {size[4]:>2}  {name:<26} {ms:>9.2f} "
                  f"{base_wall / ms:>7.1f}× {cpu_ms:>9.2f} {base_cpu / cpu_ms:>7.1f}× {mib:>10.2f}")
        if size == SIZES[0]:
            by_name = {n: (ms, cpu_ms, mib) for n, ms, cpu_ms, mib in rows}
            headline = {name: (base_wall / by_name[name][0], by_name[name][0], base_cpu / by_name[name][1],
                               by_name[name][2] / rows[0][3]) for name in ("orthoscope", "orthoscope, torch.compile")}
            base = base_wall
    print("first forward+backward of the compiled layer (compile time), s: "
          + ", ".join(f"{s:.1f}" for s in compile_s)
          + (" (fresh inductor cache)" if args.fresh_compile_cache else " (inductor's on-disk cache as found)"))
    (eager_x, eager_ms, eager_cpu_x, eager_mem), (comp_x, comp_ms, comp_cpu_x, comp_mem) = headline.values()
    print(f"KAN layer fwd+bwd at in=out=64, batch 1024, G=5, k=3 vs pykan {base:.2f} ms (wall, median): "
          f"orthoscope eager {eager_ms:.2f} ms = {eager_x:.1f}x faster ({eager_cpu_x:.1f}x in process CPU time), "
          f"torch.compile {comp_ms:.2f} ms = {comp_x:.1f}x ({comp_cpu_x:.1f}x CPU); saved activation memory "
          f"{eager_mem:.2f}x / {comp_mem:.2f}x of pykan's")


if __name__ == "__main__":
    main()
