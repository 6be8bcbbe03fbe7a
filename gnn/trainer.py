"""The training loop, separate from the models: losses, negative sampling, early stopping,
checkpoints, seeds and devices.

A model only has to map its input to node-space embeddings (``forward() -> (n_nodes, dim)``).
Each step runs the model once, detaches its output, computes the loss of the batch in
chunks (so a large batch with many negatives stays within memory) and sends the
accumulated gradient back through the model in one backward pass. Large batches with a
higher learning rate and one propagation per step are what make training fast.

Losses (``TrainConfig.loss``):

* ``softmax``: sampled softmax over cosine similarities with a temperature; each chunk of
  positives shares a pool of uniformly drawn negative targets, and pool entries that are
  a row's training positive are removed from that row's softmax.
* ``bpr``: Bayesian personalised ranking with ``bpr_negatives`` negatives per positive, drawn
  by rejection so none is a training positive (each optionally the best-scoring of
  ``hard_negative_candidates`` draws), and L2 regularisation of the batch rows.

Early stopping watches recall@k on a validation split carved from the training positives
(:func:`gnn.data.carve_early_stopping`); the best state is restored at the end, and
``refit_epochs`` more epochs may then train it on training plus validation positives (the
carve only chooses the epoch; its edges are training data the final model should see).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gnn.data import PairSet, merge_pairs, user_indptr
from gnn.negatives import hardest_negatives
from gnn.ranking import evaluate_embeddings
from graph.errors import InputError, SnapshotError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
LOSSES = ("softmax", "full_softmax", "bpr")
LR_SCHEDULES = ("constant", "cosine")


class CheckpointError(SnapshotError):
    """A checkpoint is unreadable, corrupt, or belongs to another model / snapshot."""


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
    # After the best epoch is restored: this many more epochs on training plus validation
    # positives, over the whole training graph (the carve is only needed to choose the epoch;
    # its edges are training data). Their cost is reserved inside ``time_budget_s``.
    refit_epochs: int = 0
    temperature: float = 0.15
    cosine: bool = True  # softmax over cosine similarities (else raw dot products)
    eval_every: int = 1
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
            "eval_every",
            "k",
        ):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.decoupled_weight_decay < 0:
            raise InputError("weight_decay and decoupled_weight_decay must be >= 0")
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
# negative sampling


def hardest_of(scores: torch.Tensor, candidates: np.ndarray) -> np.ndarray:
    """Per ``(row, slot)``, the candidate with the highest score: ``candidates`` and ``scores``
    are ``(B, m, c)``; returns ``(B, m)`` (ties: the first candidate)."""
    best = scores.argmax(dim=2).cpu().numpy()
    return np.take_along_axis(candidates, best[:, :, None], axis=2)[:, :, 0]


class NegativeSampler:
    """Uniform negatives for one relation that are never a training positive of their user.

    Positives are looked up in the relation's sorted ``user * n_targets + target`` keys;
    rejected draws are redrawn until none is left. Users whose positives cover every target
    have no negative; :meth:`sample` raises for them (callers filter with :meth:`can_sample`).
    """

    def __init__(self, pairs: PairSet, rng: np.random.Generator):
        self.pairs, self.rng = pairs, rng
        self.degree = np.bincount(pairs.users, minlength=pairs.n_users)
        self.indptr = user_indptr(pairs)
        self._slot = np.full(pairs.n_targets, -1, np.int64)

    def can_sample(self, users: np.ndarray) -> np.ndarray:
        return self.degree[users] < self.pairs.n_targets

    def sample(self, users: np.ndarray, n: int = 1, max_rounds: int = 100) -> np.ndarray:
        """``(len(users), n)`` negatives; row i has none of ``users[i]``'s positives."""
        users = np.asarray(users, np.int64)
        if not self.can_sample(users).all():
            bad = users[~self.can_sample(users)][:5].tolist()
            raise InputError(f"user(s) {bad} engaged with every target; no negative exists")
        out = self.rng.integers(0, self.pairs.n_targets, size=(len(users), n))
        bad = self.pairs.contains(users[:, None], out)
        for _ in range(max_rounds):
            if not bad.any():
                return out
            r, c = np.nonzero(bad)
            out[r, c] = self.rng.integers(0, self.pairs.n_targets, size=len(r))
            bad[r, c] = self.pairs.contains(users[r], out[r, c])
        # dense fallback for near-saturated users: draw from the explicit complement
        for r, c in zip(*np.nonzero(bad)):
            row_pos = self.pairs.targets[self.pairs.users == users[r]]
            free = np.setdiff1d(np.arange(self.pairs.n_targets), row_pos)
            out[r, c] = self.rng.choice(free)
        return out

    def pool(self, users: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A shared pool of up to ``n`` distinct uniform targets and the (len(users), len(pool))
        mask of pool entries that are the row's positive (to be left out of that row)."""
        users = np.asarray(users, np.int64)
        # distinct entries (a draw of n with repeats removed), so each target has one slot
        pool = np.unique(self.rng.integers(0, self.pairs.n_targets, size=n))
        n = len(pool)
        # walk the users' positive lists (sum of degrees) instead of testing every (user, pool) cell
        self._slot[pool] = np.arange(n)
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(users)), lengths)
        flat = (
            np.arange(lengths.sum())
            - np.repeat(np.cumsum(lengths) - lengths, lengths)
            + np.repeat(starts, lengths)
        )
        slots = self._slot[self.pairs.targets[flat]]
        hit = slots >= 0
        mask = np.zeros((len(users), n), bool)
        mask[rows[hit], slots[hit]] = True
        self._slot[pool] = -1
        return pool, mask


# ---------------------------------------------------------------------------
# the task the trainer optimises


@dataclass
class EmbeddingTask:
    """What to train: a model, how to run it, and the positives of each relation.

    ``forward()`` returns node-space embeddings (users first; a relation's targets start at
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

    def to_dict(self) -> dict:
        return asdict(self)


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
        from the same model configuration and data, else :class:`CheckpointError`).
        ``on_eval(record)`` is called after each evaluation and each refit epoch (its record has
        ``refit`` and no validation metrics), outside the timed part.
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

    def _fit(self, task: EmbeddingTask, checkpoint, resume: bool, on_eval) -> TrainResult:
        cfg = self.config
        # ``epochs`` counts every epoch trained, the refit ones included (at least one main epoch)
        refit = min(cfg.refit_epochs, cfg.epochs - 1) if task.val else 0
        main_epochs = cfg.epochs - refit
        if refit and task.use_full_graph is None:
            raise InputError("refit_epochs needs a task that can switch to the full graph (LightGCN)")
        seed_everything(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        model = task.model.to(self.device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if cfg.decoupled_weight_decay > 0:
            opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.decoupled_weight_decay)
        else:
            opt = torch.optim.Adam(trainable, lr=cfg.lr)
        result = TrainResult()
        best_state: dict | None = None
        start_epoch = 0
        if resume and checkpoint is not None and Path(checkpoint).exists():
            state = load_checkpoint(checkpoint, expect_fingerprint=task.fingerprint, model=model)
            opt.load_state_dict(state["optimizer"])
            rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            result = TrainResult(**state["result"])
            best_state = state.get("best_state")
            start_epoch = result.epochs_run
            log.info("resumed from %s at epoch %d", checkpoint, start_epoch)
            if result.refit_epochs:  # a finished run: its saved best state is the refitted model
                if task.use_full_graph is not None:
                    task.use_full_graph()
                model.load_state_dict(best_state)
                return result

        samplers = [NegativeSampler(p, rng) for p in task.train]
        total = sum(len(p) for p in task.train)
        if total == 0:
            raise InputError("no training positives: the snapshot has no edges for this task")
        excl = [_exclusion(p) for p in task.train]
        truth = [p.matrix() for p in task.val]
        stale = 0 if not result.history else _stale(result)
        bar = tqdm(
            range(start_epoch, main_epochs),
            desc=f"train {getattr(model, 'kind', 'model')}",
            unit="epoch",
            disable=not cfg.progress,
            initial=start_epoch,
            total=main_epochs,
        )
        t_train = result.train_seconds
        epoch_times: list[float] = []  # seconds of each epoch's steps, to reserve the refit's share
        grow = sum(len(p) for p in task.val) / max(total, 1) + 1.0
        for epoch in bar:
            t0 = time.perf_counter()
            if cfg.lr_schedule == "cosine":
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / main_epochs))
            model.train()
            if task.before_epoch is not None:
                task.before_epoch(epoch, rng)
            loss = self._epoch(task, opt, samplers, rng)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            epoch_times.append(time.perf_counter() - t0)
            t_train += epoch_times[-1]
            record = {"epoch": epoch + 1, "loss": loss, "seconds": round(t_train, 3)}
            last = epoch + 1 == main_epochs
            reserve = refit * grow * float(np.mean(epoch_times))
            out_of_time = cfg.time_budget_s is not None and t_train + reserve >= cfg.time_budget_s
            if task.val and ((epoch + 1) % cfg.eval_every == 0 or last or out_of_time):
                t1 = time.perf_counter()
                metrics = self.validate(task, excl, truth)
                t_train += time.perf_counter() - t1  # validation is part of the training cost
                record.update(metrics)
                record["seconds"] = round(t_train, 3)
                metric = metrics[f"val_recall@{cfg.k}"]
                if metric > result.best_metric:
                    result.best_metric, result.best_epoch, stale = metric, epoch + 1, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
                    if cfg.plateau_factor < 1:
                        for group in opt.param_groups:  # kept in the optimizer state: resumes exactly
                            group["lr"] *= cfg.plateau_factor
                record["lr"] = opt.param_groups[0]["lr"]
            result.history.append(record)
            result.epochs_run, result.train_seconds = epoch + 1, t_train
            log.info("epoch %s", " ".join(f"{k}={_fmt(v)}" for k, v in record.items()))
            bar.set_postfix({k: _fmt(v) for k, v in record.items() if k != "epoch"})
            if on_eval is not None and "val_users" in record:
                on_eval({**record, "model": model})
            stop = ""
            if task.val and stale >= cfg.patience:
                stop = f"early stop: no validation gain in {cfg.patience} evaluations"
            elif out_of_time:
                stop = f"time budget of {cfg.time_budget_s:.0f}s reached"
            if checkpoint is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or stop or last):
                save_checkpoint(
                    checkpoint, model, opt, rng, result, best_state, task.fingerprint, cfg, task.vocab
                )
            if stop:
                result.stopped = stop
                log.info("%s at epoch %d", stop, epoch + 1)
                break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        if refit:
            self._refit(task, opt, rng, result, refit, on_eval)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if checkpoint is not None:
                save_checkpoint(
                    checkpoint, model, opt, rng, result, best_state, task.fingerprint, cfg, task.vocab
                )
        return result

    def _refit(
        self, task: EmbeddingTask, opt, rng: np.random.Generator, result: TrainResult, epochs: int, on_eval
    ):
        """``epochs`` more epochs from the restored best state on training plus validation
        positives over the whole training graph (same optimizer state)."""
        task.use_full_graph()
        merged = [merge_pairs(t, v) for t, v in zip(task.train, task.val)]
        full = dataclasses.replace(task, train=merged, val=[])
        samplers = [NegativeSampler(p, rng) for p in merged]
        task.model.train()
        for i in range(epochs):
            t0 = time.perf_counter()
            loss = self._epoch(full, opt, samplers, rng)
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
            if on_eval is not None:
                on_eval({**record, "model": task.model})

    def validate(self, task: EmbeddingTask, excl=None, truth=None) -> dict:
        """recall@k / NDCG@k on the validation positives (mean over relations)."""
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

    # -- internals -----------------------------------------------------------------
    def _epoch(self, task: EmbeddingTask, opt, samplers, rng: np.random.Generator) -> float:
        cfg = self.config
        if cfg.loss == "full_softmax":
            return self._epoch_full(task, opt, rng)
        # one permutation over all relations' positives: (relation, row)
        sizes = [len(p) for p in task.train]
        rel = np.repeat(np.arange(len(sizes)), sizes)
        row = np.concatenate([np.arange(s) for s in sizes])
        perm = rng.permutation(len(rel))
        total_loss = 0.0
        for start in range(0, len(perm), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            out = task.forward()
            emb = out.detach().requires_grad_()
            for r, (pairs, sampler) in enumerate(zip(task.train, samplers)):
                sel = row[idx[rel[idx] == r]]
                ok = sampler.can_sample(pairs.users[sel])
                sel = sel[ok]
                for c in range(0, len(sel), cfg.chunk_size):
                    part = sel[c : c + cfg.chunk_size]
                    loss = self._loss(emb, pairs, sampler, part, len(idx))
                    loss.backward()
                    total_loss += float(loss.detach()) * len(idx)
            opt.zero_grad(set_to_none=True)
            out.backward(emb.grad)
            opt.step()
        return total_loss / max(len(perm), 1)

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
                    loss = self._full_loss(emb, pairs, indptr, step_users[c : c + per_chunk], denom)
                    loss.backward()
                    total_loss += float(loss.detach()) * denom
                opt.zero_grad(set_to_none=True)
                out.backward(emb.grad)
                opt.step()
                total_pos += denom
        return total_loss / max(total_pos, 1)

    def _full_loss(
        self, emb: torch.Tensor, pairs: PairSet, indptr: np.ndarray, users: np.ndarray, denom: int
    ):
        cfg = self.config
        dev = emb.device
        lengths = indptr[users + 1] - indptr[users]
        rows = np.repeat(np.arange(len(users)), lengths)
        flat = (
            np.arange(lengths.sum())
            - np.repeat(np.cumsum(lengths) - lengths, lengths)
            + np.repeat(indptr[users], lengths)
        )
        cols = pairs.targets[flat]
        u = emb[torch.from_numpy(users).to(dev)]
        t = emb[pairs.target_offset : pairs.target_offset + pairs.n_targets]
        if cfg.cosine:
            u, t = F.normalize(u, dim=1), F.normalize(t, dim=1)
        logits = u @ t.T
        if cfg.cosine:
            logits = logits / cfg.temperature
        r, c = torch.from_numpy(rows).to(dev), torch.from_numpy(cols).to(dev)
        pos = logits[r, c]
        neg = logits.index_put((r, c), torch.tensor(-torch.inf, device=dev))
        lse = torch.logsumexp(neg, dim=1)
        loss = F.softplus(lse[r] - pos).sum() / denom
        if cfg.weight_decay > 0:
            loss = loss + cfg.weight_decay * 0.5 * (u.pow(2).sum() * lengths.mean()) / denom
        return loss

    def _loss(
        self, emb: torch.Tensor, pairs: PairSet, sampler: NegativeSampler, part: np.ndarray, denom: int
    ):
        cfg = self.config
        dev = emb.device
        users = pairs.users[part]
        u = emb[torch.from_numpy(users).to(dev)]
        pos = emb[torch.from_numpy(pairs.targets[part] + pairs.target_offset).to(dev)]
        if cfg.loss == "softmax":
            pool, mask = sampler.pool(users, cfg.n_negatives)
            neg = emb[torch.from_numpy(pool + pairs.target_offset).to(dev)]
            if cfg.cosine:
                u, pos, neg = F.normalize(u, dim=1), F.normalize(pos, dim=1), F.normalize(neg, dim=1)
            pos_logit = (u * pos).sum(dim=1, keepdim=True) / cfg.temperature
            neg_logit = (u @ neg.T) / cfg.temperature
            neg_logit = neg_logit.masked_fill(torch.from_numpy(mask).to(dev), -torch.inf)
            logits = torch.cat([pos_logit, neg_logit], dim=1)
            loss = (torch.logsumexp(logits, dim=1) - pos_logit[:, 0]).sum() / denom
        else:
            # Several negatives per positive give each (costly) propagation more signal; the
            # loss and the negatives' L2 term average over them, so m = 1 is plain BPR.
            m = cfg.bpr_negatives
            neg_t = self._bpr_negatives(emb, u, pairs, sampler, users, m)
            neg = emb[torch.from_numpy(neg_t + pairs.target_offset).to(dev)]  # (B, m, d)
            diff = (u * pos).sum(dim=1, keepdim=True) - torch.einsum("bd,bmd->bm", u, neg)
            loss = -F.logsigmoid(diff).mean(dim=1).sum() / denom
            neg = neg.reshape(-1, neg.shape[-1]) / m**0.5  # so neg.pow(2).sum() averages over m
        if cfg.weight_decay > 0:
            loss = (
                loss + cfg.weight_decay * 0.5 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / denom
            )
        return loss

    def _bpr_negatives(self, emb, u, pairs: PairSet, sampler: NegativeSampler, users: np.ndarray, m: int):
        """``(B, m)`` negatives: uniform, or the hardest of ``hard_negative_candidates`` draws each
        (scored with the step's embeddings; never a training positive either way)."""
        c = self.config.hard_negative_candidates
        if c == 1:
            return sampler.sample(users, m)
        if emb.device.type == "cpu":
            # Fused compiled pass (about 4x cheaper than drawing by rejection and gathering
            # (B, m, c, dim) scores): candidates that are positives are skipped rather than
            # redrawn, and the rare slot left with none gets one rejection-sampled negative.
            cand = sampler.rng.integers(0, pairs.n_targets, size=(len(users), m, c))
            table = emb.detach()[pairs.target_offset : pairs.target_offset + pairs.n_targets].numpy()
            out = hardest_negatives(u.detach().numpy(), table, users, sampler.indptr, pairs.targets, cand)
            rows, slots = np.nonzero(out < 0)
            if len(rows):
                out[rows, slots] = sampler.sample(users[rows], 1)[:, 0]
            return out
        cand = sampler.sample(users, m * c).reshape(len(users), m, c)
        with torch.no_grad():
            ce = emb[torch.from_numpy(cand.reshape(len(users), -1) + pairs.target_offset).to(emb.device)]
            scores = torch.einsum("bd,bkd->bk", u.detach(), ce).reshape(len(users), m, c)
        return hardest_of(scores, cand)


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


def _stale(result: TrainResult) -> int:
    """Evaluations since the best one (for a resumed run)."""
    evals = [h for h in result.history if "val_users" in h]
    return sum(1 for h in evals if h["epoch"] > result.best_epoch)


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else v  # .4g: a small learning rate is not 0.0000


# ---------------------------------------------------------------------------
# checkpoints


def save_checkpoint(
    path, model: nn.Module, opt, rng, result: TrainResult, best_state, fingerprint, cfg, vocab=None
) -> Path:
    """Write everything needed to resume, atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model_kind": getattr(model, "kind", type(model).__name__),
        "model_config": model.config() if hasattr(model, "config") else {},
        "model_state": model.state_dict(),
        "optimizer": opt.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "result": result.to_dict(),
        "best_state": best_state,
        "fingerprint": fingerprint,
        "train_config": asdict(cfg),
        "vocab": vocab,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path) -> dict:
    """Load a checkpoint file, or raise :class:`CheckpointError` saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a graphrec checkpoint (format {getattr(state, 'get', dict)('format')})"
        )
    missing = {"model_kind", "model_config", "model_state", "fingerprint"} - set(state)
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {sorted(missing)}")
    return state


def load_checkpoint(path, *, model: nn.Module, expect_fingerprint: dict | None = None) -> dict:
    """Read a checkpoint and load its weights into ``model`` after checking they belong to it."""
    state = read_checkpoint(path)
    kind = getattr(model, "kind", type(model).__name__)
    if state["model_kind"] != kind:
        raise CheckpointError(f"{path}: checkpoint is for model {state['model_kind']!r}, not {kind!r}")
    if expect_fingerprint is not None:
        fp = state["fingerprint"]
        bad = {k: (fp.get(k), v) for k, v in expect_fingerprint.items() if fp.get(k) != v}
        if bad:
            shown = ", ".join(f"{k}: checkpoint {a!r} vs data {b!r}" for k, (a, b) in bad.items())
            raise CheckpointError(f"{path}: checkpoint was trained on other data ({shown})")
    cfg = model.config() if hasattr(model, "config") else {}
    diff = {k: (state["model_config"].get(k), v) for k, v in cfg.items() if state["model_config"].get(k) != v}
    if diff:
        shown = ", ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{path}: checkpoint does not match the model ({shown})")
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model: {exc}") from None
    return state
