"""Train a model on a snapshot: wires data, model and trainer together (no I/O, no CLI).

:func:`fit_lightgcn` and :func:`fit_sage` carve the validation split, build the model on the
training edges, run the :class:`~gnn.trainer.Trainer`, then compute the final embeddings on
the whole training graph (validation edges put back: they are training data too, and a
propagation costs nothing to redo). Both return :class:`Embeddings`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from gnn.checkpoints import load_checkpoint, read_checkpoint
from gnn.data import (
    PairSet,
    carve_early_stopping,
    check_train_task,
    joint_adjacency,
    positives,
    task_relations,
)
from gnn.models import HeteroSAGE, LightGCN, spectral_init
from gnn.trainer import EmbeddingTask, TrainConfig, Trainer, embed
from graph.errors import InputError
from graph.snapshot import GraphSnapshot

log = logging.getLogger(__name__)


@dataclass
class ModelParams:
    """Model and data hyper-parameters (training-loop ones are in :class:`TrainConfig`)."""

    dim: int = 64
    n_layers: int = 3
    init: str = "spectral"  # lightgcn: "spectral" warm start or "random"
    init_scale: float = 1.0  # mean row norm of the spectral warm start
    # tau added to every degree in the normalisation the spectral warm start decomposes
    # (regularised spectral clustering; "mean": the mean degree; 0: the plain normalisation).
    # Without it, on sparse catalogues (most items seen once) the top eigenvectors sit on heavy
    # users' private tails and the warm start recommends those tails (docs/bench_gnn_sparse.md).
    init_degree_reg: float | str = "mean"
    follow_weight: float = 1.0  # weight of follow edges in the joint graph
    # lightgcn, LightGCN++ (Lee et al., RecSys 2024): the adjacency D^-a A D^-b with
    # a = norm_receiver, b = norm_sender (0.5 / 0.5 is LightGCN's); unit-length inputs to every
    # layer (normalize_layers); the ego layer's share of the layer sum (layer0_weight; None:
    # uniform, 1 / (n_layers + 1)).
    norm_receiver: float = 0.5
    norm_sender: float = 0.5
    normalize_layers: bool = False
    layer0_weight: float | None = None
    val_users: int = 5000
    val_share: float = 0.2
    # sage only
    n_text: int = 2**14
    id_embeddings: bool = True
    cold_share: float = 0.1  # share of tweets simulated as new each epoch
    cold_reveal: int = 2  # edges a simulated-new tweet keeps
    id_dropout: float = 0.1  # share of users whose ID embedding is hidden each epoch


#: LightGCN's training defaults, the recipe measured best on gowalla (BENCHMARKS.md, "GNN"):
#: BPR with 2 hard negatives per positive, each the best-scoring of 32 uniform draws (dynamic
#: negative sampling: several times the progress per epoch of uniform negatives; sampled
#: softmax learns fast but drifts from the test split), weight decay, AdamW's decoupled decay
#: of every row (without it test recall stalls at ~0.167 while validation keeps rising), early
#: stopping on a validation carve of 2,500 users, then 2 epochs on training plus validation
#: positives (the carve's edges are training data too), all within a 19-minute
#: budget so that a run with data loading stays within 20 minutes on 2 cores (on gowalla it
#: stops early, after about 10 minutes). (lr 0.03 halved on validation plateaus gets there
#: sooner but stalls lower; a cosine schedule from lr 0.02 stalls lower too.)
#: Sparse catalogues (issue 21, docs/bench_gnn_sparse.md): the spectral warm start decomposes
#: the degree-regularised normalisation (``ModelParams.init_degree_reg``) and the starting state
#: is validated before the first epoch (``TrainConfig.eval_start``); ``fit_lightgcn`` and
#: ``fit_sage`` then record whether the model beats popularity on the validation carve.
#: The ego layer keeps a fifth of the layer sum (``layer0_weight`` 0.2, LightGCN++'s gamma;
#: uniform is 0.25): test recall and NDCG above uniform at every epoch from the tenth on
#: gowalla, and at or above it on lastfm and the synthetic graph (issue 19).
LIGHTGCN_DEFAULTS: dict = {
    "loss": "bpr",
    "bpr_negatives": 2,
    "hard_negative_candidates": 32,
    "cosine": False,
    "lr": 0.01,
    "weight_decay": 1e-4,
    "decoupled_weight_decay": 0.2,
    "batch_size": 16384,
    "patience": 10,
    "refit_epochs": 2,
    "val_users": 2500,
    "time_budget_s": 1140.0,
    "layer0_weight": 0.2,
}


def split_params(params: dict) -> tuple[ModelParams, TrainConfig]:
    """Split a flat dict of options into model and training parameters; unknown keys are errors."""
    mp, tc = ModelParams(), TrainConfig()
    mnames, tnames = {f.name for f in fields(ModelParams)}, {f.name for f in fields(TrainConfig)}
    for key, value in params.items():
        if key in mnames:
            setattr(mp, key, value)
        elif key in tnames:
            setattr(tc, key, value)
        else:
            raise InputError(f"unknown parameter {key!r}; known: {', '.join(sorted(mnames | tnames))}")
    return mp, tc.validate()


@dataclass
class Embeddings:
    """Trained user and tweet vectors of one snapshot, plus how they were made."""

    user_vectors: np.ndarray
    tweet_vectors: np.ndarray
    model_kind: str
    task: str
    snapshot_id: str
    config: dict
    metrics: dict = field(default_factory=dict)
    model: torch.nn.Module | None = None
    extra: dict = field(default_factory=dict)  # e.g. the fitted feature pipeline

    def targets(self, task: str) -> np.ndarray:
        return self.tweet_vectors if task == "tweets" else self.user_vectors


def _fingerprint(snap: GraphSnapshot, task: str, kind: str) -> dict:
    return {
        "snapshot_id": snap.snapshot_id,
        "task": task,
        "model": kind,
        "n_users": snap.n_users,
        "n_tweets": snap.n_tweets,
    }


def _vocab(snap: GraphSnapshot) -> dict:
    return {"user_ids": np.asarray(snap.user_ids).copy(), "tweet_ids": np.asarray(snap.tweet_ids).copy()}


def _split(snap: GraphSnapshot, task: str, mp: ModelParams, seed: int) -> tuple[dict, dict, dict]:
    """All positives, training positives and validation positives by relation."""
    full = {"tweets": positives(snap, "tweets"), "follows": positives(snap, "follows")}
    train, val = dict(full), {}
    for i, rel in enumerate(task_relations(task)):
        train[rel], val[rel] = carve_early_stopping(
            full[rel], n_users=mp.val_users, share=mp.val_share, seed=seed + 7919 * i
        )
    return full, train, val


def _task_fields(snap: GraphSnapshot, task: str, kind: str, train: dict, val: dict, tc: TrainConfig) -> dict:
    """The :class:`EmbeddingTask` fields every model fills alike: the positives of each
    relation, the data fingerprint, normalisation and the id vocabularies."""
    relations = task_relations(task)
    return dict(
        train=[train[r] for r in relations],
        val=[val[r] for r in relations],
        fingerprint=_fingerprint(snap, task, kind),
        normalize=tc.loss in ("softmax", "full_softmax") and tc.cosine,
        vocab=_vocab(snap),
    )


def _train_and_embed(
    trainer: Trainer,
    etask: EmbeddingTask,
    snap: GraphSnapshot,
    mp: ModelParams,
    tc: TrainConfig,
    *,
    prep: float,
    run: dict,
    final_graph: Callable[[], None],
    **fields,
) -> Embeddings:
    """Train (``run``: checkpoint, resume, on_eval), switch the model to the whole training
    graph (``final_graph``), embed every node. ``fields``: further :class:`Embeddings` fields."""
    result = trainer.fit(etask, **run)
    final_graph()
    emb = embed(etask).cpu().numpy()
    metrics = result.to_dict()
    metrics["prepare_seconds"] = round(prep, 3)
    metrics["device"] = str(trainer.device)
    metrics.update(validation_guard(result, tc.k, etask.fingerprint["model"]))
    nu = snap.n_users
    return Embeddings(
        user_vectors=np.ascontiguousarray(emb[:nu]),
        tweet_vectors=np.ascontiguousarray(emb[nu:]),
        model_kind=etask.fingerprint["model"],
        task=etask.fingerprint["task"],
        snapshot_id=snap.snapshot_id,
        config={
            "model": asdict(mp),
            "train": asdict(tc),
            "normalized": etask.normalize,
            **etask.model.config(),
        },
        metrics=metrics,
        model=etask.model,
        **fields,
    )


def validation_guard(result, k: int = 20, model: str = "model") -> dict:
    """The model's validation recall@k (best epoch, before any refit) against popularity's on
    the same carve: ``val_recall@k``, ``popularity_val_recall@k`` and ``beats_popularity``
    (None when there was no validation carve). Logs a WARNING when the model does not beat
    popularity: its embeddings rank worse than the most popular items would."""
    best = result.best_metric if math.isfinite(result.best_metric) else None
    pop = result.popularity_metric
    beats = None if best is None or pop is None else bool(best > pop)
    if beats is False:
        log.warning(
            "%s does not beat popularity on validation: recall@%d %.4f vs popularity %.4f "
            "(the embeddings rank worse than the most popular items would)",
            model,
            k,
            best,
            pop,
        )
    elif beats is None:
        log.warning("%s: no validation carve, so it was not checked against popularity", model)
    return {f"val_recall@{k}": best, f"popularity_val_recall@{k}": pop, "beats_popularity": beats}


def fit_lightgcn(
    snap: GraphSnapshot,
    task: str = "both",
    *,
    params: dict | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    on_eval: Callable[[dict], None] | None = None,
) -> Embeddings:
    """Train LightGCN on ``snap`` for ``task`` (tweets, follows or both).

    ``params`` override :data:`LIGHTGCN_DEFAULTS` and the dataclass defaults.

    ``init_from``: a checkpoint (or artifact's ``checkpoint.pt``) of an earlier LightGCN run
    whose embeddings warm-start this one, matched by external id (fine-tuning on a newer
    snapshot; new nodes start from the spectral init).
    """
    check_train_task(task)
    mp, tc = split_params({**LIGHTGCN_DEFAULTS, **(params or {})})
    t0 = time.perf_counter()
    full, train, val = _split(snap, task, mp, tc.seed)
    nu, nt = snap.n_users, snap.n_tweets
    exponents = (mp.norm_receiver, mp.norm_sender)
    adj = joint_adjacency(
        nu, nt, train["tweets"], train["follows"], follow_weight=mp.follow_weight, exponents=exponents
    )
    init = None
    if mp.init == "spectral":
        init = _spectral_warm_start(nu, nt, train, mp, tc.seed, adj)
    elif mp.init != "random":
        raise InputError(f"init must be 'spectral' or 'random', got {mp.init!r}")
    if init_from is not None:
        init = _warm_start(init_from, snap, mp.dim, init)
    prep = time.perf_counter() - t0
    model = LightGCN(
        nu,
        nt,
        adj,
        dim=mp.dim,
        n_layers=mp.n_layers,
        init=init,
        seed=tc.seed,
        layer0_weight=mp.layer0_weight,
        normalize_inputs=mp.normalize_layers,
    )
    on_full_graph = False

    def use_full_graph() -> None:
        nonlocal on_full_graph
        if not on_full_graph:  # the whole training graph, validation edges put back
            model.set_adjacency(
                joint_adjacency(
                    nu,
                    nt,
                    full["tweets"],
                    full["follows"],
                    follow_weight=mp.follow_weight,
                    exponents=exponents,
                )
            )
            on_full_graph = True

    etask = EmbeddingTask(
        model=model,
        forward=model,
        use_full_graph=use_full_graph,
        **_task_fields(snap, task, "lightgcn", train, val, tc),
    )
    run = dict(checkpoint=checkpoint, resume=resume, on_eval=on_eval)
    return _train_and_embed(Trainer(tc), etask, snap, mp, tc, prep=prep, run=run, final_graph=use_full_graph)


def _spectral_warm_start(nu: int, nt: int, train: dict, mp: ModelParams, seed: int, adj=None) -> np.ndarray:
    """The spectral warm start of the joint training graph, on the ``init_degree_reg``-regularised
    normalisation (``adj``: the plain one, reused when the regularisation is 0 and ``adj`` is
    LightGCN's symmetric normalisation)."""
    if adj is None or mp.init_degree_reg != 0 or (mp.norm_receiver, mp.norm_sender) != (0.5, 0.5):
        adj = joint_adjacency(
            nu,
            nt,
            train["tweets"],
            train["follows"],
            follow_weight=mp.follow_weight,
            degree_reg=mp.init_degree_reg,
        )
    return spectral_init(adj, mp.dim, seed=seed, scale=mp.init_scale)


def _warm_start(path, snap: GraphSnapshot, dim: int, init: np.ndarray | None) -> np.ndarray:
    state = read_checkpoint(path)
    if state["model_kind"] != "lightgcn":
        raise InputError(f"{path}: cannot fine-tune LightGCN from a {state['model_kind']!r} checkpoint")
    old = (state.get("best_state") or state["model_state"])["embedding"].numpy()
    if old.shape[1] != dim:
        raise InputError(f"{path}: checkpoint has dim {old.shape[1]}, this run asks for dim {dim}")
    vocab = state.get("vocab")
    if vocab is None:
        raise InputError(f"{path}: checkpoint has no id vocabularies; it cannot seed another snapshot")
    out = init.copy() if init is not None else np.zeros((snap.n_users + snap.n_tweets, dim), np.float32)
    old_nu = len(vocab["user_ids"])
    for ids, offset, old_ids, old_off in (
        (snap.user_ids, 0, vocab["user_ids"], 0),
        (snap.tweet_ids, snap.n_users, vocab["tweet_ids"], old_nu),
    ):
        ids, old_ids = np.asarray(ids), np.asarray(old_ids)
        pos = np.minimum(np.searchsorted(old_ids, ids), max(len(old_ids) - 1, 0))
        hit = (old_ids[pos] == ids) if len(old_ids) else np.zeros(len(ids), bool)
        out[offset + np.flatnonzero(hit)] = old[old_off + pos[hit]]
    log.info("warm start from %s", path)
    return out


# ---------------------------------------------------------------------------
# inductive model


class _ColdSimulation:
    """Before each epoch: hide the ID embedding of a share of tweets and keep only their first
    ``reveal`` edges as messages (and hide a share of users' IDs), so the model learns to embed
    new nodes from content and a few edges."""

    def __init__(self, model, pipeline, snap, train: dict, mp: ModelParams, device):
        self.model, self.pipeline, self.snap, self.mp, self.device = model, pipeline, snap, mp, device
        self.eng = train["tweets"]
        fol = train["follows"]
        self.follows = (fol.users, fol.targets)
        self.graph = pipeline.transform(
            snap, engagements=(self.eng.users, self.eng.targets), follows=self.follows
        )
        self.base = self.graph

    def __call__(self, epoch: int, rng: np.random.Generator) -> None:
        mp, snap = self.mp, self.snap
        if mp.cold_share <= 0 and mp.id_dropout <= 0:
            return
        nt, nu = snap.n_tweets, snap.n_users
        cold = rng.random(nt) < mp.cold_share
        u, t = self.eng.users, self.eng.targets
        # keep `reveal` random edges of each cold tweet
        order = np.lexsort((rng.random(len(t)), t))
        first = np.searchsorted(t[order], t[order], side="left")
        rank = np.empty(len(t), np.int64)
        rank[order] = np.arange(len(t)) - first
        keep = ~cold[t] | (rank < mp.cold_reveal)
        g = self.pipeline.transform(snap, engagements=(u[keep], t[keep]), follows=self.follows)
        known_t = torch.arange(nt)
        known_t[torch.from_numpy(cold)] = -1
        known_u = torch.arange(nu)
        known_u[torch.from_numpy(rng.random(nu) < mp.id_dropout)] = -1
        g.known_tweet, g.known_user = known_t, known_u
        self.graph = g

    def forward(self) -> torch.Tensor:
        return self.model(self.graph)

    def eval_forward(self) -> torch.Tensor:
        return self.model(self.base)


def fit_sage(
    snap: GraphSnapshot,
    task: str = "both",
    *,
    params: dict | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    on_eval: Callable[[dict], None] | None = None,
) -> Embeddings:
    """Train the inductive heterogeneous GraphSAGE on ``snap``.

    ``init_from``: a SAGE checkpoint whose weights start this run (layers as they are; ID
    embeddings matched by external id; unseen nodes rely on their features).
    """
    from gnn.features import N_TWEET_STRUCT, N_USER_STRUCT, FeaturePipeline

    check_train_task(task)
    params = dict(params or {})
    params.setdefault("n_layers", 2)
    params.setdefault("lr", 0.005)
    params.setdefault("batch_size", 16384)
    mp, tc = split_params(params)
    t0 = time.perf_counter()
    full, train, val = _split(snap, task, mp, tc.seed)
    pipeline = FeaturePipeline.fit(snap, mp.n_text)
    model = HeteroSAGE(
        snap.n_users,
        snap.n_tweets,
        n_text=pipeline.n_text,
        n_user_struct=N_USER_STRUCT,
        n_tweet_struct=N_TWEET_STRUCT,
        dim=mp.dim,
        n_layers=mp.n_layers,
        id_embeddings=mp.id_embeddings,
        seed=tc.seed,
    )
    if mp.init == "spectral":
        _sage_spectral_init(model, pipeline, snap, train, mp, tc.seed)
    if init_from is not None:
        _sage_warm_start(init_from, model, snap)
    trainer = Trainer(tc)
    sim = _ColdSimulation(model, pipeline, snap, train, mp, trainer.device)
    etask = EmbeddingTask(
        model=model,
        forward=sim.forward,
        eval_forward=sim.eval_forward,
        before_epoch=sim,
        **_task_fields(snap, task, "sage", train, val, tc),
    )
    prep = time.perf_counter() - t0

    def final_graph() -> None:
        full_graph = pipeline.transform(snap)
        etask.eval_forward = lambda: model(full_graph)

    run = dict(checkpoint=checkpoint, resume=resume, on_eval=on_eval)
    return _train_and_embed(
        trainer,
        etask,
        snap,
        mp,
        tc,
        prep=prep,
        run=run,
        final_graph=final_graph,
        extra={
            "pipeline": pipeline,
            "user_ids": np.asarray(snap.user_ids),
            "tweet_ids": np.asarray(snap.tweet_ids),
        },
    )


def _sage_spectral_init(
    model: HeteroSAGE, pipeline, snap: GraphSnapshot, train: dict, mp: ModelParams, seed: int
) -> None:
    """Warm start for the inductive model: ID embeddings from the spectral init, and the text
    projection set so that a tweet's text maps to the TF-IDF-weighted mean of the spectral
    vectors of the training tweets sharing its words (a new tweet starts where its words
    point, before any training)."""
    from gnn.features import tweet_texts_in_order

    nu = snap.n_users
    spec = _spectral_warm_start(nu, snap.n_tweets, train, mp, seed)
    with torch.no_grad():
        if model.id_embeddings:
            model.user_id.weight.copy_(torch.from_numpy(spec[:nu]))
            model.tweet_id.weight.copy_(torch.from_numpy(spec[nu:]))
        if pipeline.n_text:
            text = pipeline.text_matrix(tweet_texts_in_order(snap))
            mass = np.asarray(text.sum(axis=0)).ravel()
            words = (text.T @ spec[nu:]) / np.maximum(mass, 1e-12)[:, None]
            model.text_proj.weight.copy_(torch.from_numpy(words.T.astype(np.float32)))


def _sage_warm_start(path, model: HeteroSAGE, snap: GraphSnapshot) -> None:
    state = read_checkpoint(path)
    if state["model_kind"] != "sage":
        raise InputError(f"{path}: cannot fine-tune SAGE from a {state['model_kind']!r} checkpoint")
    weights = dict(state.get("best_state") or state["model_state"])
    vocab = state.get("vocab")
    for name, ids, key in (
        ("user_id.weight", snap.user_ids, "user_ids"),
        ("tweet_id.weight", snap.tweet_ids, "tweet_ids"),
    ):
        if name not in weights:
            continue
        if vocab is None:
            raise InputError(f"{path}: checkpoint has no id vocabularies; it cannot seed another snapshot")
        old, old_ids = weights[name], np.asarray(vocab[key])
        new = dict(model.state_dict())[name].clone()
        pos = np.minimum(np.searchsorted(old_ids, ids), max(len(old_ids) - 1, 0))
        hit = old_ids[pos] == ids if len(old_ids) else np.zeros(len(ids), bool)
        new[torch.from_numpy(np.flatnonzero(hit))] = old[torch.from_numpy(pos[hit])]
        weights[name] = new
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit the model: {exc}") from None


def embed_snapshot_inductive(result: Embeddings, snap: GraphSnapshot) -> tuple[np.ndarray, np.ndarray]:
    """Embed every user and tweet of ``snap`` (which may hold nodes unseen in training) with a
    trained SAGE model, without retraining: new nodes use their content and edges."""
    if result.model_kind != "sage" or result.model is None:
        raise InputError("inductive embedding needs a trained 'sage' model")
    pipeline = result.extra["pipeline"]
    g = pipeline.transform(
        snap, known_user_ids=result.extra["user_ids"], known_tweet_ids=result.extra["tweet_ids"]
    )
    model = result.model
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(g)
    model.train(was)
    if result.config.get("normalized", True):
        out = torch.nn.functional.normalize(out, dim=1)
    out = out.cpu().numpy()
    return out[: snap.n_users], out[snap.n_users :]


__all__ = [
    "Embeddings",
    "ModelParams",
    "PairSet",
    "embed_snapshot_inductive",
    "fit_lightgcn",
    "fit_sage",
    "load_checkpoint",
    "split_params",
]
