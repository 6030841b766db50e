"""Ahead-of-time compile check: every Triton kernel, as its launcher would launch it on a GPU, compiled to a cubin
for an NVIDIA target (default sm_90, H100) — on a machine without a GPU.

The interpreter (``TRITON_INTERPRET=1``) proves the kernels' arithmetic on CPU, but it runs the kernel bodies as
Python and accepts code that the GPU compiler rejects (and it uses different block sizes and operand dtypes). This
module closes that gap: it runs each public op forward and backward on small CPU tensors while *intercepting* every
kernel launch, and compiles the intercepted launch (the same constexprs, dtypes and ``num_warps`` the launcher chose
for a GPU) with ``triton.compile`` for the target. Nothing is executed, so results are garbage and discarded.

    python -m orthoscope.kernels.triton.triton_aot            # compile everything for sm_90; prints one line per kernel

Run it in a process WITHOUT ``TRITON_INTERPRET`` (under the interpreter the kernels are not compilable objects).
"""
from __future__ import annotations

import contextlib
import inspect
import sys
import time

import torch

_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int64: "i64",
          torch.int32: "i32", torch.bool: "i1"}


def _signature(fn, args, kwargs) -> tuple[dict, dict, dict]:
    """(signature, constexprs, options) of a launch, as ``triton.compile`` wants them."""
    import triton.language as tl

    bound = inspect.signature(fn.fn).bind(*args, **{k: v for k, v in kwargs.items() if k in fn.arg_names})
    options = {k: v for k, v in kwargs.items() if k not in fn.arg_names}
    signature, constexprs = {}, {}
    for param in fn.params:
        value = bound.arguments[param.name]
        if param.is_constexpr:
            signature[param.name] = "constexpr"
            constexprs[param.name] = value
        elif isinstance(value, torch.Tensor):
            signature[param.name] = "*" + _TYPES[value.dtype]
        elif isinstance(value, bool):
            signature[param.name] = "i1"
        elif isinstance(value, int):
            signature[param.name] = "i32" if -2 ** 31 <= value < 2 ** 31 else "i64"
        elif isinstance(value, float):
            signature[param.name] = "fp32"
        elif isinstance(value, tl.dtype):
            signature[param.name] = "constexpr"
            constexprs[param.name] = value
        else:
            raise TypeError(f"{fn.__name__}: cannot type argument {param.name}={value!r}")
    return signature, constexprs, options


@contextlib.contextmanager
def intercept(compiled: list, arch: int = 90):
    """Replace kernel launches by AOT compiles for ``sm_<arch>``; CPU tensors pass the launchers' device check."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from . import triton_common

    target = GPUTarget("cuda", arch, 32)
    seen = set()

    def run(self, *args, grid, warmup, **kwargs):
        signature, constexprs, options = _signature(self, args, kwargs)
        key = (self.__name__, tuple(sorted(signature.items())), tuple(sorted((k, str(v)) for k, v in
                                                                             constexprs.items())))
        if key not in seen:
            seen.add(key)
            t0 = time.perf_counter()
            src = ASTSource(fn=self, signature=signature, constexprs={(self.arg_names.index(k),): v
                                                                     for k, v in constexprs.items()})
            kernel = triton.compile(src, target=target, options=options)
            compiled.append((self.__name__, dict(constexprs), time.perf_counter() - t0,
                             kernel.metadata.shared, kernel.n_regs if hasattr(kernel, "n_regs") else None))
        return None

    saved_run, saved_check = JITFunction.run, triton_common.check_device
    JITFunction.run = run
    triton_common.check_device = lambda op, **tensors: None
    modules = [m for name, m in sys.modules.items() if name.startswith(__package__ + ".triton_")]
    patched = [(m, m.check_device) for m in modules if getattr(m, "check_device", None) is saved_check]
    for m, _ in patched:
        m.check_device = triton_common.check_device
    try:
        yield compiled
    finally:
        JITFunction.run = saved_run
        triton_common.check_device = saved_check
        for m, original in patched:
            m.check_device = original


def exercise_all(dtypes=(torch.float32, torch.bfloat16, torch.float16), cnp_blocks=(8, 32, 96)) -> None:
    """Every op forward + backward in each dtype and path the launchers distinguish (small CPU tensors):
    CNP fused (b ≤ 32) and tiled (b > 32), rotation with and without permutation, both memory modes, small and
    64-wide tiles; energy plain and angular half-space; harmonic; KAN."""
    from . import triton_ops as ops
    from .triton_rotate import block_rotate

    g = torch.Generator().manual_seed(0)
    for dtype in dtypes:
        def t(*shape):
            return torch.randn(*shape, generator=g).to(dtype).requires_grad_()

        for b in cnp_blocks:
            ops.cayley_neumann(t(2, b * (b - 1) // 2), b, 3).sum().backward()
        for b, perm in ((16, True), (256, False)):
            x, R = t(5, 2 * b), t(2, b, b)
            p = torch.randperm(2 * b, generator=g) if perm else None
            ops.block_rotate(x, R, p).sum().backward()
            if perm:
                block_rotate(x, R, p, recompute=False).sum().backward()
        ops.pairwise_energy(t(40, 24), 1.0).backward()
        ops.pairwise_energy(t(40, 24), 0.0, angular=True, half_space=True).backward()
        ops.harmonic_nll(t(9, 24), t(33, 24), torch.randint(0, 33, (9,), generator=g), 4.0).backward()
        grid = torch.linspace(-2, 2, 12).to(dtype).expand(3, 12).contiguous()
        ops.kan_spline(t(17, 3), grid, t(3, 5, 8), 3).sum().backward()


def compile_all(arch: int = 90, **exercise) -> list:
    """[(kernel name, constexprs, seconds, shared bytes, registers)] of every distinct launch, compiled."""
    compiled: list = []
    with intercept(compiled, arch):
        exercise_all(**exercise)
    return compiled


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    arch = int(argv[0]) if argv else 90
    t0 = time.perf_counter()
    compiled = compile_all(arch)
    for name, constexprs, seconds, shared, regs in compiled:
        short = {k: (str(v) if not isinstance(v, (int, bool)) else v) for k, v in constexprs.items()}
        print(f"{name:24s} {seconds:5.2f}s shared={shared:6d}B regs={regs} {short}")
    print(f"compiled {len(compiled)} kernel variants for sm_{arch} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
