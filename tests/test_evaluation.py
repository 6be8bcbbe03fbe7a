"""Protocols, baselines, registry, runner, CLI and report of the evaluation package."""

from __future__ import annotations

import json
import math

import networkx as nx
import numpy as np
import pytest

from evaluation import baselines as bl
from evaluation import registry
from evaluation.cli import main as cli_main
from evaluation.metrics import hit_matrix
from evaluation.report import PUBLISHED, plot_recall_curves, quality_table
from evaluation.runner import compare, evaluate, tune
from evaluation.splits import build_protocol, time_cutoff
from graph.carve import holdout_per_user, holdout_undirected, is_symmetric
from graph.errors import GraphRecError, InputError
from graph.snapshot import build_snapshot
from graph.tasks import exclusion_matrix, interaction_matrix

# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def lastfm_tweets(data_dir):
    return build_protocol("lastfm", "tweets", data_dir, cold_users="drop")


@pytest.fixture(scope="module")
def lastfm_follows(data_dir):
    return build_protocol("lastfm", "follows", data_dir)


@pytest.fixture(scope="module")
def synthetic_follows_time():
    return build_protocol("synthetic", "follows", split="time", synthetic_users=400, seed=3)


def tiny_snapshot(follows=(), engagements=(), n_users=6, n_tweets=5):
    """A hand-made snapshot: follows [(src, dst)], engagements [(user, tweet, weight)]."""
    f = np.array(follows, dtype=np.int64).reshape(-1, 2)
    e = np.array(engagements, dtype=np.float64).reshape(-1, 3)
    return build_snapshot(
        user_ids=np.arange(n_users),
        tweet_ids=np.arange(n_tweets),
        follow_src=f[:, 0],
        follow_dst=f[:, 1],
        follow_ts=np.zeros(len(f), np.int64),
        eng_user=e[:, 0].astype(np.int64),
        eng_tweet=e[:, 1].astype(np.int64),
        eng_kind=np.full(len(e), 4, np.int8),
        eng_ts=np.zeros(len(e), np.int64),
        eng_weight=e[:, 2].astype(np.float32),
        tweet_author=np.full(n_tweets, -1),
        tweet_created=np.zeros(n_tweets, np.int64),
    )


def random_snapshot(seed=0, n_users=40, n_tweets=30, n_eng=300, n_follows=250):
    rng = np.random.default_rng(seed)
    eng = [
        (int(u), int(t), float(w))
        for u, t, w in zip(
            rng.integers(0, n_users, n_eng), rng.integers(0, n_tweets, n_eng), rng.integers(1, 5, n_eng)
        )
    ]
    fol = [
        (int(a), int(b))
        for a, b in zip(rng.integers(0, n_users, n_follows), rng.integers(0, n_users, n_follows))
        if a != b
    ]
    return tiny_snapshot(fol, eng, n_users, n_tweets)


# ---------------------------------------------------------------------------
# split rules


def test_holdout_per_user_takes_a_rounded_fifth_of_each_user():
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(8), [1, 2, 3, 5, 7, 10, 13, 40])
    held = holdout_per_user(owner, 0.2, rng)
    counts = np.bincount(owner[held], minlength=8)
    assert counts.tolist() == [int(math.floor(0.2 * d + 0.5)) for d in [1, 2, 3, 5, 7, 10, 13, 40]]
    again = holdout_per_user(owner, 0.2, np.random.default_rng(0))
    other = holdout_per_user(owner, 0.2, np.random.default_rng(1))
    assert np.array_equal(held, again) and not np.array_equal(held, other)


def test_leave_one_out_holds_out_one_row_of_every_owner_with_more():
    owner = np.repeat(np.arange(6), [1, 2, 3, 5, 10, 40])
    held = holdout_per_user(owner, 0.2, np.random.default_rng(0), count=1)
    assert np.bincount(owner[held], minlength=6).tolist() == [0, 1, 1, 1, 1, 1]
    two = holdout_per_user(owner, 0.2, np.random.default_rng(0), count=2)
    assert np.bincount(owner[two], minlength=6).tolist() == [0, 0, 2, 2, 2, 2]


def test_weighted_holdout_keeps_the_counts_and_leans_to_heavy_rows():
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(300), 20)
    weights = np.tile(np.r_[np.full(5, 20.0), np.ones(15)], 300)  # 5 heavy rows of 20 per owner
    uniform = holdout_per_user(owner, 0.2, np.random.default_rng(0))
    tilted = holdout_per_user(owner, 0.2, rng, weights)
    assert np.array_equal(np.bincount(owner[tilted]), np.bincount(owner[uniform]))  # 4 rows each
    heavy = weights > 1
    assert heavy[uniform].mean() < 0.35 < 0.8 < heavy[tilted].mean()


def test_holdout_undirected_is_symmetric_and_isolates_nobody():
    g = nx.gnm_random_graph(200, 900, seed=1)
    src = np.array([a for a, b in g.edges] + [b for a, b in g.edges])
    dst = np.array([b for a, b in g.edges] + [a for a, b in g.edges])
    assert is_symmetric(src, dst) and not is_symmetric(src[:10], dst[:10])
    held = holdout_undirected(src, dst, 0.2, np.random.default_rng(0))
    key = set(zip(src[held].tolist(), dst[held].tolist()))
    assert all((b, a) in key for a, b in key)
    assert 0.12 < held.mean() < 0.25
    deg = np.bincount(src, minlength=200)
    kept = np.bincount(src[~held], minlength=200)
    assert (kept[deg > 0] > 0).all()


def test_time_cutoff_leaves_the_last_fifth_after_it():
    ts = np.arange(1000)
    cut = time_cutoff(ts, 0.2)
    assert (ts > cut).sum() == pytest.approx(200, abs=1)


# ---------------------------------------------------------------------------
# protocols on the real datasets


def _pairs(split):
    rows = np.repeat(split.users, np.diff(split.truth.indptr))
    return set(zip(rows.tolist(), split.truth.indices.tolist()))


def _train_pairs(split, task):
    x = interaction_matrix(split.train, task).tocoo()
    return set(zip(x.row.tolist(), x.col.tolist()))


def test_lastfm_tweets_protocol_uses_the_shipped_test_and_carves_validation_from_train(
    data_dir, lastfm_tweets
):
    from graph.datasets import load_dataset

    p = lastfm_tweets
    ds = load_dataset("lastfm", data_dir)
    cold = ~np.isin(ds.test_user, ds.train_user)  # two test users have no training listens
    assert p.split == "fixed" and p.test.n_pairs == (~cold).sum()
    assert len(p.test.users) == len(np.unique(ds.test_user)) - len(np.unique(ds.test_user[cold])) == 1856
    assert any("left out" in n for n in p.notes)
    test_pairs, val_pairs = _pairs(p.test), _pairs(p.val)
    train_pairs, val_train_pairs = _train_pairs(p.test, "tweets"), _train_pairs(p.val, "tweets")
    assert len(train_pairs) == len(ds.train_user)
    assert not test_pairs & train_pairs
    assert val_pairs <= train_pairs and not val_pairs & test_pairs  # validation comes from training only
    assert not val_pairs & val_train_pairs and val_pairs | val_train_pairs == train_pairs
    assert 0.15 < len(val_pairs) / len(train_pairs) < 0.25


def test_cold_test_users_get_a_clear_error(data_dir):
    with pytest.raises(InputError, match=r"2 of 1858 test users have no training tweets.*--cold-users drop"):
        build_protocol("lastfm", "tweets", data_dir)
    kept = build_protocol("lastfm", "tweets", data_dir, cold_users="keep")
    assert len(kept.test.users) == 1858


def test_lastfm_follows_holds_out_friendships_in_both_directions(data_dir, lastfm_follows):
    p = lastfm_follows
    assert p.split == "holdout" and "undirected" in p.description
    test_pairs = _pairs(p.test)
    train_pairs = _train_pairs(p.test, "follows")
    assert not test_pairs & train_pairs
    assert all((b, a) in test_pairs for a, b in test_pairs)
    assert all((b, a) in train_pairs for a, b in train_pairs)
    val_pairs = _pairs(p.val)
    assert val_pairs <= train_pairs and not val_pairs & test_pairs
    assert 0.15 < len(test_pairs) / (len(test_pairs) + len(train_pairs)) < 0.25
    # seeded: the same seed gives the same hold-out, another seed another one
    assert _pairs(build_protocol("lastfm", "follows", data_dir).test) == test_pairs
    assert _pairs(build_protocol("lastfm", "follows", data_dir, seed=1).test) != test_pairs
    # training items for follows are the followees and the user
    excl = exclusion_matrix(p.test.train, "follows")
    assert (excl.diagonal() == 1).all()


def test_flickr_protocols(data_dir):
    from graph.datasets import load_dataset

    ds = load_dataset("flickr", data_dir)
    p = build_protocol("flickr", "tweets", data_dir)
    assert p.val.n_pairs == len(ds.val_user)  # the shipped validation split
    assert interaction_matrix(p.test.train, "tweets").nnz == len(ds.train_user) + len(ds.val_user)
    assert interaction_matrix(p.val.train, "tweets").nnz == len(ds.train_user)
    f = build_protocol("flickr", "follows", data_dir, seed=1)
    assert "follow edges" in f.description
    test_pairs, train_pairs = _pairs(f.test), _train_pairs(f.test, "follows")
    assert not test_pairs & train_pairs
    assert len(test_pairs) + len(train_pairs) == len(ds.follow_src)


def test_synthetic_time_split_trains_on_the_past_only(synthetic_follows_time):
    p = synthetic_follows_time
    snap = p.test.train
    cut = int(p.description.split("t=")[1].split(" ")[0])
    assert np.asarray(snap.follow_out_ts).max() <= cut
    assert np.asarray(snap.eng_user_ts).max() <= cut
    assert len(p.test.users) > 0 and len(p.val.users) > 0
    assert not _pairs(p.test) & _train_pairs(p.test, "follows")


def test_interaction_matrix_merges_kinds_and_leaves_the_snapshot_alone():
    from graph.synthetic import generate

    snap = generate(n_users=200, seed=0).snapshot()
    before = {k: np.array(v) for k, v in snap.arrays.items()}
    x = interaction_matrix(snap, "tweets")
    w = interaction_matrix(snap, "tweets", weighted=True)
    pairs = set(
        zip(
            np.repeat(np.arange(snap.n_users), np.diff(snap.eng_user_indptr)).tolist(),
            snap.eng_user_indices.tolist(),
        )
    )
    assert x.nnz == w.nnz == len(pairs) and set(x.data.tolist()) == {1.0}
    assert w.sum() == pytest.approx(float(np.sum(snap.eng_user_weights)))
    assert all(np.array_equal(before[k], snap.arrays[k]) for k in before)
    assert interaction_matrix(snap, "tweets").nnz == x.nnz


def test_synthetic_holdout_for_both_tasks():
    for task in ("tweets", "follows"):
        p = build_protocol("synthetic", task, synthetic_users=300, seed=0)
        assert p.split == "holdout"
        assert not _pairs(p.test) & _train_pairs(p.test, task)
        assert _pairs(p.val) <= _train_pairs(p.test, task)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dataset="nope", task="tweets"), "unknown dataset 'nope'"),
        (dict(dataset="lastfm", task="likes"), "unknown task 'likes'"),
        (dict(dataset="gowalla", task="follows"), "has no follow graph"),
        (dict(dataset="lastfm", task="tweets", split="time"), "has no timestamps"),
        (dict(dataset="lastfm", task="follows", split="fixed"), "ships no fixed split"),
    ],
)
def test_protocol_bad_input(data_dir, kwargs, message):
    with pytest.raises(InputError, match=message):
        build_protocol(kwargs.pop("dataset"), kwargs.pop("task"), data_dir, **kwargs)


def test_data_dir_without_the_files(tmp_path):
    with pytest.raises(InputError, match="expected files train.txt, test.txt"):
        build_protocol("gowalla", "tweets", tmp_path)
    with pytest.raises(InputError, match="no such directory"):
        build_protocol("gowalla", "tweets", tmp_path / "missing")


# ---------------------------------------------------------------------------
# baselines against brute force


def _dense_topk_check(method, users, ref_scores, excl, k=5):
    """Returned scores equal the reference's best k, ids carry those scores, masked items absent."""
    ids, vals = method.recommend(users, k)
    assert ids.shape == (len(users), k) and ids.dtype == np.int64 and vals.dtype == np.float32
    for row, u in enumerate(users):
        ref = ref_scores[u].astype(np.float64).copy()
        ref[excl[u].indices] = -np.inf
        expected = np.sort(ref[np.isfinite(ref)])[::-1][:k]
        got = vals[row][ids[row] >= 0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ref[ids[row][ids[row] >= 0]], got, rtol=1e-5, atol=1e-6)
        assert not set(ids[row].tolist()) & set(excl[u].indices.tolist())


@pytest.mark.parametrize("task", ["tweets", "follows"])
@pytest.mark.parametrize("alpha, shrink, k_nb", [(0.5, 0.0, 3), (0.3, 5.0, 100)])
def test_itemknn_matches_a_dense_reference(task, alpha, shrink, k_nb):
    snap = random_snapshot(1)
    x = interaction_matrix(snap, task).toarray().astype(np.float64)
    c = x.T @ x
    norms_sq = (x * x).sum(axis=0)
    sim = c / (np.power(norms_sq, alpha)[:, None] * np.power(norms_sq, 1 - alpha)[None, :] + shrink + 1e-300)
    np.fill_diagonal(sim, 0.0)
    w = np.zeros_like(sim)
    for j in range(sim.shape[1]):  # keep the k most similar items of each candidate j
        col = [(-sim[i, j], i) for i in range(sim.shape[0]) if sim[i, j] != 0]
        for _, i in sorted(col)[:k_nb]:
            w[i, j] = sim[i, j]
    m = bl.ItemKNNMethod(k_neighbors=k_nb, shrink=shrink, alpha=alpha, block=7).fit(snap, task)
    _dense_topk_check(m, np.arange(snap.n_users), x @ w, exclusion_matrix(snap, task))


def test_userknn_matches_a_dense_reference():
    snap = random_snapshot(2)
    x = interaction_matrix(snap, "tweets").toarray().astype(np.float64)
    norms = np.sqrt((x * x).sum(axis=1))
    sim = (x @ x.T) / (norms[:, None] * norms[None, :] + 2.0 + 1e-300)
    np.fill_diagonal(sim, 0.0)
    scores = np.zeros_like(x)
    for u in range(len(x)):
        cand = sorted((-sim[u, v], v) for v in range(len(x)) if sim[u, v] != 0)[:4]
        for neg, v in cand:
            scores[u] += -neg * x[v]
    m = bl.UserKNNMethod(k_neighbors=4, shrink=2.0).fit(snap, "tweets")
    _dense_topk_check(m, np.arange(snap.n_users), scores, exclusion_matrix(snap, "tweets"))


def test_popular_ranks_by_in_degree_and_masks_followees_and_self():
    snap = tiny_snapshot([(0, 1), (2, 1), (3, 1), (0, 2), (3, 2), (4, 5)])
    m = bl.PopularMethod().fit(snap, "follows")
    ids, vals = m.recommend(np.array([0, 1]), 3)
    assert ids[0].tolist() == [5, 3, 4]  # 1 and 2 are followed, 0 is the user; ties by lower id
    assert ids[1].tolist() == [2, 5, 0]
    assert vals[0][0] == 1.0


def test_neighbourhood_heuristics_match_networkx_on_undirected_graphs():
    g = nx.gnm_random_graph(30, 80, seed=4)
    follows = [(a, b) for a, b in g.edges] + [(b, a) for a, b in g.edges]
    snap = tiny_snapshot(follows, n_users=30)
    excl = exclusion_matrix(snap, "follows")
    cn = np.zeros((30, 30))
    aa = np.zeros((30, 30))
    for u in range(30):
        for v in range(30):
            if u != v:
                cn[u, v] = len(list(nx.common_neighbors(g, u, v)))
        for _, v, s in nx.adamic_adar_index(g, [(u, v) for v in range(30) if v != u]):
            aa[u, v] = s
    for cls, ref in [(bl.CommonNeighborsMethod, cn), (bl.AdamicAdarMethod, aa)]:
        m = cls(mode="undirected").fit(snap, "follows")
        _dense_topk_check(m, np.arange(30), ref, excl, k=6)


def test_common_neighbors_out_mode_counts_two_hop_paths():
    snap = tiny_snapshot([(0, 1), (0, 2), (1, 3), (2, 3), (2, 4), (3, 0)], n_users=6)
    ids, vals = bl.CommonNeighborsMethod(mode="out").fit(snap, "follows").recommend(np.array([0]), 3)
    assert ids[0].tolist() == [3, 4, 5] and vals[0].tolist() == [2.0, 1.0, 0.0]


def test_ppr_networkx_on_a_chain():
    # 0 -> 1 -> 2 -> 3: from 0 the walk reaches 2 more often than 3
    snap = tiny_snapshot([(0, 1), (1, 2), (2, 3)], n_users=5)
    m = bl.PPRNetworkxMethod(max_eval_users=10).fit(snap, "follows")
    ids, _ = m.recommend(np.array([0]), 3)
    assert ids[0].tolist()[:2] == [2, 3]
    big = random_snapshot(0, n_users=40)
    with pytest.raises(InputError, match="above max_nodes"):
        bl.PPRNetworkxMethod(max_nodes=10).fit(big, "follows")


@pytest.mark.parametrize("cls", [bl.ALSMethod, bl.BPRMethod])
def test_factorisation_baselines_follow_the_contract(cls):
    snap = random_snapshot(5, n_users=60, n_tweets=40, n_eng=600)
    m = cls(factors=8, iterations=5, num_threads=1).fit(snap, "tweets")
    ids, vals = m.recommend(np.arange(60), 10)
    excl = exclusion_matrix(snap, "tweets")
    assert not hit_matrix(ids, excl).any()
    assert (np.diff(vals, axis=1)[ids[:, 1:] >= 0] <= 1e-6).all()  # best first
    ids2, _ = cls(factors=8, iterations=5, num_threads=1).fit(snap, "tweets").recommend(np.arange(60), 10)
    assert np.array_equal(ids, ids2)  # seeded, one thread: reproducible


def test_methods_reject_unsupported_tasks_and_bad_users():
    snap = random_snapshot(0)
    with pytest.raises(InputError, match="supports task"):
        bl.CommonNeighborsMethod().fit(snap, "tweets")
    m = bl.PopularMethod().fit(snap, "tweets")
    with pytest.raises(InputError, match="out of range"):
        m.recommend(np.array([0, 99]), 5)
    with pytest.raises(InputError, match="positive integer"):
        m.recommend(np.array([0]), 0)


# ---------------------------------------------------------------------------
# registry


def test_registry_has_every_method_and_lazy_errors(monkeypatch):
    for name in (
        "popular",
        "itemknn",
        "userknn",
        "als",
        "bpr",
        "common-neighbors",
        "adamic-adar",
        "ppr-networkx",
        "pixie",
        "ppr",
        "salsa",
        "fof",
        "spectral",
        "lightgcn",
        "sage",
        "hybrid",
    ):
        assert name in registry.METHODS
    assert registry.get_method("itemknn") is bl.ItemKNNMethod
    with pytest.raises(InputError, match="unknown method 'nope'.*available methods"):
        registry.get_method("nope")
    monkeypatch.setitem(registry.METHODS, "ghost", "no_such_package.methods:GhostMethod")
    with pytest.raises(InputError, match="module no_such_package.methods is not in this checkout yet"):
        registry.get_method("ghost")
    monkeypatch.setitem(registry.METHODS, "ghost2", "evaluation.baselines:NoSuchMethod")
    with pytest.raises(InputError, match="has no class NoSuchMethod"):
        registry.get_method("ghost2")


# ---------------------------------------------------------------------------
# runner


def test_runner_metrics_agree_with_a_direct_computation(lastfm_tweets):
    res = evaluate(lastfm_tweets, "popular", k=20, n_boot=50)
    rec = res.record
    # direct: the 20 most popular unseen items, recall per user
    x = interaction_matrix(lastfm_tweets.test.train, "tweets")
    pop = np.asarray(x.sum(axis=0)).ravel()
    order = sorted(range(len(pop)), key=lambda i: (-pop[i], i))
    recalls = []
    for row, u in enumerate(lastfm_tweets.test.users):
        seen = set(x[u].indices.tolist())
        top = [i for i in order if i not in seen][:20]
        rel = set(lastfm_tweets.test.truth[row].indices.tolist())
        recalls.append(len(rel & set(top)) / len(rel))
    assert rec["metrics"]["recall@20"] == pytest.approx(np.mean(recalls))
    lo, hi = rec["intervals"]["recall@20"]
    assert lo < rec["metrics"]["recall@20"] < hi
    assert len(rec["curve"]["recall"]) == 100
    assert rec["curve"]["recall"][19] == pytest.approx(rec["metrics"]["recall@20"])
    assert rec["n_users"] == len(lastfm_tweets.test.users)
    assert rec["git"]["commit"] and rec["timings"]["evaluation_overhead_s"] >= 0
    json.dumps(rec)  # JSON-serialisable


def test_tuning_picks_the_best_validation_setting(lastfm_tweets, monkeypatch):
    monkeypatch.setattr(
        bl.ItemKNNMethod, "param_grid", {"k_neighbors": [5, 100], "shrink": [10.0], "alpha": [0.5]}
    )
    t = tune("itemknn", lastfm_tweets, k=20, val_max_users=300)
    assert (
        len(t["trials"]) == 4 and t["val_users"] == 300
    )  # x {binary, log} weighting: lastfm has listen counts
    best = max(t["trials"], key=lambda tr: tr["val"]["recall@20"])
    assert t["best"] == best["params"]
    res = evaluate(lastfm_tweets, "itemknn", k=20, tune_params=True, n_boot=20, val_max_users=300)
    assert res.record["tuned"] and res.record["params"]["k_neighbors"] == t["best"]["k_neighbors"]


def test_large_grids_use_coordinate_search(lastfm_tweets, monkeypatch):
    monkeypatch.setattr(
        bl.ItemKNNMethod, "param_grid", {"k_neighbors": [5, 50, 100], "shrink": [0.0, 10.0], "alpha": [0.5]}
    )
    t = tune("itemknn", lastfm_tweets, k=20, val_max_users=200, max_trials=4)
    # 3 x 2 x 1 x 2 weightings = 12 combinations; coordinate ascent fits only some of them
    assert t["search"] == "coordinate" and len(t["trials"]) < 12
    configs = [repr(sorted(tr["config"].items())) for tr in t["trials"]]
    assert len(configs) == len(set(configs))  # no combination fitted twice
    best = max(t["trials"], key=lambda tr: (tr["val"]["recall@20"], tr["val"]["ndcg@20"]))
    assert t["best"] == best["params"]
    swept = {tr["config"]["k_neighbors"] for tr in t["trials"]}
    assert swept == {5, 50, 100}  # every value of every parameter is tried at least once


def test_tune_flag_with_a_method_that_tunes_itself(lastfm_follows):
    # the hybrid declares no grid (it tunes its weights inside fit) and reports fitted weights
    # among its parameters: --tune must neither refit it for nothing nor feed those back in
    sources = ("second_hop", "co_follow", "popular")
    res = evaluate(
        lastfm_follows, "hybrid", {"sources": sources, "val_users": 300}, k=20, tune_params=True, n_boot=20
    )
    assert "nothing to tune" in res.record["tuning"]["note"]
    tuned = res.record["params"]["tuning"]["weights"]
    assert set(tuned) <= set(sources) and any(tuned.values())
    assert res.metrics["recall@20"] > 0


def test_paired_comparison_between_two_runs(lastfm_follows):
    a = evaluate(lastfm_follows, "adamic-adar", k=20, n_boot=50)
    b = evaluate(lastfm_follows, "popular", k=20, n_boot=50)
    cmp = compare(a, b, k=20, n_perm=500)
    t = cmp["tests"]["recall@20"]
    assert cmp["n_users"] == len(lastfm_follows.test.users)
    assert t["diff"] == pytest.approx(a.metrics["recall@20"] - b.metrics["recall@20"])
    assert t["diff_ci"][0] > 0 and t["p_value"] < 0.01


class _CheatingMethod:
    name = "cheat"
    tasks = ("tweets",)

    def __init__(self, *, duplicate: bool = False, seed: int = 0):
        self.duplicate = duplicate

    def fit(self, train, task):
        self.x = exclusion_matrix(train, task)
        return self

    def recommend(self, users, k):
        ids = np.full((len(users), k), -1, np.int64)
        for row, u in enumerate(users):  # tiny test double: recommends its first training item
            ids[row, 0] = self.x[u].indices[0]
        if self.duplicate:
            ids[:, 0] = 0
            ids[:, 1] = 0
        return ids, np.zeros((len(users), k), np.float32)


def test_runner_rejects_methods_that_break_the_contract(lastfm_tweets, monkeypatch):
    import sys
    import types

    mod = types.ModuleType("cheat_methods")
    mod.CheatingMethod = _CheatingMethod
    monkeypatch.setitem(sys.modules, "cheat_methods", mod)
    monkeypatch.setitem(registry.METHODS, "cheat", "cheat_methods:CheatingMethod")
    with pytest.raises(GraphRecError, match="recommended training items"):
        evaluate(lastfm_tweets, "cheat", n_boot=10)
    with pytest.raises(GraphRecError, match="same item twice"):
        evaluate(lastfm_tweets, "cheat", {"duplicate": True}, n_boot=10)
    with pytest.raises(InputError, match="has no parameter"):
        evaluate(lastfm_tweets, "popular", {"factors": 3}, n_boot=10)


# ---------------------------------------------------------------------------
# command line


def _run_cli(capsys, *argv):
    code = cli_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--dataset", "movielens", "--task", "tweets", "--method", "popular"],
            "unknown dataset 'movielens'",
        ),
        (["--dataset", "lastfm", "--task", "likes", "--method", "popular"], "unknown task 'likes'"),
        (["--dataset", "lastfm", "--task", "tweets", "--method", "magic"], "unknown method 'magic'"),
        (
            ["--dataset", "lastfm", "--task", "tweets", "--method", "popular", "--k", "0"],
            "--k 0 is out of range",
        ),
        (
            ["--dataset", "lastfm", "--task", "tweets", "--method", "popular", "--k", "5000"],
            "--k 5000 is out of range",
        ),
        (["--dataset", "lastfm", "--task", "tweets", "--method", "popular"], "--cold-users drop"),
        (
            [
                "--dataset",
                "lastfm",
                "--task",
                "tweets",
                "--method",
                "common-neighbors",
                "--cold-users",
                "drop",
            ],
            "supports task",
        ),
        (
            ["--dataset", "lastfm", "--task", "follows", "--method", "popular", "--param", "x"],
            "expected KEY=VALUE",
        ),
        (["--dataset", "lastfm", "--method", "popular"], "missing --task"),
    ],
)
def test_cli_bad_input_gives_a_clear_error(capsys, data_dir, extra, message):
    code, out, err = _run_cli(capsys, "--data-dir", str(data_dir), *extra)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_cli_missing_data_dir(capsys, tmp_path):
    code, _, err = _run_cli(
        capsys, "--dataset", "lastfm", "--data-dir", str(tmp_path), "--task", "tweets", "--method", "popular"
    )
    assert code == 2 and "expected files data1.txt" in err


def test_cli_writes_json_table_and_plot(capsys, data_dir, tmp_path):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    code, out, err = _run_cli(
        capsys,
        "evaluate",
        "--dataset",
        "lastfm",
        "--data-dir",
        str(data_dir),
        "--task",
        "follows",
        "--method",
        "adamic-adar",
        "--compare",
        "popular",
        "--json",
        str(out_json),
        "--plot",
        str(out_png),
        "--bootstrap",
        "50",
        "--no-progress",
    )
    assert code == 0, err
    assert "recall@20" in out and "paired test adamic-adar - popular" in out
    rec = json.loads(out_json.read_text())
    assert isinstance(rec["metrics"]["recall@20"], float) and isinstance(rec["metrics"]["ndcg@20"], float)
    assert rec["command"].startswith("python -m evaluation") and rec["git"]["commit"]
    assert rec["comparisons"][0]["run"]["method"] == "popular"
    assert out_png.stat().st_size > 1000
    code, out, _ = _run_cli(capsys, "--list-methods")
    assert code == 0 and "ppr-networkx" in out


def test_graphrec_command_has_evaluate(capsys, data_dir):
    from graphrec.cli import main as graphrec_main

    code = graphrec_main(
        [
            "evaluate",
            "--dataset",
            "lastfm",
            "--data-dir",
            str(data_dir),
            "--task",
            "tweets",
            "--method",
            "popular",
            "--k",
            "0",
        ]
    )
    assert code == 2 and "--k 0 is out of range" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# report


def test_quality_table_has_published_rows_and_plot(tmp_path, lastfm_tweets):
    rec = evaluate(lastfm_tweets, "popular", n_boot=20, command="graphrec evaluate ...").record
    fake = json.loads(json.dumps(rec))
    fake["dataset"] = "gowalla"
    fake["protocol"]["description"] = "gowalla shipped split"
    text = quality_table([rec, fake])
    assert "### gowalla / tweets (fixed split)" in text and "### lastfm / tweets (fixed split)" in text
    for ref in PUBLISHED[("gowalla", "tweets")]:
        assert ref["method"] in text
    assert "`graphrec evaluate ...`" in text and "[" in text
    png = plot_recall_curves([rec], tmp_path / "c.png", title="t")
    assert png.stat().st_size > 1000
