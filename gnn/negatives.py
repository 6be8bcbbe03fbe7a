"""Negative sampling for the training loop: targets that are never a training positive.

* :class:`NegativeSampler`: uniform negatives by rejection (sorted-key lookup), and the shared
  negative pool of the sampled softmax with its per-row mask of positives.
* :func:`bpr_negatives`: BPR's negatives, uniform or each the best-scoring of several draws
  (dynamic negative sampling, Zhang et al. SIGIR 2013).
* :func:`hardest_negatives`: the compiled CPU pass behind the latter. For each (positive, slot)
  it scores the slot's uniform candidate targets against the user's embedding and keeps the
  best one that is not a training positive of that user. One fused pass: no
  ``(B, m, c, dim)`` gather is materialised and positives are found by a binary search in the
  user's own sorted list rather than over every key. The torch path of :func:`bpr_negatives`
  (rejection-sampled candidates, scored with ``einsum``, :func:`hardest_of`) is the reference
  it is tested against, and the path used on GPUs.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from gnn.data import PairSet, user_indptr
from graph.errors import InputError


class NegativeSampler:
    """Uniform negatives for one task's pairs that are never a training positive of their user.

    Positives are looked up in the pairs' sorted ``user * n_targets + target`` keys;
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


def bpr_negatives(
    emb: torch.Tensor,
    u: torch.Tensor,
    pairs: PairSet,
    sampler: NegativeSampler,
    users: np.ndarray,
    m: int,
    candidates: int = 1,
) -> np.ndarray:
    """``(B, m)`` negatives: uniform (``candidates == 1``), or each the hardest of ``candidates``
    draws, scored against the rows' user embeddings ``u`` with the step's embeddings ``emb``
    (never a training positive either way)."""
    c = candidates
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


def hardest_of(scores: torch.Tensor, candidates: np.ndarray) -> np.ndarray:
    """Per ``(row, slot)``, the candidate with the highest score: ``candidates`` and ``scores``
    are ``(B, m, c)``; returns ``(B, m)`` (ties: the first candidate)."""
    best = scores.argmax(dim=2).cpu().numpy()
    return np.take_along_axis(candidates, best[:, :, None], axis=2)[:, :, 0]


@njit(parallel=True, cache=True)
def _hardest_kernel(user_vecs, table, users, indptr, targets, cand, out):  # pragma: no cover - compiled
    n_rows, n_slots, n_cand = cand.shape
    dim = user_vecs.shape[1]
    for b in prange(n_rows):
        u = users[b]
        lo0, hi0 = indptr[u], indptr[u + 1]
        for s in range(n_slots):
            best = -1
            best_score = -np.inf
            for j in range(n_cand):
                t = cand[b, s, j]
                lo, hi = lo0, hi0  # binary search for t in the user's sorted positives
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if targets[mid] < t:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo < hi0 and targets[lo] == t:
                    continue
                score = np.float32(0.0)
                for d in range(dim):
                    score += user_vecs[b, d] * table[t, d]
                if score > best_score:  # strict: ties keep the first candidate
                    best_score = score
                    best = t
            out[b, s] = best


def hardest_negatives(
    user_vecs: np.ndarray,
    target_vecs: np.ndarray,
    users: np.ndarray,
    indptr: np.ndarray,
    targets: np.ndarray,
    candidates: np.ndarray,
) -> np.ndarray:
    """``(B, m)``: per row and slot, the highest-scoring candidate that is not a positive.

    ``user_vecs`` (B, dim) are the rows' user embeddings, ``target_vecs`` (n_targets, dim) the
    target embeddings, ``candidates`` (B, m, c) target indices; user ``users[b]``'s positives
    are ``targets[indptr[u]:indptr[u + 1]]``, sorted. Candidates that are positives are
    skipped; a slot whose candidates are all positives gets -1 (the caller redraws it).
    Ties go to the first candidate.
    """
    cand = np.ascontiguousarray(candidates, dtype=np.int64)
    if cand.ndim != 3 or cand.shape[0] != len(users) or len(user_vecs) != len(users):
        raise ValueError(
            f"candidates {cand.shape} and user_vecs {np.shape(user_vecs)} must have len(users) rows"
        )
    out = np.empty(cand.shape[:2], np.int64)
    _hardest_kernel(
        np.ascontiguousarray(user_vecs, dtype=np.float32),
        np.ascontiguousarray(target_vecs, dtype=np.float32),
        np.ascontiguousarray(users, dtype=np.int64),
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(targets, dtype=np.int64),
        cand,
        out,
    )
    return out
