#!/usr/bin/env bash
# Create .venv (if missing) and install orthoscope with its test extras.
#
# A CPU torch (torch==2.13.0) is installed only where no torch is importable, so an unpinned requirement never pulls
# the multi-GB CUDA build. GPU users: install the torch you want into .venv first, or set ORTHOSCOPE_TORCH, e.g.
#   ORTHOSCOPE_TORCH="torch==2.13.0 --index-url <your CUDA index>" bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${ORTHOSCOPE_VENV:-.venv}
STAMP="$VENV/.orthoscope-installed"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment in $VENV"
    "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

# Skip the pip round-trip when nothing that affects installation changed since the last successful install.
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi

pip install -q --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "[setup] installing ${ORTHOSCOPE_TORCH:-torch==2.13.0}"
    # shellcheck disable=SC2086
    pip install -q ${ORTHOSCOPE_TORCH:-torch==2.13.0}
fi
if [ "$(uname -s)" = "Linux" ] && ! "$VENV/bin/python" -c "import triton" 2>/dev/null; then
    # The Triton that torch 2.13's CUDA build pins; it imports (and runs under TRITON_INTERPRET=1) without a GPU.
    echo "[setup] installing triton==3.7.1"
    pip install -q triton==3.7.1
fi
echo "[setup] installing orthoscope[test] (editable)"
pip install -q -e ".[test]"
echo "$want" > "$STAMP"
