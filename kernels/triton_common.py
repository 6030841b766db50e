"""Shared helpers of the Triton kernels: input checks that run BEFORE a launch, dtype maps, block-size rules.

Every launcher in ``triton_*.py`` calls these checks first, so a bad call fails in Python with a message that names
the op, the argument, the value and what is allowed — never inside a kernel (on a GPU an out-of-bounds access is a
silent corruption or a crash; in the interpreter it kills the process).

Conventions shared by all kernels:

* Floating inputs may be float32, float16 or bfloat16. Kernels convert every loaded value to fp32 right after
  ``tl.load`` and accumulate in fp32 (the interpreter also mis-handles bf16 arithmetic, machine notes). Outputs are
  cast back to the input dtype on store.
* ``tl.dot`` sees fp32 operands with ``input_precision="ieee"`` (exact fp32 products, what torch's CPU matmul does),
  except where the docstring of a kernel says it feeds native half-precision operands to the tensor cores on a GPU.
  fp32 operands use TF32 on a GPU only when ``torch.backends.cuda.matmul.allow_tf32`` is on, as torch itself does.
* Launchers require unit stride along the last (fastest) dimension of every tensor they hand to a kernel; the public
  ops reshape/copy their inputs into that layout first, so callers may pass any strided tensor.
* Blocks handed to ``tl.dot`` are at least 16 wide (a GPU requirement) and powers of two (``tl.arange``).
"""
from __future__ import annotations

import os
import weakref

import torch
import triton
import triton.language as tl

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
TL_DTYPE = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def interpreting() -> bool:
    """True when kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``, read when triton_* is imported)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def pow2(n: int, least: int = 16) -> int:
    """The smallest power of two ≥ max(n, least)."""
    return max(least, triton.next_power_of_2(max(int(n), 1)))


def check_float(op: str, name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} has dtype {t.dtype}; the Triton kernel takes float32, float16 or bfloat16 "
                        f"(use orthoscope.kernels.use('torch') for other dtypes)")


def check_same_dtype(op: str, **tensors: torch.Tensor) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        raise TypeError(f"{op}: inputs must share one dtype, got " +
                        ", ".join(f"{n}={d}" for n, d in dtypes.items()))


def check_device(op: str, **tensors: torch.Tensor) -> None:
    """All tensors on one device; CPU tensors only under the interpreter, CUDA tensors only without it."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"{op}: inputs must be on one device, got " +
                         ", ".join(f"{n} on {d}" for n, d in devices.items()))
    device = next(iter(devices.values()))
    if device.type == "cpu" and not interpreting():
        raise RuntimeError(f"{op}: the Triton kernel got CPU tensors; on CPU it runs only under TRITON_INTERPRET=1 "
                           "(set before orthoscope.kernels.triton.triton_ops is imported) — or use the torch twin")
    if device.type == "cuda" and interpreting():
        raise RuntimeError(f"{op}: TRITON_INTERPRET=1 is set, so the Triton kernels were built for the CPU "
                           "interpreter and cannot take CUDA tensors; unset it and restart Python")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{op}: the Triton kernel needs CUDA tensors, got {device}")


def check_unit_stride(op: str, name: str, t: torch.Tensor) -> None:
    """The launcher-level layout rule: unit stride along the last dimension (coalesced loads)."""
    if t.dim() and t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{op}: {name} must have unit stride along its last dimension (got strides {t.stride()} "
                         f"for shape {tuple(t.shape)}); pass {name}.contiguous()")


def check_contiguous(op: str, name: str, t: torch.Tensor) -> None:
    if not t.is_contiguous():
        raise ValueError(f"{op}: {name} must be contiguous (got strides {t.stride()} for shape {tuple(t.shape)}); "
                         f"pass {name}.contiguous()")


def check_index(op: str, name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    if t.dtype != torch.long or tuple(t.shape) != shape:
        raise ValueError(f"{op}: {name} must be an int64 tensor of shape {list(shape)}, got {t.dtype} "
                         f"{list(t.shape)}")
    check_contiguous(op, name, t)


_checked_perms: dict[int, tuple] = {}


def check_permutation(op: str, name: str, perm: torch.Tensor, n: int) -> None:
    """``perm`` must be a permutation of ``0 … n−1`` (a gather index out of range would read outside x on a GPU).
    The check syncs with the device once per tensor and version; later calls with the same, unmodified tensor
    are free."""
    check_index(op, name, perm, (n,))
    key = id(perm)
    seen = _checked_perms.get(key)
    if seen is not None and seen[0]() is perm and seen[1] == perm._version:
        return
    if not torch.equal(torch.sort(perm).values, torch.arange(n, device=perm.device)):
        raise ValueError(f"{op}: {name} must be a permutation of 0..{n - 1} (each index exactly once)")
    _checked_perms[key] = (weakref.ref(perm, lambda _, k=key: _checked_perms.pop(k, None)), perm._version)


def autocast_cast(*tensors):
    """Under ``torch.autocast`` (on the tensors' device), cast floating tensors to the autocast dtype — what the
    twins' matmuls/einsums get from autocast — so mixed fp32/bf16 inputs meet in one dtype, as in the twin."""
    device = next((t.device.type for t in tensors if isinstance(t, torch.Tensor)), "cpu")
    if not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in tensors)


def unit_stride_2d(t: torch.Tensor, last: int) -> torch.Tensor:
    """``t`` viewed as ``[-1, last]`` with unit inner stride (copies only when the layout needs it)."""
    t2 = t.reshape(-1, last)
    return t2 if t2.stride(-1) == 1 or last == 1 else t2.contiguous()


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` precision for operands stored in ``dtype`` (see module docstring)."""
    if dtype == torch.float32 and not interpreting() and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def grad_dot_precision(dtype: torch.dtype) -> str:
    """Precision of fp32 ``tl.dot`` products inside backward kernels whose inputs were stored in ``dtype``: TF32 on a
    GPU for half-precision inputs (their own rounding is coarser), otherwise as ``dot_precision``."""
    if dtype != torch.float32 and not interpreting():
        return "tf32"
    return dot_precision(dtype)


def dot_dtype(dtype: torch.dtype):
    """Operand dtype for ``tl.dot`` on values that were stored in ``dtype``: the native half type on a GPU (exact,
    since the values came from that type, and it uses the tensor cores), fp32 in the interpreter."""
    return tl.float32 if interpreting() else TL_DTYPE[dtype]
