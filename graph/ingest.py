"""Batched, idempotent ingest of graph columns into any store.

Order: users, tweets (with authorship), follows, engagements. Each batch is one
transaction in the store; a batch is first de-duplicated by its key (first
occurrence wins, as in the stores), so re-running an ingest, or resuming one that
was interrupted, adds nothing and ends with the same graph. The columns are checked
against the bounds of :mod:`graph.validation` before the first batch, so bad input
fails before anything is written, never half-way.

A store that takes concurrent writes (``concurrent_writes``: Neo4j with graphrec's
procedures) can be fed by several writer threads (``writers``): the follows and
engagements are then de-duplicated over the whole part first, so no key is in two
batches and the graph is the same as with one writer; users are a set; tweets, whose
fields are first-write-wins one by one, keep one writer.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from graph.errors import GraphRecError, StoreUnavailableError
from graph.schema import KINDS
from graph.store import EngagementBatch, FollowBatch, GraphStore, TweetBatch
from graph.validation import validate_columns

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 20_000


@dataclass
class GraphColumns:
    """External-id columns to ingest; any part may be empty."""

    users: np.ndarray
    tweet_ids: np.ndarray
    tweet_authors: np.ndarray
    tweet_created: np.ndarray
    tweet_texts: list[str | None] | None
    follow_src: np.ndarray
    follow_dst: np.ndarray
    follow_ts: np.ndarray
    eng_user: np.ndarray
    eng_tweet: np.ndarray
    eng_kind: np.ndarray
    eng_ts: np.ndarray
    eng_weight: np.ndarray

    @property
    def n_relationships(self) -> int:
        authored = int((np.asarray(self.tweet_authors) >= 0).sum())
        return len(self.follow_src) + len(self.eng_user) + authored

    @classmethod
    def from_dataset(cls, ds, splits: tuple[str, ...] = ("train", "val", "test")) -> GraphColumns:
        """Columns of a :class:`graph.datasets.Dataset` (chosen splits)."""
        eu = np.concatenate([getattr(ds, f"{s}_user") for s in splits])
        et = np.concatenate([getattr(ds, f"{s}_item") for s in splits])
        ew = np.concatenate(
            [
                ds.train_weight if s == "train" else np.ones(len(getattr(ds, f"{s}_user")), np.float32)
                for s in splits
            ]
        )
        n_items = len(ds.item_ids)
        return cls(
            users=ds.user_ids,
            tweet_ids=ds.item_ids,
            tweet_authors=np.full(n_items, -1, np.int64),
            tweet_created=np.zeros(n_items, np.int64),
            tweet_texts=None,
            follow_src=ds.follow_src,
            follow_dst=ds.follow_dst,
            follow_ts=np.zeros(len(ds.follow_src), np.int64),
            eng_user=eu,
            eng_tweet=et,
            eng_kind=np.full(len(eu), KINDS["engage"], np.int8),
            eng_ts=np.zeros(len(eu), np.int64),
            eng_weight=ew,
        )

    @classmethod
    def from_synthetic(cls, g) -> GraphColumns:
        """Columns of a :class:`graph.synthetic.SyntheticGraph`."""
        return cls(
            users=g.user_ids,
            tweet_ids=g.tweet_ids,
            tweet_authors=g.tweet_author,
            tweet_created=g.tweet_created,
            tweet_texts=g.tweet_texts,
            follow_src=g.follow_src,
            follow_dst=g.follow_dst,
            follow_ts=g.follow_ts,
            eng_user=g.eng_user,
            eng_tweet=g.eng_tweet,
            eng_kind=g.eng_kind,
            eng_ts=g.eng_ts,
            eng_weight=g.eng_weight,
        )

    @classmethod
    def from_events(cls, ev) -> GraphColumns:
        """Columns of parsed event files (:class:`graph.events.EventColumns`)."""
        a = ev.arrays()
        return cls(
            users=a["users"],
            tweet_ids=a["tweet_ids"],
            tweet_authors=a["tweet_authors"],
            tweet_created=a["tweet_created"],
            tweet_texts=list(ev.tweet_texts),
            follow_src=a["follow_src"],
            follow_dst=a["follow_dst"],
            follow_ts=a["follow_ts"],
            eng_user=a["eng_user"],
            eng_tweet=a["eng_tweet"],
            eng_kind=a["eng_kind"],
            eng_ts=a["eng_ts"],
            eng_weight=a["eng_weight"],
        )


def ingest(
    store: GraphStore,
    cols: GraphColumns,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    writers: int = 1,
) -> dict[str, int]:
    """Write ``cols`` into ``store`` in transactional batches; returns rows sent per part.

    Raises :class:`~graph.errors.InputError` before writing anything when a value is out of
    bounds (:func:`graph.validation.validate_columns`). ``writers`` > 1 writes the batches of a
    part from that many threads when the store takes concurrent writes (else it is ignored);
    the resulting graph is the same.
    """
    if batch_size < 1:
        raise GraphRecError(f"batch_size must be >= 1, got {batch_size}")
    if writers < 1:
        raise GraphRecError(f"writers must be >= 1, got {writers}")
    validate_columns(cols)
    store.ensure_schema()
    total = len(cols.users) + len(cols.tweet_ids) + len(cols.follow_src) + len(cols.eng_user)
    bar = tqdm(total=total, unit="row", desc=f"ingest -> {store.kind}", disable=not progress, mininterval=1.0)
    sent = {"users": 0, "tweets": 0, "follows": 0, "engagements": 0}
    done_batches = 0
    concurrent = bool(getattr(store, "concurrent_writes", False))
    counting = threading.Lock()

    def run(batch) -> None:
        nonlocal done_batches
        part, n, write = batch
        write(store)
        with counting:
            sent[part] += n
            done_batches += 1
            bar.update(n)

    try:
        if not concurrent:
            for batch in _batches(cols, batch_size):
                run(batch)
        else:  # rounds of node-disjoint tasks; a task's batches one after the other
            with ThreadPoolExecutor(writers, thread_name_prefix="ingest") as pool:
                for tasks in _rounds(cols, batch_size, writers):
                    list(pool.map(lambda task: [run(b) for b in task], tasks))
    except StoreUnavailableError as exc:
        raise StoreUnavailableError(
            f"{exc} (after {done_batches} committed batches; re-running the same ingest is safe: it is "
            f"idempotent and finishes the rest)"
        ) from exc
    finally:
        bar.close()
    log.info("ingested into %s: %s", store, sent)
    return sent


def _batches(cols: GraphColumns, size: int, edges: bool = True):
    """(part, rows given, write) per batch, in order (without ``edges``: users and tweets only)."""
    users = np.unique(np.asarray(cols.users, np.int64))
    for lo in range(0, len(users), size):
        chunk = users[lo : lo + size]
        yield "users", len(chunk), lambda s, c=chunk: s.write_users(c)

    texts = cols.tweet_texts
    for lo in range(0, len(cols.tweet_ids), size):
        sl = slice(lo, lo + size)
        keep = _first_occurrence(cols.tweet_ids[sl])
        batch = TweetBatch(
            ids=np.asarray(cols.tweet_ids[sl], np.int64)[keep],
            authors=np.asarray(cols.tweet_authors[sl], np.int64)[keep],
            created=np.asarray(cols.tweet_created[sl], np.int64)[keep],
            texts=[texts[lo + i] for i in keep.tolist()] if texts is not None else [None] * len(keep),
        )
        yield "tweets", len(cols.tweet_ids[sl]), lambda s, b=batch: s.write_tweets(b)

    if not edges:
        return
    for lo in range(0, len(cols.follow_src), size):
        sl = slice(lo, lo + size)
        src = np.asarray(cols.follow_src[sl], np.int64)
        dst = np.asarray(cols.follow_dst[sl], np.int64)
        keep = _first_occurrence(np.stack([src, dst], axis=1))
        batch = FollowBatch(src[keep], dst[keep], np.asarray(cols.follow_ts[sl], np.int64)[keep])
        yield "follows", len(src), lambda s, b=batch: s.write_follows(b)

    for lo in range(0, len(cols.eng_user), size):
        sl = slice(lo, lo + size)
        u = np.asarray(cols.eng_user[sl], np.int64)
        t = np.asarray(cols.eng_tweet[sl], np.int64)
        k = np.asarray(cols.eng_kind[sl], np.int8)
        keep = _first_occurrence(np.stack([u, t, k.astype(np.int64)], axis=1))
        batch = EngagementBatch(
            u[keep],
            t[keep],
            k[keep],
            np.asarray(cols.eng_ts[sl], np.int64)[keep],
            np.asarray(cols.eng_weight[sl], np.float32)[keep],
        )
        yield "engagements", len(u), lambda s, b=batch: s.write_engagements(b)


def _rounds(cols: GraphColumns, size: int, writers: int):
    """The concurrent schedule: rounds of tasks (lists of batches) for ``writers`` threads.

    Neo4j locks the end nodes of new relationships when it commits, and a graphrec write call
    locks the sources whose relationships it checks until then, so two concurrent batches that
    share a node take turns. The tasks of a round share none: nodes are hashed into parts, a
    task holds the relationships of one block of parts (follows: source part x target part;
    engagements: user part x tweet part), and a round pairs blocks with disjoint parts. A round
    has more tasks than writers (the threads take them as they come), so an uneven block holds
    up one thread, not the round. The
    follows and engagements keep the first row of each key over the whole part, so the graph is
    the one a single writer makes; users are a set; tweets, first-write-wins field by field, get
    one task. Rows within a block stay in key order, cut into batches where the source changes.
    """
    nodes: dict[str, list] = {"users": [], "tweets": []}
    for batch in _batches(cols, size, edges=False):
        nodes[batch[0]].append(batch)
    if nodes["users"]:
        yield [[b] for b in nodes["users"]]
    if nodes["tweets"]:
        yield [nodes["tweets"]]

    src, dst = np.asarray(cols.follow_src, np.int64), np.asarray(cols.follow_dst, np.int64)
    keep = _first_rows([src, dst], key_order=True)
    src, dst, ts = src[keep], dst[keep], np.asarray(cols.follow_ts, np.int64)[keep]
    dropped = len(cols.follow_src) - len(keep)

    def follows(rows: np.ndarray) -> list:
        nonlocal dropped
        out = []
        for lo, hi, _ in _runs(src[rows], size, 0):
            r = rows[lo:hi]
            b = FollowBatch(src[r], dst[r], ts[r])
            out.append(("follows", hi - lo + dropped, lambda s, b=b: s.write_follows(b)))
            dropped = 0  # the duplicates dropped above count with the first batch
        return out

    m = 4 * writers  # users are sources and targets: m parts give m/2 disjoint pairs per round
    block = _blocks(_part(src, m) * m + _part(dst, m), m * m)
    for pairs in _round_robin(m):
        yield [follows(block[i * m + j]) + follows(block[j * m + i]) for i, j in pairs]
    yield [follows(block[i * m + i]) for i in range(m)]

    u, t = np.asarray(cols.eng_user, np.int64), np.asarray(cols.eng_tweet, np.int64)
    k = np.asarray(cols.eng_kind, np.int8)
    keep = _first_rows([u, t, k.astype(np.int64)], key_order=True)
    ets, w = np.asarray(cols.eng_ts, np.int64)[keep], np.asarray(cols.eng_weight, np.float32)[keep]
    u, t, k = u[keep], t[keep], k[keep]
    dropped = len(cols.eng_user) - len(keep)

    def engagements(rows: np.ndarray) -> list:
        nonlocal dropped
        out = []
        for lo, hi, _ in _runs(u[rows], size, 0):
            r = rows[lo:hi]
            b = EngagementBatch(u[r], t[r], k[r], ets[r], w[r])
            out.append(("engagements", hi - lo + dropped, lambda s, b=b: s.write_engagements(b)))
            dropped = 0
        return out

    # users and tweets are different nodes: block (i, j) and (i', j') are disjoint when i != i'
    # and j != j', so round r pairs user part i with tweet part i + r (a Latin square)
    p = 2 * writers
    block = _blocks(_part(u, p) * p + _part(t, p), p * p)
    for r in range(p):
        yield [engagements(block[i * p + (i + r) % p]) for i in range(p)]


def _part(ids: np.ndarray, m: int) -> np.ndarray:
    """A hash of each id into 0..m-1 (Fibonacci hashing: consecutive ids spread out)."""
    h = (ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return (h % np.uint64(m)).astype(np.int64)


def _blocks(block_of_row: np.ndarray, n_blocks: int) -> list[np.ndarray]:
    """The rows of each block, each list in the rows' order."""
    order = np.argsort(block_of_row, kind="stable")
    bounds = np.searchsorted(block_of_row[order], np.arange(n_blocks + 1))
    return [order[bounds[b] : bounds[b + 1]] for b in range(n_blocks)]


def _round_robin(m: int) -> list[list[tuple[int, int]]]:
    """All pairs of 0..m-1 (m even) in m-1 rounds of m/2 disjoint pairs (the circle method)."""
    rounds = []
    for r in range(m - 1):
        pairs = [(r, m - 1)]
        for k in range(1, m // 2):
            pairs.append(((r + k) % (m - 1), (r - k) % (m - 1)))
        rounds.append(pairs)
    return rounds


def _runs(sources: np.ndarray, size: int, n_in: int):
    """(lo, hi, rows given) of batches of about ``size`` rows of sorted ``sources``, cut where the
    source changes unless one source alone fills a batch; the last batch also counts the
    ``n_in - len(sources)`` duplicates dropped before."""
    n, lo = len(sources), 0
    while lo < n:
        hi = min(lo + size, n)
        if hi < n:
            start = int(np.searchsorted(sources, sources[hi], "left"))  # where hi's source begins
            hi = start if start > lo else hi
        yield lo, hi, (hi - lo if hi < n else n_in - lo)
        lo = hi


def _first_rows(keys: list[np.ndarray], key_order: bool = False) -> np.ndarray:
    """Positions of the first row of each distinct key tuple, in input order (or in key order)
    (a lexsort: several times faster than ``np.unique(axis=0)`` on millions of rows)."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort([np.arange(n), *keys[::-1]])  # last key is primary; row number breaks ties
    new = np.ones(n, bool)
    new[1:] = np.any([k[order][1:] != k[order][:-1] for k in keys], axis=0)
    return order[new] if key_order else np.sort(order[new])


def _first_occurrence(keys: np.ndarray) -> np.ndarray:
    """Positions of the first row of each distinct key, in input order."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(keys, axis=0 if keys.ndim > 1 else None, return_index=True)
    return np.sort(first)
