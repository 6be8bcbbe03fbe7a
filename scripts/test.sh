#!/usr/bin/env bash
# One command on a fresh machine: install everything, provision and start a real Neo4j and a
# real Kafka broker (or use NEO4J_URI / KAFKA_BOOTSTRAP when set), lint, and run the whole test
# suite against them.
#   bash scripts/test.sh [pytest options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
ruff check .
ruff format --check .
lint-imports
python scripts/neo4j_local.py provision
python scripts/kafka_local.py provision
# A Neo4j server and a Kafka broker just for this run (or NEO4J_URI / KAFKA_BOOTSTRAP when set).
python scripts/neo4j_local.py run -- python scripts/kafka_local.py run -- python -m pytest -q "$@"
