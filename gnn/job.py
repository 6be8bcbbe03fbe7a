"""The batch embedding job behind ``graphrec embed``.

Reads a snapshot (a saved snapshot directory, a local store, or Neo4j through a bolt URI),
trains a model or fine-tunes one from a checkpoint, writes a versioned artifact
(:mod:`gnn.artifacts`) and, when the source is Neo4j, writes the embeddings back as node
properties with a vector index per label (:mod:`graph.embeddings_store`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gnn import artifacts, distributed
from gnn.pipeline import Embeddings
from graph.errors import GraphRecError, InputError
from graph.snapshot import GraphSnapshot

log = logging.getLogger(__name__)

MODELS = ("lightgcn", "sage")


class BelowPopularityError(GraphRecError):
    """The trained model does not beat popularity on its validation carve, so the job does not
    publish it (``allow_below_popularity`` / ``--allow-below-popularity`` overrides)."""


@dataclass
class EmbedReport:
    artifact: Path | None  # None on the ranks other than 0 of a data-parallel run: rank 0 writes
    version: str
    snapshot_id: str
    metrics: dict
    written: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def read_snapshot(source: str | Path, *, progress: bool = True):
    """(snapshot, description, open store or None) for a snapshot dir, a local store or a URI."""
    text = str(source)
    path = Path(text)
    if (path / "meta.json").is_file():
        snap = GraphSnapshot.load(path)
        return snap, {"source": str(path.resolve()), "kind": "snapshot"}, None
    from graph.export import export_snapshot
    from graph.store import open_store

    is_uri = "://" in text
    if not is_uri and not path.exists():
        raise InputError(f"--store {text}: no such snapshot, store directory or URI")
    store = open_store(text)
    try:
        snap = export_snapshot(store, progress=progress)
    except BaseException:
        store.close()
        raise
    where = text if is_uri else str(path.resolve())
    return snap, {"source": where, "kind": store.kind}, store


def save_embeddings(
    res: Embeddings,
    snap: GraphSnapshot,
    out_dir: str | Path,
    *,
    settings: dict | None = None,
    checkpoint: str | Path | None = None,
    snapshot_info: dict | None = None,
) -> Path:
    """Write ``res`` as a versioned artifact under ``out_dir``; returns the artifact directory."""
    settings = settings if settings is not None else _settings_of(res)
    extra = {}
    with tempfile.TemporaryDirectory() as tmp:
        if res.model_kind == "sage" and "pipeline" in res.extra:
            p = res.extra["pipeline"]
            f = Path(tmp) / "features.npz"
            np.savez(f, n_text=np.int64(p.n_text), idf=p.idf)
            extra["features.npz"] = f
        info = {**snap.stats(), **(snapshot_info or {})}
        return artifacts.save_artifact(
            out_dir,
            user_vectors=res.user_vectors,
            tweet_vectors=res.tweet_vectors,
            user_ids=np.asarray(snap.user_ids),
            tweet_ids=np.asarray(snap.tweet_ids),
            model_kind=res.model_kind,
            task=res.task,
            snapshot_id=snap.snapshot_id,
            settings=settings,
            metrics=res.metrics,
            snapshot_info=info,
            checkpoint=checkpoint,
            extra_files=extra,
        )


def _settings_of(res: Embeddings) -> dict:
    train = {
        k: v
        for k, v in res.config.get("train", {}).items()
        if k not in ("progress", "device", "checkpoint_every")
    }
    return {"model": res.config.get("model", {}), "train": train}


def train_embeddings(
    snap: GraphSnapshot,
    *,
    model: str = "lightgcn",
    task: str = "both",
    epochs: int | None = None,
    progress: bool = True,
    **params,
) -> Embeddings:
    """Train embeddings on an in-memory snapshot (no artifact, no store): for demos and notebooks."""
    from gnn.pipeline import fit_lightgcn, fit_sage

    if model not in MODELS:
        raise InputError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    if epochs is not None:
        params["epochs"] = epochs
    params.setdefault("progress", progress)
    fit = fit_lightgcn if model == "lightgcn" else fit_sage
    return fit(snap, task, params=params)


def run_embed(
    source: str | Path,
    model: str,
    out: str | Path,
    *,
    task: str = "both",
    params: dict | None = None,
    init_from: str | Path | None = None,
    resume: bool = False,
    write_back: bool | None = None,
    progress: bool = True,
    allow_below_popularity: bool = False,
) -> EmbedReport:
    """Run the whole job; ``write_back=None`` writes back exactly when the source is Neo4j.

    A model whose validation recall@k does not beat popularity's on the same validation carve
    (``beats_popularity`` in the artifact's ``metrics.json``) is not published: no artifact,
    no write-back, :class:`BelowPopularityError` (its checkpoint is kept, so ``resume=True``
    with ``allow_below_popularity=True`` publishes it without retraining).
    """
    from gnn.pipeline import fit_lightgcn, fit_sage

    if model not in MODELS:
        raise InputError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    t0 = time.perf_counter()
    params = dict(params or {})
    params.setdefault("progress", progress)
    snap, info, store = read_snapshot(source, progress=progress)
    try:
        if write_back and (store is None or store.kind != "neo4j"):
            raise InputError("--write-back needs a Neo4j source (a bolt:// or neo4j:// URI)")
        if init_from is not None:
            init_from = _checkpoint_path(init_from)
        out = Path(out)
        work = out / ".work"
        work.mkdir(parents=True, exist_ok=True)
        ckpt = work / f"{model}-{snap.snapshot_id}-{task}.pt"
        fit = fit_lightgcn if model == "lightgcn" else fit_sage
        res = fit(snap, task, params=params, checkpoint=ckpt, resume=resume, init_from=init_from)
        if init_from is not None:
            res.metrics["fine_tuned_from"] = str(init_from)
        _check_guard(res, allow_below_popularity)
        if distributed.rank_and_size()[0] != 0:  # data-parallel: rank 0 holds the same model and writes it
            return EmbedReport(None, "", snap.snapshot_id, res.metrics, {}, time.perf_counter() - t0)
        path = save_embeddings(res, snap, out, checkpoint=ckpt, snapshot_info=info)
        version = path.name
        written: dict[str, int] = {}
        if store is not None and store.kind == "neo4j" and write_back is not False:
            from graph.embeddings_store import write_embeddings

            written["User"] = write_embeddings(
                store, "User", snap.user_ids, res.user_vectors, version, progress=progress
            )
            written["Tweet"] = write_embeddings(
                store, "Tweet", snap.tweet_ids, res.tweet_vectors, version, progress=progress
            )
        ckpt.unlink(missing_ok=True)
    finally:
        if store is not None:
            store.close()
    return EmbedReport(path, version, snap.snapshot_id, res.metrics, written, time.perf_counter() - t0)


def _check_guard(res: Embeddings, allow: bool) -> None:
    """Refuse (:class:`BelowPopularityError`) a model that does not beat popularity on validation,
    unless ``allow``; then it is published with ``beats_popularity: false`` in its metrics."""
    if res.metrics.get("beats_popularity") is not False:
        return
    k = res.config.get("train", {}).get("k", 20)
    best, pop = res.metrics.get(f"val_recall@{k}"), res.metrics.get(f"popularity_val_recall@{k}")
    if allow:
        log.warning(
            "publishing a %s model below popularity (allowed): %.4f vs %.4f", res.model_kind, best, pop
        )
        return
    raise BelowPopularityError(
        f"the trained {res.model_kind} model does not beat popularity on its validation carve "
        f"(recall@{k} {best:.4f} vs popularity {pop:.4f}), so no artifact was published: its "
        "embeddings would rank worse than the most popular items. Pass --allow-below-popularity "
        "(with --resume: no retraining) to publish it anyway"
    )


def _checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or the ``checkpoint.pt`` of an artifact (or of an out dir's LATEST)."""
    path = Path(path)
    if path.is_file():
        return path
    art = artifacts.resolve(path)
    ck = art / "checkpoint.pt"
    if not ck.is_file():
        raise InputError(f"{art}: artifact has no checkpoint.pt to fine-tune from")
    return ck


def _normalized(train: dict) -> bool:
    """Whether a run scored by cosine (its vectors are L2-normalised), from its training settings."""
    return train.get("loss", "softmax") in ("softmax", "full_softmax") and train.get("cosine", True)


def load_sage(path: str | Path) -> Embeddings:
    """Rebuild a trained SAGE model from its artifact, for inductive embedding of new nodes
    (:func:`gnn.pipeline.embed_snapshot_inductive`)."""
    from gnn.checkpoints import read_checkpoint
    from gnn.features import FeaturePipeline
    from gnn.models import HeteroSAGE

    art = artifacts.load_artifact(path)
    if art.config["model"] != "sage" or art.checkpoint is None:
        raise InputError(f"{art.path}: not a SAGE artifact with a checkpoint")
    state = read_checkpoint(art.checkpoint)
    cfg = dict(state["model_config"])
    model = HeteroSAGE(
        cfg.pop("n_users"),
        cfg.pop("n_tweets"),
        **{
            k: cfg[k]
            for k in (
                "n_text",
                "n_user_struct",
                "n_tweet_struct",
                "dim",
                "n_layers",
                "id_embeddings",
                "dropout",
            )
        },
    )
    model.load_state_dict(state["best_state"] or state["model_state"])
    f = np.load(art.path / "features.npz")
    pipeline = FeaturePipeline(n_text=int(f["n_text"]), idf=f["idf"])
    return Embeddings(
        user_vectors=np.asarray(art.user_vectors),
        tweet_vectors=np.asarray(art.tweet_vectors),
        model_kind="sage",
        task=art.config["task"],
        snapshot_id=art.snapshot_id,
        config={"normalized": _normalized(art.config["settings"]["train"]), **cfg},
        metrics=art.metrics,
        model=model,
        extra={
            "pipeline": pipeline,
            "user_ids": np.asarray(art.user_ids),
            "tweet_ids": np.asarray(art.tweet_ids),
        },
    )
