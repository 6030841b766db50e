"""Fail when the installed environment differs from requirements/test.lock (run by scripts/setup.sh and the tests).

Compares every ``name==version`` pin of the lock (markers evaluated for this interpreter) with what
``importlib.metadata`` sees installed, and lists packages that are missing, at another version, or installed but not
in the lock. ``--skip NAME`` leaves a package out (set-up skips torch when the user brought their own build); with
``--write-without FILE`` it writes the lock less those packages instead (what set-up then installs).
"""
from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "test.lock"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")
# Installed by the venv itself or by the project's own editable install, not by the lock.
NOT_LOCKED = {"pip", "orthoscope"}


def locked(lock: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match and (match[3] is None or Marker(match[3]).evaluate()):
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}


def drift(skip: set[str] = frozenset(), allow_extra: bool = False) -> list[str]:
    want, have = locked(), installed()
    skip = {canonicalize_name(s) for s in skip} | NOT_LOCKED
    problems = [f"{n}: locked {v}, installed {have.get(n, 'nothing')}" for n, v in sorted(want.items())
                if n not in skip and have.get(n) != v]
    if not allow_extra:
        problems += [f"{n}: installed {v}, not in the lock" for n, v in sorted(have.items())
                     if n not in want and n not in skip]
    return problems


def without(names: set[str], lock: Path = LOCK) -> str:
    """The lock's text less the entries (pin, hashes and comments) of ``names``."""
    names, keep, out = {canonicalize_name(n) for n in names}, True, []
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match or (line and not line[0].isspace()):
            keep = not (match and canonicalize_name(match[1]) in names)
        if keep:
            out.append(line)
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", action="append", default=[], help="package to leave out of the comparison")
    parser.add_argument("--allow-extra", action="store_true",
                        help="accept installed packages the lock does not name (a user's own CUDA torch brings some)")
    parser.add_argument("--write-without", metavar="FILE",
                        help="instead of checking, write the lock less the --skip packages to FILE")
    args = parser.parse_args(argv)
    if args.write_without:
        Path(args.write_without).write_text(without(set(args.skip)))
        return 0
    problems = drift(set(args.skip), args.allow_extra)
    for problem in problems:
        print(f"[lock] {problem}", file=sys.stderr)
    if problems:
        print(f"[lock] the environment differs from {LOCK.name} in {len(problems)} package(s); "
              "delete .venv and run scripts/setup.sh again", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
