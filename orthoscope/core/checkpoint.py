"""Checkpoint files: one safetensors file whose header metadata carries a JSON document.

* Writes are atomic: the file is written to a temporary name in the same folder (``NAME.<pid>.<random>.tmp``),
  fsync'ed, then ``os.replace``d. A writer killed mid-write leaves its temp file behind; the next save or load in that
  folder removes the temp files of writers that are no longer running (never another live process's).
* Loading never unpickles: tensors come from safetensors, everything else from JSON.
* Integrity (format 2): one SHA-256 over the canonical JSON of the metadata *and* all tensor bytes is stored in the
  header, so a flipped byte anywhere — tensor data, the JSON header, its length prefix — is refused.
* The JSON is parsed defensively (bounded size, number length and nesting depth; the top level must be an object) and
  every field a reader uses is checked against a schema (``require``) before anything is applied. Every problem is a
  ``CheckpointError`` naming the file and the field.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

import torch

FORMAT_VERSION = 2
MAX_HEADER_BYTES = 64 * 2 ** 20       # the JSON document; a 1B-model run's header is a few hundred kB
MAX_NUMBER_CHARS = 40                 # digits of one JSON number (a float64's repr needs at most 24)
MAX_DEPTH = 64                        # nesting of the JSON document (ours is at most 6 deep)
MAX_STEP = 10 ** 12                  # the largest step a run checkpoint or a History may record


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupted, truncated, of another kind, or does not fit the run."""


def _digest(tensors: dict[str, torch.Tensor], meta: dict | None = None) -> str:
    """SHA-256 over the canonical JSON of ``meta`` (sorted keys) and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    if meta is not None:
        h.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d: view needs ≥1 dim
    return h.hexdigest()


def write_atomic(path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write ``tensors`` + JSON ``meta`` to ``path`` atomically (temp file + fsync + rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {**meta, "format": FORMAT_VERSION}
    header = {"orthoscope": json.dumps({**meta, "sha256": _digest(tensors, meta)})}
    return replace_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def replace_atomically(path: Path, write) -> Path:
    """``write(tmp)`` a temp file beside ``path``, fsync it, rename it over ``path``: a reader sees the old file or the
    whole new one, never a torn one (a failed write leaves no temp file behind)."""
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_stale_temp_files(folder) -> list[Path]:
    """Remove ``*.<pid>.*.tmp`` files of our writer whose process is no longer running; returns what was removed."""
    removed = []
    for tmp in Path(folder).glob("*.tmp"):
        match = _TEMP_NAME.fullmatch(tmp.name)
        if match and not _process_alive(int(match[1])):
            try:
                tmp.unlink()
                removed.append(tmp)
            except FileNotFoundError:        # another process cleaned it first
                pass
    return removed


_TEMP_NAME = re.compile(r".+\.(\d+)\.[A-Za-z0-9_]+\.tmp")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:              # alive, someone else's
        return True
    return True


def _parse_json(text: str, path: Path) -> dict:
    """``json.loads`` with bounds: size, digits per number, nesting depth; the top level must be an object."""
    def bounded(kind, convert):
        def parse(token):
            if len(token) > MAX_NUMBER_CHARS:
                raise CheckpointError(f"checkpoint {str(path)!r}: header holds a {len(token)}-character {kind}")
            return convert(token)
        return parse

    if len(text) > MAX_HEADER_BYTES:
        raise CheckpointError(f"checkpoint {str(path)!r}: header of {len(text)} bytes exceeds {MAX_HEADER_BYTES}")
    depth = max_depth = 0
    in_string = escaped = False
    for ch in text:                      # nesting depth before json.loads recurses into it
        if in_string:
            escaped, in_string = (not escaped and ch == "\\"), in_string and (escaped or ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            max_depth = max(max_depth, depth)
        elif ch in "]}":
            depth -= 1
    if max_depth > MAX_DEPTH:
        raise CheckpointError(f"checkpoint {str(path)!r}: header nests {max_depth} levels deep (limit {MAX_DEPTH})")
    try:
        value = json.loads(text, parse_int=bounded("integer", int), parse_float=bounded("number", float))
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has a corrupted JSON header: {e}") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: header is a JSON {type(value).__name__}, not an object")
    return value


def read_checked(path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by ``write_atomic``; verify its kind, format and checksum (metadata and tensors).
    Raises ``CheckpointError`` naming the file and what is wrong."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} " + ("is a directory, not a file" if path.is_dir()
                                                             else "does not exist"))
    remove_stale_temp_files(path.parent)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated/garbled files
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted or truncated: {e}") from e
    if "orthoscope" not in header:
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not an orthoscope checkpoint")
    meta = _parse_json(header["orthoscope"], path)
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r}: field 'format' is {meta.get('format')!r}; this orthoscope "
                              f"reads format {FORMAT_VERSION} only (format 1, from orthoscope before 2026-12, did not checksum its "
                              "header; load it with that version and train on, or start the run again)")
    signature = meta.pop("sha256", None)
    if not isinstance(signature, str):
        raise CheckpointError(f"checkpoint {str(path)!r}: field 'sha256' (the integrity signature) is missing")
    if signature != _digest(tensors, meta):
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted: its checksum does not match (the SHA-256 "
                              "over header and tensors, field 'sha256')")
    if meta.get("kind") != kind:
        raise CheckpointError(f"{str(path)!r} holds a {meta.get('kind')!r}, expected a {kind!r} (field 'kind')")
    return tensors, meta


# ---- schema checks: every field a reader uses, before anything is applied ------------------------------------------

def require(path, meta: dict, field: str, kind, *, low=None, high=None, optional: bool = False):
    """``meta[field]`` checked for type (``int``, ``float``, ``str``, ``dict``, ``list``) and range; returns it.
    ``bool`` is not an ``int`` here, and a ``float`` must be finite."""
    if field not in meta:
        if optional:
            return None
        raise CheckpointError(f"checkpoint {str(path)!r}: field {field!r} is missing")
    value = meta[field]
    if value is None and optional:
        return None
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise CheckpointError(f"checkpoint {str(path)!r}: field {field!r} must be a "
                              f"{'finite number' if kind is float else kind.__name__}, got {value!r:.80}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise CheckpointError(f"checkpoint {str(path)!r}: field {field!r} = {value!r} is outside [{low}, {high}]")
    return value


# ---- the model's structure (``orthoscope.core.structure``) ---------------------------------------------------------

def check_structure(path, meta: dict, model) -> None:
    """Refuse a checkpoint whose recorded module structure (field ``structure``: every module's path and type, every
    tensor's name, shape and dtype) differs from ``model``'s, naming the first difference. Checkpoints written
    before the field existed have none and are checked by their ``signature`` (names and shapes) only."""
    from .structure import first_difference, fingerprint

    saved = require(path, meta, "structure", dict, optional=True)
    if saved is None:
        return
    _check_fingerprint_schema(path, saved)
    problem = first_difference(fingerprint(model), saved)
    if problem:
        raise CheckpointError(f"checkpoint {str(path)!r} was saved from a model of another structure: {problem} "
                              "(field 'structure')")


def _check_fingerprint_schema(path, saved: dict) -> None:
    def bad(where, value):
        raise CheckpointError(f"checkpoint {str(path)!r}: field 'structure.{where}' is malformed ({value!r:.80})")

    if set(saved) != {"modules", "tensors"}:
        bad("keys", sorted(saved))
    for what, width in (("modules", 2), ("tensors", 3)):
        entries = saved[what]
        if not isinstance(entries, list):
            bad(what, entries)
        for i, entry in enumerate(entries):
            if not (isinstance(entry, list) and len(entry) == width and isinstance(entry[0], str)
                    and isinstance(entry[-1], str)):
                bad(f"{what}[{i}]", entry)
            if what == "tensors" and not (isinstance(entry[1], list) and all(
                    isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in entry[1])):
                bad(f"{what}[{i}]", entry)


# ---- optimizer state as tensors + JSON (torch's own state_dict would need pickle) --------------------------------

def flatten_optimizer_state(state_dict: dict, prefix: str = "optim") -> tuple[dict, dict[str, torch.Tensor]]:
    tensors, state_meta = {}, {}
    for idx, entry in state_dict["state"].items():
        slot = {}
        for k, v in entry.items():
            if isinstance(v, torch.Tensor):
                name = f"{prefix}.{idx}.{k}"
                tensors[name] = v
                slot[k] = {"tensor": name}
            else:
                slot[k] = {"value": v}
        state_meta[str(idx)] = slot
    return {"state": state_meta, "param_groups": state_dict["param_groups"]}, tensors


def unflatten_optimizer_state(meta: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state = {}
    for idx, slot in meta["state"].items():
        state[int(idx)] = {k: tensors[v["tensor"]] if "tensor" in v else v["value"] for k, v in slot.items()}
    # JSON turns tuples (Adam's betas) into lists; give them back as tuples, as torch's own state_dict holds them.
    groups = [{k: (v if k == "params" or not isinstance(v, list) else tuple(v)) for k, v in g.items()}
              for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"rng.generator": generator.get_state(), "rng.torch": torch.get_rng_state()}


def set_rng_state(generator: torch.Generator, tensors: dict[str, torch.Tensor]) -> None:
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])


def comparable_method_config(config: dict) -> dict:
    """A method's ``config()`` as saved vs as rebuilt: ``repr()`` of a non-JSON value carries a memory address that
    differs per process, so addresses are blanked before the two are compared."""
    return json.loads(re.sub(r" at 0x[0-9a-fA-F]+", " at 0x?", json.dumps(config)))
