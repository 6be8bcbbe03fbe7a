"""The training loop, separate from the models: early stopping, learning-rate schedules, seeds
and devices. Losses live in :mod:`gnn.losses`, negative sampling in :mod:`gnn.negatives`,
checkpoints in :mod:`gnn.checkpoints`.

A model only has to map its input to node-space embeddings (``forward() -> (n_nodes, dim)``).
Each step runs the model once, detaches its output, computes the loss of the batch in
chunks (so a large batch with many negatives stays within memory) and sends the
accumulated gradient back through the model in one backward pass. Large batches with a
higher learning rate and one propagation per step are what make training fast.

Losses (``TrainConfig.loss``):

* ``softmax``: sampled softmax over cosine similarities with a temperature; each chunk of
  positives shares a pool of uniformly drawn negative targets, and pool entries that are
  a row's training positive are removed from that row's softmax.
* ``full_softmax``: softmax over every target, in steps of whole users.
* ``bpr``: Bayesian personalised ranking with ``bpr_negatives`` negatives per positive, drawn
  by rejection so none is a training positive (each optionally the best-scoring of
  ``hard_negative_candidates`` draws), and L2 regularisation of the batch rows.

Early stopping watches recall@k on a validation split carved from the training positives
(:func:`gnn.data.carve_early_stopping`), starting with the untrained state (``eval_start``:
training never returns something that validates worse than its warm start); the result
also records popularity's recall@k on the same carve (``popularity_metric``, the floor the
validation guard of :mod:`gnn.pipeline` compares against); the best state is restored at the end, and
``refit_epochs`` more epochs may then train it on training plus validation positives (the
carve only chooses the epoch; its edges are training data the final model should see).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gnn import distributed
from gnn.checkpoints import load_checkpoint, restore_generators, save_checkpoint
from gnn.data import PairSet, merge_pairs, user_indptr
from gnn.item_neighbors import item_neighbors
from gnn.losses import full_softmax_loss, sampled_loss
from gnn.negatives import NegativeSampler
from gnn.ranking import evaluate_embeddings
from graph.errors import InputError

log = logging.getLogger(__name__)

LOSSES = ("softmax", "full_softmax", "bpr")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Hyper-parameters of the loop (model hyper-parameters live in the model)."""

    loss: str = "softmax"
    epochs: int = 100
    batch_size: int = 32_768
    chunk_size: int = 8192
    lr: float = 0.01
    weight_decay: float = 0.0  # L2 on the embeddings a batch touches (the LightGCN paper's regulariser)
    # AdamW's decoupled decay of every parameter each step: rows that few batches reach (long-tail
    # items) shrink instead of keeping whatever Adam's normalised steps gave them.
    decoupled_weight_decay: float = 0.0
    # After an evaluation without validation gain the learning rate is multiplied by this
    # (1.0 keeps it constant): large steps early, smaller ones once validation stalls.
    plateau_factor: float = 1.0
    # "cosine": the learning rate follows lr * (1 + cos(pi * epoch / epochs)) / 2, a function
    # of the epoch alone (runs and resumes stay reproducible); "constant" leaves it to the above.
    lr_schedule: str = "constant"
    n_negatives: int = 256  # softmax: size of the shared negative pool
    bpr_negatives: int = 1  # bpr: negatives per positive (the loss averages over them)
    # bpr: each negative is the best-scoring of this many uniform draws (dynamic negative
    # sampling, Zhang et al. SIGIR 2013); 1 keeps uniform negatives. Hard negatives carry more
    # gradient per (costly) propagation than uniform ones, most of which the model already ranks low.
    hard_negative_candidates: int = 1
    # bpr: this many of the ``bpr_negatives`` are plain uniform draws, the rest hard (hard ones
    # teach the boundary, uniform ones the order against the typical item)
    uniform_negatives: int = 0
    # bpr: UltraGCN's item-item constraint (Mao et al., CIKM 2021) in pairwise form: each
    # positive's target's ``item_neighbors`` nearest co-engaged targets join as extra positives
    # against the same negatives, their loss weighted by ``item_neighbor_weight`` (0: off).
    item_neighbors: int = 10
    item_neighbor_weight: float = 0.0
    # After the best epoch is restored: this many more epochs on training plus validation
    # positives, over the whole training graph (the carve is only needed to choose the epoch;
    # its edges are training data). Their cost is reserved inside ``time_budget_s``.
    refit_epochs: int = 0
    temperature: float = 0.15
    cosine: bool = True  # softmax over cosine similarities (else raw dot products)
    eval_every: int = 1
    # Validate the starting state (the warm start, or a fine-tuned checkpoint) before the first
    # epoch: it is the best state until an epoch beats it, so training never returns a model
    # that validates worse than its start, and the refit is skipped when no epoch did.
    eval_start: bool = True
    patience: int = 5
    k: int = 20
    seed: int = 0
    device: str = "auto"
    time_budget_s: float | None = None
    checkpoint_every: int = 1
    progress: bool = True
    deterministic: bool = (
        True  # on CPU: bitwise-reproducible runs for a seed (torch deterministic algorithms)
    )

    def validate(self) -> TrainConfig:
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in (
            "epochs",
            "batch_size",
            "chunk_size",
            "n_negatives",
            "bpr_negatives",
            "hard_negative_candidates",
            "item_neighbors",
            "eval_every",
            "k",
        ):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.decoupled_weight_decay < 0:
            raise InputError("weight_decay and decoupled_weight_decay must be >= 0")
        if not 0 <= int(self.uniform_negatives) < int(self.bpr_negatives):
            raise InputError(
                f"uniform_negatives must be in [0, bpr_negatives), got {self.uniform_negatives} "
                f"of {self.bpr_negatives} (at least one negative is drawn the hard way)"
            )
        if not self.item_neighbor_weight >= 0:
            raise InputError(f"item_neighbor_weight must be >= 0, got {self.item_neighbor_weight}")
        if self.item_neighbor_weight > 0 and self.loss != "bpr":
            raise InputError("item_neighbor_weight > 0 needs loss 'bpr'")
        if int(self.refit_epochs) < 0:
            raise InputError(f"refit_epochs must be >= 0, got {self.refit_epochs}")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.plateau_factor <= 1:
            raise InputError(f"plateau_factor must be in (0, 1], got {self.plateau_factor}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if self.lr_schedule != "constant" and self.plateau_factor < 1:
            raise InputError(
                "plateau_factor < 1 needs lr_schedule 'constant' (both would set the learning rate)"
            )
        if not self.temperature > 0:
            raise InputError(f"temperature must be > 0, got {self.temperature}")
        return self


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU. An explicit ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "device 'cuda' was asked for but no CUDA device is available; use --device cpu or auto"
        )
    return dev


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


# ---------------------------------------------------------------------------
# the task the trainer optimises


@dataclass
class EmbeddingTask:
    """What to train: a model, how to run it, and the positives of each target task.

    ``forward()`` returns node-space embeddings (users first; a task's targets start at
    its ``target_offset``). ``before_epoch(epoch, rng)`` may change the model's input (the
    inductive model re-draws its simulated cold tweets). ``fingerprint`` identifies the data
    (snapshot id, task, sizes): a checkpoint only resumes on the same fingerprint.
    """

    model: nn.Module
    forward: Callable[[], torch.Tensor]
    train: list[PairSet]
    val: list[PairSet]
    fingerprint: dict
    eval_forward: Callable[[], torch.Tensor] | None = None
    before_epoch: Callable[[int, np.random.Generator], None] | None = None
    normalize: bool = True
    vocab: dict | None = None  # external ids of the rows, saved with checkpoints for fine-tuning
    # switches the model's input to the whole training graph (validation edges back): needed
    # by ``refit_epochs``
    use_full_graph: Callable[[], None] | None = None


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = -math.inf
    epochs_run: int = 0
    train_seconds: float = 0.0
    stopped: str = ""
    refit_epochs: int = 0  # epochs run on training plus validation positives after the best epoch
    # popularity's recall@k on the same validation carve (the floor a model must clear; None
    # without a validation carve)
    popularity_metric: float | None = None
    start_metric: float | None = None  # validation recall@k of the starting state (``eval_start``)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Run:
    """The state one :meth:`Trainer.fit` call shares between its steps."""

    task: EmbeddingTask
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    main_epochs: int  # epochs before the refit (the refit's are counted in ``epochs`` too)
    refit: int
    checkpoint: str | Path | None
    on_eval: Callable[[dict], None] | None
    result: TrainResult = field(default_factory=TrainResult)
    best_state: dict | None = None
    start_epoch: int = 0
    samplers: list[NegativeSampler] = field(default_factory=list)
    excl: list = field(default_factory=list)  # per pair set: what validation never ranks
    truth: list = field(default_factory=list)  # per pair set: the validation positives
    stale: int = 0  # evaluations since the best one
    t_train: float = 0.0  # seconds of training so far (steps and validation)
    epoch_times: list[float] = field(default_factory=list)  # each epoch's steps, to reserve the refit's share
    grow: float = 1.0  # a refit epoch's size relative to a main one (validation positives join)


class Trainer:
    """Runs :class:`TrainConfig` on an :class:`EmbeddingTask`."""

    def __init__(self, config: TrainConfig | None = None, **overrides):
        cfg = copy.deepcopy(config) if config is not None else TrainConfig()
        for key, value in overrides.items():
            if not hasattr(cfg, key):
                raise InputError(f"unknown training option {key!r}")
            setattr(cfg, key, value)
        self.config = cfg.validate()
        self.device = resolve_device(cfg.device)
        self._neighbors: dict[int, tuple] = {}  # id(pairs) -> (pairs, item_neighbors(pairs))

    def _item_neighbors(self, pairs: PairSet) -> tuple[np.ndarray, np.ndarray] | None:
        """The item-item constraint's neighbour table of ``pairs``, built once per pair set."""
        if self.config.item_neighbor_weight <= 0:
            return None
        hit = self._neighbors.get(id(pairs))
        if hit is None or hit[0] is not pairs:
            hit = self._neighbors[id(pairs)] = (pairs, item_neighbors(pairs, self.config.item_neighbors))
        return hit[1]

    # -- public ------------------------------------------------------------------
    def fit(
        self,
        task: EmbeddingTask,
        *,
        checkpoint: str | Path | None = None,
        resume: bool = False,
        on_eval: Callable[[dict], None] | None = None,
    ) -> TrainResult:
        """Train ``task.model`` in place; returns the history. The best state is kept.

        ``checkpoint``: file written (atomically) every ``checkpoint_every`` epochs; with
        ``resume=True`` and an existing file, training continues from it (the file must come
        from the same model configuration and data, else :class:`~gnn.checkpoints.CheckpointError`).
        ``on_eval(record)`` is called after each evaluation (epoch 0: the starting state, with
        ``eval_start``) and each refit epoch (its record has ``refit`` and no validation
        metrics), outside the timed part.
        """
        det = self.config.deterministic and self.device.type == "cpu"
        previous = torch.are_deterministic_algorithms_enabled()
        if det:  # some CPU scatter kernels accumulate in thread order otherwise
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._fit(task, checkpoint, resume, on_eval)
        finally:
            if det:
                torch.use_deterministic_algorithms(previous)

    def validate(self, task: EmbeddingTask, excl=None, truth=None) -> dict:
        """recall@k / NDCG@k on the validation positives (mean over the target tasks)."""
        cfg = self.config
        excl = excl if excl is not None else [_exclusion(p) for p in task.train]
        truth = truth if truth is not None else [p.matrix() for p in task.val]
        emb = embed(task, eval_mode=True)
        rec, nd, users = [], [], 0
        for p, ex, tr in zip(task.train, excl, truth):
            tv = emb[p.target_offset : p.target_offset + p.n_targets]
            m = evaluate_embeddings(emb[: p.n_users], tv, tr, ex, cfg.k)
            rec.append(m[f"recall@{cfg.k}"])
            nd.append(m[f"ndcg@{cfg.k}"])
            users += m["users"]
        return {
            f"val_recall@{cfg.k}": float(np.mean(rec)),
            f"val_ndcg@{cfg.k}": float(np.mean(nd)),
            "val_users": users,
        }

    def validate_popularity(self, task: EmbeddingTask, excl=None, truth=None) -> dict:
        """What :meth:`validate` measures, for popularity: every user gets the targets with the
        most training positives (their own training targets left out)."""
        cfg = self.config
        excl = excl if excl is not None else [_exclusion(p) for p in task.train]
        truth = truth if truth is not None else [p.matrix() for p in task.val]
        rec, nd = [], []
        for p, ex, tr in zip(task.train, excl, truth):
            counts = np.bincount(p.targets, minlength=p.n_targets)
            # rank as the score (ties broken by index): deterministic, exact in float32
            order = np.lexsort((np.arange(p.n_targets), -counts))
            score = np.empty(p.n_targets, np.float32)
            score[order] = np.arange(p.n_targets, 0, -1, dtype=np.float32)
            m = evaluate_embeddings(torch.ones(p.n_users, 1), torch.from_numpy(score)[:, None], tr, ex, cfg.k)
            rec.append(m[f"recall@{cfg.k}"])
            nd.append(m[f"ndcg@{cfg.k}"])
        return {f"val_recall@{cfg.k}": float(np.mean(rec)), f"val_ndcg@{cfg.k}": float(np.mean(nd))}

    # -- the run, step by step -------------------------------------------------------
    def _fit(self, task: EmbeddingTask, checkpoint, resume: bool, on_eval) -> TrainResult:
        run = self._start(task, checkpoint, on_eval)
        if resume and checkpoint is not None and Path(checkpoint).exists() and self._resume(run):
            return run.result  # a finished run: nothing left to train
        self._prepare(run)
        if run.start_epoch == 0 and self.config.eval_start and task.val:
            self._evaluate_start(run)
        self._train_main(run)
        if run.best_state is not None:
            task.model.load_state_dict(run.best_state)
        if run.refit and run.result.best_epoch == 0:
            log.warning(
                "no epoch beat the starting state on validation (recall@%d %.4f): keeping it, no refit",
                self.config.k,
                run.result.best_metric,
            )
        elif run.refit:
            self._refit(run)
            run.best_state = _state_copy(task.model)
            if checkpoint is not None:
                self._save(run)
        return run.result

    def _start(self, task: EmbeddingTask, checkpoint, on_eval) -> _Run:
        """Seeds, the model on its device and a fresh optimizer."""
        cfg = self.config
        # ``epochs`` counts every epoch trained, the refit ones included (at least one main epoch)
        refit = min(cfg.refit_epochs, cfg.epochs - 1) if task.val else 0
        if refit and task.use_full_graph is None:
            raise InputError("refit_epochs needs a task that can switch to the full graph (LightGCN)")
        seed_everything(cfg.seed)
        rank, size = distributed.rank_and_size()
        # Data-parallel: rank 0 draws as a single process does; the others draw their own negatives.
        rng = np.random.default_rng(cfg.seed if rank == 0 else [cfg.seed, rank])
        if size > 1 and cfg.loss == "full_softmax":
            raise InputError(
                "data-parallel training supports the sampled losses (softmax, bpr), not full_softmax"
            )
        model = task.model.to(self.device)
        distributed.broadcast_parameters(model)  # identical replicas, whatever each rank's init
        trainable = [p for p in model.parameters() if p.requires_grad]
        if cfg.decoupled_weight_decay > 0:
            opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.decoupled_weight_decay)
        else:
            opt = torch.optim.Adam(trainable, lr=cfg.lr)
        return _Run(task, opt, rng, cfg.epochs - refit, refit, checkpoint, on_eval)

    def _resume(self, run: _Run) -> bool:
        """Continue from ``run.checkpoint``; True when that run had finished, refit included
        (its saved best state, the refitted model, is then loaded)."""
        task = run.task
        state = load_checkpoint(run.checkpoint, expect_fingerprint=task.fingerprint, model=task.model)
        restore_generators(state, run.opt, run.rng)
        run.result = TrainResult(**state["result"])
        run.best_state = state.get("best_state")
        run.start_epoch = run.result.epochs_run
        log.info("resumed from %s at epoch %d", run.checkpoint, run.start_epoch)
        if not run.result.refit_epochs:
            return False
        if task.use_full_graph is not None:
            task.use_full_graph()
        task.model.load_state_dict(run.best_state)
        return True

    def _prepare(self, run: _Run) -> None:
        """Negative samplers, the validation exclusions and truth, and (for a resumed run) the
        early-stopping count and training time so far."""
        task = run.task
        run.samplers = [NegativeSampler(p, run.rng) for p in task.train]
        total = sum(len(p) for p in task.train)
        if total == 0:
            raise InputError("no training positives: the snapshot has no edges for this task")
        run.excl = [_exclusion(p) for p in task.train]
        run.truth = [p.matrix() for p in task.val]
        run.stale = 0 if not run.result.history else _stale(run.result)
        run.t_train = run.result.train_seconds
        run.grow = sum(len(p) for p in task.val) / max(total, 1) + 1.0
        if task.val and sum(len(p) for p in task.val) and run.result.popularity_metric is None:
            pop = self.validate_popularity(task, run.excl, run.truth)
            run.result.popularity_metric = pop[f"val_recall@{self.config.k}"]

    def _evaluate_start(self, run: _Run) -> None:
        """Validate the starting state: the best state (epoch 0) until an epoch beats it."""
        t1 = time.perf_counter()
        metrics = self.validate(run.task, run.excl, run.truth)
        run.t_train += time.perf_counter() - t1
        metric = metrics[f"val_recall@{self.config.k}"]
        run.result.train_seconds = run.t_train
        run.result.start_metric = run.result.best_metric = metric
        run.result.best_epoch = 0
        run.best_state = _state_copy(run.task.model)
        log.info("start: val_recall@%d=%s", self.config.k, _fmt(metric))
        if run.on_eval is not None:  # epoch 0, not in the history (which counts trained epochs)
            run.on_eval({"epoch": 0, "seconds": round(run.t_train, 3), **metrics, "model": run.task.model})

    def _train_main(self, run: _Run) -> None:
        """The epochs before the refit, until the last one, early stopping or the time budget."""
        bar = tqdm(
            range(run.start_epoch, run.main_epochs),
            desc=f"train {getattr(run.task.model, 'kind', 'model')}",
            unit="epoch",
            disable=not self.config.progress,
            initial=run.start_epoch,
            total=run.main_epochs,
        )
        for epoch in bar:
            record, out_of_time = self._train_epoch(run, epoch)
            run.result.history.append(record)
            run.result.epochs_run, run.result.train_seconds = epoch + 1, run.t_train
            log.info("epoch %s", " ".join(f"{k}={_fmt(v)}" for k, v in record.items()))
            bar.set_postfix({k: _fmt(v) for k, v in record.items() if k != "epoch"})
            if run.on_eval is not None and "val_users" in record:
                run.on_eval({**record, "model": run.task.model})
            if self._end_epoch(run, epoch, out_of_time):
                break
        bar.close()

    def _train_epoch(self, run: _Run, epoch: int) -> tuple[dict, bool]:
        """One epoch of steps, then validation when due: the epoch's record, and whether the
        time budget (less the refit's reserved share) is spent."""
        cfg, task = self.config, run.task
        t0 = time.perf_counter()
        if cfg.lr_schedule == "cosine":
            for group in run.opt.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / run.main_epochs))
        task.model.train()
        if task.before_epoch is not None:
            task.before_epoch(epoch, run.rng)
        loss = self._epoch(task, run.opt, run.samplers, run.rng)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        run.epoch_times.append(time.perf_counter() - t0)
        run.t_train += run.epoch_times[-1]
        record = {"epoch": epoch + 1, "loss": loss, "seconds": round(run.t_train, 3)}
        last = epoch + 1 == run.main_epochs
        reserve = run.refit * run.grow * float(np.mean(run.epoch_times))
        out_of_time = cfg.time_budget_s is not None and run.t_train + reserve >= cfg.time_budget_s
        if distributed.active():  # every rank stops together, or one waits forever in a collective
            out_of_time = distributed.all_reduce_sum(float(out_of_time)) > 0
        if task.val and ((epoch + 1) % cfg.eval_every == 0 or last or out_of_time):
            self._evaluate(run, record)
        return record, out_of_time

    def _evaluate(self, run: _Run, record: dict) -> None:
        """Validation metrics into ``record``; keeps the best state, counts evaluations without
        gain and after each lowers the learning rate by ``plateau_factor``."""
        cfg = self.config
        t1 = time.perf_counter()
        metrics = self.validate(run.task, run.excl, run.truth)
        run.t_train += time.perf_counter() - t1  # validation is part of the training cost
        record.update(metrics)
        record["seconds"] = round(run.t_train, 3)
        # rank 0's metric decides for every rank (the replicas are identical; this makes sure)
        metric = float(distributed.broadcast_array(np.array([metrics[f"val_recall@{cfg.k}"]]))[0])
        if metric > run.result.best_metric:
            run.result.best_metric, run.result.best_epoch, run.stale = metric, record["epoch"], 0
            run.best_state = _state_copy(run.task.model)
        else:
            run.stale += 1
            if cfg.plateau_factor < 1:
                for group in run.opt.param_groups:  # kept in the optimizer state: resumes exactly
                    group["lr"] *= cfg.plateau_factor
        record["lr"] = run.opt.param_groups[0]["lr"]

    def _end_epoch(self, run: _Run, epoch: int, out_of_time: bool) -> bool:
        """Early stopping and the checkpoint after an epoch; True when training stops."""
        cfg = self.config
        stop = ""
        if run.task.val and run.stale >= cfg.patience:
            stop = f"early stop: no validation gain in {cfg.patience} evaluations"
        elif out_of_time:
            stop = f"time budget of {cfg.time_budget_s:.0f}s reached"
        last = epoch + 1 == run.main_epochs
        if run.checkpoint is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or stop or last):
            self._save(run)
        if stop:
            run.result.stopped = stop
            log.info("%s at epoch %d", stop, epoch + 1)
        return bool(stop)

    def _refit(self, run: _Run) -> None:
        """``run.refit`` more epochs from the restored best state on training plus validation
        positives over the whole training graph (same optimizer state)."""
        task, result = run.task, run.result
        task.use_full_graph()
        merged = [merge_pairs(t, v) for t, v in zip(task.train, task.val)]
        full = dataclasses.replace(task, train=merged, val=[])
        samplers = [NegativeSampler(p, run.rng) for p in merged]
        task.model.train()
        for i in range(run.refit):
            t0 = time.perf_counter()
            loss = self._epoch(full, run.opt, samplers, run.rng)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            result.train_seconds += time.perf_counter() - t0
            record = {
                "epoch": result.epochs_run + 1,
                "loss": loss,
                "seconds": round(result.train_seconds, 3),
                "refit": i + 1,
            }
            result.history.append(record)
            result.epochs_run += 1
            result.refit_epochs = i + 1
            log.info("refit %s", " ".join(f"{k}={_fmt(v)}" for k, v in record.items()))
            if run.on_eval is not None:
                run.on_eval({**record, "model": task.model})

    def _save(self, run: _Run) -> None:
        if distributed.rank_and_size()[0] != 0:  # one writer: the ranks hold the same state
            return
        task = run.task
        save_checkpoint(
            run.checkpoint,
            task.model,
            run.opt,
            run.rng,
            run.result,
            run.best_state,
            task.fingerprint,
            self.config,
            task.vocab,
        )

    # -- one epoch -------------------------------------------------------------------
    def _epoch(self, task: EmbeddingTask, opt, samplers, rng: np.random.Generator) -> float:
        cfg = self.config
        if cfg.loss == "full_softmax":
            return self._epoch_full(task, opt, rng)
        # one permutation over the positives of every target task: (pair set, row)
        sizes = [len(p) for p in task.train]
        which = np.repeat(np.arange(len(sizes)), sizes)
        row = np.concatenate([np.arange(s) for s in sizes])
        rank, size = distributed.rank_and_size()
        perm = distributed.broadcast_array(rng.permutation(len(which)))  # rank 0's order everywhere
        trainable = [p for p in task.model.parameters() if p.requires_grad] if size > 1 else []
        total_loss = 0.0
        for start in range(0, len(perm), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            mine = idx[rank::size]  # this rank's share; the loss is still divided by len(idx)
            out = task.forward()
            emb = out.detach().requires_grad_()
            for i, (pairs, sampler) in enumerate(zip(task.train, samplers)):
                sel = row[mine[which[mine] == i]]
                ok = sampler.can_sample(pairs.users[sel])
                sel = sel[ok]
                neighbors = self._item_neighbors(pairs)
                for c in range(0, len(sel), cfg.chunk_size):
                    part = sel[c : c + cfg.chunk_size]
                    loss = sampled_loss(emb, pairs, sampler, part, len(idx), cfg, neighbors)
                    loss.backward()
                    total_loss += float(loss.detach()) * len(idx)
            opt.zero_grad(set_to_none=True)
            out.backward(emb.grad if emb.grad is not None else torch.zeros_like(emb))
            distributed.all_reduce_gradients(trainable)
            opt.step()
        return distributed.all_reduce_sum(total_loss) / max(len(perm), 1)

    def _epoch_full(self, task: EmbeddingTask, opt, rng: np.random.Generator) -> float:
        """Softmax over every target: steps of whole users (about ``batch_size`` positives each);
        each positive's softmax runs over itself and all the user's non-positives."""
        cfg = self.config
        total_loss, total_pos = 0.0, 0
        for pairs in task.train:
            indptr = user_indptr(pairs)
            deg = np.diff(indptr)
            users = rng.permutation(np.flatnonzero((deg > 0) & (deg < pairs.n_targets)))
            if not len(users):
                continue
            per_step = max(1, int(round(cfg.batch_size / max(deg[users].mean(), 1.0))))
            per_chunk = max(1, min(per_step, (cfg.chunk_size * 4096) // max(pairs.n_targets, 1)))
            for start in range(0, len(users), per_step):
                step_users = users[start : start + per_step]
                denom = int(deg[step_users].sum())
                out = task.forward()
                emb = out.detach().requires_grad_()
                for c in range(0, len(step_users), per_chunk):
                    loss = full_softmax_loss(emb, pairs, indptr, step_users[c : c + per_chunk], denom, cfg)
                    loss.backward()
                    total_loss += float(loss.detach()) * denom
                opt.zero_grad(set_to_none=True)
                out.backward(emb.grad)
                opt.step()
                total_pos += denom
        return total_loss / max(total_pos, 1)


def embed(task: EmbeddingTask, *, eval_mode: bool = True) -> torch.Tensor:
    """Node-space embeddings of ``task.model`` (L2-normalised when the task scores by cosine)."""
    model = task.model
    was_training = model.training
    model.train(not eval_mode)
    with torch.no_grad():
        out = (task.eval_forward or task.forward)()
    model.train(was_training)
    return F.normalize(out, dim=1) if task.normalize else out


def _exclusion(p: PairSet):
    m = p.matrix()
    if p.relation == "follows":  # a user is never their own recommendation
        import scipy.sparse as sp

        m = (m + sp.identity(p.n_users, dtype=np.float32, format="csr")).tocsr()
    return m


def _state_copy(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _stale(result: TrainResult) -> int:
    """Evaluations since the best one (for a resumed run)."""
    evals = [h for h in result.history if "val_users" in h]
    return sum(1 for h in evals if h["epoch"] > result.best_epoch)


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else v  # .4g: a small learning rate is not 0.0000
