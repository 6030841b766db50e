"""Throughput you can see: every ``Run`` records its step time, tokens (or examples) per second and MFU.

Every ``every`` steps (``run.throughput.every``, default 10) the History gets, for the steps since the last record:

    throughput/step_s           mean seconds of one training step (under torchrun: the slowest rank's)
    throughput/tokens_per_s     a token task — x and y both [B, T] integer tensors — counts B·T tokens per batch;
    throughput/examples_per_s   any other task counts its rows (examples) instead; both over the *global* batch
    throughput/tflops           achieved model TFLOP/s per device: FLOPs of one step ÷ step_s ÷ world size ÷ 1e12
    throughput/mfu              model FLOPs utilisation: achieved FLOP/s ÷ the device's peak (a fraction, 0–1)

**A step** is what ``Run.step`` times for ``run.wall_time``: the data draw, forward, backward, optimizer step and
interventions — not the probes and callbacks after it. Wall clock (``time.perf_counter``) on the CPU; on CUDA a pair
of CUDA events around each step, read once per record (one ``synchronize`` per ``every`` steps: nothing waits on
the GPU in between). The first step of a process is left out of the mean: it warms up (allocator, lazy
initialisation, ``torch.compile``'s first trace) and counts the FLOPs — unless it is the only step since the last
record (``every=1``, or a run resumed one step before a record), so the keys are recorded at exactly the multiples of
``every``, in a resumed run as in an uninterrupted one (their values, timings, differ between any two runs: compare
Histories without ``throughput/``). Under torchrun each rank times its own steps and one
all-reduce (MAX) per record takes the slowest rank's — the one the others wait for.

**FLOPs per step** are counted, not modelled: ``torch.utils.flop_counter.FlopCounterMode``'s formulas (in
``FlopCount``, a dispatch mode that leaves every op as eager runs it) around the forward and backward of the first step (once; ``flops_per_step``, summed over ranks). It counts the matmuls, convolutions and
attention that actually run, backward included (``models.flops.llama_train_flops`` is the textbook 6·N·D + attention
formula it is checked against in tests/test_throughput.py) — so a frozen base (LoRA) is not charged for weight
gradients it never computes, and with activation checkpointing the recomputed forward is counted too (that is
hardware FLOPs, HFU; MFU proper leaves recomputation out). Elementwise work and optimizer updates are not FLOPs in
this sense, as in every MFU figure.

**Peak FLOP/s**, in this order: ``run.throughput.peak_flops`` (yours), ``$ORTHOSCOPE_PEAK_FLOPS``, the table below
by ``torch.cuda.get_device_name()`` — dense bf16 tensor-core peaks from the vendors' data sheets. A CPU has no
reliable peak (vector units, clocks and threads vary with the machine and its load): there ``throughput/mfu`` is not
recorded and ``run.throughput.mfu_note`` says why; ``throughput/tflops`` still is.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

DEFAULT_EVERY = 10
# The keys this module records measure the machine, not the training: two identical runs differ in them.
MEASURED = "throughput/"
ENV_PEAK = "ORTHOSCOPE_PEAK_FLOPS"
# Dense (no 2:4 sparsity) bf16 tensor-core peak FLOP/s, by a fragment of torch.cuda.get_device_name(); the first
# fragment found in the name wins, so the specific variants come before the family.
PEAK_FLOPS: list[tuple[str, float]] = [
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),             # SXM5 (e.g. "NVIDIA H100 80GB HBM3")
    ("H200", 989e12),
    ("A100", 312e12),             # SXM4 and PCIe alike
    ("B200", 2250e12),
]


def device_peak_flops(device: torch.device) -> tuple[float | None, str]:
    """``(peak FLOP/s, where it came from)`` of ``device`` from ``$ORTHOSCOPE_PEAK_FLOPS`` or the table; ``(None,
    why not)`` where none is known (a CPU, a GPU missing from the table)."""
    env = os.environ.get(ENV_PEAK)
    if env:
        try:
            value = float(env)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"${ENV_PEAK} must be a positive number of FLOP/s (e.g. 989e12), got {env!r}")
        return value, f"${ENV_PEAK} = {value:.4g} FLOP/s"
    how = f"set run.throughput.peak_flops or ${ENV_PEAK} to the device's peak FLOP/s to record it"
    if device.type != "cuda":
        return None, f"no reliable peak FLOP/s for a {device.type} device, so throughput/mfu is not recorded ({how})"
    name = torch.cuda.get_device_name(device)
    for fragment, peak in PEAK_FLOPS:
        if fragment in name:
            return peak, f"{name}: {peak / 1e12:g} TFLOP/s dense bf16 (orthoscope.training.throughput.PEAK_FLOPS)"
    return None, f"{name} is not in orthoscope.training.throughput.PEAK_FLOPS, so throughput/mfu is not recorded ({how})"


def batch_items(x, y) -> tuple[int, str]:
    """``(count, unit)`` of one batch: ``(B·T, "tokens")`` when ``x`` and ``y`` are integer tensors of one shape
    ``[B, T]`` (a language-model batch: a target per position), else ``(B, "examples")``."""
    if (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.dim() == 2 and x.shape == y.shape
            and not x.is_floating_point() and not y.is_floating_point()):
        return x.numel(), "tokens"
    return len(x), "examples"


def flop_counter() -> "FlopCount":
    """A dispatch mode that counts FLOPs with ``FlopCounterMode``'s formulas (``flop_registry``) — plus the CPU's fused
    attention, ``aten._scaled_dot_product_flash_attention_for_cpu``, which torch's table misses (a Llama's attention
    would count as 0 FLOPs), with torch's own formulas for the CUDA kernels: forward Q·Kᵀ and P·V; backward five
    products (the flash backward recomputes Q·Kᵀ)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    def forward(query, key, value, *args, out_shape=None, **kwargs):        # FlopCounterMode passes shapes
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_backward_flop_count(grad_out, query, key, value)

    mapping = {}
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", forward),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", backward)):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            mapping[op] = formula
    return FlopCount(FlopCounterMode(display=False, custom_mapping=mapping).flop_registry)


class FlopCount(TorchDispatchMode):
    """Adds up the FLOPs of every op that has a formula in ``registry`` and runs each op exactly as eager does.

    Not ``FlopCounterMode`` itself: it *decomposes* every op missing from its table (``func.decompose``: RMSNorm,
    SiLU's backward, log-softmax …) into smaller ones, which round differently — measured on the tiny Llama: every
    gradient differs in its last bits, so a resumed run (whose first step is counted) would no longer be bitwise the
    uninterrupted one (tests/test_train.py). Those decomposed ops are elementwise: no FLOPs lost."""

    def __init__(self, registry: dict):
        super().__init__()
        self.registry, self.total = registry, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out

    def get_total_flops(self) -> int:
        return self.total


class Throughput:
    """A run's throughput meter (module docstring): ``Run`` calls ``begin``, ``add_batch``, ``counting``, ``end`` in
    each step and ``record`` when it observes.

    Args:
        every: record every ``every`` steps (``None``: never — no timing, no FLOP count).
        peak_flops: the device's peak FLOP/s for MFU; ``None`` for ``$ORTHOSCOPE_PEAK_FLOPS`` or the table.
    """

    def __init__(self, every: int | None = DEFAULT_EVERY, peak_flops: float | None = None):
        if every is not None and (not isinstance(every, numbers.Integral) or isinstance(every, bool) or every <= 0):
            raise ValueError(f"Throughput(every=...) must be a positive integer or None, got {every!r}")
        if peak_flops is not None and (not isinstance(peak_flops, numbers.Real) or isinstance(peak_flops, bool)
                                       or not math.isfinite(peak_flops) or peak_flops <= 0):
            raise ValueError(f"Throughput(peak_flops=...) must be a positive number of FLOP/s, got {peak_flops!r}")
        self.every, self.peak_flops = every, peak_flops
        self.flops_per_step: float | None = None      # summed over ranks; counted on the first step
        self.mfu_note = ""                            # why throughput/mfu is absent, once a record has been made
        self._device: torch.device | None = None
        self._seen = 0                                # steps begun in this process
        self._start = None                            # this step's start: perf_counter() or a CUDA event
        self._step_items = [0, "examples"]            # items of the current step's batches and their unit
        self._window: list = []                       # timed steps since the last record: seconds or event pairs
        self._items = 0
        self._unit = "examples"
        self._first = None                            # (timing, items, unit) of the process's first step

    def __repr__(self) -> str:
        return f"Throughput(every={self.every}, peak_flops={self.peak_flops})"

    # ---- inside a step ----------------------------------------------------------------------------------------
    def begin(self, model) -> None:
        """A step starts (its data not drawn yet)."""
        if self.every is None:
            return
        if self._device is None:
            self._device = _device_of(model)
        self._step_items = [0, "examples"]
        if self._device.type == "cuda":
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def add_batch(self, x, y) -> None:
        """One (global, unsharded) batch of this step was drawn."""
        if self.every is not None:
            count, unit = batch_items(x, y)
            self._step_items[0] += count
            self._step_items[1] = unit

    @contextlib.contextmanager
    def counting(self, dist=None):
        """Around the forward and backward of the first step: count its FLOPs (``FlopCounterMode``), summed over
        ranks (one all-reduce, on every rank). Later steps: nothing."""
        if self.every is None or self._seen > 0 or self.flops_per_step is not None:
            yield
            return
        # Eagerly: Dynamo refuses to compile under a dispatch mode such as FlopCounterMode, and the refusal would
        # stick to the compiled blocks' code for the whole process (measured: a compiled Llama never compiled);
        # force_eager leaves Dynamo out of this one step, so compilation starts at the second.
        with torch.compiler.set_stance("force_eager"), flop_counter() as counter:
            yield
        flops = float(counter.get_total_flops())
        if dist is not None:
            import torch.distributed as tdist

            total = torch.tensor(flops, dtype=torch.float64, device=dist.device)
            tdist.all_reduce(total, op=tdist.ReduceOp.SUM)
            flops = float(total)
        self.flops_per_step = flops

    def end(self) -> None:
        """The step finished (before its probes). The first step of the process is kept apart (module docstring)."""
        if self.every is None or self._start is None:
            return
        if self._device.type == "cuda":
            stop = torch.cuda.Event(enable_timing=True)
            stop.record()
            timing = (self._start, stop)
        else:
            timing = time.perf_counter() - self._start
        self._start = None
        if self._seen == 0:
            self._first = (timing, *self._step_items)
        else:
            self._window.append(timing)
            self._items += self._step_items[0]
            self._unit = self._step_items[1]
        self._seen += 1

    # ---- when the run observes --------------------------------------------------------------------------------
    def record(self, step: int, dist=None) -> dict:
        """The throughput keys for the steps timed since the last record, at a multiple of ``every`` (else ``{}``).
        Under torchrun every rank must call it at the same steps (one all-reduce)."""
        if self.every is None or step % self.every or not (self._window or self._first):
            return {}
        if not self._window:                          # the first step is all there is: better than no record
            timing, self._items, self._unit = self._first
            self._window = [timing]
        self._first = None
        seconds = self._seconds()
        world = 1
        if dist is not None:                          # the slowest rank sets the pace
            import torch.distributed as tdist

            slowest = torch.tensor(seconds, dtype=torch.float64, device=dist.device)
            tdist.all_reduce(slowest, op=tdist.ReduceOp.MAX)
            seconds, world = float(slowest), dist.world
        steps, items, unit = len(self._window), self._items, self._unit
        self._window, self._items = [], 0
        if seconds <= 0:
            return {}                                 # a clock too coarse to measure this window
        out = {"throughput/step_s": seconds / steps, f"throughput/{unit}_per_s": items / seconds}
        if self.flops_per_step:
            achieved = self.flops_per_step * steps / seconds / world          # FLOP/s of one device
            out["throughput/tflops"] = achieved / 1e12
            peak, note = (self.peak_flops, "run.throughput.peak_flops") if self.peak_flops else \
                device_peak_flops(self._device)
            self.mfu_note = "" if peak else note
            if peak:
                out["throughput/mfu"] = achieved / peak
        else:
            self.mfu_note = "no FLOP count (the first step of this process was not counted)"
        return out

    def _seconds(self) -> float:
        if self._window and isinstance(self._window[0], tuple):
            self._window[-1][1].synchronize()         # the last step's end: every earlier event has completed too
            return sum(start.elapsed_time(stop) for start, stop in self._window) / 1e3
        return float(sum(self._window))


def _device_of(model) -> torch.device:
    """The device the model computes on (its first parameter's; a DTensor's is its local shard's)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
