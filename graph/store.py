"""The store interface every backend implements, and `open_store`.

A store is the system of record. Writes take column arrays (one call is one
transaction) with *first write wins* semantics, so re-running an ingest adds
nothing:

* a follow is keyed by (follower, followee);
* an engagement by (user, tweet, kind);
* a tweet's author, creation time and text are set once, when first known.

Endpoints that are not yet nodes are created. Reads stream column batches that
:func:`graph.export.export_snapshot` assembles into a snapshot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class TweetBatch:
    ids: np.ndarray  # int64
    authors: np.ndarray  # int64, -1 = unknown
    created: np.ndarray  # int64, 0 = unknown
    texts: list[str | None]


@dataclass
class FollowBatch:
    src: np.ndarray
    dst: np.ndarray
    ts: np.ndarray


@dataclass
class EngagementBatch:
    users: np.ndarray
    tweets: np.ndarray
    kinds: np.ndarray  # int8 codes of graph.schema.KINDS
    ts: np.ndarray
    weights: np.ndarray  # float32


class GraphStore(ABC):
    """What ingest, export and the embedding job need from a graph store."""

    #: short name for logs and benchmark tables
    kind: str = "store"

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create constraints and indexes (idempotent)."""

    @abstractmethod
    def write_users(self, ids: np.ndarray) -> None:
        """Create users that do not exist yet; one transaction."""

    @abstractmethod
    def write_tweets(self, batch: TweetBatch) -> None:
        """Create tweets (and their authors); set author/created/text where unset."""

    @abstractmethod
    def write_follows(self, batch: FollowBatch) -> None:
        """Create follow edges not yet present; one transaction."""

    @abstractmethod
    def write_engagements(self, batch: EngagementBatch) -> None:
        """Create engagements not yet present; one transaction."""

    @abstractmethod
    def iter_users(self, batch_size: int) -> Iterator[np.ndarray]:
        """Stream every user id."""

    @abstractmethod
    def iter_tweets(self, batch_size: int) -> Iterator[TweetBatch]:
        """Stream every tweet with author, creation time and text."""

    @abstractmethod
    def iter_follows(self, batch_size: int) -> Iterator[FollowBatch]:
        """Stream every follow edge."""

    @abstractmethod
    def iter_engagements(self, batch_size: int) -> Iterator[EngagementBatch]:
        """Stream every engagement edge."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Numbers of users, tweets, follows and engagements."""

    @abstractmethod
    def clear(self) -> None:
        """Delete everything (tests and benchmarks)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections / files."""

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(target: str | Path, **kwargs) -> GraphStore:
    """Open a store: a ``bolt://`` / ``neo4j://`` URI gives a Neo4jStore, a path a LocalStore."""
    text = str(target)
    if text.startswith(("bolt://", "neo4j://", "bolt+s://", "neo4j+s://", "bolt+ssc://", "neo4j+ssc://")):
        from graph.neo4j_store import Neo4jStore

        return Neo4jStore.connect(text, **kwargs)
    from graph.local_store import LocalStore

    return LocalStore(Path(target), **kwargs)
