"""Tune the recommender's source weights on validation data carved from its own snapshot.

:func:`tune_config` carves 20% of each user's history out of the snapshot
(:func:`graph.carve.carve_validation`), builds the :class:`~retrieval.recommender.Recommender`
a user would get on the rest (same catalogue, same depth, same fusion normalisation), caches
each source's normalised lists for a sample of validation users, and picks the weights that
maximise recall@k on the held-out items (:func:`retrieval.tuning.coordinate_ascent`); every
weight change must also pay on a second, leave-one-out carve (one held-out item per user,
another seed), built the same way. The
result is a :class:`~retrieval.recommender.RecommenderConfig`, saved as JSON by
``graphrec tune``.

The embedding source is not tuned: embeddings are trained on the whole snapshot,
validation edges included, so scoring it on this carve would overrate it. Its gate is the
model's own validation: the embedding job measures the model against popularity on a carve
the model never trained on (``beats_popularity`` in the artifact's metrics). Given those
metrics (``embedding_metrics``), a model that does not beat popularity has its source
switched off (weight 0), with the reason in the config's ``switched_off``; otherwise the
source keeps its configured weight.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from graph.carve import carve_validation
from graph.errors import GraphRecError
from graph.snapshot import GraphSnapshot
from graph.tasks import TASK_TWEETS, TASKS, check_task, exclusion_matrix
from retrieval.catalogue import source_names, tunable
from retrieval.recommender import Recommender, RecommenderConfig
from retrieval.tuning import SHIFT_TILT, Carve, coordinate_ascent, popularity_weights

log = logging.getLogger(__name__)


def tune_config(
    snap: GraphSnapshot,
    *,
    base: RecommenderConfig | None = None,
    tasks: Sequence[str] = TASKS,
    sources: Sequence[str] | None = None,
    val_users: int = 2000,
    k: int = 20,
    seed: int = 0,
    batch_size: int = 1024,
    embedding_metrics: Mapping | None = None,
    shift_view: bool = True,
    replicate: bool = True,
) -> tuple[RecommenderConfig, dict]:
    """Source weights for ``tasks`` tuned on a validation carve of ``snap``; returns (config, report).

    ``sources`` limits the sources tried (default: every tunable catalogue source). Weights of
    tasks not tuned (or without data) and of untunable sources (embeddings) come from
    ``base``. The report holds, per task, the weights, the fused and single-source validation
    recall@k, the number of validation users and the seconds spent.

    ``shift_view``: gate every weight change on the popularity-weighted view as well
    (:mod:`retrieval.tuning`); False keeps the plain gate. ``replicate``: every weight change
    must also hold on a second, leave-one-out carve (seed ``seed + 1``; see the module docstring).

    ``embedding_metrics``: the ``metrics.json`` of the embedding artifact the recommender
    will serve (``Artifact.metrics``); see the module docstring.
    """
    config = base or RecommenderConfig()
    if val_users < 1:
        raise GraphRecError(f"val_users must be >= 1, got {val_users}")
    report: dict[str, dict] = {}
    for task in tasks:
        check_task(task)
        config = _gate_embedding(config, task, embedding_metrics, report.setdefault(task, {}))
        if not (snap.n_engagements if task == TASK_TWEETS else snap.n_follows):
            what = "engagements" if task == TASK_TWEETS else "follows"
            report[task]["skipped"] = f"the snapshot has no {what}"
            continue
        t0 = time.perf_counter()
        names = [n for n in (sources or source_names(task)) if tunable(task, n)]
        trial_config = config.with_weights(task, {n: 1.0 for n in names})
        main, why = _carve(snap, task, trial_config, val_users, seed, batch_size, shift_view, {})
        if main is None:
            report[task]["skipped"] = why
            continue
        replicas = []
        if replicate:
            replica, _ = _carve(
                snap, task, trial_config, val_users, seed + 1, batch_size, shift_view, {"leave_out": 1}
            )
            if replica is not None:
                replicas.append(replica)
        tuned, fused, single = coordinate_ascent(
            main.cands, main.truth, k=k, item_weights=main.item_weights, replicas=replicas
        )
        kept = {n: w for n, w in config.weights(task).items() if not tunable(task, n)}
        config = config.with_weights(task, {**tuned, **kept})
        report[task] |= {
            "weights": tuned,
            f"val_recall@{k}": fused,
            f"single_source_val_recall@{k}": single,
            "val_users": int(main.truth.shape[0]),
            "replica_val_users": int(replicas[0].truth.shape[0]) if replicas else 0,
            "gate": _gate_name(shift_view, bool(replicas)),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        log.info("tuned %s weights %s (validation recall@%d %.4f)", task, tuned, k, fused)
    return config, report


def _carve(
    snap: GraphSnapshot,
    task: str,
    config: RecommenderConfig,
    val_users: int,
    seed: int,
    batch_size: int,
    shift_view: bool,
    carve_args: dict,
) -> tuple[Carve | None, str]:
    """One validation carve of ``snap`` with every source's lists for a seeded sample of its
    validation users; (None, why) when nobody has held-out items or no source can be fed."""
    val_train, truth = carve_validation(snap, task, seed=seed, **carve_args)
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    if not len(users):
        return None, "no user has enough items to hold some out"
    if len(users) > val_users:
        users = np.sort(np.random.default_rng(seed).choice(users, val_users, replace=False))
    trial = Recommender(val_train, config=config, tasks=[task], serving=False)  # plain sources
    lists = _source_lists(trial, task, users, batch_size)
    if not lists:
        return None, "no source can be fed by this snapshot"
    # The shifted view: held-out targets weighted by their popularity on the carved graph.
    shift = popularity_weights(exclusion_matrix(val_train, task)) if shift_view else None
    return Carve(lists, truth[users], shift), ""


def _gate_name(shift_view: bool, replicated: bool) -> str:
    views = "plain and popularity-weighted (tilt " + str(SHIFT_TILT) + ")" if shift_view else "plain"
    carves = "a 20% carve and a leave-one-out carve" if replicated else "one 20% carve"
    return f"{views} recall, 2 standard errors each, on {carves}"


def _gate_embedding(
    config: RecommenderConfig, task: str, metrics: Mapping | None, report: dict
) -> RecommenderConfig:
    """``config`` with ``task``'s embedding source switched off (weight 0, reason recorded) when
    ``metrics`` say the model does not beat popularity on its validation carve."""
    if metrics is None or not config.weights(task).get("embedding"):
        return config
    beats = metrics.get("beats_popularity")
    key = next((m for m in metrics if str(m).startswith("popularity_val_recall@")), None)
    if beats is None or key is None:
        report["embedding"] = "kept: the artifact has no validation check against popularity"
        return config
    k = key.rsplit("@", 1)[1]
    model, pop = metrics.get(f"val_recall@{k}"), metrics[key]
    figures = f"validation recall@{k} {model:.4f} vs popularity {pop:.4f}"
    if beats:
        report["embedding"] = f"kept: beats popularity on its validation carve ({figures})"
        return config
    reason = f"does not beat popularity on its validation carve ({figures})"
    log.warning("switching the %s embedding source off: it %s", task, reason)
    report["embedding"] = f"switched off: {reason}"
    switched = {t: dict(r) for t, r in config.switched_off.items()}
    switched.setdefault(task, {})["embedding"] = reason
    return dataclasses.replace(
        config.with_weights(task, {**config.weights(task), "embedding": 0.0}), switched_off=switched
    )


def _source_lists(
    rec: Recommender, task: str, users: np.ndarray, batch_size: int
) -> dict[str, sp.csr_matrix]:
    """Each source's normalised lists for ``users`` (rows aligned), computed in batches."""
    blocks: dict[str, list[sp.csr_matrix]] = {}
    for lo in range(0, len(users), batch_size):
        for name, m in rec.source_lists(task, users[lo : lo + batch_size]).items():
            blocks.setdefault(name, []).append(m)
    return {name: sp.vstack(ms, format="csr") for name, ms in blocks.items()}
