"""Neo4j implementation of the store, over the official ``neo4j`` driver.

Practices: accept a driver (``Neo4jStore(driver)``) or build one from a URI
(:meth:`Neo4jStore.connect`); all Cypher lives in :mod:`graph.cypher`; every write
batch is one ``UNWIND $rows`` managed transaction, retried by the driver on
transient errors, that stamps what it creates with its batch number (so
:meth:`Neo4jStore.read_view` can read one committed state); reads run in read
transactions; the database is explicit.

When the server has graphrec's own procedures (``graph/neo4j_plugin``), writes and the export
go through them instead (:mod:`graph.neo4j_procedures`), with the same results and the same
batch numbers; the ``procedures`` attribute forces either path.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import neo4j
import numpy as np
from neo4j.exceptions import AuthError, DriverError, Neo4jError, ServiceUnavailable, SessionExpired

from graph import cypher, neo4j_procedures
from graph.errors import GraphRecError, StoreAuthError, StoreUnavailableError
from graph.ingest import GraphColumns
from graph.neo4j_auth import auth_failure_message, resolve_auth
from graph.schema import KIND_REL_TYPES, KINDS
from graph.store import EngagementBatch, FollowBatch, GraphStore, TweetBatch

log = logging.getLogger(__name__)

_REL_TO_KIND = {rel: KINDS[kind] for kind, rel in KIND_REL_TYPES.items()}
#: The batch number reads see outside a read view: everything.
_ALL_BATCHES = 2**63 - 1
_UNAVAILABLE = (ServiceUnavailable, SessionExpired, OSError)

#: Seconds a statement of the exploration surface (``cypher``, ``query``) may run before the
#: server aborts it (the local server also ends any transaction after 5 minutes).
DEFAULT_QUERY_TIMEOUT = 60.0

# Administration and transaction management: refused on the read surface (they would show or
# end other clients' work, or change users and databases), whatever the access mode allows.
_ADMIN = re.compile(
    r"^\s*(?:USE\s+\S+\s+)?(?:TERMINATE|GRANT|DENY|REVOKE|ALTER|RENAME|START|STOP|ENABLE|DEALLOCATE"
    r"|REALLOCATE|DRYRUN|DROP\s+(?:USER|ROLE|DATABASE|ALIAS|COMPOSITE|SERVER)"
    r"|CREATE\s+(?:OR\s+REPLACE\s+)?(?:USER|ROLE|DATABASE|ALIAS|COMPOSITE)"
    r"|SHOW\s+(?:\w+\s+)*(?:TRANSACTIONS?|USERS?|ROLES?|PRIVILEGES?|DATABASES?|SERVERS?|ALIAS(?:ES)?|SETTINGS?))\b"
    r"|\bCALL\s+dbms\.",
    re.IGNORECASE,
)


def _strip_comments(query: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", " ", query, flags=re.DOTALL)


class Neo4jStore(GraphStore):
    """Graph store in a Neo4j database."""

    kind = "neo4j"

    def __init__(
        self,
        driver: neo4j.Driver,
        *,
        database: str = "neo4j",
        owns_driver: bool = False,
        query_timeout: float = DEFAULT_QUERY_TIMEOUT,
    ):
        self.driver = driver
        self.database = database
        self._owns_driver = owns_driver
        self.query_timeout = query_timeout
        # The last batch number the reads see; below the maximum only in a read view.
        self._high_water = _ALL_BATCHES
        self._epoch = 0  # the graph's epoch as a read view saw it (GraphClock.epoch)
        self.procedures = neo4j_procedures.default_mode()

    # -- graphrec's server procedures (graph/neo4j_procedures.py) -----------------
    @property
    def procedures(self) -> str:
        """The write and export path: ``auto`` (graphrec's procedures when the server has them,
        else Cypher), ``plugin`` (require them) or ``cypher``. Default: ``$GRAPHREC_NEO4J_PROCEDURES``
        or ``auto``."""
        return self._procedures

    @procedures.setter
    def procedures(self, mode: str) -> None:
        self._procedures = neo4j_procedures.check_mode(mode)
        self._plugin: neo4j_procedures.Plugin | None | bool = False  # probed on first use

    @property
    def plugin(self) -> neo4j_procedures.Plugin | None:
        """graphrec's procedures on this server when this store uses them, else None (probed once)."""
        if self._plugin is False:
            self._plugin = neo4j_procedures.connect(self)
        return self._plugin

    @property
    def concurrent_writes(self) -> bool:
        """Whether :func:`graph.ingest.ingest` may write batches from several threads (the procedures
        take that; the Cypher path's MERGE would deadlock and retry)."""
        return self.plugin is not None

    def export_columns(self) -> GraphColumns | None:
        """The graph of this read view (or of a new one) as columns through the procedures (None on
        the Cypher path)."""
        if self.plugin is None:
            return None
        with self.read_view() as view:
            return self.plugin.export(view=view)[0]

    @classmethod
    def connect(
        cls,
        uri: str,
        *,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        connect_timeout: float = 5.0,
        retry_time: float = 15.0,
        query_timeout: float = DEFAULT_QUERY_TIMEOUT,
    ) -> Neo4jStore:
        """Open a driver to ``uri`` and check that the server answers.

        Credentials: ``user`` / ``password``, else ``NEO4J_USER`` / ``NEO4J_PASSWORD``, else
        ``NEO4J_AUTH``, else (a localhost URI) the password of the local servers, else none
        (:func:`graph.neo4j_auth.resolve_auth`). Raises :class:`StoreAuthError` saying where to
        put the password when the server refuses them, and :class:`StoreUnavailableError`
        within about ``2 * connect_timeout`` seconds when nothing answers.
        """
        credentials = resolve_auth(uri, user, password)
        driver = neo4j.GraphDatabase.driver(
            uri,
            auth=credentials.as_tuple() if credentials else None,
            connection_timeout=connect_timeout,
            connection_acquisition_timeout=2 * connect_timeout,
            max_transaction_retry_time=retry_time,
            # Our queries name labels and types that an empty or partial graph may lack yet
            # (e.g. POSTED on a dataset without authors); the server's notices about that are noise.
            notifications_min_severity="OFF",
        )
        try:
            driver.verify_connectivity()
        except AuthError as exc:
            driver.close()
            raise StoreAuthError(auth_failure_message(uri, credentials, exc.message or str(exc))) from None
        except (DriverError, Neo4jError, OSError) as exc:
            driver.close()
            raise StoreUnavailableError(
                f"cannot reach Neo4j at {uri}: {exc}. Start it (scripts/neo4j_local.py start, or "
                f"`docker compose up -d`) or check NEO4J_URI."
            ) from None
        store = cls(
            driver,
            database=database or os.environ.get("NEO4J_DATABASE", "neo4j"),
            owns_driver=True,
            query_timeout=query_timeout,
        )
        store.uri = uri
        return store

    def __repr__(self) -> str:
        return f"Neo4jStore({getattr(self, 'uri', '<driver>')!r}, database={self.database!r})"

    # -- transaction helpers ---------------------------------------------------
    def _run(self, work: Callable[[neo4j.ManagedTransaction], Any], *, write: bool) -> Any:
        mode = neo4j.WRITE_ACCESS if write else neo4j.READ_ACCESS
        try:
            with self.driver.session(database=self.database, default_access_mode=mode) as session:
                return session.execute_write(work) if write else session.execute_read(work)
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"Neo4j became unavailable: {exc}") from exc

    def _write(self, statements: list[tuple[str, dict]]) -> None:
        """One write batch: takes the next batch number first (its lock, held to the commit,
        orders the batches) and passes it to every statement as ``$seq``."""

        def work(tx: neo4j.ManagedTransaction) -> None:
            seq = tx.run(cypher.NEXT_BATCH_SEQ).single()["seq"]
            for query, params in statements:
                tx.run(query, {**params, "seq": seq}).consume()

        self._run(work, write=True)

    def _read_single(self, query: str, **params) -> neo4j.Record | None:
        params["hw"] = self._high_water
        return self._run(lambda tx: tx.run(query, params).single(), write=False)

    @contextlib.contextmanager
    def read_view(self) -> Iterator[Neo4jStore]:
        """The graph as of the last committed write batch (see :meth:`GraphStore.read_view`).

        Reads the last batch number under the clock's write lock, so a batch in flight is
        waited for (the view holds that lock for this one read only, so ingests go on at once),
        then yields a view of this store whose reads skip everything later batches created or
        set (see :mod:`graph.cypher`).
        The view holds no transaction open, so it can last longer than the server's
        transaction timeout. ``counts()`` is not filtered.
        """
        if self._high_water != _ALL_BATCHES:  # already a view
            yield self
            return
        record = self._run(lambda tx: tx.run(cypher.LAST_BATCH_SEQ).single(), write=True)
        view = copy.copy(self)
        view._owns_driver = False
        view._high_water = int(record["seq"])
        view._epoch = int(record["epoch"])
        log.debug("read view of %r up to batch %d", self, view._high_water)
        yield view

    # -- schema and writes -----------------------------------------------------
    def ensure_schema(self) -> None:
        try:
            with self.driver.session(database=self.database) as session:
                for statement in cypher.SCHEMA:
                    session.run(statement).consume()
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"Neo4j became unavailable: {exc}") from exc
        if self.plugin is not None:
            self.plugin.ensure_schema()

    def write_users(self, ids: np.ndarray) -> None:
        if self.plugin is not None:
            self.plugin.write_users(ids)
            return
        self._write([(cypher.MERGE_USERS, {"ids": np.asarray(ids, np.int64).tolist()})])

    def write_tweets(self, batch: TweetBatch) -> None:
        if self.plugin is not None:
            self.plugin.write_tweets(batch)
            return
        rows = [
            [i, a if a >= 0 else None, c if c else None, t if t else None]
            for i, a, c, t in zip(
                batch.ids.tolist(), batch.authors.tolist(), batch.created.tolist(), batch.texts
            )
        ]
        authors = np.unique(batch.authors[batch.authors >= 0])
        self._write([(cypher.MERGE_USERS, {"ids": authors.tolist()}), (cypher.WRITE_TWEETS, {"rows": rows})])

    def write_follows(self, batch: FollowBatch) -> None:
        if self.plugin is not None:
            self.plugin.write_follows(batch)
            return
        ends = np.unique(np.concatenate([batch.src, batch.dst]))
        rows = np.stack([batch.src, batch.dst, batch.ts], axis=1).tolist()
        self._write([(cypher.MERGE_USERS, {"ids": ends.tolist()}), (cypher.WRITE_FOLLOWS, {"rows": rows})])

    def write_engagements(self, batch: EngagementBatch) -> None:
        if self.plugin is not None:
            self.plugin.write_engagements(batch)
            return
        statements = [
            (cypher.MERGE_USERS, {"ids": np.unique(batch.users).tolist()}),
            (cypher.MERGE_TWEETS, {"ids": np.unique(batch.tweets).tolist()}),
        ]
        for kind, code in KINDS.items():
            sel = batch.kinds == code
            if not sel.any():
                continue
            rows = [
                [u, t, s, w]
                for u, t, s, w in zip(
                    batch.users[sel].tolist(),
                    batch.tweets[sel].tolist(),
                    batch.ts[sel].tolist(),
                    batch.weights[sel].astype(np.float64).tolist(),
                )
            ]
            statements.append((cypher.WRITE_ENGAGEMENTS[kind], {"rows": rows}))
        self._write(statements)

    # -- reads -------------------------------------------------------------------
    def iter_users(self, batch_size: int = 50_000) -> Iterator[np.ndarray]:
        after = -1
        while True:
            record = self._read_single(cypher.USER_ID_PAGE, after=after, limit=batch_size)
            ids = np.asarray(record["ids"] if record else [], dtype=np.int64)
            if not len(ids):
                return
            yield ids
            after = int(ids[-1])

    def iter_tweets(self, batch_size: int = 50_000) -> Iterator[TweetBatch]:
        after = -1
        while True:
            record = self._read_single(cypher.TWEET_PAGE, after=after, limit=batch_size)
            rows = record["rows"] if record else []
            if not rows:
                return
            ids, authors, created, texts = zip(*rows)
            yield TweetBatch(
                np.asarray(ids, np.int64),
                np.asarray(authors, np.int64),
                np.asarray(created, np.int64),
                [t or None for t in texts],
            )
            after = int(ids[-1])

    def iter_follows(self, batch_size: int = 20_000) -> Iterator[FollowBatch]:
        for ids in self.iter_users(batch_size):
            rec = self._read_single(cypher.FOLLOWS_OF_USERS, ids=ids.tolist())
            if rec and rec["src"]:
                yield FollowBatch(
                    np.asarray(rec["src"], np.int64),
                    np.asarray(rec["dst"], np.int64),
                    np.asarray(rec["ts"], np.int64),
                )

    def iter_engagements(self, batch_size: int = 20_000) -> Iterator[EngagementBatch]:
        for ids in self.iter_users(batch_size):
            rec = self._read_single(cypher.ENGAGEMENTS_OF_USERS, ids=ids.tolist())
            if rec and rec["users"]:
                kinds = np.asarray([_REL_TO_KIND[t] for t in rec["types"]], np.int8)
                yield EngagementBatch(
                    np.asarray(rec["users"], np.int64),
                    np.asarray(rec["tweets"], np.int64),
                    kinds,
                    np.asarray(rec["ts"], np.int64),
                    np.asarray(rec["weights"], np.float32),
                )

    def counts(self) -> dict[str, int]:
        def n(query: str) -> int:
            return int(self._read_single(query)["n"])

        return {
            "users": n(cypher.COUNT_USERS),
            "tweets": n(cypher.COUNT_TWEETS),
            "follows": n(cypher.COUNT_FOLLOWS),
            "engagements": sum(n(q) for q in cypher.COUNT_ENGAGEMENTS),
        }

    def cypher(self, query: str, *, write: bool = False, **params: Any) -> list[dict[str, Any]]:
        """Run a Cypher statement with parameters and return its rows as dicts.

        Read-only unless ``write=True``: the statement runs in a read transaction, and Neo4j
        refuses writes there; administration and transaction-management commands are refused
        too. A statement running longer than ``query_timeout`` seconds is aborted.
        """
        if not write and _ADMIN.search(_strip_comments(query)):
            raise GraphRecError(
                "administration and transaction-management commands are refused on the read-only "
                "exploration surface; run them with cypher-shell as an administrator"
            )

        @neo4j.unit_of_work(timeout=self.query_timeout)
        def work(tx: neo4j.ManagedTransaction) -> list[dict[str, Any]]:
            return [r.data() for r in tx.run(query, params)]

        try:
            return self._run(work, write=write)
        except Neo4jError as exc:
            if "TransactionTimedOut" in str(exc.code) or "Terminated" in str(exc.code):
                raise GraphRecError(
                    f"Cypher stopped after the {self.query_timeout:g} s query timeout ({exc.code}); "
                    "bound the query (LIMIT, a smaller max_hops) or raise Neo4jStore.query_timeout"
                ) from exc
            raise GraphRecError(f"Cypher failed: {exc.code}: {exc.message}") from exc

    def query(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Run one of the ready exploration queries of :data:`graph.cypher.QUERIES`."""
        if name not in cypher.QUERIES:
            raise GraphRecError(f"unknown query {name!r}; available: {', '.join(sorted(cypher.QUERIES))}")
        return self.cypher(cypher.QUERIES[name], **params)

    def clear(self) -> None:
        with self.driver.session(database=self.database) as session:
            session.run(cypher.DELETE_ALL).consume()

    def close(self) -> None:
        if self._owns_driver and self.driver is not None:
            self.driver.close()
            self.driver = None
