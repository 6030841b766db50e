"""Checkpoint files: one safetensors file whose header metadata carries a JSON document.

* Writes are atomic: the file is written to a temporary name in the same folder, fsync'ed, then ``os.replace``d.
* Loading never unpickles: tensors come from safetensors, everything else from JSON.
* A SHA-256 over all tensor bytes is stored in the metadata, so a corrupted (not only a truncated) file is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupted, truncated, of another kind, or does not fit the run."""


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
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
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {"orthoscope": json.dumps({**meta, "format": FORMAT_VERSION, "sha256": _digest(tensors)})}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_checked(path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by ``write_atomic``; verify its kind and checksum. Raises ``CheckpointError``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} " + ("is a directory, not a file" if path.is_dir()
                                                             else "does not exist"))
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated/garbled files
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted or truncated: {e}") from e
    if "orthoscope" not in header:
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not an orthoscope checkpoint")
    try:
        meta = json.loads(header["orthoscope"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has a corrupted JSON header: {e}") from e
    if meta.get("kind") != kind:
        raise CheckpointError(f"{str(path)!r} holds a {meta.get('kind')!r}, expected a {kind!r}")
    if meta.get("sha256") != _digest(tensors):
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted: its tensor checksum does not match")
    return tensors, meta


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
