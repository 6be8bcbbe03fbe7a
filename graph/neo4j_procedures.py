"""The fast path into and out of Neo4j: graphrec's own server procedures (``graph/neo4j_plugin``).

When the server has the plugin (the local server always does; a Docker server when its
``plugins`` volume holds the jar), :class:`~graph.neo4j_store.Neo4jStore` writes and exports
through it instead of Cypher, with the same results:

* **writes**: each batch is one ``CALL graphrec.write*(...)`` in one transaction, its columns
  sent as packed little-endian arrays (``bytes``); the procedure applies the same
  first-write-wins rules as the Cypher statements on the kernel API, with no per-row planning.
  A bad row (negative id, unknown kind, negative or non-finite weight) fails the whole call,
  nothing is written, and :class:`~graph.errors.InputError` names the row.
* **full export**: ``graphrec.export`` scans the node and relationship stores once and streams a
  few records of packed columns (``chunk_rows`` rows each) instead of one record per row.
* **one clock for both paths**: a write call ends by taking the next batch number from the
  graph's ``(:GraphClock {id: 0})`` node under its write lock, held to the commit, exactly as a
  Cypher-path batch begins (graph/cypher.py ``NEXT_BATCH_SEQ``), and stamps ``batch_seq`` (and
  ``created_at_seq`` / ``text_seq``) on what it created or set. Batches of both paths therefore
  commit in one number order, and every export reads one consistent view: the graph up to the
  high-water number :meth:`Neo4jStore.read_view` read under that lock.
* **incremental export**: every write call that changes something also records what it changed
  in the same transaction, a ``:GraphrecDelta`` node of packed columns keyed by its batch
  number. A :class:`ChangeMarker` (the clock's random ``epoch`` and a batch number) comes with
  every export; :meth:`Plugin.changes` returns exactly what the batches after it, up to a new
  view's high-water mark, created or set: from the change-log entries when every batch in the
  range has one, else (a Cypher-path batch among them, or entries pruned by :meth:`Plugin.prune`)
  by one scan of the stamps, which gives the same columns. A marker from before a ``clear()``
  (a new clock, a new epoch) is refused: take a full export.
* **concurrent writers**: ``ingest(..., writers=2)`` writes the batches of a part from two
  threads (node-disjoint tasks, see :func:`graph.ingest.ingest`); they overlap their lookups
  and creates and queue only for the clock, the stamping and the commit.

:func:`connect` decides once per store which path it uses: ``Neo4jStore.procedures`` (default
``$GRAPHREC_NEO4J_PROCEDURES``, else ``auto``) is ``auto`` (the plugin when the server has it),
``plugin`` (fail without it) or ``cypher`` (never).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import neo4j
import numpy as np
from neo4j.exceptions import ClientError, Neo4jError

from graph import cypher
from graph.errors import GraphRecError, InputError, SnapshotError, StoreUnavailableError
from graph.ingest import GraphColumns
from graph.schema import KIND_REL_TYPES, KINDS
from graph.store import EngagementBatch, FollowBatch, TweetBatch

if TYPE_CHECKING:
    from graph.neo4j_store import Neo4jStore

log = logging.getLogger(__name__)

PROCEDURES_ENV = "GRAPHREC_NEO4J_PROCEDURES"
MODES = ("auto", "plugin", "cypher")
#: The plugin protocol this client speaks (GraphrecProcedures.PROTOCOL).
PROTOCOL = 2
REQUIRED = frozenset(
    {
        "graphrec.version",
        "graphrec.writeUsers",
        "graphrec.writeTweets",
        "graphrec.writeFollows",
        "graphrec.writeEngagements",
        "graphrec.export",
        "graphrec.changes",
        "graphrec.pruneChanges",
    }
)
DEFAULT_CHUNK_ROWS = 1 << 20

#: dtype of every packed column (little-endian, as numpy's tobytes() writes them).
COLUMN_DTYPES: dict[str, np.dtype] = {
    "users": np.dtype("<i8"),
    "tweet_ids": np.dtype("<i8"),
    "tweet_authors": np.dtype("<i8"),
    "tweet_created": np.dtype("<i8"),
    "tweet_text_index": np.dtype("<i8"),
    "follow_src": np.dtype("<i8"),
    "follow_dst": np.dtype("<i8"),
    "follow_ts": np.dtype("<i8"),
    "eng_user": np.dtype("<i8"),
    "eng_tweet": np.dtype("<i8"),
    "eng_kind": np.dtype("i1"),
    "eng_ts": np.dtype("<i8"),
    "eng_weight": np.dtype("<f4"),
}

_UNAVAILABLE = (neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.SessionExpired, OSError)
_BAD_ROW = re.compile(r"BadRowException: row (\d+): (.*)", re.DOTALL)
_CAUSE = re.compile(r"Caused by: [\w.$]+: (.*)", re.DOTALL)


@dataclass(frozen=True)
class ChangeMarker:
    """A point in a store's change log: what an export has seen (``str()``: ``EPOCH:SEQ``)."""

    epoch: int
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.seq}"

    @classmethod
    def parse(cls, text: str) -> ChangeMarker:
        m = re.fullmatch(r"\s*(\d+):(\d+)\s*", str(text))
        if m is None:
            raise InputError(f"change marker {text!r}: expected EPOCH:SEQ (two non-negative integers)")
        return cls(int(m.group(1)), int(m.group(2)))


def _packed(values, dtype: str) -> bytes:
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def _cause(exc: Neo4jError) -> str:
    m = _CAUSE.search(exc.message or "")
    return m.group(1).strip() if m else (exc.message or str(exc))


class Plugin:
    """graphrec's procedures on one store's server (made by :func:`connect`)."""

    def __init__(self, store: Neo4jStore, version: str, neo4j_version: str):
        self.store = store
        self.version = version
        self.neo4j_version = neo4j_version
        #: Milliseconds per phase summed over write calls, as the procedures measured them
        #: (decode, meta, nodes, relationships, write, log), plus ``call`` (the client's wall
        #: time: procedure, commit and round trip), ``calls`` and ``rows``.
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self._schema_done = False

    def __repr__(self) -> str:
        return f"Plugin(graphrec {self.version} on Neo4j {self.neo4j_version})"

    # -- schema ---------------------------------------------------------------------------
    def ensure_schema(self) -> ChangeMarker:
        """Create the change log's index (idempotent); returns the marker of the graph now."""
        try:
            with self.store.driver.session(database=self.store.database) as session:
                for statement in cypher.PLUGIN_SCHEMA:
                    session.run(statement).consume()
                session.run(cypher.PLUGIN_AWAIT_SCHEMA, seconds=300).consume()
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"Neo4j became unavailable: {exc}") from exc
        self._schema_done = True
        with self.store.read_view() as view:
            return ChangeMarker(view._epoch, view._high_water)

    # -- writes ---------------------------------------------------------------------------
    def _write(self, part: str, n: int, **params: Any) -> dict:
        if not self._schema_done:
            self.ensure_schema()
        query = cypher.PLUGIN_WRITE[part]
        t0 = time.perf_counter()
        try:
            # Concurrent writers deadlock now and then (Neo4j locks the relationship chains of
            # nodes that turn dense at commit); the driver retries those after a 1 s pause by
            # default, which is longer than a batch takes: start at 20 ms.
            with self.store.driver.session(
                database=self.store.database, default_access_mode=neo4j.WRITE_ACCESS, initial_retry_delay=0.02
            ) as session:
                rec = session.execute_write(lambda tx: tx.run(query, params).single())
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"Neo4j became unavailable: {exc}") from exc
        except ClientError as exc:
            m = _BAD_ROW.search(exc.message or "")
            if m:
                raise InputError(
                    f"{part} batch row {m.group(1)}: {m.group(2).strip()} (nothing of the batch was written)"
                ) from None
            raise GraphRecError(f"graphrec.write {part} failed: {_cause(exc)}") from exc
        with self._stats_lock:
            self.stats["call"] += (time.perf_counter() - t0) * 1e3
            self.stats["calls"] += 1
            self.stats["rows"] += n
            for phase, ms in (rec["timings"] or {}).items():
                self.stats[phase] += float(ms)
        return dict(rec)

    def write_users(self, ids: np.ndarray) -> dict:
        return self._write("users", len(ids), ids=_packed(ids, "<i8"))

    def write_tweets(self, batch: TweetBatch) -> dict:
        texts = list(batch.texts) if any(batch.texts) else None
        return self._write(
            "tweets",
            len(batch.ids),
            ids=_packed(batch.ids, "<i8"),
            authors=_packed(batch.authors, "<i8"),
            created=_packed(batch.created, "<i8"),
            texts=texts,
        )

    def write_follows(self, batch: FollowBatch) -> dict:
        return self._write(
            "follows",
            len(batch.src),
            src=_packed(batch.src, "<i8"),
            dst=_packed(batch.dst, "<i8"),
            ts=_packed(batch.ts, "<i8"),
        )

    def write_engagements(self, batch: EngagementBatch) -> dict:
        return self._write(
            "engagements",
            len(batch.users),
            users=_packed(batch.users, "<i8"),
            tweets=_packed(batch.tweets, "<i8"),
            kinds=_packed(batch.kinds, "i1"),
            ts=_packed(batch.ts, "<i8"),
            weights=_packed(batch.weights, "<f4"),
        )

    # -- exports --------------------------------------------------------------------------
    def _read_chunks(self, query: str, **params: Any) -> tuple[list[tuple[str, dict]], dict]:
        def work(tx: neo4j.ManagedTransaction) -> list[tuple[str, dict]]:
            return [(r["part"], r["data"]) for r in tx.run(query, params)]

        try:
            chunks = self.store._run(work, write=False)
        except ClientError as exc:
            raise SnapshotError(_cause(exc)) from exc
        marker = {}
        out = []
        for part, data in chunks:
            if part == "marker":
                marker = data
            elif part == "timings":
                self.stats.update({f"export_{k}": float(v) for k, v in data.items()})
            else:
                out.append((part, data))
        return out, marker

    def export(
        self, chunk_rows: int = DEFAULT_CHUNK_ROWS, *, view: Neo4jStore | None = None
    ) -> tuple[GraphColumns, ChangeMarker]:
        """The graph of a read view (``view``, else a new one of the store) as columns, and its
        marker: everything up to the view's high-water batch, nothing after it."""
        with contextlib.ExitStack() as stack:
            if view is None:
                view = stack.enter_context(self.store.read_view())
            chunks, _ = self._read_chunks(
                cypher.PLUGIN_EXPORT, hw=view._high_water, chunk_rows=int(chunk_rows)
            )
            return _columns(chunks), ChangeMarker(view._epoch, view._high_water)

    def changes(
        self, since: ChangeMarker, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> tuple[GraphColumns, ChangeMarker]:
        """What the batches after ``since`` created or set, up to a new read view's high-water
        mark, and that view's marker (to ask from next)."""
        with self.store.read_view() as view:
            chunks, marker = self._read_chunks(
                cypher.PLUGIN_CHANGES,
                epoch=since.epoch,
                seq=since.seq,
                hw=view._high_water,
                chunk_rows=int(chunk_rows),
            )
        return _columns(chunks), ChangeMarker(int(marker["epoch"]), int(marker["seq"]))

    def prune(self, through: ChangeMarker) -> int:
        """Delete the change log up to ``through``; returns the number of entries deleted."""
        try:
            rec = self.store._run(
                lambda tx: tx.run(cypher.PLUGIN_PRUNE, epoch=through.epoch, through=through.seq).single(),
                write=True,
            )
        except ClientError as exc:
            raise SnapshotError(_cause(exc)) from exc
        return int(rec["deleted"])


def connect(store: Neo4jStore) -> Plugin | None:
    """The plugin on ``store``'s server, or None for the Cypher path (per ``store.procedures``)."""
    mode = store.procedures
    if mode == "cypher":
        return None
    why = None
    try:
        names = set(store._read_single(cypher.PLUGIN_PROCEDURES)["names"])
        missing = REQUIRED - names
        if missing:
            why = (
                "the server has no graphrec plugin" if not names else f"missing procedures {sorted(missing)}"
            )
        else:
            rec = store._read_single(cypher.PLUGIN_VERSION)
            expected = [KIND_REL_TYPES[k] for k in sorted(KINDS, key=KINDS.get)]
            if int(rec["protocol"]) != PROTOCOL:
                why = f"plugin protocol {rec['protocol']}, this client speaks {PROTOCOL}: rebuild the plugin"
            elif list(rec["kinds"]) != expected:
                why = f"plugin engagement types {rec['kinds']} differ from graph/schema.py's {expected}"
            else:
                plugin = Plugin(store, rec["version"], rec["neo4j"])
                log.info("%r uses %r", store, plugin)
                return plugin
    except ClientError as exc:  # e.g. sandboxed: dbms.security.procedures.unrestricted lacks graphrec.*
        why = f"graphrec.version failed: {_cause(exc)}"
    if mode == "plugin":
        raise StoreUnavailableError(
            f"{store!r}: graphrec's Neo4j procedures are required ({PROCEDURES_ENV}=plugin) but not usable: "
            f"{why}. Install graph/neo4j_plugin (docs/neo4j_local.md) or use the Cypher path."
        )
    log.info("%r: using the Cypher path (%s)", store, why)
    return None


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"procedures={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def default_mode() -> str:
    return check_mode(os.environ.get(PROCEDURES_ENV) or "auto")


# -- columns -----------------------------------------------------------------------------------


def _columns(chunks: list[tuple[str, dict]]) -> GraphColumns:
    """Concatenate records of packed columns into :class:`GraphColumns`."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in COLUMN_DTYPES}
    text_rows: list[np.ndarray] = []
    texts: list[str] = []
    n_tweets = 0
    for _, data in chunks:
        for name, dtype in COLUMN_DTYPES.items():
            if name in data and name != "tweet_text_index":
                parts[name].append(np.frombuffer(data[name], dtype=dtype))
        if "tweet_text_index" in data:
            text_rows.append(np.frombuffer(data["tweet_text_index"], "<i8") + n_tweets)
            texts.extend(data["tweet_texts"])
        if "tweet_ids" in data:
            n_tweets += len(data["tweet_ids"]) // 8

    def cat(name: str, dtype) -> np.ndarray:
        arrays = parts[name]
        if not arrays:
            return np.zeros(0, dtype)
        return (np.concatenate(arrays) if len(arrays) > 1 else arrays[0]).astype(dtype)

    tweet_texts = None
    if texts:
        tweet_texts = [None] * n_tweets
        for i, t in zip(np.concatenate(text_rows).tolist(), texts):
            tweet_texts[i] = t
    return GraphColumns(
        users=cat("users", np.int64),
        tweet_ids=cat("tweet_ids", np.int64),
        tweet_authors=cat("tweet_authors", np.int64),
        tweet_created=cat("tweet_created", np.int64),
        tweet_texts=tweet_texts,
        follow_src=cat("follow_src", np.int64),
        follow_dst=cat("follow_dst", np.int64),
        follow_ts=cat("follow_ts", np.int64),
        eng_user=cat("eng_user", np.int64),
        eng_tweet=cat("eng_tweet", np.int64),
        eng_kind=cat("eng_kind", np.int8),
        eng_ts=cat("eng_ts", np.int64),
        eng_weight=cat("eng_weight", np.float32),
    )


def merge_changes(base: GraphColumns, changes: GraphColumns) -> GraphColumns:
    """The columns of ``base`` (an export) with ``changes`` (an incremental export after its
    marker, or several concatenated in order) applied, first write winning as in the store:
    a tweet's author, creation time and text are each the first one set."""
    tweet_ids = np.concatenate([base.tweet_ids, changes.tweet_ids]).astype(np.int64)
    authors = np.concatenate([base.tweet_authors, changes.tweet_authors]).astype(np.int64)
    created = np.concatenate([base.tweet_created, changes.tweet_created]).astype(np.int64)
    texts = [*_texts(base), *_texts(changes)]
    ids = np.unique(tweet_ids)
    row = np.arange(len(tweet_ids))
    # per tweet and field: the first row (in export order, base first) that sets it
    first_author = _first_set(tweet_ids, authors >= 0, ids, row)
    first_created = _first_set(tweet_ids, created != 0, ids, row)
    has_text = np.fromiter((bool(t) for t in texts), bool, len(texts))
    first_text = _first_set(tweet_ids, has_text, ids, row)
    merged_texts = [texts[i] if i >= 0 else None for i in first_text.tolist()]
    cat = np.concatenate
    return GraphColumns(
        users=cat([base.users, changes.users]).astype(np.int64),
        tweet_ids=ids,
        tweet_authors=np.where(first_author >= 0, authors[np.maximum(first_author, 0)], -1),
        tweet_created=np.where(first_created >= 0, created[np.maximum(first_created, 0)], 0),
        tweet_texts=merged_texts if any(merged_texts) else None,
        follow_src=cat([base.follow_src, changes.follow_src]).astype(np.int64),
        follow_dst=cat([base.follow_dst, changes.follow_dst]).astype(np.int64),
        follow_ts=cat([base.follow_ts, changes.follow_ts]).astype(np.int64),
        eng_user=cat([base.eng_user, changes.eng_user]).astype(np.int64),
        eng_tweet=cat([base.eng_tweet, changes.eng_tweet]).astype(np.int64),
        eng_kind=cat([base.eng_kind, changes.eng_kind]).astype(np.int8),
        eng_ts=cat([base.eng_ts, changes.eng_ts]).astype(np.int64),
        eng_weight=cat([base.eng_weight, changes.eng_weight]).astype(np.float32),
    )


def _texts(cols: GraphColumns) -> list[str | None]:
    return list(cols.tweet_texts) if cols.tweet_texts is not None else [None] * len(cols.tweet_ids)


def _first_set(ids: np.ndarray, valid: np.ndarray, universe: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Per id of ``universe`` (sorted), the first row where ``valid``, else -1."""
    out = np.full(len(universe), -1, np.int64)
    sel = np.flatnonzero(valid)
    if len(sel):
        # stable sort by id keeps row order within an id; the first of each run is the first set
        order = sel[np.argsort(ids[sel], kind="stable")]
        first = np.ones(len(order), bool)
        first[1:] = ids[order][1:] != ids[order][:-1]
        out[np.searchsorted(universe, ids[order[first]])] = row[order[first]]
    return out
