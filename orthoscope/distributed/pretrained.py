"""Meta-device init and sharded loading of local Hugging Face weights: a model too large for one process is built
with no memory (``torch.device("meta")``), sharded (FSDP2's ``fully_shard``: every parameter becomes a ``Shard(0)``
``DTensor``), then materialised (``to_empty``) and filled, each rank writing only its own rows.

    model = build_llama(config, seed=0, init_device="meta", pretrained="path/to/hf_dir")   # a MetaInit plan
    run = Run(model, task, OFT(...), distributed="fsdp")    # Run: attach → shard → materialize(model, device)

**Where the values come from** (``MetaInit``, kept on the model as ``model.meta_init``):

* ``pretrained``: a directory holding ``model.safetensors`` or ``model.safetensors.index.json`` and its shards (what
  ``save_pretrained(dir, max_shard_size=...)`` writes). Each rank reads, per tensor, only its rows
  ``safe_open(file).get_slice(key)[lo:hi]`` — FSDP2's ``torch.chunk`` layout along dim 0 — straight into its local
  shard: no rank ever holds the whole model, in memory or read from disk (``LoadReport.bytes_read`` counts it).
* no ``pretrained``: a random init, deterministic per parameter — a generator seeded from ``(seed, key)`` draws one
  whole tensor (Hugging Face Llama's init: normal(0, ``initializer_range``) for Linear and Embedding weights, ones
  for norms, zeros for biases), of which the rank keeps its rows. The result does not depend on the world size.

**Names.** A parameter's Hugging Face key is its path with the wrapper's prefix removed (``CausalLM`` adds
``model.``) and every adapter's ``base_layer`` step dropped (LoRA, OFT wrap the ``nn.Linear``: the base weight's
path gains ``.base_layer``). An adapter's own parameters (``oft_q``, ``lora_A``, ...) are not in the checkpoint: they
get their init (``init_adapter``). A key the model needs but the files lack, a key the files hold but the model has
no place for, and a shape that differs are each a ``PretrainedError`` naming the file and the key.

**POET** attached on meta keeps its draws (permutations, probe vector, the Gaussian W₀'s generator state) on the
CPU; its buffers are filled from them and each rank's rows of its pre-permuted base weight are computed from the rows
of W₀ they come from (``pretrained_poet``: scattered rows, read as contiguous runs).

Buffers are not sharded and not in a Llama checkpoint (the rotary ``inv_freq`` is computed from the config): a
module holding buffers but no parameters of its own is rebuilt from its ``config`` on the target device.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import torch
from torch import nn

from ..models.llama import MetaInit
from .pretrained_poet import finish as finish_poet, poet_problem, poet_rows_from_file, poet_rows_from_full, poet_weights

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


class PretrainedError(ValueError):
    """Pretrained weights that cannot fill the model: a missing file, key or shape mismatch (named in the message)."""


@dataclasses.dataclass
class LoadReport:
    """What ``materialize`` did on this rank: bytes read from the safetensors files (the slices only), the total
    bytes of the tensors it filled from them (all ranks' rows), and how many tensors it filled."""
    bytes_read: int = 0
    bytes_total: int = 0
    tensors: int = 0


def on_meta(model: nn.Module) -> bool:
    """True when any of ``model``'s parameters lives on the meta device (it has no values yet)."""
    return any(p.is_meta for p in model.parameters())


def weight_files(directory) -> dict[str, Path]:
    """``{key: file}`` for the safetensors checkpoint in ``directory`` (one file, or an index and its shards)."""
    root = Path(directory)
    if not root.is_dir():
        raise PretrainedError(f"pretrained: {str(root)!r} is not a directory (expected a Hugging Face model "
                              f"directory holding {SINGLE} or {INDEX})")
    index = root / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise PretrainedError(f"pretrained: {index} is not a safetensors index (no 'weight_map': {e})") from e
        files = {key: root / name for key, name in weight_map.items()}
        for path in sorted(set(files.values())):
            if not path.is_file():
                raise PretrainedError(f"pretrained: {index} names the shard {path.name!r}, which is missing from "
                                      f"{root}")
        return files
    single = root / SINGLE
    if not single.is_file():
        raise PretrainedError(f"pretrained: {root} holds neither {SINGLE} nor {INDEX}")
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as f:
        return {key: single for key in f.keys()}


def pretrained_config(directory):
    """The ``transformers`` config saved beside the weights (``config.json``)."""
    from transformers import AutoConfig

    if not Path(directory).is_dir():
        raise PretrainedError(f"pretrained: {str(directory)!r} is not a directory (expected a Hugging Face model "
                              f"directory holding config.json and {SINGLE} or {INDEX})")
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise PretrainedError(f"pretrained: {Path(directory)} has no config.json (save the model with "
                              "save_pretrained, which writes it beside the weights)")
    return AutoConfig.from_pretrained(str(directory), local_files_only=True)


# ---- materialising ------------------------------------------------------------------------------------------------

def materialize(model: nn.Module, device) -> LoadReport:
    """Give ``model`` (built on meta, sharded or not) storage on ``device`` and fill it by its ``meta_init`` plan:
    every rank writes only its own rows of every parameter (module docstring). Returns this rank's ``LoadReport``."""
    plan = getattr(model, "meta_init", None)
    if not isinstance(plan, MetaInit):
        raise PretrainedError(f"{type(model).__name__} has parameters on the meta device but no meta_init plan "
                              "(build it with build_llama(..., init_device='meta') or set model.meta_init)")
    if not on_meta(model):                           # to_empty would replace its values with garbage
        raise PretrainedError(f"{type(model).__name__} has no parameters on the meta device: it is materialised "
                              "already")
    _check_adapters(model)
    device = torch.device(device)
    tied = _tied_parameters(model)
    model.to_empty(device=device)
    _retie(model, tied)
    _rebuild_buffers(model, device)
    keys = hf_keys(model, plan.prefix)
    report = LoadReport()
    poet = poet_weights(model)
    with torch.no_grad():
        if plan.pretrained is not None:
            _load(model, keys, plan.pretrained, report, poet)
        else:
            for name, p in model.named_parameters():
                if name in keys:
                    _fill_rows(p, _random_fill(model, name, keys[name], plan.seed, p, poet.get(name)))
        for name, p in model.named_parameters():
            if name not in keys:
                init_adapter(model, name, p, plan.seed)
    finish_poet(model)
    return report


def _random_fill(model: nn.Module, name: str, key: str, seed: int, p: torch.Tensor, poet_layer):
    """``rows_of(lo, hi)`` of a random init: the parameter's own rows, or a POET base weight's rows of ``W_s``."""
    if poet_layer is None:
        return lambda lo, hi: _random_rows(model, name, key, seed, p, lo, hi)
    return poet_rows_from_full(poet_layer, lambda: _random_rows(model, name, key, seed, p, 0, p.shape[0]), p.dtype)


def _tied_parameters(model: nn.Module) -> list[list[tuple[str, str]]]:
    """Groups of ``(module path, attribute)`` that hold one shared parameter (tied input and output embeddings)."""
    groups: dict[int, list[tuple[str, str]]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        for attr, p in module.named_parameters(recurse=False):
            if (path, attr) not in groups.setdefault(id(p), []):
                groups[id(p)].append((path, attr))
    return [g for g in groups.values() if len(g) > 1]


def _retie(model: nn.Module, tied: list[list[tuple[str, str]]]) -> None:
    """``to_empty`` gives every module its own new tensor: point each tied group at its first member's again."""
    for (path, attr), *others in tied:
        shared = getattr(model.get_submodule(path), attr)
        for other_path, other_attr in others:
            setattr(model.get_submodule(other_path), other_attr, shared)


def hf_keys(model: nn.Module, prefix: str) -> dict[str, str]:
    """``{parameter name: Hugging Face key}`` for the base model's parameters (module docstring); an adapter's own
    parameters are left out."""
    from ..adapters.core import AdaptedLayer

    adapted = {path for path, m in model.named_modules() if isinstance(m, AdaptedLayer)}
    keys = {}
    for name, _ in model.named_parameters():
        owner = name.rpartition(".")[0]
        if owner in adapted:                       # the adapter's own parameter (oft_q, lora_A, ...)
            continue
        key = name.removeprefix(prefix) if prefix and name.startswith(prefix) else name
        for path in adapted:
            if name.startswith(path + ".base_layer."):
                key = key.replace(path.removeprefix(prefix) + ".base_layer.", path.removeprefix(prefix) + ".", 1)
        keys[name] = key
    return keys


def _rows(p: torch.Tensor) -> tuple[int, int]:
    """The rows ``[lo, hi)`` of dim 0 this rank holds of ``p`` (all of them for a plain tensor)."""
    if not hasattr(p, "to_local"):
        return 0, (p.shape[0] if p.dim() else 1)
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if any(not (isinstance(pl, Replicate) or (isinstance(pl, Shard) and pl.dim == 0)) for pl in p.placements):
        raise PretrainedError(f"a parameter of placements {p.placements} cannot be loaded by rows (only Shard(0) "
                              "and Replicate, FSDP2's layout)")
    shape, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
    return offset[0], offset[0] + shape[0]


def _fill_rows(p: torch.Tensor, rows_of) -> None:
    """Write ``rows_of(lo, hi)`` (a tensor of this rank's rows, any dtype) into ``p``'s local storage."""
    lo, hi = _rows(p)
    local = p.to_local() if hasattr(p, "to_local") else p
    if local.numel() == 0:
        return
    value = rows_of(lo, hi)
    local.copy_(value.reshape(local.shape))


def check_pretrained(model: nn.Module) -> None:
    """Refuse (``PretrainedError``) weights files that cannot fill ``model`` — a missing file, a key the model needs
    that no file holds, a key no parameter takes, a shape that differs — from the safetensors headers alone, before
    any storage is allocated."""
    plan = model.meta_init
    _checked_files(model, hf_keys(model, plan.prefix), plan.pretrained)


def _checked_files(model: nn.Module, keys: dict[str, str], directory: str) -> dict[str, Path]:
    from safetensors import safe_open

    files = weight_files(directory)
    wanted = set(keys.values())
    missing = sorted(k for k in wanted if k not in files)
    if missing:
        raise PretrainedError(f"pretrained: the model needs {missing[0]!r}, which no file of {directory} holds"
                              + (f" (and {len(missing) - 1} more missing keys)" if len(missing) > 1 else ""))
    unexpected = sorted(set(files) - wanted)
    if unexpected:
        raise PretrainedError(f"pretrained: {files[unexpected[0]]} holds {unexpected[0]!r}, which the model has no "
                              "parameter for" + (f" (and {len(unexpected) - 1} more unexpected keys)"
                                                 if len(unexpected) > 1 else ""))
    shapes = {name: list(p.shape) for name, p in model.named_parameters()}
    for path, names in _by_file(keys, files).items():
        with safe_open(str(path), framework="pt") as f:
            for name in names:
                shape = list(f.get_slice(keys[name]).get_shape())
                if shape != shapes[name]:
                    raise PretrainedError(f"pretrained: {path} holds {keys[name]!r} of shape {shape}, the model's "
                                          f"parameter {name!r} has shape {shapes[name]}")
    return files


def _by_file(keys: dict[str, str], files: dict[str, Path]) -> dict[Path, list[str]]:
    """Parameter names grouped by the file holding their key, files in name order (each opened once)."""
    out: dict[Path, list[str]] = {}
    for name, key in keys.items():
        out.setdefault(files[key], []).append(name)
    return dict(sorted(out.items()))


def _load(model: nn.Module, keys: dict[str, str], directory: str, report: LoadReport, poet: dict) -> None:
    from safetensors import safe_open

    files = _checked_files(model, keys, directory)
    params = dict(model.named_parameters())
    for path, names in _by_file(keys, files).items():
        with safe_open(str(path), framework="pt") as f:
            for name in names:
                _load_one(f, keys[name], params[name], report, poet.get(name))


def _load_one(f, key: str, p: torch.Tensor, report: LoadReport, poet_layer=None) -> None:
    """This rank's rows of tensor ``key`` of the open file ``f`` into ``p`` (only those bytes are read); for a POET
    base weight, its rows of ``W_s`` (``pretrained_poet``; not read at all under POET's Gaussian init)."""
    piece = f.get_slice(key)
    shape = list(piece.get_shape())
    itemsize = _itemsize(piece.get_dtype())
    if poet_layer is None or poet_layer.meta_draws.init != "normalized_gaussian":    # that init never reads W₀
        report.bytes_total += math.prod(shape) * itemsize
        report.tensors += 1
    if poet_layer is not None:
        _fill_rows(p, poet_rows_from_file(poet_layer, piece, itemsize, report, p.dtype))
        return

    def rows(lo: int, hi: int) -> torch.Tensor:
        value = piece[lo:hi] if shape else piece[:]
        report.bytes_read += value.numel() * itemsize
        return value

    _fill_rows(p, rows)


SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                     "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def _itemsize(dtype: str) -> int:
    if dtype not in SAFETENSORS_BYTES:
        raise PretrainedError(f"pretrained: tensors of safetensors dtype {dtype!r} cannot be loaded")
    return SAFETENSORS_BYTES[dtype]


# ---- random init, per parameter -----------------------------------------------------------------------------------

def generator_for(seed: int, key: str) -> torch.Generator:
    """A CPU generator seeded from ``(seed, key)`` (SHA-256, 63 bits): the same stream for a parameter whatever the
    world size, the order of parameters or the adapters around it."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _random_rows(model: nn.Module, name: str, key: str, seed: int, p: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Rows ``[lo, hi)`` of parameter ``name``'s init: the whole tensor is drawn (one tensor at a time, on the CPU,
    in float32) and sliced, so every world size gets the same values."""
    owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    attr = name.rpartition(".")[2]
    std = float(getattr(getattr(model, "config", None), "initializer_range", 0.02))
    full = torch.empty(tuple(p.shape), dtype=torch.float32)
    if attr == "bias":
        full.zero_()
    elif isinstance(owner, (nn.Linear, nn.Embedding)) and attr == "weight":
        full.normal_(0.0, std, generator=generator_for(seed, key))
        padding = getattr(owner, "padding_idx", None)
        if padding is not None:
            full[padding] = 0.0
    elif attr == "weight" and (isinstance(owner, nn.LayerNorm) or type(owner).__name__.endswith("RMSNorm")):
        full.fill_(1.0)
    else:
        raise PretrainedError(f"random meta init: no init rule for parameter {name!r} of a "
                              f"{type(owner).__name__} (known: Linear and Embedding weights, norm weights, biases)")
    return full[lo:hi] if p.dim() else full


def init_adapter(model: nn.Module, name: str, p: torch.Tensor, seed: int) -> None:
    """An adapter's own parameter after meta init: the adapter's init, drawn whole on the CPU (a generator seeded
    from ``(seed, name)``) and sliced to this rank's rows. LoRA-style layers run their ``reset_parameters`` on CPU
    stand-ins; rotation adapters (OFT: ``RotationMixin``) start at R = I, skew parameters 0."""
    from ..adapters.core import AdaptedLayer
    from ..adapters.oft import RotationMixin
    from ..adapters.poet import POETLinear

    owner_path, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_path)
    if not isinstance(owner, AdaptedLayer):
        raise PretrainedError(f"meta init: parameter {name!r} is neither a base-model parameter nor an adapter's")
    rotation = isinstance(owner, RotationMixin) and attr == owner.prefix + "q"
    if rotation or (isinstance(owner, POETLinear) and attr in ("poet_q_in", "poet_q_out")):    # skews 0: R = I
        _fill_rows(p, lambda lo, hi: torch.zeros(hi - lo, *p.shape[1:]))
        return
    reset = getattr(type(owner), "reset_parameters", None)
    if reset is None:
        raise PretrainedError(f"meta init: adapter {type(owner).__name__} at {owner_path!r} has no init to re-run "
                              f"for {attr!r} after meta-device construction; build the model without "
                              "init_device: meta for this method")
    full = _reset_on_cpu(owner, attr, seed, name)
    _fill_rows(p, lambda lo, hi: full[lo:hi])


def _check_adapters(model: nn.Module) -> None:
    """Every adapter on the model can get its init back after meta-device construction (``init_adapter``): one whose
    construction reads or rewrites the base weight, or draws buffers, cannot, and is refused before anything is
    allocated — except POET, which keeps its draws for this (``pretrained_poet``; a quantized base is refused)."""
    from ..adapters.core import AdaptedLayer
    from ..adapters.oft import RotationMixin
    from ..adapters.poet import POETLinear

    for path, layer in model.named_modules():
        if isinstance(layer, POETLinear):
            problem = poet_problem(path, layer)
            if problem:
                raise PretrainedError(problem)
            continue
        if not isinstance(layer, AdaptedLayer):
            continue
        buffers = [k for k, b in layer.named_buffers() if b is not None]     # its own, and a quantized base's
        resettable = isinstance(layer, RotationMixin) or hasattr(type(layer), "reset_parameters")
        if buffers or not resettable:
            raise PretrainedError(
                f"meta init: adapter {type(layer).__name__} at {path!r} cannot be built on the meta device (its "
                "construction " + (f"draws buffers {buffers}" if buffers else "has no init to re-run") +
                "); supported there: LoRA, SoRA, OFT and POET. Build the model "
                "without init_device: meta / pretrained for this method")


def _reset_on_cpu(owner: nn.Module, attr: str, seed: int, name: str) -> torch.Tensor:
    """``owner.reset_parameters()`` run on full-size CPU stand-ins of its own parameters, under a generator seeded
    from ``(seed, name)``; returns the stand-in of ``attr``."""
    own = dict(owner.named_parameters(recurse=False))
    standins = {k: nn.Parameter(torch.empty(tuple(v.shape), dtype=v.dtype), requires_grad=v.requires_grad)
                for k, v in own.items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(generator_for(seed, name).initial_seed()))
        for k, v in standins.items():
            owner._parameters[k] = v
        try:
            owner.reset_parameters()
        finally:
            for k, v in own.items():
                owner._parameters[k] = v
    return standins[attr].detach()


def _rebuild_buffers(model: nn.Module, device: torch.device) -> None:
    """Buffers after ``to_empty`` hold garbage: a module with buffers and no parameters of its own (a rotary
    embedding) is rebuilt from its ``config`` on ``device`` and its buffers copied; a POET layer's are filled from
    its draws (``poet_meta.fill_buffers``); any other buffer is an error."""
    from ..adapters.poet_meta import fill_buffers

    poet = {id(layer) for layer in poet_weights(model).values()}
    for path, module in model.named_modules():
        own = {k: b for k, b in module.named_buffers(recurse=False) if b is not None}
        if not own:
            continue
        if id(module) in poet:
            fill_buffers(module, device)
            continue
        if any(True for _ in module.parameters(recurse=False)) or not hasattr(module, "config"):
            raise PretrainedError(f"meta init: module {path!r} ({type(module).__name__}) holds buffers "
                                  f"{sorted(own)} that cannot be rebuilt after meta-device construction")
        with torch.device(device):
            fresh = type(module)(module.config)
        for k in own:
            setattr(module, k, getattr(fresh, k))
        for k, v in vars(fresh).items():           # numbers computed beside the buffers (attention_scaling)
            if not k.startswith("_") and isinstance(v, (int, float)) and not isinstance(v, bool):
                setattr(module, k, v)
