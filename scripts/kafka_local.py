"""Run a real Apache Kafka 4 broker (KRaft) locally, without Docker (jars from Maven Central).

A thin entry point for a checkout: the command line lives in :func:`graph.kafka_local.main`
(also ``python -m graph.kafka_local`` where the package is installed). See ``--help``.

Examples:
  python scripts/kafka_local.py provision
  export KAFKA_BOOTSTRAP=$(python scripts/kafka_local.py start)   # background broker, prints host:port
  python scripts/kafka_local.py status
  python scripts/kafka_local.py stop
  python scripts/kafka_local.py run -- python -m pytest -q        # a broker just for this command
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages

from graph.kafka_local import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
