"""The training losses, on a detached copy of the step's node-space embeddings.

Each function returns the loss of one chunk of positives divided by ``denom`` (the number of
positives in the whole step), so the chunks' gradients add up to the step's mean. ``emb`` is
the ``(n_nodes, dim)`` output of the model (users first; a task's targets start at
``pairs.target_offset``); ``cfg`` is the run's :class:`~gnn.trainer.TrainConfig` (its
``weight_decay`` is the L2 term on the embeddings the chunk touches).

* :func:`sampled_loss`: ``softmax``, the sampled softmax over a shared pool of uniform
  negatives (pool entries that are a row's training positive are removed from that row's
  softmax), or ``bpr``, Bayesian personalised ranking averaged over ``bpr_negatives``
  negatives per positive (:func:`gnn.negatives.bpr_negatives`).
* :func:`full_softmax_loss`: each positive's softmax over itself and all the user's
  non-positives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from gnn.data import PairSet
from gnn.negatives import NegativeSampler, bpr_negatives

if TYPE_CHECKING:  # the trainer imports this module
    from gnn.trainer import TrainConfig


def sampled_loss(
    emb: torch.Tensor,
    pairs: PairSet,
    sampler: NegativeSampler,
    part: np.ndarray,
    denom: int,
    cfg: TrainConfig,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
) -> torch.Tensor:
    """The ``cfg.loss`` (``softmax`` or ``bpr``) of positives ``part`` (rows of ``pairs``).

    ``neighbors`` (bpr; :func:`gnn.item_neighbors.item_neighbors`): each positive's target's
    nearest co-engaged targets and weights; they join as extra positives of the same user
    against the same negatives, weighted by ``cfg.item_neighbor_weight`` (UltraGCN's
    item-item constraint in pairwise form)."""
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
        hard = m - cfg.uniform_negatives  # the rest are uniform draws
        neg_t = bpr_negatives(emb, u, pairs, sampler, users, hard, cfg.hard_negative_candidates)
        if cfg.uniform_negatives:
            neg_t = np.concatenate([neg_t, sampler.sample(users, cfg.uniform_negatives)], axis=1)
        neg = emb[torch.from_numpy(neg_t + pairs.target_offset).to(dev)]  # (B, m, d)
        neg_score = torch.einsum("bd,bmd->bm", u, neg)
        diff = (u * pos).sum(dim=1, keepdim=True) - neg_score
        loss = -F.logsigmoid(diff).mean(dim=1).sum() / denom
        if neighbors is not None and cfg.item_neighbor_weight > 0:
            ids, weights = neighbors
            t = pairs.targets[part]
            nb = emb[torch.from_numpy(ids[t] + pairs.target_offset).to(dev)]  # (B, k, d)
            nb_score = torch.einsum("bd,bkd->bk", u, nb)
            nb_diff = nb_score[:, :, None] - neg_score[:, None, :]  # (B, k, m)
            w = torch.from_numpy(weights[t]).to(dev)
            nb_loss = -(w * F.logsigmoid(nb_diff).mean(dim=2)).sum() / denom
            loss = loss + cfg.item_neighbor_weight * nb_loss
        neg = neg.reshape(-1, neg.shape[-1]) / m**0.5  # so neg.pow(2).sum() averages over m
    if cfg.weight_decay > 0:
        loss = loss + cfg.weight_decay * 0.5 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / denom
    return loss


def full_softmax_loss(
    emb: torch.Tensor,
    pairs: PairSet,
    indptr: np.ndarray,
    users: np.ndarray,
    denom: int,
    cfg: TrainConfig,
) -> torch.Tensor:
    """Softmax over every target for all positives of ``users`` (``indptr``: the pairs' per-user
    offsets): each positive against itself and the user's non-positives."""
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
