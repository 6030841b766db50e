"""A memory plan: each rank's predicted peak memory for training a Llama with a method at a world size, itemised.

    plan = memory_plan(llama_config("1b"), POET(block=256), world_size=8, batch_size=8, seq_len=2048)
    print(plan.table())                 # one row per item, the phases, the peak and where it occurs
    plan.to_dict()                      # the same as JSON data (``python -m orthoscope plan CONFIG --json``)

**What is counted, per rank** (bytes of tensor storages, as PyTorch's ``MemTracker`` counts them; no allocator
rounding or fragmentation, no CUDA context, no communication buffers of NCCL/gloo):

* *parameters*, sharded 1/N by FSDP2 (``Shard(0)``: ⌈rows/N⌉ rows each) and, under FSDP2, the unsharded copies in
  flight: every block of ``repeated_blocks(model)`` is its own ``fully_shard`` unit and so are the embeddings, the
  final norm and the head (``sharding.sharding_units``), each resharded after its forward; prefetch of one block in
  forward and backward. N = 1 is one process: no FSDP2, the whole model resident.
* *gradients* of the trainable parameters, sharded 1/N, plus under FSDP2 one block's unsharded gradients before
  their reduce-scatter, and in a block's backward the previous unit's reduce-scatter input and the next unit's
  prefetched all-gather buffer (``_fsdp_backward_items``).
* *optimizer state*: ``torch.optim.AdamW`` 2× the trainable parameters (POET, OFT, LoRA, AdamW); Muon a momentum
  per hidden matrix on its owner (owners balanced by size: the largest rank's share) + AdamW 2× the rest; Pion the
  Lie-algebra moments ``in² + out²`` per matrix (``momentum="lie"``; ×2 with ``second_moment``; the matrix size with
  ``"transported_ambient"``) on its owner + AdamW 2× the rest.
* *activations*: what autograd saves, **measured** on one real decoder layer on the CPU (``plan_layer``; with
  the method attached, at two token counts, extrapolated linearly in tokens: every saved tensor of a Llama layer
  with flash-style attention is linear in tokens, and weight-sized saves such as POET's weight-centric ``W_eff``
  are the constant part), times the number of layers; plus the residual stream between layers, the rotary tables,
  the final norm, the logits and the loss's log-softmax. A layer's backward working set is extrapolated moment by
  moment (``plan_layer._peak_fit``). With activation checkpointing only each layer's input is kept, and a layer's
  backward is measured as it runs, wrapped in ``torch.utils.checkpoint``: its recomputed forward included.
* *transients*: the loss gradient at the start of backward, the optimizer step's temporaries, Muon/Pion's full
  matrices on their owners in buckets (``matrices.BUCKET_BYTES``: one bucket gathered while the next is in flight),
  POET's float64 merge of one layer on its owner, the run's non-finite guard (a copy of parameters and optimizer state
  before each update, for models of at most ``GUARD_MAX_PARAMS`` parameters). A checkpoint save adds nothing: each
  owner writes its own matrices' state (``matrix_state``), FSDP2's shards are written as held.

**Phases.** forward (end of forward: all activations and the log-softmax live), backward (its start: plus the loss
gradients), optimizer step, merge (POET, on merge steps), checkpoint save. The peak is the largest phase.
Validated against measured peaks of real runs at tiny scale on the CPU (tests/test_plan.py), within 10 % at N = 1
and 2 (docs/distributed.md "Memory plan").
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..models.blocks import repeated_blocks
from .plan_layer import layer_fit

#: training.run.GUARD_MAX_PARAMS (the distributed layer may not import the training loop; a test keeps them equal)
GUARD_MAX_PARAMS = 5_000_000
PHASES = ("forward: last all-gather", "forward end", "backward start", "backward: last block", "backward: first block",
          "optimizer step", "merge", "checkpoint save")
SHORT = dict(zip(PHASES, ("A", "F", "B", "L", "b", "O", "M", "C")))
FWD = ("forward: last all-gather", "forward end")
BWD = ("backward start", "backward: last block", "backward: first block")
MATRIX_METHODS = ("Muon", "Pion")
ADAMW_METHODS = ("AdamW", "POET", "OFT", "LoRA")
METHODS = ADAMW_METHODS + MATRIX_METHODS


class PlanError(ValueError):
    """A model or method the memory plan cannot describe."""


@dataclass
class Item:
    """One line of the plan: ``bytes`` per rank, present in ``phases``; ``note`` says how it was counted."""
    name: str
    bytes: int
    phases: tuple[str, ...]
    note: str = ""


@dataclass
class MemoryPlan:
    world_size: int
    method: str
    setting: dict
    items: list[Item] = field(default_factory=list)

    def phase_bytes(self) -> dict[str, int]:
        """Total bytes per phase (phases no item is present in are left out)."""
        return {phase: sum(i.bytes for i in self.items if phase in i.phases) for phase in PHASES
                if any(phase in i.phases and i.bytes for i in self.items if i.phases != PHASES)}

    @property
    def peak(self) -> int:
        return max(self.phase_bytes().values())

    @property
    def peak_phase(self) -> str:
        phases = self.phase_bytes()
        return max(phases, key=phases.get)

    def to_dict(self) -> dict:
        return {"world_size": self.world_size, "method": self.method, "setting": self.setting,
                "items": [dataclasses.asdict(i) for i in self.items], "phases": self.phase_bytes(),
                "peak_bytes": self.peak, "peak_phase": self.peak_phase}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """The plan as a text table: one row per item (its bytes and the phases it is live in), then the phases."""
        rows = [f"memory plan: {self.method}, world size {self.world_size}, per rank "
                f"({', '.join(f'{k}={v}' for k, v in self.setting.items())})",
                f"  {'item':<48} {'bytes':>10}  phases   note"]
        for i in self.items:
            tags = "".join(SHORT[p] for p in PHASES if p in i.phases)
            rows.append(f"  {i.name:<48} {human(i.bytes):>10}  {tags:<7}  {i.note}")
        rows.append("  phases (" + ", ".join(f"{v} {k}" for k, v in SHORT.items()) + "):")
        for phase, total in self.phase_bytes().items():
            rows.append(f"    {phase:<26} {human(total):>10}" + ("   ← peak" if phase == self.peak_phase else ""))
        return "\n".join(rows)


def human(n: float) -> str:
    """Bytes as a short human-readable string (binary units: 1 GiB = 2³⁰ bytes)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024


# ---- the model's tensors, with the method attached --------------------------------------------------------------

@dataclass
class Entry:
    """One parameter or buffer: its shape, bytes per element, whether it trains, its block (-1: outside the blocks)."""
    name: str
    shape: tuple[int, ...]
    itemsize: int
    trainable: bool
    block: int
    matrix: bool = False                 # on the Muon/Pion matrix path
    buffer: bool = False

    @property
    def bytes(self) -> int:
        return math.prod(self.shape) * self.itemsize

    def shard_bytes(self, world: int) -> int:
        """FSDP2's ``Shard(0)``: ⌈rows/N⌉ rows on the rank holding the most (rank 0)."""
        if world == 1 or not self.shape:
            return self.bytes
        return -(-self.shape[0] // world) * math.prod(self.shape[1:]) * self.itemsize


def model_entries(config, method) -> list[Entry]:
    """Every parameter and buffer of the Llama of ``config`` with ``method`` attached, built on the meta device
    (no memory, no weights). POET's layers are described from its own layout functions (its attach draws
    permutations, which the meta device cannot)."""
    from ..models.llama import build_llama

    name = type(method).__name__
    if name not in METHODS:
        raise PlanError(f"the memory plan covers the methods {list(METHODS)}, got {name}")
    with torch.device("meta"):
        model = build_llama(config, seed=0)
        if name in ("OFT", "LoRA"):
            model = method.attach(model)
    blocks = {n: i for i, (n, _) in enumerate(repeated_blocks(model))}
    matrices = set()
    if name in MATRIX_METHODS:
        matrices = {id(p) for _, p in method.groups(model)[0]["params"]}

    def block_of(path: str) -> int:
        for prefix, i in blocks.items():
            if path.startswith(prefix + "."):
                return i
        return -1

    entries = [Entry(n, tuple(p.shape), p.element_size(), p.requires_grad, block_of(n), id(p) in matrices)
               for n, p in model.named_parameters()]
    entries += [Entry(n, tuple(b.shape), b.element_size(), False, block_of(n), buffer=True)
                for n, b in model.named_buffers()]
    if name == "POET":
        entries = _poet_entries(model, method, entries)
    return entries


def _poet_entries(model: nn.Module, method, entries: list[Entry]) -> list[Entry]:
    """POET's layers as ``POETLinear`` holds them: the pre-permuted base weight frozen, the packed skew blocks
    ``poet_q_in``/``poet_q_out`` trained, the permutations (int64) and two probe vectors as buffers."""
    from ..adapters.core import matched_modules
    from ..adapters.poet import side_blocks
    from ..ortho import n_packed

    if method.quantize is not None:
        raise PlanError("the memory plan does not cover POET's quantized base (quantize=8/4) yet")
    paths = matched_modules(model, method.targets, method.exclude)
    problems = method._unfit(model, paths)
    if problems and not method.skip_indivisible:
        raise PlanError(f"POET cannot adapt {len(problems)} layer(s): " + "; ".join(problems.values()))
    paths = [p for p in paths if p not in problems]
    by_name = {e.name: e for e in entries}
    out = [e for e in entries if e.name not in {f"{p}.weight" for p in paths}]
    for p in paths:
        m = model.get_submodule(p)
        w = by_name[f"{p}.weight"]
        base = p + ".base_layer"
        out.append(Entry(f"{base}.weight", w.shape, w.itemsize, False, w.block))
        for side, n in (("in", m.in_features), ("out", m.out_features)):
            b, r = side_blocks(n, method.variant, method.block, method.fs_fraction)
            out.append(Entry(f"{p}.poet_q_{side}", (r, n_packed(b)), w.itemsize, True, w.block))
            out.append(Entry(f"{p}.perm_{side}", (n,), 8, False, w.block, buffer=True))
        out += [Entry(f"{p}.probe_{v}", (m.in_features,), w.itemsize, False, w.block, buffer=True)
                for v in ("v", "u")]
    return out


# ---- the plan ----------------------------------------------------------------------------------------------------

def memory_plan(config, method, world_size: int, batch_size: int, seq_len: int, checkpointing: bool = False,
                autocast_dtype: torch.dtype | None = None, device: str = "cpu") -> MemoryPlan:
    """Predicted per-rank peak memory (module docstring) of training the Llama of ``config`` (a ``LlamaConfig``)
    with ``method`` at ``world_size`` ranks on a global batch of ``batch_size`` sequences of ``seq_len`` tokens.
    ``autocast_dtype``: the forward's autocast (bf16 on CUDA), None for fp32; ``device``: ``"cuda"`` makes
    ``torch.optim.AdamW`` use its foreach path (a temporary of all parameters), ``"cpu"`` the per-tensor one."""
    for what, value in (("world_size", world_size), ("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlanError(f"{what} must be a positive int, got {value!r}")
    if batch_size % world_size:
        raise PlanError(f"world size {world_size} does not divide the global batch size {batch_size}")
    tokens = batch_size // world_size * seq_len
    entries = model_entries(config, method)
    act_layer = layer_fit(config, method, tokens, autocast_dtype, checkpointing=checkpointing)
    setting = {"batch": batch_size, "seq_len": seq_len, "tokens_per_rank": tokens, "checkpointing": checkpointing,
               "autocast": None if autocast_dtype is None else str(autocast_dtype).removeprefix("torch."),
               "device": device}
    plan = MemoryPlan(world_size, type(method).__name__, setting)
    plan.items += _state_items(entries, method, world_size)
    plan.items += _activation_items(config, entries, act_layer, tokens, checkpointing, autocast_dtype)
    plan.items += _transient_items(entries, method, world_size, device, plan)
    if world_size > 1:                              # a layer's backward is one moment of a block's backward there
        layer = next(i for i in plan.items if i.name.startswith("a layer's backward"))
        plan.items.remove(layer)
        plan.items += _fsdp_backward_items([e for e in entries if not e.buffer], world_size, layer)
    return plan


ALL = PHASES


def _state_items(entries: list[Entry], method, world: int) -> list[Item]:
    """Parameters, buffers, gradients and optimizer state: resident in every phase."""
    params = [e for e in entries if not e.buffer]
    buffers = [e for e in entries if e.buffer]
    trainable = [e for e in params if e.trainable]
    grad_phases = ("optimizer step", "checkpoint save") + (("merge",) if type(method).__name__ == "POET" else ())
    later = [e for e in trainable if e.block > 0 or (world == 1 and e.block < 0)]
    items = [Item("parameters (sharded 1/N)" if world > 1 else "parameters",
                  sum(e.shard_bytes(world) for e in params), ALL,
                  f"{sum(math.prod(e.shape) for e in params) / 1e6:.2f}M numbers, "
                  f"{sum(math.prod(e.shape) for e in trainable) / 1e6:.2f}M trained"),
             Item("buffers", sum(e.bytes for e in buffers), ALL, "rotary tables, permutations, probe vectors"),
             Item("gradients (sharded 1/N)" if world > 1 else "gradients",
                  sum(e.shard_bytes(world) for e in trainable), grad_phases,
                  "of the trained parameters, kept until the next step's zero_grad"),
             Item("gradients of the later blocks" + (" and the head" if world == 1 else ""),
                  sum(e.shard_bytes(world) for e in later), ("backward: first block",),
                  "when the first block's backward runs")]
    if world == 1:
        blocks = {e.block for e in params if e.block >= 0}
        own = max((sum(e.bytes for e in trainable if e.block == b) for b in blocks), default=0)
        items += [Item("gradients of the head", sum(e.bytes for e in trainable if e.block < 0),
                       ("backward: last block",), "embeddings, final norm, head"),
                  Item("gradients of the block in backward", own, ("backward: last block", "backward: first block"),
                       "")]
    items.append(_optimizer_item(trainable, method, world))
    if world > 1:
        items += _fsdp_items(params, trainable, world)
    return items


def unit_of(e: Entry):
    """The ``fully_shard`` unit of an entry (``sharding.sharding_units``): its block's index, else the module that
    holds it (``model.embed_tokens``, ``model.norm``, ``lm_head``: each a unit of its own)."""
    return e.block if e.block >= 0 else e.name.rsplit(".", 1)[0]


def _fsdp_items(params: list[Entry], trainable: list[Entry], world: int) -> list[Item]:
    """FSDP2's unsharded copies in forward and at the start of backward, per-block units
    (``sharding.shard_per_block``, measured on the CPU with gloo, tests/plan_worker.py): unsharding a unit
    all-gathers into one flat buffer (N × the padded shard) and copies out into the unsharded parameters. Every unit
    reshards after its forward, the embeddings, final norm and head included (each its own unit). Forward: at a
    block's all-gather the old buffer, the new one and the unsharded block coexist (three copies; the one-block
    forward prefetch overlaps on CUDA, on the CPU gloo's synchronous collectives serialise it); the head is gathered
    (two copies) for the logits. Backward starts by gathering the head again (two copies) and making its gradients;
    the blocks' backward: ``_fsdp_backward_items``."""
    units = _unit_sizes(params, world)
    block = max(size for u, size in units.items() if isinstance(u, int))
    head_unit = _head_unit(units)
    head = units.get(head_unit, 0)
    head_grads = _padded([e for e in trainable if unit_of(e) == head_unit], world)
    return [Item("last block's all-gather: old buffer, new buffer, unsharded", 3 * block,
                 ("forward: last all-gather",), f"3 × {human(block)} (one block, padded)"),
            Item("head unit unsharded + its all-gather buffer", 2 * head, ("forward end", "backward start"),
                 "gathered for its forward (the logits made), again for its backward; counted with the log-softmax "
                 "too, an overcount of at most the smaller of the two"),
            Item("head's unsharded gradients", head_grads, ("backward start",), "before their reduce-scatter")]


def _padded(entries: list[Entry], world: int) -> int:
    return sum(e.shard_bytes(world) * world for e in entries)


def _unit_sizes(params: list[Entry], world: int) -> dict:
    """Padded unsharded bytes of every ``fully_shard`` unit (``unit_of``)."""
    units = {unit_of(e) for e in params}
    return {u: _padded([e for e in params if unit_of(e) == u], world) for u in units}


def _head_unit(units: dict):
    return next((u for u in units if isinstance(u, str) and u.rsplit(".", 1)[-1] == "lm_head"), None)


def _fsdp_backward_items(params: list[Entry], world: int, layer: Item) -> list[Item]:
    """A block's backward under per-block FSDP2 with one unit of backward prefetch, as measured (LiveBytes over a
    real step at N = 2, tests/test_plan.py): besides the block's unsharded parameters, two other units' buffers are
    alive while it runs — the *next* unit's all-gather buffer (prefetched when this block's backward starts, copied
    out when that unit's backward starts) and the *previous* unit's reduce-scatter input (FSDP2 keeps it in
    ``reduce_scatter_states`` until this unit's post-backward reclaims it). So a block costs, at its worst moment,

    * computing: unsharded + prefetched buffer + previous reduce-scatter input + its unsharded gradients + the
      layer's backward working set (``layer``, measured on one decoder layer; an upper bound: the gradients are
      complete only when the intermediates are gone), or
    * reducing (after it resharded): prefetched buffer + its gradients + their reduce-scatter input (the previous
      one reclaimed first);
    * and at the copy-out of its own prefetched all-gather: that buffer + unsharded + the previous reduce-scatter
      input.

    The last block's previous unit is the head, the first block's next unit the embeddings; a middle block (three or
    more blocks) has a block on both sides and is counted in the last block's phase (with every layer's saved
    activations: an overcount by the layers after it)."""
    trainable = [e for e in params if e.trainable]
    units = _unit_sizes(params, world)
    blocks = sorted(u for u in units if isinstance(u, int))
    block = max(units[b] for b in blocks)
    grads = max(_padded([e for e in trainable if e.block == b], world) for b in blocks)
    head_grads = _padded([e for e in trainable if unit_of(e) == _head_unit(units)], world)
    embed = max((size for u, size in units.items() if isinstance(u, str) and u != _head_unit(units)), default=0)

    def worst(prefetched: int, previous: int) -> int:
        return max(block + prefetched + previous + grads + layer.bytes,    # computing
                   prefetched + 2 * grads,                                 # reducing
                   2 * block + previous)                                   # its own copy-out
    last = worst(block if len(blocks) > 1 else embed, grads if len(blocks) > 2 else head_grads)
    first = worst(embed, grads if len(blocks) > 1 else head_grads)
    note = ("unsharded + the next unit's prefetched all-gather buffer + the previous unit's reduce-scatter input + "
            f"its gradients + {layer.name.removeprefix('a ')} ({human(layer.bytes)}), or the other moments "
            "(_fsdp_backward_items)")
    return [Item("a block in backward (last block; middle blocks)", last, ("backward: last block",), note),
            Item("a block in backward (first block)", first, ("backward: first block",), note)]


# ---- whole-matrix work on owners (distributed/matrices.py): the bucketed pipeline, simulated -------------------

@dataclass
class Job:
    """One owner job of ``matrices.run_jobs``: its sharded sources (entries; the first is the one written back)
    and the owner's extra bytes while it computes (``work``)."""
    sources: list[Entry]
    work: int


def _pipeline_peak(jobs: list[Job], world: int, owners: list[int]) -> int:
    """The largest bytes any rank holds above its state during ``matrices.run_jobs``: per job, every rank's stacked
    padded row shards (the gather's send buffer); on the owner the N gathered parts and their ``torch.cat`` (the
    whole sources), the job's work, then its result padded for the scatter; every rank's received rows. Bucket
    k + 1's gathers are in flight while bucket k computes, and bucket k − 1's sends until bucket k is done."""
    from .matrices import BUCKET_BYTES

    buckets, size = [], 0
    for i, job in enumerate(jobs):
        nbytes = sum(e.bytes for e in job.sources)
        if not buckets or size + nbytes > BUCKET_BYTES:
            buckets.append([])
            size = 0
        buckets[-1].append(i)
        size += nbytes
    shard = [sum(e.shard_bytes(world) for e in job.sources) for job in jobs]
    target = [job.sources[0].shard_bytes(world) for job in jobs]           # the first source is the written one
    peak = 0
    for rank in range(world):
        def gathers(bucket):
            return sum(shard[i] * (1 + world * (owners[i] == rank)) for i in bucket)
        sent_before = 0
        for k, bucket in enumerate(buckets):
            held = gathers(bucket) + (gathers(buckets[k + 1]) if k + 1 < len(buckets) else 0) + sent_before
            sent = 0
            for i in bucket:
                if owners[i] == rank:
                    peak = max(peak, held + sent + world * shard[i] + jobs[i].work)
                    sent += target[i] * world                          # the padded whole result, scattered
                sent += target[i]                                      # every rank's received rows
            peak = max(peak, held + sent)
            sent_before = sent
    return peak


def _optimizer_item(trainable: list[Entry], method, world: int) -> Item:
    """The optimizer state on this rank (the largest rank's share for Muon/Pion's owned matrices)."""
    name = type(method).__name__
    adamw = [e for e in trainable if not e.matrix]
    aux = 2 * sum(e.shard_bytes(world) for e in adamw)
    if name in ADAMW_METHODS:
        return Item("optimizer state (AdamW m, v)", aux, ALL, "2× the trained parameters, sharded 1/N")
    per_matrix = [_matrix_state_bytes(e, method) for e in trainable if e.matrix]
    owned = _largest_owner_share(per_matrix, world)
    what = "momentum" if name == "Muon" else "Lie-algebra moments"
    return Item(f"optimizer state ({name} {what} + AdamW)", owned + aux, ALL,
                f"{human(owned)} on owned matrices (owners balanced by size) + AdamW 2× the rest")


def _matrix_state_bytes(e: Entry, method) -> int:
    if type(method).__name__ == "Muon":
        return e.bytes
    out, inp = e.shape[0], math.prod(e.shape[1:])
    moments = 2 if method.second_moment else 1
    if method.momentum == "lie":
        return moments * (inp * inp + out * out) * e.itemsize
    return moments * e.bytes


def _largest_owner_share(sizes: list[int], world: int) -> int:
    """The most bytes any rank owns when each matrix goes, largest first, to the rank that owns the least."""
    loads = [0] * world
    for size in sorted(sizes, reverse=True):
        loads[loads.index(min(loads))] += size
    return max(loads)


def _activation_items(config, entries: list[Entry], fit: dict, tokens: int, checkpointing: bool,
                      autocast_dtype) -> list[Item]:
    """Saved activations (forward end and backward start), a layer's backward, and the loss's tensors."""
    constant, per_token = fit["saved"]
    working = int(round(fit["backward"][0] + fit["backward"][1] * tokens))
    per_layer = int(round(constant + per_token * tokens))
    how = (f"{human(per_token)}/token + {human(constant)} weight-sized, measured on one decoder layer with the "
           "method")
    hidden, vocab, layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    trains = {e.name.rsplit(".", 2)[-2] if e.name.endswith(".weight") else e.name: e.trainable
              for e in entries if e.block < 0 and not e.buffer}
    norm_trains, head_trains = trains.get("norm", False), trains.get("lm_head", False)
    stream = (layers + 1) * tokens * hidden * 4          # each layer's input and the last output, fp32 residual
    head_input = (2 if autocast_dtype is not None else 4) if head_trains else 0
    head = tokens * (4 + 4 * hidden * norm_trains + head_input * hidden + 2 * head_dim * 4)
    logits = tokens * vocab * 4                          # fp32 logits, and the log-softmax cross_entropy saves
    items = [Item("residual stream (layer inputs)", stream, FWD + BWD, f"{layers + 1} × tokens × hidden × 4 bytes")]
    if checkpointing:
        recompute = int(round(fit["checkpointed"][0] + fit["checkpointed"][1] * tokens))
        items.append(Item("a layer's backward with its recompute (checkpointing)", recompute, BWD[1:],
                          "measured on one checkpointed decoder layer: the recomputed forward's saved tensors and "
                          "transients, the gradients of its intermediates"))
    else:
        items += [Item("a layer's backward (gradients of its intermediates)", working, BWD[1:],
                       "measured on one decoder layer, its parameters' gradients not counted"),
                  Item("saved activations of all layers but the last", (layers - 1) * per_layer, FWD + BWD[:2],
                       f"{layers - 1} × {human(per_layer)}: {how}"),
                  Item("saved activations of one layer", per_layer, ("forward end",) + BWD, "the last or the first")]
    items += [Item("final norm, head input, rotary tables", head, ("forward end", "backward start"), ""),
              Item("log-softmax (saved by cross_entropy)", logits, ("forward end", "backward start"),
                   "tokens × vocab × 4"),
              Item("logits during the loss", logits, ("forward end",), "freed once the loss is computed"),
              Item("loss gradients at the start of backward", 2 * logits, ("backward start",),
                   "∂loss/∂log-softmax and ∂loss/∂logits")]
    return items


def _transient_items(entries: list[Entry], method, world: int, device: str, plan: MemoryPlan) -> list[Item]:
    """The optimizer step's temporaries, the non-finite guard, POET's merge, a checkpoint save."""
    name = type(method).__name__
    params = [e for e in entries if not e.buffer]
    trainable = [e for e in params if e.trainable]
    items = []
    if name in ADAMW_METHODS or any(not e.matrix for e in trainable):
        aux = [e for e in trainable if not e.matrix] if name in MATRIX_METHODS else trainable
        step = (sum(e.shard_bytes(world) for e in aux) if device == "cuda"
                else 2 * max((e.shard_bytes(world) for e in aux), default=0))
        items.append(Item("AdamW step temporaries", step, ("optimizer step",),
                          "foreach: √v of every parameter" if device == "cuda"
                          else "√v of the largest parameter, ×2"))
    if name in MATRIX_METHODS:
        items.append(_matrix_step_item(trainable, method, world))
    if sum(math.prod(e.shape) for e in params) <= GUARD_MAX_PARAMS:
        state = next(i.bytes for i in plan.items if i.name.startswith("optimizer state"))
        items.append(Item("non-finite guard (copy before the update)", sum(e.shard_bytes(world) for e in params)
                          + state, ("optimizer step",), f"models ≤ {GUARD_MAX_PARAMS:,} parameters only"))
    if name == "POET":
        items.append(_merge_item(params, trainable, world))
    return items


def _matrix_step_item(trainable: list[Entry], method, world: int) -> Item:
    """Muon/Pion's update of a matrix on its owner: Newton–Schulz's temporaries (5 matrix-sized, 2 Gram
    matrices min(out, in)²) or Pion's (5 matrix-sized, one in×in and one out×out) — counts measured on one update
    of a 256×64, 64×256 and 64×64 matrix — plus the clone the update runs on. Under FSDP2 the bucketed gathers
    and scatters around it (``_pipeline_peak``; owners balanced by size as ``matrices.balanced_owners``)."""
    from .matrices import balanced_owners

    matrices = [e for e in trainable if e.matrix]

    def work(e: Entry) -> int:
        out, inp = e.shape[0], math.prod(e.shape[1:])
        gram = 2 * min(out, inp) ** 2 if type(method).__name__ == "Muon" else out * out + inp * inp
        return 5 * e.bytes + gram * e.itemsize + e.bytes
    name = type(method).__name__
    if world == 1:
        return Item(f"{name} update of the largest matrix", max(work(e) - e.bytes for e in matrices),
                    ("optimizer step",), "temporaries of one whole-matrix update")
    owners = balanced_owners([math.prod(e.shape) for e in matrices], world)
    grad = [dataclasses.replace(e, name=e.name + ".grad") for e in matrices]
    jobs = [Job([e, g], work(e)) for e, g in zip(matrices, grad)]
    return Item(f"{name} updates on owners (bucketed gathers)", _pipeline_peak(jobs, world, owners),
                ("optimizer step",), "W and ∇W row shards gathered to the owner, one bucket and the next in "
                "flight; the update's temporaries; new rows scattered back")


def _merge_item(params: list[Entry], trainable: list[Entry], world: int) -> Item:
    """POET's merge, one layer at a time: float64 W_eff of the layer and its permuted copies (4 × the weight in
    float64) and the new W_s (the weight). Under FSDP2 each layer's merge runs once, on its owner
    (``matrices.OwnerMerges``, owners balanced by m·n): W_s and the packed skews gathered to it through the same
    bucketed pipeline as Muon's (``_pipeline_peak``); the others hold only their rows."""
    from .matrices import balanced_owners

    frozen = [e for e in params if e.name.endswith("base_layer.weight")]
    if world == 1:
        layer = max((4 * 2 * e.bytes for e in frozen), default=0)
        return Item("POET merge (float64, one layer at a time)", layer, ("merge",), "4 × the weight in f64")
    by_name = {e.name: e for e in trainable}
    jobs = []
    for e in frozen:
        layer = e.name.removesuffix(".base_layer.weight")
        skews = [by_name[f"{layer}.poet_q_{side}"] for side in ("in", "out")]
        jobs.append(Job([e, *skews], 5 * 2 * e.bytes))     # 4 f64 copies + the permuted W_s
    owners = balanced_owners([math.prod(e.shape) for e in frozen], world)
    return Item("POET merge on owners (one layer each)", _pipeline_peak(jobs, world, owners), ("merge",),
                "W_s and Q gathered to the layer's owner, merged in float64 there, W_s's rows scattered back")
