"""The embedded local store: a SQLite database in a directory, no server needed.

SQLite gives what the contract asks for without a service: each write call is
one ACID transaction, primary keys make writes idempotent (``INSERT OR
IGNORE`` = first write wins), and the directory persists between runs. In WAL mode a read
transaction sees the database as of its first read while other connections commit, which is
what :meth:`LocalStore.read_view` (and so the export) uses.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from graph.errors import GraphRecError
from graph.store import EngagementBatch, FollowBatch, GraphStore, TweetBatch

log = logging.getLogger(__name__)

DB_FILE = "graph.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS tweets (
    id INTEGER PRIMARY KEY, author INTEGER, created INTEGER, text TEXT
);
CREATE TABLE IF NOT EXISTS follows (
    src INTEGER NOT NULL, dst INTEGER NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (src, dst)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS engagements (
    user INTEGER NOT NULL, tweet INTEGER NOT NULL, kind INTEGER NOT NULL,
    ts INTEGER NOT NULL, weight REAL NOT NULL,
    PRIMARY KEY (user, tweet, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS follows_dst ON follows (dst);
CREATE INDEX IF NOT EXISTS engagements_tweet ON engagements (tweet);
CREATE INDEX IF NOT EXISTS tweets_author ON tweets (author);
"""


class LocalStore(GraphStore):
    """Graph store persisted in ``directory/graph.sqlite``."""

    kind = "local"

    def __init__(self, directory: str | Path, *, create: bool = True):
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise GraphRecError(f"{self.directory}: store path exists and is not a directory")
        if not create and not (self.directory / DB_FILE).is_file():
            raise GraphRecError(
                f"{self.directory}: no local store here (missing {DB_FILE}); run `graphrec ingest`"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.directory / DB_FILE, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self.ensure_schema()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.directory)!r})"

    # -- writes ------------------------------------------------------------
    def ensure_schema(self) -> None:
        self._db.executescript(_SCHEMA)

    def _transaction(self, statements: list[tuple[str, object]]) -> None:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                cur.executemany(sql, rows)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def write_users(self, ids: np.ndarray) -> None:
        self._transaction([("INSERT OR IGNORE INTO users (id) VALUES (?)", _rows(ids))])

    def write_tweets(self, batch: TweetBatch) -> None:
        authors = batch.authors
        known = authors >= 0
        rows = zip(
            batch.ids.tolist(),
            [a if k else None for a, k in zip(authors.tolist(), known.tolist())],
            [c if c else None for c in batch.created.tolist()],
            [t if t else None for t in batch.texts],
        )
        self._transaction(
            [
                ("INSERT OR IGNORE INTO users (id) VALUES (?)", _rows(np.unique(authors[known]))),
                (
                    "INSERT INTO tweets (id, author, created, text) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET author = coalesce(tweets.author, excluded.author), "
                    "created = coalesce(tweets.created, excluded.created), "
                    "text = coalesce(tweets.text, excluded.text)",
                    rows,
                ),
            ]
        )

    def write_follows(self, batch: FollowBatch) -> None:
        ends = np.unique(np.concatenate([batch.src, batch.dst]))
        self._transaction(
            [
                ("INSERT OR IGNORE INTO users (id) VALUES (?)", _rows(ends)),
                (
                    "INSERT OR IGNORE INTO follows (src, dst, ts) VALUES (?, ?, ?)",
                    zip(batch.src.tolist(), batch.dst.tolist(), batch.ts.tolist()),
                ),
            ]
        )

    def write_engagements(self, batch: EngagementBatch) -> None:
        self._transaction(
            [
                ("INSERT OR IGNORE INTO users (id) VALUES (?)", _rows(np.unique(batch.users))),
                ("INSERT OR IGNORE INTO tweets (id) VALUES (?)", _rows(np.unique(batch.tweets))),
                (
                    "INSERT OR IGNORE INTO engagements (user, tweet, kind, ts, weight) VALUES (?, ?, ?, ?, ?)",
                    zip(
                        batch.users.tolist(),
                        batch.tweets.tolist(),
                        batch.kinds.tolist(),
                        batch.ts.tolist(),
                        batch.weights.astype(np.float64).tolist(),
                    ),
                ),
            ]
        )

    # -- reads -------------------------------------------------------------
    @contextlib.contextmanager
    def read_view(self) -> Iterator[LocalStore]:
        """One SQLite read transaction around every read (see :meth:`GraphStore.read_view`).

        In WAL mode its snapshot is fixed at the first read, and writers on other connections
        (another thread, ``graphrec ingest`` in another process) go on committing meanwhile.
        No writes through this store while the view is open.
        """
        if self._db.in_transaction:  # already inside a view (or a write): that transaction is the view
            yield self
            return
        self._db.execute("BEGIN DEFERRED")
        try:
            self._db.execute("SELECT 1 FROM users LIMIT 1").fetchall()  # the snapshot is fixed here
            yield self
        finally:
            self._db.execute("ROLLBACK")  # read-only: nothing to commit

    def _stream(self, sql: str, batch_size: int) -> Iterator[list[tuple]]:
        cur = self._db.execute(sql)
        while True:
            rows = cur.fetchmany(batch_size)
            if not rows:
                return
            yield rows

    def iter_users(self, batch_size: int = 100_000) -> Iterator[np.ndarray]:
        for rows in self._stream("SELECT id FROM users", batch_size):
            yield np.array(rows, dtype=np.int64).reshape(-1)

    def iter_tweets(self, batch_size: int = 100_000) -> Iterator[TweetBatch]:
        for rows in self._stream(
            "SELECT id, coalesce(author, -1), coalesce(created, 0), text FROM tweets", batch_size
        ):
            ids, authors, created, texts = zip(*rows)
            yield TweetBatch(
                np.array(ids, np.int64), np.array(authors, np.int64), np.array(created, np.int64), list(texts)
            )

    def iter_follows(self, batch_size: int = 100_000) -> Iterator[FollowBatch]:
        for rows in self._stream("SELECT src, dst, ts FROM follows", batch_size):
            a = np.array(rows, dtype=np.int64)
            yield FollowBatch(a[:, 0], a[:, 1], a[:, 2])

    def iter_engagements(self, batch_size: int = 100_000) -> Iterator[EngagementBatch]:
        sql = "SELECT user, tweet, kind, ts, weight FROM engagements"
        for rows in self._stream(sql, batch_size):
            a = np.array(rows, dtype=np.float64)
            ints = np.array([r[:4] for r in rows], dtype=np.int64)
            yield EngagementBatch(
                ints[:, 0], ints[:, 1], ints[:, 2].astype(np.int8), ints[:, 3], a[:, 4].astype(np.float32)
            )

    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("users", "tweets", "follows", "engagements"):
            out[table] = int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        return out

    def clear(self) -> None:
        self._transaction([(f"DELETE FROM {t}", [()]) for t in ("engagements", "follows", "tweets", "users")])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _rows(ids: np.ndarray) -> Iterator[tuple[int]]:
    return ((int(i),) for i in np.asarray(ids).tolist())
