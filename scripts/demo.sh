#!/usr/bin/env bash
# One command on a fresh machine: install, then run the demo on the embedded local store (no server).
#   bash scripts/demo.sh [graphrec demo options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
graphrec demo --data-dir "${GRAPHREC_DATA_DIR:-$ROOT/../shared/datasets}" "$@"
