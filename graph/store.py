"""The store interface every backend implements, and `open_store`.

A store is the system of record. Writes take column arrays (one call is one
transaction) with *first write wins* semantics, so re-running an ingest adds
nothing:

* a follow is keyed by (follower, followee);
* an engagement by (user, tweet, kind);
* a tweet's author, creation time and text are set once, when first known.

Endpoints that are not yet nodes are created. Reads stream column batches that
:func:`graph.export.export_snapshot` assembles into a snapshot; it reads them through
:meth:`GraphStore.read_view`, so the snapshot is one committed state of the graph even while
other connections keep ingesting.

:func:`open_store` turns a ``--store`` value into a store: a ``bolt://`` URI, ``neo4j`` (the
server in ``NEO4J_URI``), ``None`` (``NEO4J_URI`` if set, else the default local store) or a
directory.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graph.errors import InputError


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

    @contextlib.contextmanager
    def read_view(self) -> Iterator[GraphStore]:
        """A read-only view of one committed state of the graph, for reading all of it.

        Every ``iter_*`` read through the yielded store sees the graph as it was when the view
        opened (a prefix of the committed write transactions), whatever other connections commit
        meanwhile; :func:`graph.export.export_snapshot` reads through it. Write through the
        store itself, not the view. Both stores of this package override this; the default
        yields the store itself and guarantees nothing across reads.
        """
        yield self

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


#: The store that :func:`open_store` opens for no target when ``NEO4J_URI`` is unset
#: (the same directory as the CLI's default ``--store``).
DEFAULT_LOCAL_STORE = ".graphrec/store"
#: The ``--store`` value that means "the Neo4j server named by ``NEO4J_URI``".
NEO4J_FROM_ENV = "neo4j"
_NEO4J_SCHEMES = ("bolt://", "neo4j://", "bolt+s://", "neo4j+s://", "bolt+ssc://", "neo4j+ssc://")


def open_store(target: str | Path | None = None, *, create: bool = False, **kwargs) -> GraphStore:
    """Open a store (the CLI's ``--store``), resolving ``target`` in this order:

    1. a ``bolt://`` / ``neo4j://`` URI (also ``+s`` / ``+ssc``): a :class:`~graph.neo4j_store.Neo4jStore`
       on that server. An explicit URI always wins; ``NEO4J_URI`` is not consulted.
    2. the string ``"neo4j"``: the Neo4j server in ``NEO4J_URI`` (as ``docker-compose.yml`` and
       ``scripts/neo4j_local.py run`` set it). Raises :class:`~graph.errors.InputError` when
       ``NEO4J_URI`` is unset or not such a URI. For a local directory named ``neo4j`` write
       ``./neo4j``.
    3. ``None`` (no store given): ``NEO4J_URI`` when it is set, else the local store in
       :data:`DEFAULT_LOCAL_STORE`.
    4. anything else is a directory: a :class:`~graph.local_store.LocalStore` there, whatever
       ``NEO4J_URI`` says.

    A local store directory must already hold a store unless ``create=True`` (what ``graphrec
    ingest`` asks for): a mistyped path is an error, not a new empty store.

    Neo4j credentials, in every case where a Neo4jStore is opened: ``user=`` / ``password=``
    keywords, else ``NEO4J_USER`` (default ``neo4j``) / ``NEO4J_PASSWORD``, else
    ``NEO4J_AUTH=user/password``, else, for a localhost URI, the password of the servers that
    ``scripts/neo4j_local.py`` starts (:mod:`graph.neo4j_auth`); a server that refuses them
    raises :class:`~graph.errors.StoreAuthError` saying where to put the password. The
    database comes from ``database=``, else ``NEO4J_DATABASE``. Other keywords go to :meth:`Neo4jStore.connect <graph.neo4j_store.Neo4jStore.connect>`
    or :class:`~graph.local_store.LocalStore`.
    """
    if target is None:
        uri = _neo4j_uri_from_env(required=False)
        if uri is None:
            return _open_local(DEFAULT_LOCAL_STORE, create=create, **kwargs)
        return _open_neo4j(uri, **kwargs)
    text = str(target)
    if text.startswith(_NEO4J_SCHEMES):
        return _open_neo4j(text, **kwargs)
    if isinstance(target, str) and text == NEO4J_FROM_ENV:
        return _open_neo4j(_neo4j_uri_from_env(required=True), **kwargs)
    return _open_local(target, create=create, **kwargs)


def _neo4j_uri_from_env(*, required: bool) -> str | None:
    uri = os.environ.get("NEO4J_URI", "").strip()
    if not uri:
        if required:
            raise InputError(
                f"store {NEO4J_FROM_ENV!r} means the Neo4j server in NEO4J_URI, which is not set; "
                "set it (e.g. export NEO4J_URI=bolt://localhost:7687) or pass a bolt:// URI or a directory"
            )
        return None
    if not uri.startswith(_NEO4J_SCHEMES):
        raise InputError(f"NEO4J_URI={uri!r} is not a Neo4j URI (expected bolt://HOST:PORT or neo4j://...)")
    return uri


def _open_neo4j(uri: str, **kwargs) -> GraphStore:
    from graph.neo4j_store import Neo4jStore

    return Neo4jStore.connect(uri, **kwargs)


def _open_local(directory: str | Path, *, create: bool, **kwargs) -> GraphStore:
    from graph.local_store import LocalStore

    return LocalStore(Path(directory), create=create, **kwargs)
