#!/usr/bin/env bash
# One command from a fresh clone: set up .venv, then train modular addition until it groks and write a report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m orthoscope demo --out "${1:-demo-out}"
