#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv in .venv and install the project with its dev, ann and
# dist extras (the tests of the approximate index need hnswlib, those of the batch jobs Ray and
# pyarrow; they never skip).
# Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
# shellcheck disable=SC1091
. "$ROOT/.venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q -e "$ROOT[dev,ann,dist]"
