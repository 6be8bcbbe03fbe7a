"""Loading the served recommender, and the facts a server reports about it.

Only the supervisor builds: :func:`build` may fit (``Recommender.from_artifacts`` runs the
parallel numba kernels), and a process forked after numba's threading layer started must not
start it again. Workers are forked from the supervisor with the model already in memory, so
they never load one; :func:`warm_up` first compiles (or loads from numba's cache) the serial
kernels a request runs, so every forked worker inherits them and its first request is as fast
as any other.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

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
    #: Where the live feeds start (partition -> offset): set when a compaction made the snapshot.
    start_offsets: dict[int, int] | None = None

    @classmethod
    def of(
        cls, rec: Recommender, generation: int, start_offsets: dict[int, int] | None = None
    ) -> LoadedModel:
        snap = rec.snap
        return cls(rec, snap.snapshot_id, generation, newest_event(snap), time.time(), start_offsets)


def newest_event(snap) -> int:
    """Seconds since the epoch of the snapshot's newest tweet or engagement (0: unknown)."""
    return max(
        int(np.asarray(snap.tweet_created).max(initial=0)),
        int(np.asarray(snap.eng_user_ts).max(initial=0)),
    )


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


def warm_up(rec: Recommender) -> float:
    """Run each call once for a known user (serial kernels only), with and without a live graph,
    so that forked workers inherit every compiled kernel; returns the seconds it took."""
    from graph.ingest import GraphColumns
    from graph.live import LiveGraph, compile_kernels

    t0 = time.perf_counter()
    compile_kernels()  # a live feed's first batch must not compile under the live graph's lock
    snap = rec.snap
    users = np.asarray(snap.user_ids)
    if not len(users):
        return time.perf_counter() - t0
    uid = int(users[0])
    rec.who_to_follow(uid, 20, explain=True)
    rec.tweet_candidates(uid, 50, explain=True)
    if rec.live is None and len(users) > 1:  # the live stage's code paths, on a throwaway live graph
        one, none = np.ones(1, np.int64), np.zeros(0, np.int64)
        tweets = np.asarray(snap.tweet_ids)[:1]
        live = LiveGraph(snap)
        live.add(
            GraphColumns(
                users=none,
                tweet_ids=none,
                tweet_authors=none,
                tweet_created=none,
                tweet_texts=None,
                follow_src=np.array([uid]),
                follow_dst=users[1:2],
                follow_ts=one,
                eng_user=np.array([uid])[: len(tweets)],
                eng_tweet=tweets,
                eng_kind=np.zeros(len(tweets), np.int8),
                eng_ts=one[: len(tweets)],
                eng_weight=np.ones(len(tweets), np.float32),
            )
        )
        rec.attach_live(live)
        try:
            rec.who_to_follow(uid, 20, explain=True)
            rec.tweet_candidates(uid, 50, explain=True)
        finally:
            rec.attach_live(None)
    return time.perf_counter() - t0
