"""Live segments: the follows, tweets and engagements that arrived after a snapshot, in memory.

GraphJet-style: edges are appended to an *active* segment (preallocated arrays filled in
place); a full (or old) active segment is *sealed*: sorted into packed keys so that lookups by
either end are binary searches. Sealed segments are merged pairwise when they reach the same
size (as a binary counter), so a graph of E live edges has O(log E) segments and a lookup costs
O(log E) binary searches; each segment covers a contiguous stretch of time. Memory per edge:
a packed ``(src, dst, kind)`` key sorted by source (int64) and the same key sorted by
destination (int64), the timestamp (int64) and, for engagements, the weight (float32):
24 bytes per follow, 28 per engagement (:meth:`LiveGraph.nbytes`).

Users and tweets born after the snapshot get dense indices after the snapshot's
(``n_users + j``, ``n_tweets + j``). Writes are first-write-wins, as in the stores: an edge
already in the snapshot or in an earlier segment is ignored, so replaying a stream adds nothing.
The snapshot is never modified; :meth:`LiveGraph.columns` gives everything live as
:class:`graph.ingest.GraphColumns`, which is what a compaction folds into the next snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from graph.errors import GraphRecError
from graph.ingest import GraphColumns
from graph.snapshot import GraphSnapshot

log = logging.getLogger(__name__)

#: Edges per active segment before it is sealed.
SEGMENT_EDGES = 1 << 15
#: Seconds after which a non-empty active segment is sealed even when not full.
SEGMENT_SECONDS = 60.0
#: Dense ids are packed in 28 bits (268M users, 268M tweets), kinds in 3.
_ID_BITS, _KIND_BITS = 28, 3
MAX_DENSE_ID = (1 << _ID_BITS) - 1
_ID_MASK = np.int64(MAX_DENSE_ID)


def pack(src: np.ndarray, dst: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """``(src, dst, kind)`` as one int64 that sorts by source, then destination, then kind."""
    return (
        (np.asarray(src, np.int64) << (_ID_BITS + _KIND_BITS))
        | (np.asarray(dst, np.int64) << _KIND_BITS)
        | np.asarray(kind, np.int64)
    )


def unpack(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys = np.asarray(keys, np.int64)
    return keys >> (_ID_BITS + _KIND_BITS), (keys >> _KIND_BITS) & _ID_MASK, keys & 7


def _swap(keys: np.ndarray) -> np.ndarray:
    """The same edges keyed by destination first (``(dst, src, kind)``)."""
    s, d, k = unpack(keys)
    return pack(d, s, k)


@njit(cache=True)
def csr_contains(indptr, indices, kinds, rows, cols, want_kinds):  # pragma: no cover - compiled
    """For each query ``i``: is ``cols[i]`` (with kind ``want_kinds[i]``, or any kind when
    ``kinds`` is empty) in CSR row ``rows[i]``? Rows are sorted by column."""
    out = np.zeros(len(rows), np.bool_)
    n_rows = len(indptr) - 1
    for i in range(len(rows)):
        r = rows[i]
        if r < 0 or r >= n_rows:
            continue
        lo, hi = indptr[r], indptr[r + 1]
        j = lo + np.searchsorted(indices[lo:hi], cols[i])
        while j < hi and indices[j] == cols[i]:
            if len(kinds) == 0 or kinds[j] == want_kinds[i]:
                out[i] = True
                break
            j += 1
    return out


def compile_kernels() -> None:
    """Compile (or load from numba's cache) what :meth:`LiveGraph.add` runs, with the dtypes it
    runs them with: a server does it once before forking, so no worker compiles while holding
    the live graph's lock."""
    i64, i32, i8 = np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(1, np.int8)
    csr_contains(np.zeros(2, np.int64), i32, np.zeros(0, np.int8), i64, i64, i8)
    csr_contains(np.zeros(2, np.int64), i32, i8[:0], i64, i64, i8)


@dataclass
class _Segment:
    """A sealed segment: keys by source (sorted) with their times and weights, keys by destination."""

    keys: np.ndarray  # int64, sorted
    ts: np.ndarray  # int64, aligned with keys
    weight: np.ndarray | None  # float32, aligned with keys
    rkeys: np.ndarray  # int64, sorted: (dst, src, kind)
    first_ts: float  # wall-clock seconds of its oldest edge's arrival
    last_ts: float

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        w = self.weight.nbytes if self.weight is not None else 0
        return self.keys.nbytes + self.ts.nbytes + w + self.rkeys.nbytes


class EdgeLog:
    """Append-only ``(src, dst, kind, ts[, weight])`` edges in time-partitioned segments."""

    def __init__(self, *, weighted: bool, segment_edges: int = SEGMENT_EDGES):
        if segment_edges < 1:
            raise GraphRecError(f"segment_edges must be >= 1, got {segment_edges}")
        self.weighted, self.capacity = weighted, segment_edges
        self.sealed: list[_Segment] = []
        self._keys = np.empty(segment_edges, np.int64)
        self._ts = np.empty(segment_edges, np.int64)
        self._w = np.empty(segment_edges, np.float32) if weighted else None
        self._n = 0
        self._opened = 0.0

    # -- writing ---------------------------------------------------------------------
    def append(self, keys: np.ndarray, ts: np.ndarray, weight: np.ndarray | None = None) -> None:
        """Add edges (already de-duplicated by the caller), sealing segments as they fill."""
        done = 0
        while done < len(keys):
            if self._n == 0:
                self._opened = time.time()
            take = min(self.capacity - self._n, len(keys) - done)
            sl, dst = slice(done, done + take), slice(self._n, self._n + take)
            self._keys[dst], self._ts[dst] = keys[sl], ts[sl]
            if self._w is not None:
                self._w[dst] = weight[sl]
            self._n += take
            done += take
            if self._n == self.capacity:
                self.seal()

    def seal(self) -> None:
        """Sort the active segment into a sealed one and merge equal-sized neighbours."""
        if self._n == 0:
            return
        n = self._n
        order = np.argsort(self._keys[:n], kind="stable")
        seg = _Segment(
            self._keys[:n][order].copy(),
            self._ts[:n][order].copy(),
            self._w[:n][order].copy() if self._w is not None else None,
            np.sort(_swap(self._keys[:n])),
            self._opened,
            time.time(),
        )
        self._n = 0
        self.sealed.append(seg)
        while len(self.sealed) >= 2 and len(self.sealed[-2]) <= 2 * len(self.sealed[-1]):
            b, a = self.sealed.pop(), self.sealed.pop()
            self.sealed.append(_merge(a, b))

    def seal_if_older_than(self, seconds: float) -> None:
        if self._n and time.time() - self._opened > seconds:
            self.seal()

    # -- reading ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n + sum(len(s) for s in self.sealed)

    @property
    def nbytes(self) -> int:
        """Bytes held by the edges (sealed segments, and the active one's filled part)."""
        per_active = 8 + 8 + (4 if self.weighted else 0) + 8  # the same layout once sealed
        return sum(s.nbytes for s in self.sealed) + self._n * per_active

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Which packed keys are already stored."""
        keys = np.asarray(keys, np.int64)
        out = np.zeros(len(keys), bool)
        for seg in self.sealed:
            pos = np.minimum(np.searchsorted(seg.keys, keys), len(seg.keys) - 1)
            out |= seg.keys[pos] == keys
        if self._n:
            out |= np.isin(keys, self._keys[: self._n])
        return out

    def out_edges(
        self, sources: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Edges leaving ``sources``: ``(src, dst, kind, ts, weight)`` (weight 1 when unweighted)."""
        return self._edges(np.asarray(sources, np.int64), by_source=True)

    def in_edges(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edges entering ``targets``: ``(src, dst, kind)``."""
        s, d, k, _, _ = self._edges(np.asarray(targets, np.int64), by_source=False)
        return s, d, k

    def _edges(self, nodes: np.ndarray, *, by_source: bool):
        shift = _ID_BITS + _KIND_BITS
        lo_keys, hi_keys = nodes << shift, (nodes + 1) << shift
        parts: list[tuple] = []
        for seg in self.sealed:
            keys = seg.keys if by_source else seg.rkeys
            lo, hi = np.searchsorted(keys, lo_keys), np.searchsorted(keys, hi_keys)
            idx = _ranges(lo, hi)
            if not len(idx):
                continue
            if by_source:
                w = seg.weight[idx] if seg.weight is not None else np.ones(len(idx), np.float32)
                parts.append((keys[idx], seg.ts[idx], w))
            else:
                parts.append((_swap(keys[idx]), None, None))
        if self._n:
            keys = self._keys[: self._n]
            ends = keys >> shift if by_source else (keys >> _KIND_BITS) & _ID_MASK
            hit = np.flatnonzero(np.isin(ends, nodes))
            if len(hit):
                w = self._w[hit] if self._w is not None else np.ones(len(hit), np.float32)
                parts.append((keys[hit], self._ts[hit], w))
        if not parts:
            e = np.zeros(0, np.int64)
            return e, e, e, e, np.zeros(0, np.float32)
        keys = np.concatenate([p[0] for p in parts])
        s, d, k = unpack(keys)
        if not by_source:
            return s, d, k, None, None
        return s, d, k, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])

    def all_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every edge, oldest segment first: ``(src, dst, kind, ts, weight)``."""
        keys = [s.keys for s in self.sealed] + [self._keys[: self._n]]
        ts = [s.ts for s in self.sealed] + [self._ts[: self._n]]
        if self.weighted:
            w = np.concatenate([s.weight for s in self.sealed] + [self._w[: self._n]])
        else:
            w = np.ones(sum(len(k) for k in keys), np.float32)
        s, d, k = unpack(np.concatenate(keys))
        return s, d, k, np.concatenate(ts), w


def _merge(a: _Segment, b: _Segment) -> _Segment:
    keys = np.concatenate([a.keys, b.keys])
    order = np.argsort(keys, kind="stable")
    w = np.concatenate([a.weight, b.weight])[order] if a.weight is not None else None
    return _Segment(
        keys[order],
        np.concatenate([a.ts, b.ts])[order],
        w,
        np.sort(np.concatenate([a.rkeys, b.rkeys])),
        min(a.first_ts, b.first_ts),
        max(a.last_ts, b.last_ts),
    )


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(lo[i], hi[i])``."""
    n = hi - lo
    total = int(n.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    return starts + np.arange(total)


class _Vocab:
    """External ids born after the snapshot -> dense indices after the snapshot's."""

    def __init__(self, base: np.ndarray, what: str):
        self.base, self.what = base, what
        self.ids: list[int] = []
        self.index: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.base) + len(self.ids)

    def lookup(self, ids: np.ndarray, *, create: bool) -> np.ndarray:
        """Dense indices of ``ids``; unknown ones get new indices (``create``) or -1."""
        ids = np.asarray(ids, np.int64)
        pos = np.minimum(np.searchsorted(self.base, ids), max(len(self.base) - 1, 0))
        found = (self.base[pos] == ids) if len(self.base) else np.zeros(len(ids), bool)
        out = np.where(found, pos, -1).astype(np.int64)
        for i in np.flatnonzero(~found).tolist():
            ext = int(ids[i])
            dense = self.index.get(ext)
            if dense is None and create:
                dense = len(self)
                if dense > MAX_DENSE_ID:
                    raise GraphRecError(f"live graph: more than {MAX_DENSE_ID + 1} {self.what}s")
                self.index[ext] = dense
                self.ids.append(ext)
            out[i] = -1 if dense is None else dense
        return out

    def external(self, dense: np.ndarray) -> np.ndarray:
        dense = np.asarray(dense, np.int64)
        n = len(self.base)
        extra = np.asarray(self.ids, np.int64)
        return np.where(
            dense < n,
            self.base[np.minimum(dense, max(n - 1, 0))],
            extra[np.maximum(dense - n, 0)] if len(extra) else 0,
        )


class LiveGraph:
    """The events since ``snap``, readable beside it (see the module docstring)."""

    def __init__(self, snap: GraphSnapshot, *, segment_edges: int = SEGMENT_EDGES):
        self.snap = snap
        self.users = _Vocab(np.asarray(snap.user_ids), "user")
        self.tweets = _Vocab(np.asarray(snap.tweet_ids), "tweet")
        self.follows = EdgeLog(weighted=False, segment_edges=segment_edges)
        self.engagements = EdgeLog(weighted=True, segment_edges=segment_edges)
        self.authored = EdgeLog(weighted=False, segment_edges=segment_edges)  # author -> new tweet
        # tweets born after the snapshot, by their dense index - n_tweets
        self.new_tweet_author: list[int] = []
        self.new_tweet_created: list[int] = []
        # Snapshot tweets known only through an engagement (no author or no time) whose tweet
        # event arrived since: the fields it filled in, by dense index (as the stores do).
        self.base_author: dict[int, int] = {}
        self.base_created: dict[int, int] = {}
        # One writer (a stream consumer); a served call holds it while it reads, for one view.
        self.lock = threading.RLock()
        self.events_applied = 0

    # -- writing ---------------------------------------------------------------------
    def add(self, cols: GraphColumns) -> dict[str, int]:
        """Apply parsed events (first write wins); returns how many of each were new."""
        with self.lock:
            added = {
                "users": self._add_users(cols),
                "tweets": self._add_tweets(cols),
                "follows": self._add_follows(cols),
                "engagements": self._add_engagements(cols),
            }
            self.events_applied += (
                len(cols.users) + len(cols.tweet_ids) + len(cols.follow_src) + len(cols.eng_user)
            )
            for edges in (self.follows, self.engagements, self.authored):
                edges.seal_if_older_than(SEGMENT_SECONDS)
        return added

    def _add_users(self, cols: GraphColumns) -> int:
        before = len(self.users)
        self.users.lookup(np.asarray(cols.users, np.int64), create=True)
        return len(self.users) - before

    def _add_tweets(self, cols: GraphColumns) -> int:
        ids = np.asarray(cols.tweet_ids, np.int64)
        if not len(ids):
            return 0
        n_before = len(self.tweets)
        dense = self.tweets.lookup(ids, create=True)
        self._pad_new_tweets()
        authors = np.asarray(cols.tweet_authors, np.int64)
        author_dense = np.where(authors >= 0, self.users.lookup(np.maximum(authors, 0), create=True), -1)
        n_base, added = self.snap.n_tweets, 0
        base_author, base_created = np.asarray(self.snap.tweet_author), np.asarray(self.snap.tweet_created)
        # Each field is written once (first write wins per field, as in the stores): a tweet
        # first seen through an engagement has neither, and its tweet event fills both in.
        open_fields = dense >= n_base
        if n_base:
            base_row = np.minimum(dense, n_base - 1)
            open_fields |= (base_author[base_row] < 0) | (base_created[base_row] <= 0)
        for i in np.flatnonzero(open_fields).tolist():
            t, author, created = int(dense[i]), int(author_dense[i]), int(cols.tweet_created[i])
            if t >= n_base:
                j = t - n_base
                had_author = self.new_tweet_author[j] >= 0
                if not had_author and author >= 0:
                    self.new_tweet_author[j] = author
                if self.new_tweet_created[j] <= 0 and created > 0:
                    self.new_tweet_created[j] = created
            else:
                had_author = base_author[t] >= 0 or t in self.base_author
                if not had_author and author >= 0:
                    self.base_author[t] = author
                if base_created[t] <= 0 and t not in self.base_created and created > 0:
                    self.base_created[t] = created
            if not had_author and author >= 0:
                self.authored.append(pack([author], [t], [0]), np.asarray([created], np.int64))
                added += 1
        return max(len(self.tweets) - n_before, added)

    def _add_follows(self, cols: GraphColumns) -> int:
        if not len(cols.follow_src):
            return 0
        src = self.users.lookup(cols.follow_src, create=True)
        dst = self.users.lookup(cols.follow_dst, create=True)
        kind = np.zeros(len(src), np.int64)
        snap = self.snap
        base = csr_contains(
            snap.follow_out_indptr,
            snap.follow_out_indices,
            np.zeros(0, np.int8),
            src,
            dst,
            kind.astype(np.int8),
        )
        return self._append_new(
            self.follows, src, dst, kind, np.asarray(cols.follow_ts, np.int64), None, base
        )

    def _add_engagements(self, cols: GraphColumns) -> int:
        if not len(cols.eng_user):
            return 0
        user = self.users.lookup(cols.eng_user, create=True)
        tweet = self.tweets.lookup(cols.eng_tweet, create=True)
        self._pad_new_tweets()
        kind = np.asarray(cols.eng_kind, np.int64)
        snap = self.snap
        base = csr_contains(
            snap.eng_user_indptr,
            snap.eng_user_indices,
            snap.eng_user_kinds,
            user,
            tweet,
            kind.astype(np.int8),
        )
        w = np.asarray(cols.eng_weight, np.float32)
        return self._append_new(
            self.engagements, user, tweet, kind, np.asarray(cols.eng_ts, np.int64), w, base
        )

    def _pad_new_tweets(self) -> None:
        """A tweet first seen through an engagement: author and time unknown until its tweet event."""
        while len(self.new_tweet_author) < len(self.tweets) - len(self.tweets.base):
            self.new_tweet_author.append(-1)
            self.new_tweet_created.append(0)

    @staticmethod
    def _append_new(log_, src, dst, kind, ts, weight, in_base) -> int:
        keys = pack(src, dst, kind)
        _, first = np.unique(keys, return_index=True)
        fresh = np.zeros(len(keys), bool)
        fresh[first] = True  # first occurrence within the batch
        fresh &= ~in_base
        fresh[fresh] &= ~log_.contains(keys[fresh])
        idx = np.flatnonzero(fresh)
        log_.append(keys[idx], ts[idx], weight[idx] if weight is not None else None)
        return len(idx)

    # -- reading ---------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_tweets(self) -> int:
        return len(self.tweets)

    @property
    def n_edges(self) -> int:
        """Live follows, engagements and authorships (of tweets born since the snapshot)."""
        return len(self.follows) + len(self.engagements) + len(self.authored)

    @property
    def nbytes(self) -> int:
        """Bytes held by the live edges (the id maps of new users and tweets not included)."""
        return self.follows.nbytes + self.engagements.nbytes + self.authored.nbytes

    def tweet_author(self, dense: np.ndarray) -> np.ndarray:
        """Dense author index of tweets (base or new; -1 unknown)."""
        return self._tweet_field(dense, self.snap.tweet_author, self.new_tweet_author, self.base_author, -1)

    def tweet_created(self, dense: np.ndarray) -> np.ndarray:
        """Creation time of tweets (base or new; 0 unknown)."""
        return self._tweet_field(dense, self.snap.tweet_created, self.new_tweet_created, self.base_created, 0)

    def _tweet_field(self, dense, base, new, fills: dict[int, int], unknown: int) -> np.ndarray:
        """A per-tweet field: the snapshot's (with the live fill-ins) or a new tweet's."""
        dense = np.asarray(dense, np.int64)
        n = self.snap.n_tweets
        base, new = np.asarray(base), np.asarray(new, np.int64)
        out = np.where(
            dense < n,
            base[np.minimum(dense, max(n - 1, 0))],
            new[np.maximum(dense - n, 0)] if len(new) else unknown,
        ).astype(np.int64)
        if fills and len(dense):
            hit = np.isin(dense, np.fromiter(fills, np.int64, len(fills)))
            if hit.any():
                out[hit] = [fills[int(t)] for t in dense[hit].tolist()]
        return out

    def new_tweets_by(self, authors: np.ndarray) -> np.ndarray:
        """Dense indices of the tweets born after the snapshot whose author is in ``authors``."""
        return self.authored.out_edges(authors)[1]

    def columns(self) -> GraphColumns:
        """Everything live as external-id columns (what a compaction folds into a snapshot): new
        users, the tweets born since the snapshot, follows and engagements (the snapshot tweets'
        filled-in authors and times are :meth:`tweet_author` / :meth:`tweet_created`)."""
        with self.lock:
            fs, fd, _, fts, _ = self.follows.all_edges()
            eu, et, ek, ets, ew = self.engagements.all_edges()
            n_t = self.snap.n_tweets
            tweets = np.arange(n_t, len(self.tweets), dtype=np.int64)
            authors = self.tweet_author(tweets)
            return GraphColumns(
                users=self.users.external(np.arange(self.snap.n_users, len(self.users))),
                tweet_ids=self.tweets.external(tweets),
                tweet_authors=np.where(authors >= 0, self.users.external(np.maximum(authors, 0)), -1),
                tweet_created=self.tweet_created(tweets),
                tweet_texts=None,
                follow_src=self.users.external(fs),
                follow_dst=self.users.external(fd),
                follow_ts=fts,
                eng_user=self.users.external(eu),
                eng_tweet=self.tweets.external(et),
                eng_kind=ek.astype(np.int8),
                eng_ts=ets,
                eng_weight=ew,
            )


class LiveSink:
    """What a live feed (:class:`graphrec.serve.live_feed.LiveFeed`) writes to when no recommender
    is served: a live graph over ``snap`` (a compaction, the fault checks)."""

    def __init__(self, snap: GraphSnapshot):
        self.snap = snap
        self.live: LiveGraph | None = None

    def attach_live(self, live: LiveGraph | None, **_) -> None:
        self.live = live

    def apply_events(self, cols: GraphColumns) -> dict[str, int]:
        if self.live is None:
            self.live = LiveGraph(self.snap)
        return self.live.add(cols)


def fold(live: LiveGraph) -> GraphSnapshot:
    """The snapshot of the base graph plus everything live: what a compaction swaps in (then
    the recommender is refitted on it and a fresh :class:`LiveGraph` starts)."""
    from graph.snapshot import build_snapshot

    snap = live.snap
    users, tweets = np.asarray(snap.user_ids), np.asarray(snap.tweet_ids)

    def rows(indptr) -> np.ndarray:
        return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))

    with live.lock:  # one view of the live graph; the snapshot's tweets as it knows them now
        extra = live.columns()
        base_tweets = np.arange(snap.n_tweets, dtype=np.int64)
        author = live.tweet_author(base_tweets)
        created = live.tweet_created(base_tweets)
    return build_snapshot(
        user_ids=np.concatenate([users, extra.users, extra.follow_src, extra.follow_dst, extra.eng_user]),
        tweet_ids=np.concatenate([tweets, extra.tweet_ids, extra.eng_tweet]),
        follow_src=np.concatenate([users[rows(snap.follow_out_indptr)], extra.follow_src]),
        follow_dst=np.concatenate([users[snap.follow_out_indices], extra.follow_dst]),
        follow_ts=np.concatenate([snap.follow_out_ts, extra.follow_ts]),
        eng_user=np.concatenate([users[rows(snap.eng_user_indptr)], extra.eng_user]),
        eng_tweet=np.concatenate([tweets[snap.eng_user_indices], extra.eng_tweet]),
        eng_kind=np.concatenate([snap.eng_user_kinds, extra.eng_kind]),
        eng_ts=np.concatenate([snap.eng_user_ts, extra.eng_ts]),
        eng_weight=np.concatenate([snap.eng_user_weights, extra.eng_weight]),
        # tweets first seen through an engagement come last, unknown author: the first
        # occurrence of each id (base, then new tweets, then engagement-only ids) wins
        tweet_author=np.concatenate(
            [
                np.where(author >= 0, live.users.external(np.maximum(author, 0)), -1),
                extra.tweet_authors,
                np.full(len(extra.eng_tweet), -1, np.int64),
            ]
        ),
        tweet_created=np.concatenate(
            [created, extra.tweet_created, np.zeros(len(extra.eng_tweet), np.int64)]
        ),
        tweet_texts=dict(snap.tweet_texts),
    )
