"""Node features for the inductive model, and the heterogeneous graph it runs on.

* Content: hashed TF-IDF of tweet text (a fixed number of buckets, CRC32 of each lower-cased
  word, so no vocabulary needs storing and unseen words still land somewhere); the IDF
  weights are fitted on the training snapshot and reused for new tweets. Works offline.
* Structure: log-degrees (engagements, followers, followees, tweets posted; a tweet's
  engagements, whether it has text / a known author, its author's followers). Datasets
  without text rely on these plus the graph itself.

:class:`FeaturePipeline` is fitted once (IDF) and stored with the model; ``transform`` turns
any snapshot (the training one, or a newer one with new tweets and users) into a
:class:`HeteroGraph` whose ``known_*`` arrays map each node to its training ID row or -1.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from gnn.models import EDGE_TYPES, csr_to_torch
from graph.snapshot import GraphSnapshot

_WORD = re.compile(r"\w+", re.UNICODE)

N_USER_STRUCT = 4
N_TWEET_STRUCT = 4


def hashed_counts(texts: list[str], n_features: int) -> sp.csr_matrix:
    """Rows of word counts in ``n_features`` CRC32 buckets (one row per text)."""
    indptr = [0]
    cols: list[int] = []
    for text in texts:
        words = _WORD.findall(text.lower()) if text else []
        cols.extend(zlib.crc32(w.encode()) % n_features for w in words)
        indptr.append(len(cols))
    m = sp.csr_matrix(
        (np.ones(len(cols), np.float32), np.asarray(cols, np.int64), np.asarray(indptr, np.int64)),
        shape=(len(texts), n_features),
    )
    m.sum_duplicates()
    return m


def tweet_texts_in_order(snap: GraphSnapshot) -> list[str]:
    return [snap.tweet_texts.get(int(t), "") for t in np.asarray(snap.tweet_ids).tolist()]


@dataclass
class HeteroGraph:
    """Everything :class:`gnn.models.HeteroSAGE` reads: features, edges and ID rows.

    ``adj[edge_type]`` is the row-normalised (mean) adjacency, destinations x sources, as a
    torch sparse CSR tensor carrying its transpose in ``.graphrec_t`` (built once here, so
    training never re-sorts edges).
    """

    user_struct: torch.Tensor  # (n_users, N_USER_STRUCT)
    tweet_struct: torch.Tensor  # (n_tweets, N_TWEET_STRUCT)
    text: torch.Tensor | None  # sparse CSR (n_tweets, n_text) or None
    text_t: torch.Tensor | None  # its transpose
    adj: dict[tuple[str, str, str], torch.Tensor]
    known_user: torch.Tensor  # (n_users,) row of the ID table, -1 = unseen
    known_tweet: torch.Tensor  # (n_tweets,)
    device: str = "cpu"
    _moved: dict = field(default_factory=dict, repr=False)

    @property
    def n_users(self) -> int:
        return int(self.user_struct.shape[0])

    @property
    def n_tweets(self) -> int:
        return int(self.tweet_struct.shape[0])

    def to(self, device) -> HeteroGraph:
        """This graph on ``device`` (cached, so a training loop moves it once)."""
        key = str(torch.device(device))
        if key == self.device:
            return self
        if key not in self._moved:
            adj = {}
            for et, m in self.adj.items():
                moved = m.to(key)
                moved.graphrec_t = m.graphrec_t.to(key)
                adj[et] = moved
            self._moved[key] = HeteroGraph(
                self.user_struct.to(key),
                self.tweet_struct.to(key),
                None if self.text is None else self.text.to(key),
                None if self.text_t is None else self.text_t.to(key),
                adj,
                self.known_user.to(key),
                self.known_tweet.to(key),
                device=key,
            )
        g = self._moved[key]
        g.known_user, g.known_tweet = self.known_user.to(key), self.known_tweet.to(key)
        return g


@dataclass
class FeaturePipeline:
    """Fitted feature settings: text buckets and IDF weights (empty when the data has no text)."""

    n_text: int = 2**14
    idf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @classmethod
    def fit(cls, snap: GraphSnapshot, n_text: int = 2**14) -> FeaturePipeline:
        if not snap.tweet_texts:
            return cls(n_text=0)
        counts = hashed_counts(tweet_texts_in_order(snap), n_text)
        has_text = np.diff(counts.indptr) > 0
        df = np.bincount(counts.indices, minlength=n_text).astype(np.float64)
        n_docs = max(int(has_text.sum()), 1)
        idf = (np.log((1.0 + n_docs) / (1.0 + df)) + 1.0).astype(np.float32)
        return cls(n_text=n_text, idf=idf)

    def text_matrix(self, texts: list[str]) -> sp.csr_matrix:
        """L2-normalised TF-IDF rows of ``texts`` (all-zero rows for empty texts)."""
        if not self.n_text:
            return sp.csr_matrix((len(texts), 0), dtype=np.float32)
        m = hashed_counts(texts, self.n_text)
        m.data = np.log1p(m.data)  # sublinear term frequency
        m = (m @ sp.diags(self.idf)).tocsr()
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return (sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m).tocsr().astype(np.float32)

    def transform(
        self,
        snap: GraphSnapshot,
        *,
        known_user_ids: np.ndarray | None = None,
        known_tweet_ids: np.ndarray | None = None,
        engagements: tuple[np.ndarray, np.ndarray] | None = None,
        follows: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> HeteroGraph:
        """The heterogeneous graph of ``snap``.

        ``known_*_ids``: the training vocabularies (external ids) whose ID embeddings
        exist; a node not among them gets -1. Default: the snapshot's own (all known).
        ``engagements`` / ``follows``: (src, dst) dense-index pairs to use as message edges
        instead of the snapshot's (the trainer passes the training split, or a graph where
        some tweets keep only their first few edges).
        """
        nu, nt = snap.n_users, snap.n_tweets
        if engagements is None:
            engagements = _csr_pairs(snap.eng_user_indptr, snap.eng_user_indices)
            engagements = _dedup(*engagements, nt)
        if follows is None:
            follows = _csr_pairs(snap.follow_out_indptr, snap.follow_out_indices)
        eu, et = (np.asarray(a, np.int64) for a in engagements)
        fu, fv = (np.asarray(a, np.int64) for a in follows)
        author = np.asarray(snap.tweet_author, np.int64)
        has_author = np.flatnonzero(author >= 0)
        pu, pt = author[has_author], has_author

        eng_u = np.bincount(eu, minlength=nu)
        followers = np.bincount(fv, minlength=nu)
        followees = np.bincount(fu, minlength=nu)
        posted = np.bincount(pu, minlength=nu)
        user_struct = (
            np.log1p(np.stack([eng_u, followers, followees, posted], axis=1).astype(np.float32)) / 4.0
        )
        texts = tweet_texts_in_order(snap)
        eng_t = np.bincount(et, minlength=nt)
        author_followers = np.where(author >= 0, followers[np.maximum(author, 0)], 0)
        tweet_struct = np.stack(
            [
                np.log1p(eng_t) / 4.0,
                np.array([1.0 if t else 0.0 for t in texts], np.float32),
                (author >= 0).astype(np.float32),
                np.log1p(author_followers) / 4.0,
            ],
            axis=1,
        ).astype(np.float32)
        text = text_t = None
        if self.n_text:
            tm = self.text_matrix(texts)
            text, text_t = csr_to_torch(tm), csr_to_torch(tm.T.tocsr())
        n = {"user": nu, "tweet": nt}
        pairs = [(eu, et), (et, eu), (fu, fv), (fv, fu), (pu, pt), (pt, pu)]
        adj = {
            etype: mean_adjacency(src, dst, n[etype[0]], n[etype[2]])
            for etype, (src, dst) in zip(EDGE_TYPES, pairs)
        }
        return HeteroGraph(
            user_struct=torch.from_numpy(user_struct),
            tweet_struct=torch.from_numpy(tweet_struct),
            text=text,
            text_t=text_t,
            adj=adj,
            known_user=torch.from_numpy(_known(snap.user_ids, known_user_ids)),
            known_tweet=torch.from_numpy(_known(snap.tweet_ids, known_tweet_ids)),
        )


def mean_adjacency(src: np.ndarray, dst: np.ndarray, n_src: int, n_dst: int) -> torch.Tensor:
    """Row-normalised adjacency (destinations x sources) with its transpose attached."""
    a = sp.csr_matrix((np.ones(len(src), np.float32), (dst, src)), shape=(n_dst, n_src))
    a.sum_duplicates()
    a.data[:] = 1.0
    deg = np.diff(a.indptr)
    a = (sp.diags((1.0 / np.maximum(deg, 1)).astype(np.float32)) @ a).tocsr()
    m = csr_to_torch(a)
    m.graphrec_t = csr_to_torch(a.T.tocsr())
    return m


def _csr_pairs(indptr, indices) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.asarray(indptr)
    src = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    return src, np.asarray(indices, np.int64)


def _dedup(u: np.ndarray, t: np.ndarray, n_t: int) -> tuple[np.ndarray, np.ndarray]:
    key = np.unique(u * max(n_t, 1) + t)
    return key // max(n_t, 1), key % max(n_t, 1)


def _known(ids: np.ndarray, vocab: np.ndarray | None) -> np.ndarray:
    ids = np.asarray(ids, np.int64)
    if vocab is None:
        return np.arange(len(ids), dtype=np.int64)
    vocab = np.asarray(vocab, np.int64)
    if not len(vocab):
        return np.full(len(ids), -1, np.int64)
    pos = np.minimum(np.searchsorted(vocab, ids), len(vocab) - 1)
    return np.where(vocab[pos] == ids, pos, -1).astype(np.int64)
