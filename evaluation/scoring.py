"""Batched scoring shared by methods that score every item: mask training items, take the top k.

:class:`ScoringMethod` implements the method contract's ``recommend`` on top of a
``_score(users) -> (len(users), n_items)`` matrix, one batch of users at a time, with the
training items (and the user, for follows) masked from the snapshot's CSR arrays and the
top k found with ``np.argpartition``. No Python loop per user.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np

from graph.errors import InputError
from graph.ranking import mask_rows, top_k
from graph.snapshot import GraphSnapshot
from graph.tasks import check_task, exclusion_matrix
from graph.tasks import n_targets as n_items

log = logging.getLogger(__name__)


def check_users(users: np.ndarray, n_users: int) -> np.ndarray:
    """Users as an int64 array of valid dense indices, or :class:`InputError`."""
    users = np.asarray(users)
    if users.ndim != 1 or (users.size and users.dtype.kind not in "iu"):
        raise InputError(
            f"users must be a 1-d array of dense user indices, got shape {users.shape} dtype {users.dtype}"
        )
    users = users.astype(np.int64, copy=False)
    if users.size and (users.min() < 0 or users.max() >= n_users):
        bad = users[(users < 0) | (users >= n_users)][:5].tolist()
        raise InputError(f"user indices {bad} out of range [0, {n_users})")
    return users


def check_k(k: int) -> int:
    if not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)


class ScoringMethod:
    """Base class for methods that can score every item for a batch of users.

    Subclasses set ``name``/``tasks``, store hyper-parameters in ``__init__``, build their model
    in ``_fit(train, task)`` and return a dense float32 ``(len(users), n_items)`` matrix from
    ``_score(users)``. ``timings`` accumulates the seconds spent scoring and selecting.
    """

    name = ""
    tasks: tuple[str, ...] = ("tweets", "follows")
    #: hyper-parameter grid searched on validation data by ``--tune``; {} = nothing to tune
    param_grid: dict[str, list] = {}
    #: users scored per batch (memory: batch_size x n_items float32)
    batch_size = 2048

    def __init__(self, **params):
        self.params = params

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def get_params(self) -> dict:
        return dict(self.params)

    @classmethod
    def grid(cls, train: GraphSnapshot, task: str) -> list[dict]:
        """The configurations ``--tune`` tries (cartesian product of ``param_grid``)."""
        if not cls.param_grid:
            return []  # nothing to tune (not one empty configuration: that would fit the method for nothing)
        keys = list(cls.param_grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(cls.param_grid[k] for k in keys))]

    def fit(self, train: GraphSnapshot, task: str):
        check_task(task)
        if task not in self.tasks:
            raise InputError(f"method {self.name!r} supports task(s) {', '.join(self.tasks)}, not {task!r}")
        self.task_ = task
        self.n_users_ = train.n_users
        self.n_items_ = n_items(train, task)
        self.exclude_ = exclusion_matrix(train, task)
        self.timings = {"score_s": 0.0, "select_s": 0.0}
        self._fit(train, task)
        return self

    def _fit(self, train: GraphSnapshot, task: str) -> None:
        raise NotImplementedError

    def _score(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def recommend(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "exclude_"):
            raise InputError(f"method {self.name!r}: call fit() before recommend()")
        users = check_users(users, self.n_users_)
        k = check_k(k)
        ids = np.full((len(users), k), -1, dtype=np.int64)
        vals = np.full((len(users), k), -np.inf, dtype=np.float32)
        for start in range(0, len(users), self.batch_size):
            ub = users[start : start + self.batch_size]
            t0 = time.perf_counter()
            scores = np.array(self._score(ub), dtype=np.float32, copy=True)
            t1 = time.perf_counter()
            mask_rows(scores, self.exclude_[ub])
            ids[start : start + len(ub)], vals[start : start + len(ub)] = top_k(scores, k)
            t2 = time.perf_counter()
            self.timings["score_s"] += t1 - t0
            self.timings["select_s"] += t2 - t1
        return ids, vals
