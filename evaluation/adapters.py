"""Evaluation adapters around the served pipeline: never a copy of it.

* :class:`RecommenderMethod` (``--method recommender``): exactly the
  :class:`~retrieval.recommender.Recommender` a user gets from a config (defaults, or
  ``--param config=FILE`` from ``graphrec tune``), fitted on the training split; its
  candidates are :meth:`~retrieval.recommender.Recommender.rank`, the served pipeline.
* :class:`HybridMethod` (``--method hybrid``): the same recommender with its weights tuned
  on a validation carve of the training split first (``graphrec tune``).
* :class:`SourceMethod` and its subclasses (``pixie``, ``ppr``, ``salsa``, ``fof``, ``spectral``): one
  catalogue source alone, through the source contract.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from evaluation.scoring import check_k, check_users
from graph.errors import InputError
from graph.snapshot import GraphSnapshot
from graph.tasks import check_task, exclusion_matrix
from retrieval import sources, walk_sources
from retrieval.autotune import tune_config
from retrieval.recommender import Recommender, RecommenderConfig

log = logging.getLogger(__name__)


class RecommenderMethod:
    """The served recommender from ``config`` (a path to a tuned JSON config, or None for defaults)."""

    name = "recommender"
    tasks = ("tweets", "follows")
    batch_size = 1024

    def __init__(self, *, config: str | None = None, seed: int = 0):
        self.config_path = config
        self.config = RecommenderConfig.load(config) if config else RecommenderConfig(seed=seed)
        self.params = {"config": config, "seed": seed}
        self.timings = {"score_s": 0.0}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config_path!r})"

    def get_params(self) -> dict:
        return {**self.params, "weights": {t: self.config.weights(t) for t in self.tasks}}

    def _config_for(self, train: GraphSnapshot, task: str) -> RecommenderConfig:
        return self.config

    def fit(self, train: GraphSnapshot, task: str):
        check_task(task)
        self.task_ = task
        t0 = time.perf_counter()
        config = self._config_for(train, task)
        self.rec_ = Recommender(train, config=config, tasks=[task])
        self.config = config
        log.info("%s: fitted the recommender in %.1fs", self.name, time.perf_counter() - t0)
        return self

    def recommend(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "rec_"):
            raise InputError(f"method {self.name!r}: call fit() before recommend()")
        users = check_users(users, self.rec_.snap.n_users)
        k = check_k(k)
        ids = np.full((len(users), k), -1, np.int64)
        vals = np.zeros((len(users), k), np.float32)
        t0 = time.perf_counter()
        for lo in range(0, len(users), self.batch_size):
            ub = users[lo : lo + self.batch_size]
            ids[lo : lo + len(ub)], vals[lo : lo + len(ub)] = self.rec_.rank(self.task_, ub, k)
        self.timings["score_s"] += time.perf_counter() - t0
        return ids, vals


class HybridMethod(RecommenderMethod):
    """The served recommender with weights tuned on a validation carve of the training data."""

    name = "hybrid"

    def __init__(
        self,
        *,
        config: str | None = None,
        val_users: int = 4000,
        sources: tuple[str, ...] | None = None,
        seed: int = 0,
    ):
        super().__init__(config=config, seed=seed)
        self.val_users, self.sources = val_users, sources
        self.params.update(val_users=val_users, sources=sources)
        self.tuning_: dict = {}

    def _config_for(self, train: GraphSnapshot, task: str) -> RecommenderConfig:
        config, report = tune_config(
            train,
            base=self.config,
            tasks=[task],
            sources=self.sources,
            val_users=self.val_users,
            seed=self.config.seed,
        )
        self.tuning_ = report.get(task, {})
        return config

    def get_params(self) -> dict:
        params = super().get_params()
        if self.tuning_:
            params["tuning"] = self.tuning_
        return params


class SourceMethod:
    """One catalogue source alone, evaluated through the source contract."""

    name = ""
    tasks: tuple[str, ...] = ()
    source_cls: type = object

    def __init__(self, *, seed: int = 0, **params):
        self.params = params
        self.seed = seed
        self.source = self._make_source(seed, params)

    def _make_source(self, seed: int, params: dict):
        return self.source_cls(seed=seed, **params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    def get_params(self) -> dict:
        return {**self.params, "seed": self.seed}

    def fit(self, train: GraphSnapshot, task: str):
        check_task(task)
        if task not in self.tasks:
            raise InputError(f"method {self.name!r} supports task(s) {list(self.tasks)}, not {task!r}")
        self.source.fit(train)
        self.exclude_ = exclusion_matrix(train, task)
        self.n_users_ = train.n_users
        return self

    def recommend(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "exclude_"):
            raise InputError(f"method {self.name!r}: call fit() before recommend()")
        users = check_users(users, self.n_users_)
        return self.source.candidates(users, check_k(k), self.exclude_[users])


class PixieMethod(SourceMethod):
    """Pixie / UTEG tweet candidates (:func:`retrieval.walk_sources.pixie_candidates_batch`)."""

    name = "pixie"
    tasks = ("tweets",)
    source_cls = walk_sources.PixieSource
    param_grid = {"restart_prob": [0.5, 0.7], "beta": [0.0, 0.1, 0.2]}


class PPRMethod(SourceMethod):
    """Personalized PageRank who-to-follow (:func:`retrieval.walk_sources.ppr_candidates_batch`)."""

    name = "ppr"
    tasks = ("follows",)
    source_cls = walk_sources.PPRSource
    param_grid = {"restart_prob": [0.15, 0.3, 0.5], "direction": list(walk_sources.DIRECTIONS)}


class SalsaMethod(SourceMethod):
    """WTF SALSA who-to-follow (:func:`retrieval.walk_sources.salsa_candidates_batch`)."""

    name = "salsa"
    tasks = ("follows",)
    source_cls = walk_sources.SalsaSource
    param_grid = {
        "restart_prob": [0.1, 0.3, 0.5],
        "n_hubs": [50, 200],
        "direction": list(walk_sources.DIRECTIONS),
    }


class FriendsOfFriendsMethod(SourceMethod):
    """Friends-of-friends who-to-follow (:func:`retrieval.walk_sources.fof_candidates_batch`)."""

    name = "fof"
    tasks = ("follows",)
    param_grid = {"normalize": [False, True]}

    def _make_source(self, seed: int, params: dict):
        return walk_sources.FriendsOfFriendsSource(**params)  # deterministic: no seed


class SpectralMethod(SourceMethod):
    """The training-free spectral filter alone (:class:`retrieval.sources.SpectralSource`:
    ``--param filter=bspm`` or ``chebycf``), the hybrid's strongest tweet source."""

    name = "spectral"
    tasks = ("tweets",)
    source_cls = sources.SpectralSource
