"""Cold start by first engagers (retrieval.coldstart) and its path in the live stage."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from graph.errors import GraphRecError
from graph.synthetic import generate
from retrieval.coldstart import COLD_WEIGHTS, cold_scores, engager_scores
from retrieval.recommender import Recommender
from retrieval.sources import SimilarUsersSource
from tests.test_live import _columns


def test_engager_scores_known_answer():
    # 2 users in the batch, 4 users in all; tweet 0 engaged by users 2 and 3, tweet 1 by user 1
    neighbours = sp.csr_matrix(np.array([[0, 0.5, 0.2, 0], [0.4, 0, 0, 0.1]], np.float32))
    engagers = sp.csr_matrix(np.array([[0, 0, 1, 1], [0, 1, 0, 0]], np.float32))
    vectors = np.array([[1, 0], [0, 1], [1, 1], [1, -1]], np.float32)
    parts = engager_scores(neighbours, engagers, vectors, np.array([0, 1]))
    np.testing.assert_allclose(parts["similar_users"].toarray(), [[0.2, 0.5], [0.1, 0.0]], atol=1e-6)
    # tweet 0: mean of (1,1) and (1,-1) = (1,0); tweet 1: (0,1)
    np.testing.assert_allclose(parts["engagers_embedding"], [[1, 0], [0, 1]], atol=1e-6)
    fused = cold_scores(parts, {"similar_users": 1.0, "engagers_embedding": 0.5})
    # rows normalised by their best score: user 0 similar (0.4, 1.0), user 1 similar (1.0, 0)
    np.testing.assert_allclose(fused, [[0.4 + 0.5, 1.0], [1.0, 0.5]], atol=1e-6)
    assert set(COLD_WEIGHTS) == {"similar_users", "engagers_embedding"}


def test_without_embeddings_the_scores_are_the_similar_users_source_on_the_tweets():
    snap = generate(120, avg_follows=5, avg_engagements=8, seed=3, with_text=False).snapshot()
    source = SimilarUsersSource().fit(snap)
    users = np.arange(0, 120, 7)
    tweets = np.arange(0, snap.n_tweets, 5)
    engagers = source.r[:, tweets].T.tocsr()
    parts = engager_scores(source.neighbours(users), engagers)
    assert set(parts) == {"similar_users"}
    expect = sp.csr_matrix(source.scores(users))[:, tweets].toarray()
    np.testing.assert_allclose(parts["similar_users"].toarray(), expect, rtol=1e-5, atol=1e-7)
    norm = cold_scores(parts)  # the embedding weight has no term to act on
    peak = expect.max(axis=1, keepdims=True)
    want = np.divide(expect, peak, out=np.zeros_like(expect), where=peak > 0) * COLD_WEIGHTS["similar_users"]
    np.testing.assert_allclose(norm, want, atol=1e-6)  # the ranking is the similar_users source's


def test_mismatched_shapes_are_an_error():
    with pytest.raises(GraphRecError, match="neighbours cover"):
        engager_scores(sp.csr_matrix((1, 3)), sp.csr_matrix((2, 4)))


@pytest.mark.parametrize("with_vectors", [False, True])
def test_a_new_tweet_engaged_by_a_similar_user_reaches_the_user_live(with_vectors):
    """Neither followees nor the user's own new engagements lead to the tweet: only its first
    engager being like the user does (the cold-start path of the live stage)."""
    g = generate(200, avg_follows=0, avg_engagements=10, seed=5, with_text=False)
    snap = g.snapshot()
    assert snap.n_follows == 0
    vectors = np.random.default_rng(0).standard_normal((snap.n_users, 8)).astype(np.float32)
    rec = Recommender(
        snap,
        user_vectors=vectors if with_vectors else None,
        tweet_vectors=np.zeros((snap.n_tweets, 8), np.float32) if with_vectors else None,
    )
    u = 4
    nb = rec.sources["tweets"]["similar_users"].neighbours(np.array([u]))
    assert nb.nnz
    v = int(nb.indices[np.argmax(nb.data)])  # the user most like u
    uid, vid = int(snap.user_ids[u]), int(snap.user_ids[v])
    new_tweet = 10**12
    rec.apply_events(
        _columns(
            tweet_ids=[new_tweet],
            tweet_authors=[vid],
            tweet_created=[int(np.asarray(snap.tweet_created).max()) + 10],
            eng_user=[vid],
            eng_tweet=[new_tweet],
        )
    )
    got = {r.id: r for r in rec.tweet_candidates(uid, 10_000)}
    assert new_tweet in got and "live" in got[new_tweet].sources
    rec.overlay.similar_users = None  # without the cold-start path nothing leads there
    assert new_tweet not in {r.id for r in rec.tweet_candidates(uid, 10_000)}
