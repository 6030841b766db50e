#!/usr/bin/env bash
# Create .venv (if missing) and install exactly requirements/test.lock into it, then orthoscope itself (editable).
#
# The lock (scripts/lock.sh writes it) pins every package of the test environment with its hashes, so a fresh clone of
# an unchanged commit installs the same environment whatever was released upstream since. Its torch is the CPU build,
# torch==2.13.0+cpu, never the multi-GB CUDA wheels. GPU users: install the torch you want into .venv first, or set
# ORTHOSCOPE_TORCH, e.g.
#   ORTHOSCOPE_TORCH="torch==2.13.0 --index-url <your CUDA index>" bash scripts/setup.sh
# and the lock's torch is left out (the rest of the lock still installs and is checked).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${ORTHOSCOPE_VENV:-.venv}
LOCK=requirements/test.lock
STAMP="$VENV/.orthoscope-installed"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment in $VENV"
    "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

# torch is the user's when they name one or brought one; the lock's otherwise.
skip=()
if [ -n "${ORTHOSCOPE_TORCH:-}" ]; then
    if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        echo "[setup] installing $ORTHOSCOPE_TORCH"
        # shellcheck disable=SC2086
        pip install -q $ORTHOSCOPE_TORCH
    fi
    skip=(--skip torch --allow-extra)
elif "$VENV/bin/python" -c "import torch, sys; sys.exit('+cpu' in torch.__version__)" 2>/dev/null; then
    skip=(--skip torch --allow-extra)    # a torch that is not the lock's CPU build: the user's own
fi

# Nothing to do when the lock, pyproject and this script are unchanged since the last install and nothing drifted.
want=$(cat "$LOCK" pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" scripts/check_lock.py "${skip[@]}" 2>/dev/null; then
    exit 0
fi

requirements="$LOCK"
if [ ${#skip[@]} -gt 0 ]; then
    requirements=$(mktemp)
    trap 'rm -f "$requirements"' EXIT
    "$VENV/bin/python" -c "import packaging" 2>/dev/null || pip install -q packaging
    "$VENV/bin/python" scripts/check_lock.py --skip torch --write-without "$requirements"
fi
echo "[setup] installing $LOCK (pinned, hash-checked)"
pip install -q --require-hashes --no-deps -r "$requirements"
echo "[setup] installing orthoscope (editable)"
pip install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" scripts/check_lock.py "${skip[@]}"
echo "$want" > "$STAMP"
