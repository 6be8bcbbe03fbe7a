"""graphrec: graph-based recommendations (who to follow, tweet candidates) over Neo4j.

The names a user needs, in one place::

    from graphrec import GraphSnapshot, Recommender, open_store, export_snapshot

    with open_store(".graphrec/flickr") as store:     # or "bolt://127.0.0.1:7687"
        snap = export_snapshot(store)
    rec = Recommender(snap)
    rec.who_to_follow(42, k=10)
"""

from __future__ import annotations

from graph.errors import GraphRecError, InputError, SnapshotError, StoreUnavailableError
from graph.export import export_snapshot
from graph.snapshot import GraphSnapshot
from graph.store import GraphStore, open_store
from retrieval.autotune import tune_config
from retrieval.filters import FilterOptions
from retrieval.recommender import Recommendation, Recommender, RecommenderConfig, UnknownUserError
from retrieval.sources import CandidateSource

__all__ = [
    "CandidateSource",
    "FilterOptions",
    "GraphRecError",
    "GraphSnapshot",
    "GraphStore",
    "InputError",
    "Recommendation",
    "Recommender",
    "RecommenderConfig",
    "SnapshotError",
    "StoreUnavailableError",
    "UnknownUserError",
    "export_snapshot",
    "open_store",
    "tune_config",
]
