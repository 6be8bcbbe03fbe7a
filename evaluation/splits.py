"""Evaluation protocols: the training snapshot and the held-out (user, item) pairs.

Every protocol yields a test split and a validation split. The validation split is carved from
training data only (never from test) and is what tuning looks at; its training snapshot is the
test-time training data minus the validation pairs.

========  =======  ========================================================================
dataset   task     protocol (default ``split``)
========  =======  ========================================================================
gowalla   tweets   ``fixed``: the shipped train.txt / test.txt (the LightGCN split)
lastfm    tweets   ``fixed``: data1.txt / test1.txt
flickr    tweets   ``fixed``: the shipped train / val / test; tuning uses the shipped val, the
                   final model is fitted on train + val
lastfm    follows  ``holdout``: 20% of each user's friendships (undirected: both directions held out)
flickr    follows  ``holdout``: 20% of each user's follow edges (directed)
synthetic tweets   ``holdout`` (20% of each user's engaged tweets) or ``time`` (the last 20% of time)
synthetic follows  ``holdout`` or ``time``
========  =======  ========================================================================

``holdout``: per user with d edges, floor(0.2 d + 0.5) chosen uniformly at random (seeded) are
held out, so users with at most two edges keep all of them and every user keeps at least two.
For an undirected graph (every edge stored both ways, e.g. lastfm friendships) each friendship
is assigned to one endpoint at random, the per-user rule runs on the assigned edges, and a held
out friendship leaves training in both directions and is a test pair in both directions; a user
who would lose all friendships keeps them. ``time``: the cut is the 80% quantile of the task's
timestamps; training holds everything (follows and engagements) up to it, test the task's edges
after it; test users without training items (new users) are left out and counted.

Validation is carved from the training part with the same rule (for ``fixed`` splits without
a shipped validation file: 20% of each user's training items). Test pairs that are training
items (or the user themself, for follows) are dropped: they can never be recommended.

A fixed split whose test users have no training items raises :class:`InputError` unless
``cold_users`` says what to do: ``"drop"`` leaves them out, ``"keep"`` evaluates them anyway.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from graph.carve import holdout_per_user, holdout_undirected, is_symmetric
from graph.errors import InputError
from graph.snapshot import GraphSnapshot
from graph.tasks import TASK_FOLLOWS, TASK_TWEETS, check_task, exclusion_matrix
from graph.tasks import n_targets as n_items

log = logging.getLogger(__name__)

DATASET_NAMES = ("gowalla", "lastfm", "flickr", "synthetic")
SPLIT_KINDS = ("default", "fixed", "holdout", "time")
COLD_POLICIES = ("error", "drop", "keep")
HOLDOUT_FRACTION = 0.2


@dataclass
class Split:
    """One train / held-out pair: what a method is fitted on and what it must find."""

    name: str  # "test" or "val"
    train: GraphSnapshot
    users: np.ndarray  # dense user indices that are evaluated, sorted, int64
    truth: sp.csr_matrix  # len(users) x n_items: the held-out items of each evaluated user
    exclude: sp.csr_matrix  # n_users x n_items: training items (+ self for follows), never recommended

    @property
    def n_pairs(self) -> int:
        return int(self.truth.nnz)

    def n_candidates(self) -> np.ndarray:
        """Rankable items per evaluated user (catalogue minus excluded)."""
        excl = np.diff(self.exclude.indptr)[self.users]
        return self.truth.shape[1] - excl

    def subsample_users(self, max_users: int | None, seed: int) -> Split:
        """The same split restricted to at most ``max_users`` users (seeded, sorted)."""
        if max_users is None or len(self.users) <= max_users:
            return self
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(self.users), size=max_users, replace=False))
        return dataclasses.replace(self, users=self.users[pick], truth=self.truth[pick])


@dataclass
class Protocol:
    """The test and validation splits of one dataset and task, with a description."""

    dataset: str
    task: str
    split: str
    seed: int
    test: Split
    val: Split
    description: str
    notes: list[str] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        return self.test.truth.shape[1]

    def info(self) -> dict:
        """JSON-friendly summary for result files."""
        return {
            "dataset": self.dataset,
            "task": self.task,
            "split": self.split,
            "seed": self.seed,
            "description": self.description,
            "n_users": self.test.train.n_users,
            "n_items": self.n_items,
            "test_users": int(len(self.test.users)),
            "test_pairs": self.test.n_pairs,
            "train_interactions": int(
                self.test.exclude.nnz - (self.test.train.n_users if self.task == TASK_FOLLOWS else 0)
            ),
            "val_users": int(len(self.val.users)),
            "val_pairs": self.val.n_pairs,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------
# pure split rules


def time_cutoff(ts: np.ndarray, fraction: float) -> int:
    """Timestamp t such that about ``fraction`` of ``ts`` lie strictly after it."""
    ts = np.asarray(ts, dtype=np.int64)
    if len(ts) == 0:
        raise InputError("time split: no timestamps")
    return int(np.quantile(ts, 1.0 - fraction, method="lower"))


# ---------------------------------------------------------------------------
# data sources: real datasets and the synthetic generator


class _Source:
    """External-id columns of one dataset plus a way to snapshot a subset of its edges."""

    name: str
    has_follows: bool
    has_time: bool
    fixed_tweet_split: bool
    shipped_val: bool

    # engagement rows, in a fixed order; ``eng_split`` labels them "train"/"val"/"test"
    eng_user: np.ndarray
    eng_item: np.ndarray
    eng_ts: np.ndarray
    eng_split: np.ndarray
    follow_src: np.ndarray
    follow_dst: np.ndarray
    follow_ts: np.ndarray

    def snapshot(self, eng_keep: np.ndarray, follow_keep: np.ndarray) -> GraphSnapshot:
        raise NotImplementedError


class _DatasetSource(_Source):
    def __init__(self, ds):
        self.ds = ds
        self.name = ds.name
        self.has_follows = ds.has_follows
        self.has_time = False
        self.fixed_tweet_split = True
        self.shipped_val = len(ds.val_user) > 0
        self.eng_user = np.concatenate([ds.train_user, ds.val_user, ds.test_user])
        self.eng_item = np.concatenate([ds.train_item, ds.val_item, ds.test_item])
        self.eng_ts = np.zeros(len(self.eng_user), np.int64)
        self.eng_split = np.repeat(
            np.array(["train", "val", "test"]), [len(ds.train_user), len(ds.val_user), len(ds.test_user)]
        )
        self._weights = np.concatenate(
            [ds.train_weight, np.ones(len(ds.val_user) + len(ds.test_user), np.float32)]
        ).astype(np.float32)
        self.follow_src, self.follow_dst = ds.follow_src, ds.follow_dst
        self.follow_ts = np.zeros(len(ds.follow_src), np.int64)

    def snapshot(self, eng_keep: np.ndarray, follow_keep: np.ndarray) -> GraphSnapshot:
        from graph.datasets import dataset_snapshot

        # The kept engagement rows all go in as "train" rows (weights preserved), so
        # dataset_snapshot builds one training snapshot with every user and item as a node.
        sub = dataclasses.replace(
            self.ds,
            train_user=self.eng_user[eng_keep],
            train_item=self.eng_item[eng_keep],
            train_weight=self._weights[eng_keep],
            follow_src=self.follow_src[follow_keep],
            follow_dst=self.follow_dst[follow_keep],
        )
        return dataset_snapshot(sub, ("train",), with_follows=True)


class _SyntheticSource(_Source):
    def __init__(self, graph, n_users: int, seed: int):
        self.g = graph
        self.name = "synthetic"
        self.n_users, self.seed = n_users, seed
        self.has_follows = True
        self.has_time = True
        self.fixed_tweet_split = False
        self.shipped_val = False
        self.eng_user, self.eng_item = graph.eng_user, graph.eng_tweet
        self.eng_ts = graph.eng_ts
        self.eng_split = np.full(len(graph.eng_user), "train")
        self.follow_src, self.follow_dst, self.follow_ts = graph.follow_src, graph.follow_dst, graph.follow_ts

    def snapshot(self, eng_keep: np.ndarray, follow_keep: np.ndarray) -> GraphSnapshot:
        g = self.g
        sub = dataclasses.replace(
            g,
            eng_user=g.eng_user[eng_keep],
            eng_tweet=g.eng_tweet[eng_keep],
            eng_kind=g.eng_kind[eng_keep],
            eng_ts=g.eng_ts[eng_keep],
            eng_weight=g.eng_weight[eng_keep],
            follow_src=g.follow_src[follow_keep],
            follow_dst=g.follow_dst[follow_keep],
            follow_ts=g.follow_ts[follow_keep],
        )
        return sub.snapshot()


def load_source(
    dataset: str, data_dir: str | Path | None, *, synthetic_users: int = 5000, seed: int = 0
) -> _Source:
    """Load a real dataset (from ``data_dir``) or generate the synthetic one."""
    if dataset not in DATASET_NAMES:
        raise InputError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
    if dataset == "synthetic":
        try:
            from graph.synthetic import generate
        except ImportError as exc:  # pragma: no cover - only in a checkout without the generator
            raise InputError(
                "--dataset synthetic needs graph.synthetic (the synthetic generator), which is not "
                f"available in this checkout ({exc}); use a real dataset instead"
            ) from None
        if synthetic_users < 10:
            raise InputError(f"synthetic_users must be at least 10, got {synthetic_users}")
        return _SyntheticSource(generate(n_users=synthetic_users, seed=seed), synthetic_users, seed)
    from graph.datasets import load_dataset

    if data_dir is None:
        raise InputError(f"dataset {dataset!r} needs --data-dir (the folder holding {dataset}/)")
    if not Path(data_dir).is_dir():
        raise InputError(
            f"--data-dir {data_dir}: no such directory; point it at the datasets folder (e.g. ../shared/datasets)"
        )
    return _DatasetSource(load_dataset(dataset, data_dir))


# ---------------------------------------------------------------------------
# protocol builder


def _pairs_to_truth(
    snap: GraphSnapshot,
    task: str,
    user_ext: np.ndarray,
    item_ext: np.ndarray,
    exclude: sp.csr_matrix,
) -> tuple[sp.csr_matrix, int]:
    """n_users x n_items held-out matrix in dense indices, minus excluded pairs; (matrix, n_dropped)."""
    u = snap.user_index(user_ext).astype(np.int64)
    i = (snap.tweet_index(item_ext) if task == TASK_TWEETS else snap.user_index(item_ext)).astype(np.int64)
    shape = (snap.n_users, n_items(snap, task))
    m = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    before = m.nnz
    m = (m - m.multiply(exclude)).tocsr()
    m.eliminate_zeros()
    m.sort_indices()
    return m, before - m.nnz


def _make_split(
    name: str,
    snap: GraphSnapshot,
    task: str,
    user_ext: np.ndarray,
    item_ext: np.ndarray,
    *,
    cold_users: str,
    where: str,
    notes: list[str],
) -> Split:
    exclude = exclusion_matrix(snap, task)
    full, dropped = _pairs_to_truth(snap, task, user_ext, item_ext, exclude)
    if dropped:
        notes.append(f"{where}: {dropped} held-out pairs were training items and were dropped")
    users = np.flatnonzero(np.diff(full.indptr) > 0).astype(np.int64)
    train_deg = np.diff(exclude.indptr) - (1 if task == TASK_FOLLOWS else 0)
    cold = users[train_deg[users] == 0]
    if len(cold):
        ext = snap.user_ids[cold[:5]].tolist()
        if cold_users == "error":
            raise InputError(
                f"{where}: {len(cold)} of {len(users)} {name} users have no training {task} "
                f"(user ids {ext}{' ...' if len(cold) > 5 else ''}), so no method can rank items from their "
                "history. Re-run with --cold-users drop to leave them out (recorded in the results), or "
                "--cold-users keep to evaluate them anyway"
            )
        if cold_users == "drop":
            users = np.setdiff1d(users, cold)
            notes.append(
                f"{where}: {len(cold)} {name} users without training {task} left out (--cold-users drop)"
            )
        else:
            notes.append(
                f"{where}: {len(cold)} {name} users without training {task} kept (--cold-users keep)"
            )
    return Split(name=name, train=snap, users=users, truth=full[users], exclude=exclude)


@dataclass
class _Carve:
    """What one split rule holds out: boolean masks over the task's edges (test and validation
    pairs) and the (engagement rows, follow rows) each training snapshot keeps."""

    test_rows: np.ndarray
    val_rows: np.ndarray
    test_keep: tuple[np.ndarray, np.ndarray]
    val_keep: tuple[np.ndarray, np.ndarray]
    where: tuple[str, str]  # how notes and errors name the test and the validation split
    description: str
    test_cold: str | None = None  # the test split's cold-user policy (None: the caller's)


def _task_edges(src: _Source, task: str) -> tuple[np.ndarray, np.ndarray]:
    """The (user, target) columns of the task's edges: follows, or engagements."""
    if task == TASK_FOLLOWS:
        return src.follow_src, src.follow_dst
    return src.eng_user, src.eng_item


def _fixed(src: _Source, rng: np.random.Generator) -> _Carve:
    """The shipped test split; validation shipped or carved from the shipped train split."""
    all_fol = np.ones(len(src.follow_src), bool)
    is_test = src.eng_split == "test"
    train_rows = ~is_test  # the final model trains on train (+ the shipped val)
    if src.shipped_val:
        val_rows = src.eng_split == "val"
        desc_val = "the shipped validation split; tuning models fit on the train split"
    else:
        tr = np.flatnonzero(src.eng_split == "train")
        val_rows = np.zeros(len(src.eng_user), bool)
        val_rows[tr[holdout_per_user(src.eng_user[tr], HOLDOUT_FRACTION, rng)]] = True
        desc_val = "20% of each user's training items (seeded), carved from train"
    description = (
        f"{src.name} shipped train/test split, all-item ranking with training items masked"
        + ("; final model fitted on train + val" if src.shipped_val else "")
        + f"; validation: {desc_val}"
    )
    return _Carve(
        is_test,
        val_rows,
        (train_rows, all_fol),
        (train_rows & ~val_rows, all_fol),
        ("test split", "validation split"),
        description,
    )


def _hold_follows(src: _Source, mask: np.ndarray, symmetric: bool, rng: np.random.Generator) -> np.ndarray:
    """Follow rows held out of those in ``mask`` (a friendship as one, for an undirected graph)."""
    rows = np.flatnonzero(mask)
    if symmetric:
        h = holdout_undirected(src.follow_src[rows], src.follow_dst[rows], HOLDOUT_FRACTION, rng)
    else:
        h = holdout_per_user(src.follow_src[rows], HOLDOUT_FRACTION, rng)
    out = np.zeros(len(src.follow_src), bool)
    out[rows[h]] = True
    return out


def _holdout_follows(src: _Source, rng: np.random.Generator) -> _Carve:
    symmetric = is_symmetric(src.follow_src, src.follow_dst)
    test_rows = _hold_follows(src, np.ones(len(src.follow_src), bool), symmetric, rng)
    val_rows = _hold_follows(src, ~test_rows, symmetric, rng)
    eng_train = src.eng_split != "test"  # side information: every non-test engagement
    description = (
        f"{src.name} follows: seeded hold-out of 20% of each user's "
        + ("friendships (undirected: both directions held out)" if symmetric else "follow edges")
        + "; validation: 20% of the remaining training edges; accounts already followed and the user masked"
    )
    return _Carve(
        test_rows,
        val_rows,
        (eng_train, ~test_rows),
        (eng_train, ~test_rows & ~val_rows),
        ("follow hold-out", "follow validation"),
        description,
    )


def _holdout_tweets(src: _Source, rng: np.random.Generator) -> _Carve:
    # hold out (user, tweet) pairs; every kind on a held-out pair leaves training
    all_fol = np.ones(len(src.follow_src), bool)
    n_t = int(src.eng_item.max(initial=0)) + 1
    pair = src.eng_user.astype(np.int64) * n_t + src.eng_item
    uniq, inverse = np.unique(pair, return_inverse=True)
    test_pair = holdout_per_user(uniq // n_t, HOLDOUT_FRACTION, rng)
    rest = np.flatnonzero(~test_pair)
    val_pair = np.zeros(len(uniq), bool)
    val_pair[rest[holdout_per_user(uniq[rest] // n_t, HOLDOUT_FRACTION, rng)]] = True
    test_rows, val_rows = test_pair[inverse], val_pair[inverse]
    return _Carve(
        test_rows,
        val_rows,
        (~test_rows, all_fol),
        (~test_rows & ~val_rows, all_fol),
        ("tweet hold-out", "tweet validation"),
        f"{src.name} tweets: seeded hold-out of 20% of each user's engaged tweets; "
        "validation: 20% of the remaining; engaged tweets masked",
    )


def _time(src: _Source, task: str) -> _Carve:
    """Test: the task's edges after the 80% time quantile; validation: the same rule before it."""
    ts = src.follow_ts if task == TASK_FOLLOWS else src.eng_ts
    cut = time_cutoff(ts, HOLDOUT_FRACTION)
    before = ts <= cut
    val_cut = time_cutoff(ts[before], HOLDOUT_FRACTION)
    description = (
        f"{src.name} {task}: time split, training = everything up to t={cut} (80% quantile of the "
        f"{task} timestamps), test = {task} after it; validation: the same rule inside training (t={val_cut})"
    )
    return _Carve(
        ~before,
        before & ~(ts <= val_cut),
        (src.eng_ts <= cut, src.follow_ts <= cut),
        (src.eng_ts <= val_cut, src.follow_ts <= val_cut),
        ("time split", "time validation"),
        description,
        test_cold="drop",
    )


def _carve(src: _Source, task: str, split: str, rng: np.random.Generator) -> _Carve:
    if split == "fixed":
        return _fixed(src, rng)
    if split == "time":
        return _time(src, task)
    return _holdout_follows(src, rng) if task == TASK_FOLLOWS else _holdout_tweets(src, rng)


def _splits(src: _Source, task: str, carve: _Carve, cold_users: str, notes: list[str]) -> tuple[Split, Split]:
    """The test and validation :class:`Split` of a carve."""
    users, items = _task_edges(src, task)
    test_snap = src.snapshot(*carve.test_keep)
    val_snap = src.snapshot(*carve.val_keep)
    where_test, where_val = (f"{src.name} {w}" for w in carve.where)
    test = _make_split(
        "test",
        test_snap,
        task,
        users[carve.test_rows],
        items[carve.test_rows],
        cold_users=carve.test_cold or cold_users,
        where=where_test,
        notes=notes,
    )
    val = _make_split(
        "val",
        val_snap,
        task,
        users[carve.val_rows],
        items[carve.val_rows],
        cold_users="drop",
        where=where_val,
        notes=notes,
    )
    return test, val


def _check_options(task: str, split: str, cold_users: str) -> None:
    check_task(task)
    if split not in SPLIT_KINDS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_KINDS)}")
    if cold_users not in COLD_POLICIES:
        raise InputError(
            f"unknown cold-users policy {cold_users!r}; choose one of {', '.join(COLD_POLICIES)}"
        )


def _resolve_split(src: _Source, task: str, split: str) -> str:
    """The split rule ``split`` names for this source and task (``default``: its usual one), or
    :class:`InputError` when the source cannot provide it."""
    if task == TASK_FOLLOWS and not src.has_follows:
        raise InputError(
            f"dataset {src.name!r} has no follow graph, so --task follows cannot be evaluated on it; "
            "use --task tweets, or a dataset with follows (lastfm, flickr, synthetic)"
        )
    shipped = task == TASK_TWEETS and src.fixed_tweet_split
    if split == "default":
        split = "fixed" if shipped else "holdout"
    if split == "fixed" and not shipped:
        raise InputError(
            f"--split fixed: {src.name} ships no fixed split for task {task!r}; use --split holdout"
            + (" or --split time" if src.has_time else "")
        )
    if split == "holdout" and shipped:
        raise InputError(
            f"--split holdout: {src.name} ships a fixed tweets split; use --split fixed (the default)"
        )
    if split == "time" and not src.has_time:
        raise InputError(
            f"--split time: {src.name} has no timestamps; use --split {'fixed' if task == TASK_TWEETS else 'holdout'}"
        )
    return split


def build_protocol(
    dataset: str,
    task: str,
    data_dir: str | Path | None = None,
    *,
    split: str = "default",
    seed: int = 0,
    cold_users: str = "error",
    synthetic_users: int = 5000,
    source: _Source | None = None,
) -> Protocol:
    """Build the test and validation splits of ``dataset`` for ``task`` (see the module docstring)."""
    _check_options(task, split, cold_users)
    src = (
        source
        if source is not None
        else load_source(dataset, data_dir, synthetic_users=synthetic_users, seed=seed)
    )
    split = _resolve_split(src, task, split)
    notes: list[str] = []
    carve = _carve(src, task, split, np.random.default_rng(seed))
    test, val = _splits(src, task, carve, cold_users, notes)
    if src.name == "synthetic":
        notes.append(f"synthetic graph: generate(n_users={src.n_users}, seed={src.seed})")
    if len(test.users) == 0:
        raise InputError(
            f"{src.name} {task} ({split} split): no test user has held-out items; nothing to evaluate"
        )
    log.info(
        "protocol %s/%s/%s: %d test users, %d test pairs, %d val users",
        src.name,
        task,
        split,
        len(test.users),
        test.n_pairs,
        len(val.users),
    )
    return Protocol(
        dataset=src.name,
        task=task,
        split=split,
        seed=seed,
        test=test,
        val=val,
        description=carve.description,
        notes=notes,
    )
