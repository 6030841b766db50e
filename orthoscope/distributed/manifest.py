"""The manifest of a sharded checkpoint directory: every file in it, with its size and SHA-256, written last.

    ckpt/manifest.json   {"kind": "orthoscope.CheckpointManifest", "format": 1, "step": 40,
                          "files": {"run.safetensors": {"size": 81234, "sha256": "9f…"},
                                    "shard-00001-model-00001-of-00001.safetensors": {"size": …, "sha256": …}, …}}

* **Written last, atomically**: after every rank's shards (DCP) and rank 0's ``run.safetensors`` are on disk, the
  files are hashed (each rank hashes every N-th file, one all-reduce brings the digests to rank 0) and rank 0 writes
  the manifest as a temp file, fsyncs it, ``os.replace``s it into place and fsyncs the directory. A directory without
  a manifest is a checkpoint whose save did not finish.
* **Verified before anything is read into a run** (``verify``): the manifest's own schema (bounded size, plain file
  names, sizes, 64-hex digests), then the directory's files against it — a file listed but missing, a file present
  but not listed (a shard left from another save, a stray ``.safetensors`` that DCP's reader would merge in), a size
  that differs (truncated or grown), a digest that differs (a flipped byte, a shard or record from another
  checkpoint). Each rank hashes every N-th file and one all-reduce gives every rank the same verdict, so all ranks
  raise the same ``CheckpointError`` (naming the file) or none does.

Directory entries that are folders are not files of the checkpoint and are ignored, except one named like a shard
(``*.safetensors``), which DCP's reader would try to open.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import torch

from ..core.checkpoint import MAX_STEP, CheckpointError, replace_atomically

NAME = "manifest.json"
KIND = "orthoscope.CheckpointManifest"
FORMAT = 1
MAX_BYTES = 16 * 2 ** 20                  # 16 MiB: ~100k files; ours lists world size + 1
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")      # a plain name: no '/', no '..' prefix
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 4 * 2 ** 20

# verdicts of one file, all-reduced with MAX: the worst one wins
_OK, _MISSING, _SIZE, _DIGEST = 0, 1, 2, 3


def file_digest(path: Path) -> tuple[int, bytes]:
    """``(size, SHA-256)`` of the file at ``path``, read in 4 MiB chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.digest()


def _files(directory: Path) -> list[str]:
    """The names of the checkpoint's files in ``directory`` (sorted; the manifest itself left out)."""
    return sorted(p.name for p in directory.iterdir()
                  if p.name != NAME and (p.is_file() or p.name.endswith(".safetensors")))


def _share(n: int, seam) -> range:
    """The file indices this rank hashes: every N-th, starting at its rank."""
    return range(seam.rank if seam else 0, n, seam.world if seam else 1)


def _all_reduce_max(t: torch.Tensor, seam) -> torch.Tensor:
    if seam is None:
        return t
    import torch.distributed as dist
    t = t.to(seam.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.cpu()


def write(directory, step: int, seam=None) -> Path:
    """Hash every file of ``directory`` and write its manifest (collective under torchrun: every rank calls it,
    after every rank's files are on disk; rank 0 writes). Returns the manifest's path."""
    directory = Path(directory)
    names = _files(directory)
    # one row per file: size, then the 32-byte digest as 4 int64 words; each row filled by the rank that hashed it
    # (the others leave zeros), so a SUM over ranks assembles the table exactly, without pickling anything
    table = torch.zeros(len(names), 5, dtype=torch.int64)
    for i in _share(len(names), seam):
        size, digest = file_digest(directory / names[i])
        table[i, 0] = size
        table[i, 1:] = torch.frombuffer(bytearray(digest), dtype=torch.int64)
    if seam is not None:
        import torch.distributed as dist
        table = table.to(seam.device)
        dist.all_reduce(table, op=dist.ReduceOp.SUM)   # words are signed: SUM, not MAX, with the zeros
        table = table.cpu()
    path = directory / NAME
    if seam is None or seam.is_main:
        files = {name: {"size": int(row[0]), "sha256": row[1:].numpy().tobytes().hex()}
                 for name, row in zip(names, table)}
        _write_atomic(path, {"kind": KIND, "format": FORMAT, "step": int(step), "files": files})
    return path


def _write_atomic(path: Path, document: dict) -> None:
    replace_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(document, indent=1, sort_keys=True),
                                                              encoding="utf-8"))
    dir_fd = os.open(path.parent, os.O_RDONLY)          # the rename itself durable
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read(directory) -> dict:
    """The manifest of ``directory``, schema-checked (not yet compared with the files)."""
    path = Path(directory) / NAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(directory)!r} has no {NAME} (its save did not finish, or it was "
                              f"written by orthoscope before manifests); file {str(path)!r} is missing")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise CheckpointError(f"checkpoint manifest {str(path)!r} is {size} bytes (limit {MAX_BYTES})")
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
        raise CheckpointError(f"checkpoint manifest {str(path)!r} is corrupted: {type(e).__name__}: "
                              f"{str(e)[:200]}") from e
    return _checked(path, document)


def _checked(path: Path, doc) -> dict:
    def fail(what: str):
        raise CheckpointError(f"checkpoint manifest {str(path)!r}: {what}")

    if not isinstance(doc, dict):
        fail(f"the document is a JSON {type(doc).__name__}, not an object")
    if doc.get("kind") != KIND:
        fail(f"field 'kind' is {str(doc.get('kind'))[:80]!r}, expected {KIND!r}")
    if doc.get("format") != FORMAT:
        fail(f"field 'format' is {str(doc.get('format'))[:40]!r}; this orthoscope reads format {FORMAT}")
    step = doc.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
        fail(f"field 'step' must be an integer in [0, {MAX_STEP}], got {str(step)[:40]!r}")
    files = doc.get("files")
    if not isinstance(files, dict) or not files:
        fail("field 'files' must be a non-empty object {file name: {size, sha256}}")
    for name, entry in files.items():
        if not _FILE_NAME.match(name) or name == NAME:
            fail(f"field 'files' lists {name[:80]!r}, which is not a plain file name of this directory")
        if not isinstance(entry, dict) or set(entry) != {"size", "sha256"}:
            fail(f"files[{name!r}] must be an object with exactly 'size' and 'sha256'")
        size, digest = entry["size"], entry["sha256"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            fail(f"files[{name!r}].size must be a non-negative integer, got {str(size)[:40]!r}")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            fail(f"files[{name!r}].sha256 must be 64 lowercase hex digits, got {str(digest)[:80]!r}")
    return doc


def verify(directory, seam=None) -> dict:
    """Check every file of ``directory`` against its manifest; returns the manifest. Raises ``CheckpointError``
    naming the first file that is missing, unlisted, of another size or another digest. Collective under torchrun:
    every rank calls it and every rank gets the same verdict."""
    directory = Path(directory)
    problem, manifest = None, None
    try:
        if not directory.is_dir():
            raise CheckpointError(f"checkpoint {str(directory)!r} is not a directory")
        manifest = read(directory)
        unlisted = [n for n in _files(directory) if n not in manifest["files"]]
        if unlisted:
            raise CheckpointError(f"checkpoint {str(directory)!r}: file {str(directory / unlisted[0])!r} is not in "
                                  f"its {NAME} (a file from another save?); the checkpoint is refused")
    except CheckpointError as e:
        problem = e
    # every rank learns whether any rank failed above, so none waits in the collective below alone
    failed = _all_reduce_max(torch.tensor([problem is not None], dtype=torch.int64), seam)
    if failed.item():
        raise problem or CheckpointError(f"checkpoint {str(directory)!r} failed verification on another rank")
    names = sorted(manifest["files"])
    verdicts = torch.zeros(len(names), dtype=torch.int64)
    for i in _share(len(names), seam):
        verdicts[i] = _verdict(directory / names[i], manifest["files"][names[i]])
    verdicts = _all_reduce_max(verdicts, seam)
    for name, verdict in zip(names, verdicts.tolist()):
        if verdict != _OK:
            raise CheckpointError(_message(directory / name, manifest["files"][name], verdict))
    return manifest


def _verdict(path: Path, entry: dict) -> int:
    if not path.is_file():
        return _MISSING
    if path.stat().st_size != entry["size"]:
        return _SIZE
    return _OK if file_digest(path)[1].hex() == entry["sha256"] else _DIGEST


def _message(path: Path, entry: dict, verdict: int) -> str:
    where = f"checkpoint file {str(path)!r}"
    if verdict == _MISSING:
        return f"{where} is missing (listed in {NAME}); the checkpoint is refused"
    if verdict == _SIZE:
        actual = path.stat().st_size if path.is_file() else "?"
        return (f"{where} is {actual} bytes, its {NAME} says {entry['size']} (truncated or replaced); the "
                "checkpoint is refused")
    return (f"{where} is corrupted or from another checkpoint: its SHA-256 does not match {NAME}; the checkpoint "
            "is refused")
