"""Structural checks of a snapshot's arrays: what every kernel assumes, verified before use.

A snapshot on disk is one ``.npy`` file per array; any of them may be damaged or forged. The
compiled kernels index with ``indptr`` / ``indices`` without bounds checks, so a snapshot is
used only once these hold (each check is vectorised, O(size)):

* vocabularies: non-negative, strictly increasing (the dense index is a position in them);
* every CSR: ``indptr`` of ``n_rows + 1`` entries, starting at 0, non-decreasing, ending at
  ``len(indices)``; indices in ``[0, n_cols)``; each row sorted by neighbour; its aligned
  columns (timestamps, weights, kinds) as long as ``indices``;
* the in-edge and tweet-side CSRs hold as many edges per node as the out-edge and user-side
  ones point at it (the transposes agree), and ``authored`` agrees with ``tweet_author``;
* weights finite and >= 0, kinds known, timestamps >= 0, authors in ``[-1, n_users)``.

Every failure is a :class:`~graph.errors.SnapshotError` naming the array file and the check.
Content checksums (is this the snapshot its id says?) are in :mod:`graph.snapshot`.
"""

from __future__ import annotations

import numpy as np

from graph.errors import SnapshotError
from graph.schema import KINDS

#: (prefix, rows, columns, aligned columns) of every CSR in a snapshot.
CSRS = (
    ("follow_out", "users", "users", ("ts",)),
    ("follow_in", "users", "users", ("ts",)),
    ("eng_user", "users", "tweets", ("weights", "kinds", "ts")),
    ("eng_tweet", "tweets", "users", ("weights", "kinds", "ts")),
    ("authored", "users", "tweets", ()),
)
#: CSR pairs that are transposes of each other: (forward, transposed).
TRANSPOSES = (("follow_out", "follow_in"), ("eng_user", "eng_tweet"))


def verify_structure(arrays: dict[str, np.ndarray], where: str) -> None:
    """Raise :class:`SnapshotError` unless ``arrays`` form a well-formed snapshot (see module doc).

    ``where`` is the snapshot directory (or a description): errors name ``where/<array>.npy``.
    """
    n = {"users": len(arrays["user_ids"]), "tweets": len(arrays["tweet_ids"])}
    for vocab in ("user_ids", "tweet_ids"):
        _check_vocabulary(arrays[vocab], _file(where, vocab))
    for prefix, rows, cols, aligned in CSRS:
        _check_csr(arrays, prefix, n[rows], n[cols], aligned, where)
    for forward, transposed in TRANSPOSES:
        per_col = np.bincount(arrays[f"{forward}_indices"], minlength=n[_cols_of(forward)])
        if not np.array_equal(per_col, np.diff(arrays[f"{transposed}_indptr"])):
            raise SnapshotError(
                f"{_file(where, transposed + '_indptr')}: not the transpose of {forward} "
                "(edge counts per node differ)"
            )
    _check_tweets(arrays, n["users"], where)


def _file(where: str, name: str) -> str:
    return f"{where}/{name}.npy"


def _cols_of(prefix: str) -> str:
    return next(cols for p, _, cols, _ in CSRS if p == prefix)


def _check_vocabulary(ids: np.ndarray, path: str) -> None:
    if ids.ndim != 1:
        raise SnapshotError(f"{path}: must be one-dimensional, got shape {ids.shape}")
    if len(ids) and int(ids[0]) < 0:
        raise SnapshotError(f"{path}: ids must be >= 0")
    if len(ids) > 1 and not bool((ids[1:] > ids[:-1]).all()):
        raise SnapshotError(f"{path}: ids must be strictly increasing (sorted, unique)")


def _check_csr(
    arrays: dict[str, np.ndarray], prefix: str, n_rows: int, n_cols: int, aligned: tuple[str, ...], where: str
) -> None:
    indptr, indices = arrays[f"{prefix}_indptr"], arrays[f"{prefix}_indices"]
    path = _file(where, f"{prefix}_indptr")
    if indptr.shape != (n_rows + 1,):
        raise SnapshotError(f"{path}: {indptr.shape[0]} entries, expected {n_rows + 1} (rows + 1)")
    if int(indptr[0]) != 0 or int(indptr[-1]) != len(indices):
        raise SnapshotError(f"{path}: must start at 0 and end at {len(indices)} (the number of indices)")
    steps = np.diff(indptr)
    if len(steps) and int(steps.min()) < 0:
        raise SnapshotError(f"{path}: not non-decreasing (row {int(np.argmin(steps))})")
    path = _file(where, f"{prefix}_indices")
    if indices.ndim != 1:
        raise SnapshotError(f"{path}: must be one-dimensional, got shape {indices.shape}")
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n_cols):
        raise SnapshotError(f"{path}: indices out of range [0, {n_cols})")
    # Rows sorted by neighbour: a step down is allowed only where a new row starts.
    down = np.flatnonzero(indices[1:] < indices[:-1]) + 1
    if len(down) and not np.isin(down, indptr).all():
        raise SnapshotError(f"{path}: a row is not sorted by neighbour index")
    for col in aligned:
        values, cpath = arrays[f"{prefix}_{col}"], _file(where, f"{prefix}_{col}")
        if values.shape != indices.shape:
            raise SnapshotError(f"{cpath}: {values.shape[0]} entries, expected {len(indices)} (one per edge)")
        _check_values(values, col, cpath)


def _check_values(values: np.ndarray, col: str, path: str) -> None:
    if not len(values):
        return
    if col == "weights" and not bool(np.isfinite(values).all() and values.min() >= 0):
        raise SnapshotError(f"{path}: weights must be finite and >= 0")
    if col == "kinds" and (int(values.min()) < 0 or int(values.max()) >= len(KINDS)):
        raise SnapshotError(f"{path}: unknown engagement kind codes (known: 0..{len(KINDS) - 1})")
    if col == "ts" and int(values.min()) < 0:
        raise SnapshotError(f"{path}: timestamps must be >= 0 (0 = unknown)")


def _check_tweets(arrays: dict[str, np.ndarray], n_users: int, where: str) -> None:
    n_tweets = len(arrays["tweet_ids"])
    author, created = arrays["tweet_author"], arrays["tweet_created"]
    for name, a in (("tweet_author", author), ("tweet_created", created)):
        if a.shape != (n_tweets,):
            raise SnapshotError(
                f"{_file(where, name)}: {a.shape[0]} entries, expected one per tweet ({n_tweets})"
            )
    if n_tweets and (int(author.min()) < -1 or int(author.max()) >= n_users):
        raise SnapshotError(f"{_file(where, 'tweet_author')}: authors must be user indices or -1")
    if n_tweets and int(created.min()) < 0:
        raise SnapshotError(f"{_file(where, 'tweet_created')}: times must be >= 0 (0 = unknown)")
    indptr, listed = arrays["authored_indptr"], arrays["authored_indices"]
    posted = np.bincount(author[author >= 0], minlength=n_users)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
    if not (np.array_equal(posted, np.diff(indptr)) and np.array_equal(author[listed], rows)):
        raise SnapshotError(f"{_file(where, 'authored_indices')}: does not match tweet_author")
