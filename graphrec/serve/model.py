"""Loading the served recommender, and the facts a server reports about it.

Two ways in, for two kinds of process. :func:`build` may fit (``Recommender.from_artifacts``
runs the parallel numba kernels), so only the supervisor calls it: a process forked after
numba's threading layer started must not start it again. :func:`load_saved` only unpickles a
fitted model (``Recommender.load``), which is what the workers do on a reload.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphrec.serve.settings import ModelPaths
from retrieval.recommender import Recommender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A recommender being served, with its snapshot id and reload generation."""

    rec: Recommender
    snapshot_id: str
    generation: int
    newest_event: int  # seconds since the epoch of the snapshot's newest tweet or engagement; 0 = unknown
    loaded_at: float

    @classmethod
    def of(cls, rec: Recommender, generation: int) -> LoadedModel:
        snap = rec.snap
        newest = max(
            int(np.asarray(snap.tweet_created).max(initial=0)),
            int(np.asarray(snap.eng_user_ts).max(initial=0)),
        )
        return cls(rec, snap.snapshot_id, generation, newest, time.time())


def build(paths: ModelPaths) -> Recommender:
    """The recommender ``paths`` describe: the saved model bound to the snapshot, or a fit on it."""
    t0 = time.perf_counter()
    if paths.model is not None:
        rec = Recommender.load(paths.model, paths.snapshot)
    else:
        rec = Recommender.from_artifacts(
            paths.snapshot, embeddings_dir=paths.embeddings, config_path=paths.config
        )
    log.info(
        "%s recommender on snapshot %s in %.1fs",
        "loaded" if paths.model is not None else "fitted",
        rec.snap.snapshot_id,
        time.perf_counter() - t0,
    )
    return rec


def load_saved(model_dir: str | Path, snapshot_dir: str | Path) -> Recommender:
    """A fitted model saved by ``Recommender.save`` (no fitting: safe in forked workers)."""
    return Recommender.load(model_dir, snapshot_dir)
