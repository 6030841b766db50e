#!/usr/bin/env bash
# One command from a fresh clone: set up .venv (+ Chromium for the browser test), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "[test] installing Debian chromium for the browser test"
        (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "[test] chromium install failed; browser test will skip"
    else
        echo "[test] no chromium and cannot apt-get it; the browser test will skip"
    fi
fi
export ORTHOSCOPE_SMOKE=1 MPLBACKEND=Agg
# One intra-op thread per process: the suite runs several processes at once (pytest, notebook kernels, JupyterLab and
# Chromium in the browser test), and on 2 cores torch's OpenMP threads then spin-wait on each other — measured here:
# 40 tiny-LM steps took 1.5 s with one thread and 14.5 s with two at load average 5.6.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: that is a broken suite, not a pass.
if [ "$rc" = "5" ]; then echo "[test] no tests were collected"; exit 1; fi
exit "$rc"
