"""Embedding methods for ``graphrec evaluate`` (the shared method contract).

``LightGCNMethod`` (name ``lightgcn``) and ``SageMethod`` (name ``sage``) train with their
default settings on the training snapshot, or reuse a matching artifact from ``cache_dir``
(same snapshot, task and settings), then rank all targets by dot product of the user and
target vectors with the user's training items left out.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from gnn.ranking import topk_scores
from graph.errors import InputError
from graph.snapshot import GraphSnapshot
from graph.tasks import TASKS, check_task, exclusion_matrix

log = logging.getLogger(__name__)

#: Where ``graphrec evaluate`` keeps and looks for trained embeddings (None / "" disables it).
DEFAULT_CACHE = ".graphrec/embeddings"


class _EmbeddingMethod:
    name = ""
    tasks: tuple[str, ...] = TASKS
    model_kind = ""

    def __init__(
        self, *, seed: int = 0, cache_dir: str | None = DEFAULT_CACHE, threads: int | None = None, **params
    ):
        from gnn.pipeline import split_params

        params = {**self.defaults(), **params, "seed": seed}
        params.setdefault("progress", False)
        split_params(params)  # unknown or invalid parameters fail here, not after training
        self.params = params
        self.seed = seed
        # "none" / "" (e.g. `--param cache_dir=none` on the command line) disables the cache
        self.cache_dir = (
            None if cache_dir is None or str(cache_dir).lower() in ("", "none", "null") else str(cache_dir)
        )
        self.threads = threads
        self.user_vectors = self.target_vectors = None
        self.exclude = None
        self.artifact: Path | None = None

    @classmethod
    def defaults(cls) -> dict:
        return {}

    def _settings(self) -> dict:
        from gnn.pipeline import split_params

        mp, tc = split_params(self.params)
        tc_d = asdict(tc)
        for k in ("progress", "device", "checkpoint_every"):  # no effect on the result
            tc_d.pop(k, None)
        return {"model": asdict(mp), "train": tc_d}

    def _fit(self, train: GraphSnapshot, task: str):
        raise NotImplementedError

    def fit(self, train: GraphSnapshot, task: str) -> _EmbeddingMethod:
        check_task(task, self.tasks)
        if self.threads:
            torch.set_num_threads(int(self.threads))
        self.task = task
        from gnn import artifacts

        art = None
        settings = self._settings()
        if self.cache_dir:
            path = artifacts.find_artifact(self.cache_dir, self.model_kind, train.snapshot_id, task, settings)
            if path is not None:
                art = artifacts.load_artifact(path, snapshot_id=train.snapshot_id)
                log.info("%s: reusing embeddings from %s", self.name, path)
                self.artifact = path
        if art is not None:
            users, tweets = np.asarray(art.user_vectors), np.asarray(art.tweet_vectors)
        else:
            res = self._fit(train, task)
            users, tweets = res.user_vectors, res.tweet_vectors
            if self.cache_dir:
                from gnn.job import save_embeddings

                self.artifact = save_embeddings(res, train, self.cache_dir, settings=settings)
        self.user_vectors = torch.from_numpy(np.ascontiguousarray(users, np.float32))
        targets = tweets if task == "tweets" else users
        self.target_vectors = torch.from_numpy(np.ascontiguousarray(targets, np.float32))
        self.exclude = exclusion_matrix(train, task)
        return self

    def recommend(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.user_vectors is None:
            raise InputError(f"{self.name}: call fit() before recommend()")
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        users = np.asarray(users, np.int64)
        if len(users) and (users.min() < 0 or users.max() >= len(self.user_vectors)):
            raise InputError(
                f"user indices must be in [0, {len(self.user_vectors)}), got {users.min()}..{users.max()}"
            )
        return topk_scores(self.user_vectors, self.target_vectors, users, k, self.exclude)


class LightGCNMethod(_EmbeddingMethod):
    """LightGCN on the joint user+tweet graph, spectral warm start, :data:`gnn.pipeline.LIGHTGCN_DEFAULTS`."""

    name = "lightgcn"
    model_kind = "lightgcn"

    @classmethod
    def defaults(cls) -> dict:
        from gnn.pipeline import LIGHTGCN_DEFAULTS

        return dict(LIGHTGCN_DEFAULTS)

    def _fit(self, train: GraphSnapshot, task: str):
        from gnn.pipeline import fit_lightgcn

        return fit_lightgcn(train, task, params=self.params)


class SageMethod(_EmbeddingMethod):
    """Inductive heterogeneous GraphSAGE over content and structural features."""

    name = "sage"
    model_kind = "sage"

    @classmethod
    def defaults(cls) -> dict:
        return {"n_layers": 2, "lr": 0.005, "batch_size": 16384}

    def _fit(self, train: GraphSnapshot, task: str):
        from gnn.pipeline import fit_sage

        return fit_sage(train, task, params=self.params)
