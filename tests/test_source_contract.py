"""Every catalogue source through the same checks (as implicit's RecommenderBaseTestMixin and
LensKit's ScorerTests do for their models): shapes and dtypes, ranked lists with one tie rule,
the history never returned, determinism, batch invariance, precomputed == per call, and the
Recommender's unknown-user path with that source alone."""

from __future__ import annotations

import numpy as np
import pytest

from graph.synthetic import generate
from graph.tasks import TASKS, exclusion_matrix, n_targets
from retrieval.catalogue import CATALOGUE, BuildContext, build_sources
from retrieval.precomputed import PrecomputedSource
from retrieval.recommender import Recommender, RecommenderConfig
from retrieval.sources import CandidateSource

K = 15
SOURCES = [(task, name) for task in TASKS for name in CATALOGUE[task]]


@pytest.fixture(scope="module")
def snap():
    return generate(300, avg_follows=10, avg_engagements=12, seed=11, with_text=True).snapshot()


@pytest.fixture(scope="module")
def context(snap):
    rng = np.random.default_rng(0)
    return BuildContext(
        seed=3,
        user_vectors=rng.standard_normal((snap.n_users, 8)).astype(np.float32),
        tweet_vectors=rng.standard_normal((snap.n_tweets, 8)).astype(np.float32),
    )


def _fitted(snap, context, task, name, serving=False):
    built = build_sources(snap, task, [name], context=context, serving=serving, depth=K)
    assert name in built, f"{task}/{name}: the synthetic graph feeds every source"
    return built[name].fit(snap)


@pytest.mark.parametrize("task,name", SOURCES)
def test_source_contract(snap, context, task, name):
    src = _fitted(snap, context, task, name)
    assert isinstance(src, CandidateSource) and src.name == name and src.task == task
    users = np.array([0, 5, 17, 120, snap.n_users - 1])
    exclude = exclusion_matrix(snap, task)[users]
    ids, vals = src.candidates(users, K, exclude)
    assert ids.shape == vals.shape == (len(users), K)
    assert ids.dtype == np.int64 and vals.dtype == np.float32
    empty = ids < 0
    assert (vals[empty] == 0).all() and (vals[~empty] > 0).all() and np.isfinite(vals).all()
    assert ids.max() < n_targets(snap, task)
    assert (~empty).any(), f"{task}/{name} returned nothing for five users"
    for r in range(len(users)):
        row, v = ids[r][~empty[r]], vals[r][~empty[r]]
        assert (empty[r][: len(row)] == 0).all()  # empty slots only at the end
        assert len(set(row.tolist())) == len(row)
        assert ((v[:-1] > v[1:]) | ((v[:-1] == v[1:]) & (row[:-1] < row[1:]))).all()  # ties by lower id
        assert not set(row.tolist()) & set(exclude[r].indices.tolist())  # history never returned
    again = src.candidates(users, K, exclude)
    np.testing.assert_array_equal(again[0], ids)
    fresh = _fitted(snap, context, task, name).candidates(users, K, exclude)
    np.testing.assert_array_equal(fresh[0], ids)  # same seed, same snapshot: same lists
    one_ids, one_vals = src.candidates(users[2:3], K, exclude[2:3])
    np.testing.assert_array_equal(one_ids[0], ids[2])  # a user's list does not depend on its batch
    np.testing.assert_allclose(one_vals[0], vals[2], rtol=1e-5)
    shorter, _ = src.candidates(users, 5, exclude)
    np.testing.assert_array_equal(shorter, ids[:, :5])


@pytest.mark.parametrize("task,name", SOURCES)
def test_precomputed_lists_equal_the_sources_own(snap, context, task, name):
    plain = _fitted(snap, context, task, name)
    pre = PrecomputedSource(_fitted(snap, context, task, name), depth=K, batch_size=64).fit(snap)
    users = np.arange(0, snap.n_users, 7)
    exclude = exclusion_matrix(snap, task)[users]
    a, av = plain.candidates(users, K, exclude)
    b, bv = pre.candidates(users, K, exclude)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(av, bv, rtol=1e-5)


@pytest.mark.parametrize("task,name", SOURCES)
def test_recommender_with_one_source_serves_known_and_unknown_users(snap, context, task, name):
    config = RecommenderConfig(**{"tweet_weights" if task == "tweets" else "follow_weights": {name: 1.0}})
    rec = Recommender(
        snap,
        config=config,
        tasks=[task],
        user_vectors=context.user_vectors,
        tweet_vectors=context.tweet_vectors,
    )
    call = rec.tweet_candidates if task == "tweets" else rec.who_to_follow
    uid = int(snap.user_ids[5])
    got = call(uid, k=10)
    assert len(got) == 10 and all(r.reason for r in got)
    assert [r.score for r in got] == sorted((r.score for r in got), reverse=True)
    assert any(name in r.sources for r in got)
    cold = call(10**15, k=10)  # unknown user: the cold-start path, never an error
    assert len(cold) == 10 and all("new here" in r.reason for r in cold)
