"""Live tensor bytes, measured: the peaks the memory plan (``orthoscope.distributed.plan``) is checked against, and
the working set of one decoder layer's backward that it measures.

``LiveBytes`` is a ``TorchDispatchMode`` that counts the bytes of every live tensor storage it has seen: the ones
handed to ``track`` on entry (the model's parameters, buffers and gradients, the optimizer's state) and every storage
an operator returns while the mode is active, each counted until its last reference dies (a weak reference's
callback) and resized with it (FSDP2 frees and re-allocates its unsharded parameters with ``UntypedStorage.resize_``,
which no dispatcher sees, so ``resize_`` is wrapped while the mode is active — as PyTorch's own ``MemTracker`` does).

Why not ``torch.distributed._tools.mem_tracker.MemTracker`` itself: it registers a gradient hook on every parameter
of every module it meets and fails on a frozen one ("cannot register a hook on a tensor that doesn't require
gradient"), i.e. on every adapter method (LoRA, OFT, POET); the counting rule here is the same (storage bytes, no
allocator rounding on the CPU). What neither sees: memory allocated outside the dispatcher (gloo's own buffers).

**Communication buffers are not counted** (as the plan does not count them): a storage first seen while a
``torch.distributed`` collective runs (``distributed_c10d`` on the Python stack) is the backend's own, not an
argument of the collective (those exist before the call). Measured: gloo's reduce-scatter (FSDP2's gradient
reduction) copies its whole input into a storage of its own, which lives as long as gloo's ``Work`` — freed by the
calling thread or by gloo's worker thread, whichever drops the work last, so a peak that counted it depended on
thread scheduling (one block more or less at the next block's all-gather copy-out: tests/test_plan.py).
"""
from __future__ import annotations

import sys
import weakref
from functools import wraps

import torch
from torch.distributed import distributed_c10d
from torch.distributed._tools.common_utils import get_untyped_storages
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary


class LiveBytes(TorchDispatchMode):
    """``with LiveBytes() as lb: lb.track(tensors); ...`` → ``lb.current``, ``lb.peak`` (bytes); ``reset_peak()``."""

    def __init__(self):
        super().__init__()
        self.sizes = WeakIdKeyDictionary()          # storage → its counted bytes
        self.refs: set = set()
        self.current = self.peak = 0
        self._resize = torch.UntypedStorage.resize_

    def track(self, *tensors) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                for st in get_untyped_storages(t):
                    self._add(st)
        self.peak = max(self.peak, self.current)

    def track_run(self, model: torch.nn.Module, optimizer) -> None:
        """Every parameter, buffer and gradient of ``model`` and every tensor of ``optimizer``'s state."""
        self.track(*model.parameters(), *model.buffers(), *(p.grad for p in model.parameters()))
        for state in optimizer.state.values():
            self.track(*state.values())

    def forget(self, t: torch.Tensor) -> None:
        """Stop counting ``t``'s storages (from now on, until they are freed)."""
        for st in get_untyped_storages(t):
            cell = self.sizes.get(st)
            if cell is not None:
                self.current -= cell[0]
                cell[0] = 0

    def reset_peak(self) -> None:
        self.peak = self.current

    def _add(self, st) -> None:
        if st in self.sizes or st.device.type == "meta":
            return
        cell = [st.nbytes()]
        self.current += cell[0]
        self.sizes[st] = cell

        def gone(ref, cell=cell):
            self.current -= cell[0]
            self.refs.discard(ref)

        self.refs.add(weakref.ref(st, gone))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if _inside_collective():                    # the backend's buffers (module docstring): not counted
            return out
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                for st in get_untyped_storages(t):
                    self._add(st)
        self.peak = max(self.peak, self.current)
        return out

    def __enter__(self):
        original, tracker = self._resize, self

        @wraps(original)
        def resize_(st, size):
            result = original(st, size)
            cell = tracker.sizes.get(st)
            if cell is None:
                tracker._add(st)
            else:
                tracker.current += st.nbytes() - cell[0]
                cell[0] = st.nbytes()
            tracker.peak = max(tracker.peak, tracker.current)
            return result

        torch.UntypedStorage.resize_ = resize_
        return super().__enter__()

    def __exit__(self, *exc):
        torch.UntypedStorage.resize_ = self._resize
        return super().__exit__(*exc)


_C10D = distributed_c10d.__file__


def _inside_collective() -> bool:
    """Whether a ``torch.distributed`` collective (a function of ``distributed_c10d``) is on the Python stack."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename == _C10D:
            return True
        frame = frame.f_back
    return False


def second_step_peak(run) -> int:
    """Peak live bytes during ``run``'s second step, tracking its parameters and optimizer state: the first step
    creates the optimizer state, so the second is the steady step the memory plan predicts (``distributed.plan``)."""
    tracker = LiveBytes()
    with tracker:
        tracker.track_run(run.model, run.optimizer)
        run.step()
        tracker.reset_peak()
        run.step()
    return tracker.peak
