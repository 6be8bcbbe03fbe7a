"""Adapters for the real research datasets (gowalla, lastfm, flickr).

Each adapter parses the dataset's own files into a :class:`Dataset` of int64
column arrays with the dataset's original ids (lastfm keeps its 1-based ids).
Items become tweets without authors; all engagements are of kind ``engage``.
Parsing is vectorised; a malformed line raises :class:`InputError` naming the
file and line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graph.errors import InputError

log = logging.getLogger(__name__)

DATASETS = ("gowalla", "lastfm", "flickr")

_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass
class Dataset:
    """A dataset as external-id columns, with its fixed train/val/test split."""

    name: str
    user_ids: np.ndarray
    item_ids: np.ndarray
    train_user: np.ndarray
    train_item: np.ndarray
    train_weight: np.ndarray
    test_user: np.ndarray
    test_item: np.ndarray
    val_user: np.ndarray = field(default_factory=lambda: _EMPTY)
    val_item: np.ndarray = field(default_factory=lambda: _EMPTY)
    follow_src: np.ndarray = field(default_factory=lambda: _EMPTY)
    follow_dst: np.ndarray = field(default_factory=lambda: _EMPTY)

    @property
    def has_follows(self) -> bool:
        return len(self.follow_src) > 0

    def summary(self) -> dict[str, int]:
        return {
            "users": len(self.user_ids),
            "items": len(self.item_ids),
            "train": len(self.train_user),
            "val": len(self.val_user),
            "test": len(self.test_user),
            "follows": len(self.follow_src),
        }


def load_dataset(name: str, data_dir: str | Path) -> Dataset:
    """Load a dataset by name from ``data_dir`` (the dataset's folder or its parent)."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} (or 'synthetic')")
    folder = _dataset_folder(name, Path(data_dir))
    loader = {"gowalla": _load_gowalla, "lastfm": _load_lastfm, "flickr": _load_flickr}[name]
    ds = loader(folder)
    log.info("loaded %s from %s: %s", name, folder, ds.summary())
    return ds


def _dataset_folder(name: str, data_dir: Path) -> Path:
    expected = {
        "gowalla": ("train.txt", "test.txt"),
        "lastfm": ("data1.txt", "test1.txt", "trustnetwork.txt"),
        "flickr": ("flickr.links", "flickr.train.rating", "flickr.val.rating", "flickr.test.rating"),
    }[name]
    for candidate in (data_dir / name, data_dir):
        if all((candidate / f).is_file() for f in expected):
            return candidate
    raise InputError(
        f"no {name} dataset under {data_dir}: expected files {', '.join(expected)} in {data_dir / name} "
        f"or {data_dir}; pass --data-dir pointing at the datasets folder (e.g. ../shared/datasets)"
    )


# ---------------------------------------------------------------------------
# parsing helpers


def read_table(path: Path, n_cols: int, *, min_cols: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse a whitespace-separated table into ids (n, 2) int64 and values (n, n_cols - 2) float64.

    The first two columns are ids and must be non-negative integers; further
    columns are numbers (weights). Lines may carry ``min_cols..n_cols`` columns;
    missing trailing columns are filled with 1. Blank lines are skipped. The fast
    path is vectorised; on failure a line-by-line pass names the bad line.
    """
    min_cols = n_cols if min_cols is None else min_cols
    text = path.read_bytes().replace(b"\r", b"")
    lines = text.split(b"\n")
    tokens = text.split()
    if len(tokens) % n_cols == 0:
        try:
            arr = np.array(tokens, dtype=np.float64).reshape(-1, n_cols)
        except ValueError:
            arr = None
        if arr is not None and len(arr) == sum(1 for ln in lines if ln.strip()) and _ids_ok(arr):
            return _split_ids(arr)
    rows = []
    for lineno, raw in enumerate(lines, start=1):
        parts = raw.split()
        if not parts:
            continue
        shown = raw[:80].decode(errors="replace")
        if not (min_cols <= len(parts) <= n_cols):
            raise InputError(
                f"expected {n_cols} columns, found {len(parts)}: {shown!r}", path=str(path), line=lineno
            )
        try:
            ids = [int(p) for p in parts[:2]]
            rest = [float(p) for p in parts[2:]]
        except ValueError:
            raise InputError(
                f"non-numeric or non-integer id in {shown!r}", path=str(path), line=lineno
            ) from None
        if min(ids) < 0:
            raise InputError(f"negative id in {shown!r}", path=str(path), line=lineno)
        rows.append(ids + rest + [1.0] * (n_cols - len(parts)))
    return _split_ids(np.array(rows, dtype=np.float64).reshape(-1, n_cols))


def _split_ids(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return arr[:, :2].astype(np.int64), arr[:, 2:]


def _ids_ok(arr: np.ndarray) -> bool:
    ids = arr[:, :2]
    return bool(((ids >= 0) & (ids == np.floor(ids)) & (ids < 2**53)).all())


def read_adjacency_lists(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``user item item ...`` lines (LightGCN format) into (user, item) columns."""
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    text = path.read_bytes().replace(b"\r", b"")
    for lineno, raw in enumerate(text.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            vals = np.array(raw.split(), dtype=np.int64)
        except ValueError:
            raise InputError(
                f"non-integer id in {raw[:80].decode(errors='replace')!r}", path=str(path), line=lineno
            ) from None
        if vals.min() < 0:
            raise InputError("negative id", path=str(path), line=lineno)
        users.append(np.full(len(vals) - 1, vals[0], dtype=np.int64))
        items.append(vals[1:])
    if not users:
        return _EMPTY, _EMPTY
    return np.concatenate(users), np.concatenate(items)


# ---------------------------------------------------------------------------
# adapters


def _load_gowalla(folder: Path) -> Dataset:
    tr_u, tr_i = read_adjacency_lists(folder / "train.txt")
    te_u, te_i = read_adjacency_lists(folder / "test.txt")
    # Users with an empty line still exist; collect every first token.
    all_users = np.concatenate([tr_u, te_u, _first_tokens(folder / "train.txt")])
    return Dataset(
        name="gowalla",
        user_ids=np.unique(all_users),
        item_ids=np.unique(np.concatenate([tr_i, te_i])),
        train_user=tr_u,
        train_item=tr_i,
        train_weight=np.ones(len(tr_u), dtype=np.float32),
        test_user=te_u,
        test_item=te_i,
    )


def _first_tokens(path: Path) -> np.ndarray:
    text = path.read_bytes().replace(b"\r", b"")
    return np.array([ln.split()[0] for ln in text.split(b"\n") if ln.strip()], dtype=np.int64)


def _load_lastfm(folder: Path) -> Dataset:
    train, train_w = read_table(folder / "data1.txt", 3, min_cols=2)
    test, _ = read_table(folder / "test1.txt", 3, min_cols=2)
    trust, _ = read_table(folder / "trustnetwork.txt", 2)
    users = np.unique(np.concatenate([train[:, 0], test[:, 0], trust.ravel()]))
    return Dataset(
        name="lastfm",
        user_ids=users,
        item_ids=np.unique(np.concatenate([train[:, 1], test[:, 1]])),
        train_user=train[:, 0].copy(),
        train_item=train[:, 1].copy(),
        train_weight=train_w[:, 0].astype(np.float32),
        test_user=test[:, 0].copy(),
        test_item=test[:, 1].copy(),
        follow_src=trust[:, 0].copy(),
        follow_dst=trust[:, 1].copy(),
    )


def _load_flickr(folder: Path) -> Dataset:
    links, _ = read_table(folder / "flickr.links", 3, min_cols=2)
    train, _ = read_table(folder / "flickr.train.rating", 3, min_cols=2)
    val, _ = read_table(folder / "flickr.val.rating", 3, min_cols=2)
    test, _ = read_table(folder / "flickr.test.rating", 3, min_cols=2)
    users = np.unique(np.concatenate([train[:, 0], val[:, 0], test[:, 0], links[:, 0], links[:, 1]]))
    return Dataset(
        name="flickr",
        user_ids=users,
        item_ids=np.unique(np.concatenate([train[:, 1], val[:, 1], test[:, 1]])),
        train_user=train[:, 0].copy(),
        train_item=train[:, 1].copy(),
        train_weight=np.ones(len(train), dtype=np.float32),
        val_user=val[:, 0].copy(),
        val_item=val[:, 1].copy(),
        test_user=test[:, 0].copy(),
        test_item=test[:, 1].copy(),
        follow_src=links[:, 0].copy(),
        follow_dst=links[:, 1].copy(),
    )


def dataset_snapshot(ds: Dataset, splits: tuple[str, ...] = ("train",), *, with_follows: bool = True):
    """Build a :class:`~graph.snapshot.GraphSnapshot` from the chosen splits of ``ds``.

    Every user and item of the dataset is a node even if it has no edge in the
    chosen splits, so dense indices agree across splits.
    """
    from graph.schema import KINDS
    from graph.snapshot import build_snapshot

    unknown = set(splits) - {"train", "val", "test"}
    if unknown:
        raise InputError(f"unknown split(s) {sorted(unknown)}; choose from train, val, test")
    users = [getattr(ds, f"{s}_user") for s in splits]
    items = [getattr(ds, f"{s}_item") for s in splits]
    weights = [
        ds.train_weight if s == "train" else np.ones(len(u), np.float32) for s, u in zip(splits, users)
    ]
    eu = np.concatenate(users) if users else _EMPTY
    et = np.concatenate(items) if items else _EMPTY
    fsrc = ds.follow_src if with_follows else _EMPTY
    fdst = ds.follow_dst if with_follows else _EMPTY
    return build_snapshot(
        user_ids=ds.user_ids,
        tweet_ids=ds.item_ids,
        follow_src=fsrc,
        follow_dst=fdst,
        follow_ts=np.zeros(len(fsrc), np.int64),
        eng_user=eu,
        eng_tweet=et,
        eng_kind=np.full(len(eu), KINDS["engage"], np.int8),
        eng_ts=np.zeros(len(eu), np.int64),
        eng_weight=np.concatenate(weights) if weights else np.zeros(0, np.float32),
        tweet_author=np.full(len(ds.item_ids), -1, np.int64),
        tweet_created=np.zeros(len(ds.item_ids), np.int64),
    )
