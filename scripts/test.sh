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
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: that is a broken suite, not a pass.
if [ "$rc" = "5" ]; then echo "[test] no tests were collected"; exit 1; fi
exit "$rc"
