"""Run a real Neo4j Community 5.26 server locally, without Docker (jars from Maven Central).

A thin entry point for a checkout: the command line lives in :func:`graph.neo4j_local.main`
(also ``python -m graph.neo4j_local`` where the package is installed). See ``--help``.

Examples:
  python scripts/neo4j_local.py provision
  export NEO4J_URI=$(python scripts/neo4j_local.py start)     # background server, prints its URI
  python scripts/neo4j_local.py start --data-dir .graphrec/n2 # a second one, for another store
  python scripts/neo4j_local.py status
  python scripts/neo4j_local.py stop --all
  python scripts/neo4j_local.py run -- python -m pytest -q    # server just for this command
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages

from graph.neo4j_local import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
