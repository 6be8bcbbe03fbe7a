"""Baselines for both tasks, all following the method contract (``fit`` / ``recommend``).

* ``popular``: item popularity (number of training users; in-degree for follows);
* ``itemknn``: item-item cosine on co-engagement with shrinkage, an asymmetry ``alpha`` and the
  top-K neighbours of each item kept; scores are sparse matrix products;
* ``userknn``: user-user cosine, the top-K most similar users vote with their similarity;
* ``als`` / ``bpr``: matrix factorisation with the ``implicit`` library (CPU, 2 threads);
* follows only: ``common-neighbors`` and ``adamic-adar`` (two-hop sparse products) and
  ``ppr-networkx`` (``networkx.pagerank`` personalised on each user; the oracle, small graphs only).

For the follows task the items are users and the training matrix is the follow adjacency
(row = follower). Each class has a ``param_grid`` that ``--tune`` searches on validation data.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import scipy.sparse as sp

from evaluation.scoring import ScoringMethod, check_k, check_users
from graph.errors import InputError
from graph.ranking import mask_rows, prune_rows, top_k
from graph.snapshot import GraphSnapshot
from graph.tasks import TASK_FOLLOWS, TASK_TWEETS, interaction_matrix
from retrieval.sources import user_neighbours

log = logging.getLogger(__name__)

WEIGHTINGS = ("binary", "log", "raw")


def _weighted(train: GraphSnapshot, task: str, weighting: str) -> sp.csr_matrix:
    """Training matrix with the chosen weighting of engagement weights (follows are binary)."""
    if weighting not in WEIGHTINGS:
        raise InputError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    x = interaction_matrix(train, task, weighted=weighting != "binary")
    if weighting == "log":
        x.data = np.log1p(x.data).astype(np.float32)
    return x


def _has_weights(train: GraphSnapshot, task: str) -> bool:
    if task != TASK_TWEETS or train.n_engagements == 0:
        return False
    w = np.asarray(train.eng_user_weights)
    return bool(w.min() != w.max())


def _with_weightings(configs: list[dict], train: GraphSnapshot, task: str) -> list[dict]:
    """``--tune`` configurations: each of ``configs`` with binary and with log weighting when
    the training engagements carry weights, else ``configs`` as they are."""
    if _has_weights(train, task):
        return [dict(p, weighting=w) for p in configs for w in ("binary", "log")]
    return configs


class PopularMethod(ScoringMethod):
    """Most popular items (for follows: the most-followed accounts) not yet consumed."""

    name = "popular"

    def __init__(self, *, seed: int = 0):
        super().__init__(seed=seed)

    def _fit(self, train: GraphSnapshot, task: str) -> None:
        x = interaction_matrix(train, task)
        self.popularity_ = np.asarray(x.sum(axis=0)).ravel().astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(users), self.n_items_))


class ItemKNNMethod(ScoringMethod):
    """Item-based kNN: score(u, j) = sum over i in history(u) of sim(i, j).

    ``sim(i, j) = x_i . x_j / (|x_i|^(2 alpha) |x_j|^(2 (1 - alpha)) + shrink)`` over the columns
    of the (weighted) user-item matrix, ``alpha = 0.5`` being cosine; for each candidate j only
    its ``k_neighbors`` most similar items are kept.
    """

    name = "itemknn"
    param_grid = {"k_neighbors": [25, 50, 100, 200, 400], "shrink": [0.0, 10.0, 100.0], "alpha": [0.5, 0.7]}

    def __init__(
        self,
        *,
        k_neighbors: int = 400,
        shrink: float = 10.0,
        alpha: float = 0.7,
        weighting: str = "binary",
        block: int = 2048,
        seed: int = 0,
    ):
        if k_neighbors < 1:
            raise InputError(f"k_neighbors must be >= 1, got {k_neighbors}")
        if shrink < 0 or not 0.0 <= alpha <= 1.0:
            raise InputError(f"need shrink >= 0 and 0 <= alpha <= 1, got shrink={shrink}, alpha={alpha}")
        super().__init__(
            k_neighbors=k_neighbors, shrink=shrink, alpha=alpha, weighting=weighting, block=block, seed=seed
        )

    @classmethod
    def grid(cls, train: GraphSnapshot, task: str) -> list[dict]:
        return _with_weightings(super().grid(train, task), train, task)

    def _fit(self, train: GraphSnapshot, task: str) -> None:
        p = self.params
        x = _weighted(train, task, p["weighting"])
        xt = x.T.tocsr()  # items x users
        norms_sq = np.asarray(xt.multiply(xt).sum(axis=1)).ravel()
        left = np.power(norms_sq, p["alpha"])  # |x_i|^(2 alpha), i = history item
        right = np.power(norms_sq, 1.0 - p["alpha"])  # |x_j|^(2 (1 - alpha)), j = candidate
        n = xt.shape[0]
        blocks = []
        # rows j of W^T: the similarities of candidate j to every item i, pruned to the top K
        for start in range(0, n, p["block"]):
            stop = min(start + p["block"], n)
            c = (xt[start:stop] @ x).tocsr()  # co-occurrence, (candidates j) x (items i)
            rows = np.repeat(np.arange(stop - start), np.diff(c.indptr))
            c.data[c.indices == start + rows] = 0.0  # no self-similarity
            denom = left[c.indices] * right[start + rows] + p["shrink"]
            c.data = (c.data / np.maximum(denom, 1e-12)).astype(np.float32)
            c.eliminate_zeros()
            blocks.append(prune_rows(c, p["k_neighbors"]))
        # W[i, j] = sim(i, j): transpose so that scores = X_u @ W
        self.w_ = sp.vstack(blocks).T.tocsr()
        self.x_ = x

    def _score(self, users: np.ndarray) -> np.ndarray:
        return (self.x_[users] @ self.w_).toarray()


class UserKNNMethod(ScoringMethod):
    """User-based kNN: the ``k_neighbors`` most cosine-similar users vote with their similarity."""

    name = "userknn"
    param_grid = {"k_neighbors": [50, 100, 200, 400], "shrink": [0.0, 10.0, 100.0]}

    def __init__(
        self, *, k_neighbors: int = 100, shrink: float = 10.0, weighting: str = "binary", seed: int = 0
    ):
        if k_neighbors < 1 or shrink < 0:
            raise InputError(f"need k_neighbors >= 1 and shrink >= 0, got {k_neighbors}, {shrink}")
        super().__init__(k_neighbors=k_neighbors, shrink=shrink, weighting=weighting, seed=seed)

    @classmethod
    def grid(cls, train: GraphSnapshot, task: str) -> list[dict]:
        return _with_weightings(super().grid(train, task), train, task)

    def _fit(self, train: GraphSnapshot, task: str) -> None:
        self.x_ = _weighted(train, task, self.params["weighting"])
        self.xt_ = self.x_.T.tocsr()
        self.norms_ = np.sqrt(np.asarray(self.x_.multiply(self.x_).sum(axis=1)).ravel())

    def _score(self, users: np.ndarray) -> np.ndarray:
        p = self.params
        neighbours = user_neighbours(self.x_, self.xt_, self.norms_, users, p["k_neighbors"], p["shrink"])
        return (neighbours @ self.x_).toarray()


class _ImplicitMethod(ScoringMethod):
    """Shared code of the ``implicit`` factorisation models: fit, then score = U_u . V^T."""

    #: parameters handed to the model under their own names (``seed`` goes as ``random_state``)
    _model_params: tuple[str, ...] = ()

    @staticmethod
    def _model_class() -> type:
        raise NotImplementedError

    def _model(self):
        p = self.params
        return self._model_class()(**{name: p[name] for name in self._model_params}, random_state=p["seed"])

    def _fit(self, train: GraphSnapshot, task: str) -> None:
        from threadpoolctl import threadpool_limits

        x = _weighted(train, task, self.params.get("weighting", "binary"))
        # implicit parallelises itself; a multi-threaded BLAS underneath only oversubscribes the cores
        with threadpool_limits(1, "blas"):
            model = self._model()
            model.fit(x, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T


class ALSMethod(_ImplicitMethod):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) from the ``implicit`` library."""

    name = "als"
    param_grid = {"factors": [128, 256, 512], "regularization": [1.0, 10.0], "alpha": [1.0, 5.0, 20.0, 50.0]}
    #: factor counts ``grid`` picks from: the three largest <= min(n_users, n_items) / 8
    factor_choices = (32, 64, 128, 256, 512)
    _model_params = ("factors", "regularization", "alpha", "iterations", "num_threads")

    @classmethod
    def grid(cls, train: GraphSnapshot, task: str) -> list[dict]:
        n_items = train.n_tweets if task == TASK_TWEETS else train.n_users
        fit = [f for f in cls.factor_choices if f <= min(train.n_users, n_items) / 8] or [
            cls.factor_choices[0]
        ]
        grid = dict(cls.param_grid, factors=fit[-3:])
        keys = list(grid)
        configs = [dict(zip(keys, v)) for v in itertools.product(*(grid[k] for k in keys))]
        return _with_weightings(configs, train, task)

    def __init__(
        self,
        *,
        factors: int = 128,
        regularization: float = 10.0,
        alpha: float = 50.0,
        iterations: int = 15,
        weighting: str = "binary",
        num_threads: int = 2,
        seed: int = 0,
    ):
        super().__init__(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            weighting=weighting,
            num_threads=num_threads,
            seed=seed,
        )

    @staticmethod
    def _model_class() -> type:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares


class BPRMethod(_ImplicitMethod):
    """Bayesian personalised ranking (Rendle et al. 2009) from the ``implicit`` library.

    Hogwild SGD over ``num_threads`` threads, so runs are reproducible only with one thread.
    """

    name = "bpr"
    # implicit's BPR draws each negative from the training interactions, i.e. in proportion to item
    # popularity (bpr.pyx: ``disliked_id = itemids[rng.generate(...)]``), not uniformly as in the
    # BPR paper; on gowalla that costs a lot of recall (see docs/bench_evaluation.md).
    param_grid = {
        "factors": [128],
        "learning_rate": [0.005, 0.01, 0.02],
        "regularization": [0.001, 0.01],
        "iterations": [300],
    }
    _model_params = ("factors", "learning_rate", "regularization", "iterations", "num_threads")

    def __init__(
        self,
        *,
        factors: int = 128,
        learning_rate: float = 0.005,
        regularization: float = 0.01,
        iterations: int = 300,
        num_threads: int = 2,
        seed: int = 0,
    ):
        super().__init__(
            factors=factors,
            learning_rate=learning_rate,
            regularization=regularization,
            iterations=iterations,
            num_threads=num_threads,
            seed=seed,
        )

    @staticmethod
    def _model_class() -> type:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking


# ---------------------------------------------------------------------------
# who to follow: neighbourhood heuristics


def _neighbour_matrix(a: sp.csr_matrix, mode: str) -> sp.csr_matrix:
    """Follow adjacency (``mode="out"``: u -> v when u follows v) or its symmetrisation."""
    if mode == "out":
        return a
    if mode == "undirected":
        s = (a + a.T).tocsr()
        s.data[:] = 1.0
        return s
    raise InputError(f"mode must be 'out' or 'undirected', got {mode!r}")


class CommonNeighborsMethod(ScoringMethod):
    """score(u, v) = number of two-hop paths u -> w -> v.

    ``mode="out"``: w is an account u follows and w follows v (friends of friends);
    ``mode="undirected"``: common neighbours ignoring edge direction.
    """

    name = "common-neighbors"
    tasks = (TASK_FOLLOWS,)
    param_grid = {"mode": ["out", "undirected"]}

    def __init__(self, *, mode: str = "undirected", seed: int = 0):
        _neighbour_matrix(sp.csr_matrix((1, 1)), mode)
        super().__init__(mode=mode, seed=seed)

    def _hop_weights(self, n: sp.csr_matrix) -> np.ndarray:
        return np.ones(n.shape[0], dtype=np.float32)

    def _fit(self, train: GraphSnapshot, task: str) -> None:
        n = _neighbour_matrix(interaction_matrix(train, task), self.params["mode"])
        self.first_ = n
        self.second_ = (sp.diags(self._hop_weights(n)) @ n).tocsr()

    def _score(self, users: np.ndarray) -> np.ndarray:
        return (self.first_[users] @ self.second_).toarray()


class AdamicAdarMethod(CommonNeighborsMethod):
    """Adamic-Adar: each two-hop path through w counts 1 / log(degree of w).

    The degree is w's number of neighbours in the graph the paths run on (in + out follows for
    ``mode="out"``, distinct neighbours for ``mode="undirected"``), at least 2.
    """

    name = "adamic-adar"

    def _hop_weights(self, n: sp.csr_matrix) -> np.ndarray:
        if self.params["mode"] == "out":
            deg = np.diff(n.indptr) + np.asarray(n.sum(axis=0)).ravel()
        else:
            deg = np.diff(n.indptr)
        return (1.0 / np.log(np.maximum(deg, 2))).astype(np.float32)


class PPRNetworkxMethod:
    """Personalised PageRank from ``networkx.pagerank``, one call per user (the oracle).

    The walk follows follow edges from the user and restarts there with probability
    ``1 - damping``. One full power iteration over the graph per user, so it refuses graphs
    above ``max_nodes`` nodes, and ``fit`` times a few calls to set ``max_eval_users`` (the runner
    then evaluates a seeded sample of users, and says so) so that ranking stays within
    ``time_budget_s``. Pass ``max_eval_users`` to fix the sample size instead.
    """

    name = "ppr-networkx"
    tasks = (TASK_FOLLOWS,)
    param_grid = {"damping": [0.5, 0.7, 0.85]}

    def __init__(
        self,
        *,
        damping: float = 0.5,
        tol: float = 1e-6,
        max_iter: int = 100,
        max_nodes: int = 20_000,
        time_budget_s: float = 90.0,
        max_eval_users: int | None = None,
        seed: int = 0,
    ):
        if not 0.0 < damping < 1.0:
            raise InputError(f"damping must be in (0, 1), got {damping}")
        self.params = dict(
            damping=damping,
            tol=tol,
            max_iter=max_iter,
            max_nodes=max_nodes,
            time_budget_s=time_budget_s,
            max_eval_users=max_eval_users,
            seed=seed,
        )
        self.max_eval_users = max_eval_users

    def __repr__(self) -> str:
        return f"PPRNetworkxMethod({self.params})"

    @classmethod
    def grid(cls, train: GraphSnapshot, task: str) -> list[dict]:
        return [{"damping": d} for d in cls.param_grid["damping"]]

    def get_params(self) -> dict:
        return dict(self.params)

    def _pagerank(self, u: int) -> dict:
        import networkx as nx

        return nx.pagerank(
            self.graph_,
            alpha=self.params["damping"],
            personalization={u: 1.0},
            tol=self.params["tol"],
            max_iter=self.params["max_iter"],
        )

    def fit(self, train: GraphSnapshot, task: str) -> PPRNetworkxMethod:
        import networkx as nx

        from graph.tasks import exclusion_matrix

        if task not in self.tasks:
            raise InputError(f"method {self.name!r} supports task(s) {', '.join(self.tasks)}, not {task!r}")
        if train.n_users > self.params["max_nodes"]:
            raise InputError(
                f"ppr-networkx: the graph has {train.n_users:,} users, above max_nodes={self.params['max_nodes']:,}; "
                "networkx runs one full PageRank per user. Use the compiled walk method 'ppr' instead, "
                "or raise --param max_nodes=N if you can wait"
            )
        a = interaction_matrix(train, task)
        self.graph_ = nx.from_scipy_sparse_array(a, create_using=nx.DiGraph)
        self.exclude_ = exclusion_matrix(train, task)
        self.n_users_ = train.n_users
        self.timings = {"score_s": 0.0, "select_s": 0.0}
        if self.params["max_eval_users"] is None:
            probe = np.random.default_rng(self.params["seed"]).choice(
                train.n_users, size=min(3, train.n_users), replace=False
            )
            t0 = time.perf_counter()
            for u in probe.tolist():
                self._pagerank(u)
            per_user = (time.perf_counter() - t0) / max(len(probe), 1)
            self.max_eval_users = max(50, int(self.params["time_budget_s"] / max(per_user, 1e-6)))
            log.info(
                "ppr-networkx: %.3fs per user, evaluating at most %d users", per_user, self.max_eval_users
            )
        return self

    def recommend(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        users = check_users(users, self.n_users_)
        k = check_k(k)
        t0 = time.perf_counter()
        scores = np.zeros((len(users), self.n_users_), dtype=np.float32)
        for row, u in enumerate(users.tolist()):  # one PageRank per user: this is the oracle
            pr = self._pagerank(u)
            scores[row, list(pr.keys())] = list(pr.values())
        t1 = time.perf_counter()
        mask_rows(scores, self.exclude_[users])
        out = top_k(scores, k)
        self.timings["score_s"] += t1 - t0
        self.timings["select_s"] += time.perf_counter() - t1
        return out
