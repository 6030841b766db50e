#!/usr/bin/env bash
# Drift check (outside CI): build a throwaway environment from the NEWEST releases that pyproject.toml's bounds allow,
# ignoring requirements/test.lock, and run the test suite in it — so the next incompatible upstream release shows up
# here before a lock refresh (scripts/lock.sh --upgrade) lets it into everyone's set-up.
#
#   bash scripts/drift_check.sh                  # whole suite
#   bash scripts/drift_check.sh -m "not browser" -x   # pytest arguments pass through
#
# torch stays at the CPU build 2.13.0: a newer torch from the index is a multi-GB CUDA build (and this machine's pip
# caps torch at the releases on its disk). Everything else, Triton included, floats to the newest allowed release.
# Prints the versions that differ from the lock, then the suite's result; exits with pytest's code.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m venv "$work/venv"
pip() { "$work/venv/bin/python" -m pip --disable-pip-version-check "$@"; }
echo "[drift] installing the newest releases the bounds allow into $work/venv"
pip install -q --upgrade pip
echo "torch==2.13.0" > "$work/torch.txt"     # a constraint: the eager upgrade below must not swap in a CUDA torch
pip install -q -c "$work/torch.txt" "torch==2.13.0"
pip install -q -c "$work/torch.txt" --upgrade --upgrade-strategy eager ".[test]" kernels
echo "[drift] versions that differ from requirements/test.lock:"
"$work/venv/bin/python" scripts/check_lock.py --skip pip 2>&1 | sed 's/^\[lock\]/  /' || true
export ORTHOSCOPE_SMOKE=1 MPLBACKEND=Agg OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
set +e
# From the checkout, as scripts/test.sh runs it: the dependencies are the throwaway venv's, orthoscope is this tree's.
"$work/venv/bin/python" -m pytest -p no:cacheprovider "$@"
rc=$?
echo "[drift] pytest exited $rc"
exit $rc
