#!/usr/bin/env bash
# Refresh requirements/test.lock: the exact version and hashes of every package the test environment installs
# (Python 3.11, Linux x86-64, CPU torch 2.13.0). Run this deliberately, review the diff, run the suite, commit both.
#
# Tool: pip-tools (pip-compile). It resolves with pip's own finder, so it sees the CPU torch wheel that this machine's
# pip configuration provides (find-links) exactly as scripts/setup.sh's pip will; uv's resolver does not look there
# and would lock the multi-GB CUDA build. The lock is a plain pip requirements file with --hash lines, so set-up
# needs nothing but pip (`pip install --require-hashes`).
#
# Inputs: pyproject.toml (dependencies + the `test`, `integrations` and `course` extras: the honest lower bounds users see) and
# requirements/pins.in (what the lock pins beyond them: the CPU torch, Triton, the build backend).
#
#   bash scripts/lock.sh              # keep today's pins, resolve only what pyproject/pins.in changed
#   bash scripts/lock.sh --upgrade    # move every package to the newest release the bounds allow
#   bash scripts/lock.sh --upgrade-package transformers   # move one (pip-compile's options pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$PY" -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install -q "pip-tools==7.7.0"
"$tools/venv/bin/pip-compile" --quiet --extra test --extra integrations --extra course --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links --no-header \
    --output-file requirements/test.lock "$@" pyproject.toml requirements/pins.in
echo "[lock] wrote requirements/test.lock ($(grep -c '^[A-Za-z]' requirements/test.lock) packages); review: git diff requirements/"
