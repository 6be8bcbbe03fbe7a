"""Immutable in-memory graph snapshot: id vocabularies plus CSR arrays.

Every algorithm (walks, GNN training, retrieval) reads a :class:`GraphSnapshot`,
never the store. A snapshot is built from column arrays (see
:func:`build_snapshot`), saved as one ``.npy`` file per array plus
``meta.json``, and loaded memory-mapped.

Conventions
-----------
* External ids are non-negative int64. Users and tweets have separate id spaces.
* Dense indices are positions in the *sorted* vocabularies ``user_ids`` and
  ``tweet_ids``; so the same data gives the same snapshot whatever the store.
* CSR rows are sorted by (neighbour index, kind) so snapshots are deterministic.
* ``indptr`` arrays are int64, ``indices`` int32, timestamps int64 (seconds since
  the epoch; 0 = unknown), weights float32, kinds int8 (see :data:`KINDS`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graph.errors import GraphRecError, SnapshotError
from graph.schema import KINDS
from graph.snapshot_checks import verify_structure

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

#: Every array of a snapshot, with its dtype. The order is the save order.
ARRAY_DTYPES: dict[str, np.dtype] = {
    "user_ids": np.dtype(np.int64),
    "tweet_ids": np.dtype(np.int64),
    # follows, out-edges: row = follower, indices = followee
    "follow_out_indptr": np.dtype(np.int64),
    "follow_out_indices": np.dtype(np.int32),
    "follow_out_ts": np.dtype(np.int64),
    # follows, in-edges: row = followee, indices = follower
    "follow_in_indptr": np.dtype(np.int64),
    "follow_in_indices": np.dtype(np.int32),
    "follow_in_ts": np.dtype(np.int64),
    # engagements user -> tweet
    "eng_user_indptr": np.dtype(np.int64),
    "eng_user_indices": np.dtype(np.int32),
    "eng_user_weights": np.dtype(np.float32),
    "eng_user_kinds": np.dtype(np.int8),
    "eng_user_ts": np.dtype(np.int64),
    # engagements tweet -> user
    "eng_tweet_indptr": np.dtype(np.int64),
    "eng_tweet_indices": np.dtype(np.int32),
    "eng_tweet_weights": np.dtype(np.float32),
    "eng_tweet_kinds": np.dtype(np.int8),
    "eng_tweet_ts": np.dtype(np.int64),
    # authorship: per tweet its author's user index (-1 = unknown) and creation time
    "tweet_author": np.dtype(np.int32),
    "tweet_created": np.dtype(np.int64),
    # authorship, per user the tweets they posted
    "authored_indptr": np.dtype(np.int64),
    "authored_indices": np.dtype(np.int32),
}


@dataclass(frozen=True)
class GraphSnapshot:
    """Vocabularies and CSR arrays of the follow and engagement graphs.

    Build with :func:`build_snapshot`, persist with :meth:`save`, reopen with
    :meth:`load`. Treat every array as read-only.
    """

    arrays: dict[str, np.ndarray]
    tweet_texts: dict[int, str] = field(default_factory=dict)
    snapshot_id: str = ""

    def __post_init__(self) -> None:
        # Immutable for real: code that would sort or compact a shared array in place
        # (scipy's sum_duplicates does) fails loudly instead of corrupting the graph.
        for a in self.arrays.values():
            if isinstance(a, np.ndarray):
                a.flags.writeable = False

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays")
        if arrays is not None and name in arrays:
            return arrays[name]
        raise AttributeError(name)

    # -- sizes -----------------------------------------------------------
    @property
    def n_users(self) -> int:
        return int(self.arrays["user_ids"].shape[0])

    @property
    def n_tweets(self) -> int:
        return int(self.arrays["tweet_ids"].shape[0])

    @property
    def n_follows(self) -> int:
        return int(self.arrays["follow_out_indices"].shape[0])

    @property
    def n_engagements(self) -> int:
        return int(self.arrays["eng_user_indices"].shape[0])

    @property
    def nbytes(self) -> int:
        """Total size of all arrays in bytes."""
        return int(sum(a.nbytes for a in self.arrays.values()))

    # -- id lookups ------------------------------------------------------
    def user_index(self, ids, *, strict: bool = True) -> np.ndarray:
        """Dense indices of external user ids (-1 for unknown unless ``strict``)."""
        return _lookup(self.arrays["user_ids"], ids, "user", strict)

    def tweet_index(self, ids, *, strict: bool = True) -> np.ndarray:
        """Dense indices of external tweet ids (-1 for unknown unless ``strict``)."""
        return _lookup(self.arrays["tweet_ids"], ids, "tweet", strict)

    def stats(self) -> dict[str, int | float]:
        """Counts and degree figures, as printed by ``graphrec demo``."""
        out_deg = np.diff(self.arrays["follow_out_indptr"])
        eng_deg = np.diff(self.arrays["eng_user_indptr"])
        kinds = np.bincount(self.arrays["eng_user_kinds"].astype(np.int64), minlength=len(KINDS))
        stats: dict[str, int | float] = {
            "users": self.n_users,
            "tweets": self.n_tweets,
            "follows": self.n_follows,
            "engagements": self.n_engagements,
            "authored_tweets": int((self.arrays["tweet_author"] >= 0).sum()),
            "mean_followees": float(out_deg.mean()) if len(out_deg) else 0.0,
            "max_followers": int(np.diff(self.arrays["follow_in_indptr"]).max(initial=0)),
            "mean_engagements_per_user": float(eng_deg.mean()) if len(eng_deg) else 0.0,
            "reciprocated_follows": _reciprocated(self),
        }
        for name, code in KINDS.items():
            stats[f"engagements_{name}"] = int(kinds[code])
        return stats

    # -- persistence -----------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write every array as ``.npy`` plus ``meta.json``; returns the directory.

        Files are written to a temporary sibling directory first and renamed, so
        a crash never leaves a half-written snapshot behind.
        """
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        # A private temporary sibling per writer: two writers to one directory never mix files.
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            for name in ARRAY_DTYPES:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(self.arrays[name]))
            texts = {str(k): v for k, v in sorted(self.tweet_texts.items())}
            (tmp / "tweet_texts.json").write_text(json.dumps(texts))
            meta = {"format_version": FORMAT_VERSION, "snapshot_id": self.snapshot_id, **self.stats()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
            _swap_into_place(tmp, directory)
        finally:
            if tmp.exists():
                _rmtree(tmp)
        log.info("saved snapshot %s to %s", self.snapshot_id, directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = True, trust: bool = False) -> GraphSnapshot:
        """Open a saved snapshot; arrays are memory-mapped unless ``mmap=False``.

        The arrays' structure is always verified (:mod:`graph.snapshot_checks`: nothing a
        kernel reads can be out of bounds). Unless ``trust=True`` the content is checked too:
        the arrays' checksum must be the ``snapshot_id`` in ``meta.json``, so a damaged or
        edited file is a :class:`SnapshotError`, never a silently different graph.
        """
        directory = Path(directory)
        meta = _read_meta(directory)
        arrays = {
            name: _load_array(directory / f"{name}.npy", dtype, mmap) for name, dtype in ARRAY_DTYPES.items()
        }
        texts_path = directory / "tweet_texts.json"
        try:
            texts = (
                {int(k): str(v) for k, v in json.loads(texts_path.read_text()).items()}
                if texts_path.is_file()
                else {}
            )
        except (ValueError, AttributeError, UnicodeDecodeError) as exc:
            raise SnapshotError(f"{texts_path}: not a JSON object of tweet id -> text ({exc})") from None
        verify_structure(arrays, str(directory))
        snapshot_id = meta.get("snapshot_id", "")
        if not trust and _digest(arrays, texts) != snapshot_id:
            raise SnapshotError(
                f"{directory}: content does not match its snapshot id {snapshot_id!r} in meta.json "
                "(a file was damaged or edited); re-export it with `graphrec snapshot`"
            )
        return cls(arrays=arrays, tweet_texts=texts, snapshot_id=snapshot_id)

    def equals(self, other: GraphSnapshot) -> bool:
        """True when both snapshots hold identical arrays and texts."""
        return (
            self.snapshot_id == other.snapshot_id
            and self.tweet_texts == other.tweet_texts
            and all(np.array_equal(self.arrays[k], other.arrays[k]) for k in ARRAY_DTYPES)
        )


# ---------------------------------------------------------------------------
# building


def build_snapshot(
    *,
    user_ids: np.ndarray,
    tweet_ids: np.ndarray,
    follow_src: np.ndarray,
    follow_dst: np.ndarray,
    follow_ts: np.ndarray,
    eng_user: np.ndarray,
    eng_tweet: np.ndarray,
    eng_kind: np.ndarray,
    eng_ts: np.ndarray,
    eng_weight: np.ndarray,
    tweet_author: np.ndarray,
    tweet_created: np.ndarray,
    tweet_texts: dict[int, str] | None = None,
) -> GraphSnapshot:
    """Build a snapshot from external-id columns.

    ``user_ids`` and ``tweet_ids`` list every node (duplicates allowed); edge
    endpoints must be among them. ``tweet_author`` / ``tweet_created`` are aligned
    with ``tweet_ids`` (author -1 = unknown). Rows need not be sorted or unique:
    duplicate follow (src, dst) or engagement (user, tweet, kind) keys keep their
    first occurrence, as the stores do.
    """
    uvocab, u_first = np.unique(np.asarray(user_ids, dtype=np.int64), return_index=True)
    tweet_ids = np.asarray(tweet_ids, dtype=np.int64)
    tvocab, t_first = np.unique(tweet_ids, return_index=True)
    del u_first
    author_ext = np.asarray(tweet_author, dtype=np.int64)[t_first]
    created = np.asarray(tweet_created, dtype=np.int64)[t_first]
    author = np.full(len(tvocab), -1, dtype=np.int32)
    known = author_ext >= 0
    author[known] = _lookup(uvocab, author_ext[known], "user (tweet author)", True)

    fs = _lookup(uvocab, follow_src, "user (follower)", True)
    fd = _lookup(uvocab, follow_dst, "user (followee)", True)
    fts = np.asarray(follow_ts, dtype=np.int64)
    keep = _first_unique(fs.astype(np.int64) * max(len(uvocab), 1) + fd)
    fs, fd, fts = fs[keep], fd[keep], fts[keep]

    eu = _lookup(uvocab, eng_user, "user (engagement)", True)
    et = _lookup(tvocab, eng_tweet, "tweet (engagement)", True)
    ek = np.asarray(eng_kind, dtype=np.int8)
    ets = np.asarray(eng_ts, dtype=np.int64)
    ew = np.asarray(eng_weight, dtype=np.float32)
    n_kinds = len(KINDS)
    key = (eu.astype(np.int64) * max(len(tvocab), 1) + et) * n_kinds + ek
    keep = _first_unique(key)
    eu, et, ek, ets, ew = eu[keep], et[keep], ek[keep], ets[keep], ew[keep]

    nu, nt = len(uvocab), len(tvocab)
    arrays: dict[str, np.ndarray] = {"user_ids": uvocab, "tweet_ids": tvocab}
    _csr_into(arrays, "follow_out", nu, fs, fd, nu, {"ts": fts}, None)
    _csr_into(arrays, "follow_in", nu, fd, fs, nu, {"ts": fts}, None)
    eng_cols = {"weights": ew, "kinds": ek, "ts": ets}
    _csr_into(arrays, "eng_user", nu, eu, et, nt, eng_cols, ek)
    _csr_into(arrays, "eng_tweet", nt, et, eu, nu, eng_cols, ek)
    arrays["tweet_author"] = author
    arrays["tweet_created"] = created
    has_author = np.flatnonzero(author >= 0).astype(np.int32)
    _csr_into(arrays, "authored", nu, author[has_author], has_author, nt, {}, None)
    for name, dtype in ARRAY_DTYPES.items():
        arrays[name] = np.ascontiguousarray(arrays[name], dtype=dtype)
    texts = {int(k): v for k, v in (tweet_texts or {}).items() if v}
    snap = GraphSnapshot(arrays=arrays, tweet_texts=texts, snapshot_id=_digest(arrays, texts))
    verify_structure(arrays, "build_snapshot")
    return snap


def _first_unique(key: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each key, in input order."""
    _, first = np.unique(key, return_index=True)
    return np.sort(first)


def _csr_into(
    arrays: dict[str, np.ndarray],
    prefix: str,
    n_rows: int,
    rows: np.ndarray,
    cols: np.ndarray,
    n_cols: int,
    extra: dict[str, np.ndarray],
    kinds: np.ndarray | None,
) -> None:
    """Sort edges by (row, col, kind) and store indptr/indices/extra columns."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    order = _edge_order(rows, cols, n_cols, kinds)
    counts = np.bincount(rows, minlength=n_rows) if len(rows) else np.zeros(n_rows, dtype=np.int64)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    arrays[f"{prefix}_indptr"] = indptr
    arrays[f"{prefix}_indices"] = cols[order]
    for name, col in extra.items():
        arrays[f"{prefix}_{name}"] = np.asarray(col)[order]


def _edge_order(rows: np.ndarray, cols: np.ndarray, n_cols: int, kinds: np.ndarray | None) -> np.ndarray:
    """Permutation sorting edges by (row, col, kind).

    One stable argsort of a packed int64 key is 2-3x faster than ``np.lexsort`` over three
    keys; the lexsort remains for id spaces too large to pack into 62 bits.
    """
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    n_kinds = int(kinds.max()) + 1 if kinds is not None and len(kinds) else 1
    n_rows = int(rows.max()) + 1
    if n_rows * max(n_cols, 1) * n_kinds < 2**62 and (kinds is None or int(kinds.min()) >= 0):
        key = rows * max(n_cols, 1) + cols
        if kinds is not None:
            key = key * n_kinds + kinds.astype(np.int64)
        return np.argsort(key, kind="stable")
    sort_keys = [cols, rows] if kinds is None else [kinds.astype(np.int64), cols, rows]
    return np.lexsort(sort_keys)


def _lookup(vocab: np.ndarray, ids, what: str, strict: bool) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        if ids.size == 0:
            ids = ids.astype(np.int64)
        else:
            raise GraphRecError(f"{what} ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64, copy=False)
    pos = np.searchsorted(vocab, ids)
    pos_clipped = np.minimum(pos, max(len(vocab) - 1, 0))
    found = (pos < len(vocab)) & (vocab[pos_clipped] == ids) if len(vocab) else np.zeros(ids.shape, bool)
    if strict and not found.all():
        missing = ids[~found][:5].tolist()
        raise GraphRecError(f"unknown {what} id(s): {missing}")
    return np.where(found, pos_clipped, -1).astype(np.int32)


def _digest(arrays: dict[str, np.ndarray], texts: dict[int, str]) -> str:
    h = hashlib.sha256()
    for name in ARRAY_DTYPES:
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).data)  # the buffer itself: no copy of a mapped file
    h.update(json.dumps(sorted(texts.items())).encode())
    return h.hexdigest()[:16]


def _reciprocated(snap: GraphSnapshot) -> int:
    indptr = snap.arrays["follow_out_indptr"]
    src = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    dst = snap.arrays["follow_out_indices"].astype(np.int64)
    n = max(snap.n_users, 1)
    fwd = src * n + dst
    rev = np.sort(dst * n + src)
    return int(np.isin(fwd, rev, assume_unique=False).sum())


def _read_meta(directory: Path) -> dict:
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise SnapshotError(f"{directory}: not a snapshot directory (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise SnapshotError(f"{meta_path}: must be a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(
            f"{directory}: snapshot format {meta.get('format_version')} is not supported "
            f"(expected {FORMAT_VERSION}); re-export it with `graphrec snapshot`"
        )
    return meta


def _load_array(path: Path, dtype: np.dtype, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise SnapshotError(f"{path}: missing array file")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # truncated, not .npy, or unreadable
        raise SnapshotError(f"{path}: not a readable .npy array ({exc})") from None
    if arr.dtype != dtype:
        raise SnapshotError(f"{path}: dtype {arr.dtype}, expected {dtype}")
    if arr.ndim != 1:
        raise SnapshotError(f"{path}: must be one-dimensional, got shape {arr.shape}")
    return arr


def _swap_into_place(tmp: Path, directory: Path) -> None:
    """Rename the finished ``tmp`` to ``directory``; an existing one is moved aside first and
    removed after, so readers see the old snapshot or the new one, never a mix."""
    import errno
    import random
    import time

    for attempt in range(50):
        try:
            tmp.rename(directory)
            return
        except OSError as exc:
            # ENOTEMPTY/EEXIST: a snapshot is there (it may be gone again by now, moved aside
            # by another writer between our rename and this line: then simply retry).
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
        old.rmdir()
        try:
            directory.rename(old)
        except FileNotFoundError:  # another writer moved it first: try again
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # back off so writers interleave
            continue
        _rmtree(old)
    raise SnapshotError(f"{directory}: could not replace it (other writers kept replacing it)")


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
