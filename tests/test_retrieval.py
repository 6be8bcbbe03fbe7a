import inspect

import numpy as np
import pytest
import scipy.sparse as sp

from graph.errors import GraphRecError, SnapshotError
from graph.ranking import select_candidates
from graph.synthetic import generate
from graph.tasks import exclusion_matrix
from retrieval.diversity import cap_per_group, mmr
from retrieval.filters import FilterOptions
from retrieval.fusion import fuse, normalised_lists
from retrieval.recommender import MAX_K, Recommender, RecommenderConfig, UnknownUserError
from retrieval.sources import CoEngagementSource, SecondHopSource, cosine_similarity
from retrieval.walk_sources import pixie_candidates_batch


def top_k(scores, k, exclude=None):
    return select_candidates(scores, k, exclude)


@pytest.fixture(scope="module")
def graph():
    return generate(800, avg_follows=12, avg_engagements=15, seed=7)


@pytest.fixture(scope="module")
def rec(graph):
    return Recommender(graph.snapshot())


def test_top_k_masks_and_orders():
    scores = np.array([[0.1, 0.9, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    ids, vals = top_k(scores, 3, sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]])))
    assert ids.tolist() == [[2, 0, -1], [-1, -1, -1]]
    assert vals[0, :2].tolist() == pytest.approx([0.5, 0.1])


def test_top_k_matches_full_sort_reference():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 300)).astype(np.float32)
    ids, _ = top_k(scores, 10)
    ref = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert (ids == ref).all()


def test_top_k_breaks_ties_at_the_cut_by_index():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 4, (50, 200)).astype(np.float32)  # many ties at every cut
    ids, vals = top_k(scores, 30)
    for row, got, got_vals in zip(scores, ids, vals):
        valid = np.flatnonzero(row > 0)
        ref = valid[np.lexsort((valid, -row[valid]))][:30]
        np.testing.assert_array_equal(got[: len(ref)], ref)
        assert (got[len(ref) :] == -1).all() and (got_vals[len(ref) :] == 0).all()


def test_cosine_keeps_the_lowest_columns_among_ties_at_the_cut():
    m = sp.csr_matrix(np.ones((3, 8), np.float32))  # every pair of columns has cosine 1
    sim = cosine_similarity(m, k=3)
    for c in range(8):
        assert sim[c].indices.tolist() == [j for j in range(8) if j != c][:3]


def test_cosine_matches_dense_reference():
    rng = np.random.default_rng(1)
    m = sp.csr_matrix((rng.random((40, 15)) < 0.3).astype(np.float32))
    sim = cosine_similarity(m, k=15).toarray()
    d = m.toarray()
    norms = np.sqrt((d * d).sum(0))
    ref = (d.T @ d) / np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(ref, 0)
    assert np.allclose(sim, ref, atol=1e-6)


def test_fusion_normalises_each_list_by_its_peak_or_rank():
    ids_a, vals_a = np.array([[0, 1, -1]]), np.array([[2.0, 1.0, 0.0]], np.float32)
    ids_b, vals_b = np.array([[1, 2, -1]]), np.array([[3.0, 3.0, 0.0]], np.float32)
    a, b = normalised_lists(ids_a, vals_a, 3), normalised_lists(ids_b, vals_b, 3)
    fused, parts = fuse({"a": a, "b": b}, {"a": 1.0, "b": 0.5})
    assert fused.toarray()[0].tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert set(parts) == {"a", "b"}
    assert normalised_lists(np.full((1, 3), -1), np.zeros((1, 3), np.float32), 3).nnz == 0
    rr = normalised_lists(ids_a, vals_a, 3, "rrf")
    assert rr.toarray()[0].tolist() == pytest.approx([1 / 61, 1 / 62, 0.0])
    with pytest.raises(GraphRecError, match="unknown fusion"):
        normalised_lists(ids_a, vals_a, 3, "magic")
    with pytest.raises(GraphRecError, match="unknown sources"):
        fuse({"a": a}, {"z": 1})


def test_diversity_helpers():
    ranked = np.array([0, 1, 2, 3, 4])
    groups = np.array([7, 7, 7, 8, -1])
    assert cap_per_group(ranked, groups, 1, 5).tolist() == [0, 3, 4]
    vecs = np.array([[1, 0], [1, 0.01], [0, 1]], np.float32)
    rel = np.array([1.0, 0.99, 0.5])
    assert mmr(np.array([0, 1, 2]), rel, vecs, 2, lam=0.5).tolist() == [0, 2]


def test_who_to_follow_excludes_and_explains(rec, graph):
    snap = rec.snap
    user = int(np.argmax(np.diff(snap.follow_out_indptr)))
    uid = int(snap.user_ids[user])
    out = rec.who_to_follow(uid, k=10)
    assert len(out) == 10
    followed = set(
        snap.user_ids[
            snap.follow_out_indices[snap.follow_out_indptr[user] : snap.follow_out_indptr[user + 1]]
        ]
    )
    ids = [r.id for r in out]
    assert uid not in ids and not followed & set(ids)
    assert all(r.reason for r in out) and all(r.sources for r in out)
    assert [r.score for r in out] == sorted((r.score for r in out), reverse=True)
    blocked = rec.who_to_follow(uid, k=10, filters=FilterOptions(blocked=[ids[0], 10**12]))
    assert ids[0] not in [r.id for r in blocked]


def test_tweet_candidates_filters(rec):
    snap = rec.snap
    user = int(np.argmax(np.diff(snap.eng_user_indptr)))
    uid = int(snap.user_ids[user])
    out = rec.tweet_candidates(uid, k=30)
    engaged = set(
        snap.tweet_ids[snap.eng_user_indices[snap.eng_user_indptr[user] : snap.eng_user_indptr[user + 1]]]
    )
    assert not engaged & {r.id for r in out}
    authors = snap.tweet_author[snap.tweet_index([r.id for r in out])]
    assert user not in authors.tolist()  # own tweets filtered
    capped = rec.tweet_candidates(uid, k=30, per_author_cap=1)
    capped_authors = snap.tweet_author[snap.tweet_index([r.id for r in capped])]
    assert len(set(capped_authors.tolist())) == len(capped_authors)
    muted_author = int(snap.user_ids[authors[0]])
    muted = rec.tweet_candidates(uid, k=30, filters=FilterOptions(muted=[muted_author]))
    assert authors[0] not in snap.tweet_author[snap.tweet_index([r.id for r in muted])].tolist()
    newest = int(snap.tweet_created.max())
    fresh = rec.tweet_candidates(uid, k=30, filters=FilterOptions(max_age_seconds=86400))
    assert all(snap.tweet_created[snap.tweet_index([r.id])[0]] >= newest - 86400 for r in fresh)


def test_similar_users_reasons_name_peers_who_engaged(graph):
    from retrieval.recommender import RecommenderConfig
    from retrieval.sources import SimilarUsersSource

    snap = graph.snapshot()
    rec = Recommender(snap, config=RecommenderConfig(tweet_weights={"similar_users": 1.0}))
    user = int(np.argmax(np.diff(snap.eng_user_indptr)))
    peers = set(SimilarUsersSource().fit(snap).neighbours(np.array([user])).indices.tolist())
    by_name = {f"@{int(snap.user_ids[p])}": p for p in peers}
    named = 0
    for r in rec.tweet_candidates(int(snap.user_ids[user]), k=20):
        assert r.sources.keys() <= {"similar_users", "popular"}
        if not r.reason.startswith("liked by @"):
            continue
        t = snap.tweet_index([r.id])[0]
        engagers = set(
            snap.eng_tweet_indices[snap.eng_tweet_indptr[t] : snap.eng_tweet_indptr[t + 1]].tolist()
        )
        for name in r.reason.removeprefix("liked by ").split(",")[0].split(" and "):
            if name.startswith("@"):
                assert by_name[name] in engagers  # a neighbour of the user who engaged with it
                named += 1
    assert named > 0


def test_unknown_user_cold_start_or_strict(rec):
    out = rec.tweet_candidates(10**15, k=5)
    assert len(out) == 5 and all("new here" in r.reason for r in out)
    with pytest.raises(UnknownUserError, match="unknown user id"):
        rec.who_to_follow(10**15, strict=True)


@pytest.mark.parametrize("k", [0, -3, MAX_K + 1, 2.5, True])
def test_bad_k(rec, k):
    with pytest.raises(GraphRecError, match="k must be"):
        rec.who_to_follow(1, k=k)


def test_same_seed_same_results(graph):
    a = Recommender(graph.snapshot()).who_to_follow(3, k=10)
    b = Recommender(graph.snapshot()).who_to_follow(3, k=10)
    assert [r.id for r in a] == [r.id for r in b]


def test_artifacts_from_another_snapshot_are_detected(tmp_path, graph):
    snap = graph.snapshot()
    snap.save(tmp_path / "snap")
    emb = tmp_path / "emb"
    emb.mkdir()
    (emb / "config.json").write_text('{"format": 1, "snapshot_id": "0000000000000000"}')
    with pytest.raises(SnapshotError, match="re-run `graphrec embed`"):
        Recommender.from_artifacts(tmp_path / "snap", embeddings_dir=emb)


def test_second_hop_scores_real_edges_above_random_pairs(graph):
    """Sanity (quality is measured on real data by the evaluation runner): real follow edges score higher."""
    snap = graph.snapshot()
    src = SecondHopSource().fit(snap)
    users = np.flatnonzero(np.diff(snap.follow_out_indptr) > 5)[:100]
    scores = src.scores(users).toarray()
    rng = np.random.default_rng(0)
    true = [scores[i, snap.follow_out_indices[snap.follow_out_indptr[u]]] for i, u in enumerate(users)]
    rand = [scores[i, rng.integers(snap.n_users)] for i in range(len(users))]
    assert np.mean(true) > np.mean(rand)
    co = CoEngagementSource().fit(snap)
    assert co.scores(users).shape == (len(users), snap.n_tweets)


def test_precomputed_source_serves_the_inner_sources_top_lists(graph):
    from retrieval.precomputed import PrecomputedSource
    from retrieval.sources import SpectralSource

    snap = graph.snapshot()
    inner = SpectralSource(n_factors=16, sharpen=0.5).fit(snap)
    pre = PrecomputedSource(SpectralSource(n_factors=16, sharpen=0.5), depth=25, batch_size=64).fit(snap)
    users = np.arange(0, snap.n_users, 37)
    exclude = exclusion_matrix(snap, "tweets")[users]
    ref_ids, ref_vals = inner.candidates(users, 25, exclude)
    got_ids, got_vals = pre.candidates(users, 25, exclude)
    np.testing.assert_array_equal(got_ids, ref_ids)
    np.testing.assert_allclose(got_vals, ref_vals, rtol=1e-5)
    for row in range(len(users)):
        assert not set(got_ids[row].tolist()) & set(exclude[row].indices.tolist())  # engaged never back
    short_ids, _ = pre.candidates(users, 10, exclude)
    np.testing.assert_array_equal(short_ids, ref_ids[:, :10])
    with pytest.raises(ValueError, match="depth"):
        PrecomputedSource(inner, depth=0)


@pytest.mark.parametrize("follow_weight", [0.0, 1.5])
def test_similar_users_matches_dense_user_knn_reference(graph, follow_weight):
    """User-based kNN through sparse products equals the dense loop it replaces; with a follow
    weight, users are compared on engagements plus their undirected follow neighbourhood."""
    from graph.tasks import interaction_matrix
    from retrieval.sources import SimilarUsersSource

    snap = graph.snapshot()
    src = SimilarUsersSource(k_neighbors=5, shrink=2.0, follow_weight=follow_weight).fit(snap)
    users = np.arange(0, snap.n_users, 53)
    got = src.scores(users).toarray()
    r = src.r.toarray().astype(np.float64)
    f = interaction_matrix(snap, "follows").toarray()
    profile = np.hstack([r, follow_weight * ((f + f.T) > 0)])
    norms = np.sqrt((profile * profile).sum(1))
    changed = 0
    for row, u in enumerate(users):
        sim = (profile @ profile[u]) / (norms * norms[u] + 2.0)
        sim[u] = 0.0
        order = np.lexsort((np.arange(len(sim)), -sim))[:5]
        keep = order[sim[order] > 0]
        ref = sim[keep] @ r[keep]
        np.testing.assert_allclose(got[row], ref, rtol=1e-4, atol=1e-6)
        plain = (r @ r[u]) / (np.sqrt((r * r).sum(1)) * np.sqrt(r[u] @ r[u]) + 2.0)
        plain[u] = 0.0
        changed += not np.array_equal(np.sort(keep), np.sort(np.lexsort((np.arange(len(plain)), -plain))[:5]))
    assert (changed > 0) == (follow_weight > 0)  # the follow graph does change who the neighbours are
    with pytest.raises(GraphRecError, match="k_neighbors"):
        SimilarUsersSource(k_neighbors=0)
    with pytest.raises(GraphRecError, match="follow_weight"):
        SimilarUsersSource(follow_weight=-1.0)


def test_tune_config_picks_weights_that_beat_every_single_source_on_validation(graph, tmp_path):
    from retrieval.autotune import tune_config

    snap = graph.snapshot()
    base = RecommenderConfig()
    config, report = tune_config(snap, base=base, val_users=300, seed=1)
    for kind, weights in (("tweets", config.tweet_weights), ("follows", config.follow_weights)):
        rep = report[kind]
        assert any(w > 0 for w in rep["weights"].values())
        assert rep["val_recall@20"] >= max(rep["single_source_val_recall@20"].values())
        assert rep["replica_val_users"] > 0 and "leave-one-out" in rep["gate"]
        assert {n: weights[n] for n in rep["weights"]} == rep["weights"]
    # the embedding weight is never tuned (embeddings saw the validation edges)
    assert config.tweet_weights["embedding"] == base.tweet_weights["embedding"]
    path = tmp_path / "config.json"
    config.save(path)
    assert RecommenderConfig.load(path) == config
    rec = Recommender(snap, config=config)
    # sources the tuned config switches off are not fitted (nor served)
    for kind, weights in (("tweets", config.tweet_weights), ("follows", config.follow_weights)):
        assert all(weights.get(n) for n in rec.sources[kind])
        assert set(rec.sources[kind]) >= {n for n, w in report[kind]["weights"].items() if w}
    assert any(w == 0 for w in report["follows"]["weights"].values())
    user = int(snap.user_ids[np.argmax(np.diff(snap.eng_user_indptr))])
    assert rec.tweet_candidates(user, 5) and rec.who_to_follow(user, 5)
    with pytest.raises(GraphRecError, match="unknown task"):
        tune_config(snap, tasks=["likes"])


def test_graphrec_tune_writes_a_config_that_recommend_loads(graph, tmp_path, capsys):
    from graphrec.cli import main

    snap_dir = tmp_path / "snap"
    graph.snapshot().save(snap_dir)
    out = tmp_path / "tuned.json"
    args = [
        "tune",
        "--snapshot",
        str(snap_dir),
        "--out",
        str(out),
        "--kinds",
        "follows",
        "--val-users",
        "200",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "follows: weights" in printed and out.exists()
    user = str(int(graph.snapshot().user_ids[0]))
    assert (
        main(["recommend", "--snapshot", str(snap_dir), "--config", str(out), "--user", user, "--json"]) == 0
    )
    assert main(["tune", "--snapshot", str(snap_dir), "--out", str(out), "--kinds", "nope"]) == 2


def test_short_lists_are_backfilled_with_popular_targets_that_pass_the_filters(graph):

    snap = graph.snapshot()
    # follow_back alone finds only the user's unanswered followers: a short list
    rec = Recommender(snap, config=RecommenderConfig(follow_weights={"follow_back": 1.0}))
    out_deg = np.diff(snap.follow_out_indptr)
    user = int(np.argmax(out_deg))
    uid = int(snap.user_ids[user])
    blocked = int(snap.user_ids[np.argmax(np.diff(snap.follow_in_indptr))])
    got = rec.who_to_follow(uid, 20, filters=FilterOptions(blocked=[blocked]))
    assert len(got) == 20
    followed = set(
        snap.user_ids[
            snap.follow_out_indices[snap.follow_out_indptr[user] : snap.follow_out_indptr[user + 1]]
        ].tolist()
    )
    ids = [r.id for r in got]
    assert uid not in ids and blocked not in ids and not followed & set(ids)
    sourced = [r for r in got if "follow_back" in r.sources]
    filled = [r for r in got if r.sources == {"popular": r.score}]
    assert filled and len(sourced) + len(filled) == 20
    assert sourced and min(r.score for r in sourced) > max(r.score for r in filled)
    assert all(r.reason == "popular account" for r in filled)


def test_walk_sources_serve_the_same_lists_per_call_and_precomputed(graph, monkeypatch):
    """Pixie (tweets) and SALSA (follows) are API sources; small snapshots walk for every user
    at fit, large ones per call on one thread: with the same walk budgets both give the same
    candidates and reasons."""
    import retrieval.catalogue as catalogue
    from retrieval.precomputed import PrecomputedSource

    snap = graph.snapshot()
    only_walks = RecommenderConfig(tweet_weights={"pixie": 1.0}, follow_weights={"salsa": 1.0})
    pre = Recommender(snap, config=only_walks)
    assert isinstance(pre.sources["tweets"]["pixie"], PrecomputedSource)
    assert isinstance(pre.sources["follows"]["salsa"], PrecomputedSource)
    monkeypatch.setattr(catalogue, "WALK_PRECOMPUTE_MAX_USERS", 0)
    monkeypatch.setattr(catalogue, "PER_CALL_WALK_BUDGETS", {})
    live = Recommender(snap, config=only_walks)
    assert not isinstance(live.sources["tweets"]["pixie"], PrecomputedSource)
    for user in (1, 40, 333):
        for call in ("tweet_candidates", "who_to_follow"):
            a = getattr(pre, call)(user, k=10)
            b = getattr(live, call)(user, k=10)
            assert [r.id for r in a] == [r.id for r in b]
            assert [r.reason for r in a] == [r.reason for r in b]
            assert [r.score for r in a] == pytest.approx([r.score for r in b])
            walked = [r for r in a if set(r.sources) == {"pixie" if call == "tweet_candidates" else "salsa"}]
            assert walked, f"{call}: no candidate came from the walk source for user {user}"


def test_per_call_walks_get_the_per_call_budgets(graph, monkeypatch):
    """Above the precompute size a served call walks on one thread with the smaller per-call
    budgets (PPR in Monte Carlo mode); at or below it the lists are walked with the full ones."""
    import retrieval.catalogue as catalogue
    from retrieval.walk_sources import PixieSource, PPRSource, SalsaSource

    snap = graph.snapshot()
    full = {
        name: catalogue.build_sources(snap, task, [name], serving=False)[name]
        for task, name in (("tweets", "pixie"), ("follows", "ppr"), ("follows", "salsa"))
    }
    assert full["pixie"].params == {"seed": 0} and full["salsa"].params == {"seed": 0}
    assert full["ppr"].params == {"seed": 0, "mode": "power"}
    monkeypatch.setattr(catalogue, "WALK_PRECOMPUTE_MAX_USERS", snap.n_users - 1)
    budgets = catalogue.PER_CALL_WALK_BUDGETS
    pixie = catalogue.build_sources(snap, "tweets", ["pixie"])["pixie"]
    ppr, salsa = catalogue.build_sources(snap, "follows", ["ppr", "salsa"]).values()
    assert (type(pixie), type(ppr), type(salsa)) == (PixieSource, PPRSource, SalsaSource)
    assert pixie.params == {"seed": 0, **budgets["pixie"]}
    assert ppr.params == {"seed": 0, "mode": "montecarlo", **budgets["ppr"]}
    assert salsa.params == {"seed": 0, **budgets["salsa"]}
    assert (
        budgets["pixie"]["n_steps"] < inspect.signature(pixie_candidates_batch).parameters["n_steps"].default
    )


RECOMMENDER_FORK_SCRIPT = """
import multiprocessing as mp, sys
import numpy as np
sys.path.insert(0, {root!r})
from tests.test_walks import random_snapshot
from graph.ranking import top_k
from retrieval.recommender import Recommender

snap = random_snapshot(3, nu=80, nt=100, n_follow=500, n_eng=900)
rec = Recommender(snap)  # precomputed lists: parallel kernels, threads started
top_k(np.random.default_rng(0).random((64, 50), dtype=np.float32), 5)
uid = int(snap.user_ids[4])
want = ([r.id for r in rec.tweet_candidates(uid, k=5)], [r.id for r in rec.who_to_follow(uid, k=5)])

def child(q):
    q.put(([r.id for r in rec.tweet_candidates(uid, k=5)], [r.id for r in rec.who_to_follow(uid, k=5)]))

ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
got = q.get(timeout=120)
p.join(120)
assert p.exitcode == 0, p.exitcode
assert got == want, (got, want)
print("ok")
"""


def test_forked_worker_can_serve_every_default_source(tmp_path):
    """A pre-fork server builds the Recommender (parallel kernels), forks, and its workers answer
    both calls with every default source and its reasons: none may start OpenMP in the child."""
    from tests.test_walks import run_fork_script

    run_fork_script(tmp_path, "fork_recommender.py", RECOMMENDER_FORK_SCRIPT)


def test_chebycf_filter_matches_a_dense_eigendecomposition_reference():
    """ChebyCF by the sparse three-term recurrence equals the filter applied through a dense
    eigendecomposition of L̃ = I - 2 R̃ᵀR̃ (plateau interpolant, ideal part, degree norms)."""
    from retrieval.sources import SpectralSource, chebyshev_plateau_coefficients

    rng = np.random.default_rng(0)
    dense = (rng.random((60, 40)) < 0.15).astype(np.float32)
    dense[:, 39] = 0  # an item nobody engaged with scores 0
    r = sp.csr_matrix(dense)
    got = SpectralSource(filter="chebycf", n_factors=5).fit_matrix(r).scores(np.arange(60))
    dense = dense.astype(np.float64)
    du, di = dense.sum(1), dense.sum(0)
    r_norm = dense * np.where(du > 0, du, 1)[:, None] ** -0.5 * np.where(di > 0, di, 1) ** -0.5
    lam, vec = np.linalg.eigh(np.eye(40) - 2 * r_norm.T @ r_norm)
    coeffs = chebyshev_plateau_coefficients(8, 1.5)
    response = np.polynomial.chebyshev.chebval(lam, coeffs)
    pre = np.where(di > 0, np.where(di > 0, di, 1) ** -0.4, 0)
    x = dense * pre
    _, _, vt = np.linalg.svd(r_norm)
    want = (x @ vec @ np.diag(response) @ vec.T + 0.2 * x @ vt[:5].T @ vt[:5]) * np.where(
        di > 0, di, 0
    ) ** 0.4
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.all(got[:, 39] == 0)
    # the interpolant is the published low-pass shape: ~1 on the smoothest signals, ~0 on the roughest
    ends = np.polynomial.chebyshev.chebval(np.array([-1.0, 0.0, 1.0]), coeffs)
    np.testing.assert_allclose(ends, [1.0, 0.5, 0.0], atol=0.01)
    with pytest.raises(GraphRecError, match="spectral filter"):
        SpectralSource(filter="heat")


def test_weighted_recall_and_the_shifted_view_gate():
    """A secondary source that only finds light (unpopular) targets wins on plain recall but not
    on popularity-weighted recall: the shifted view keeps it off; the plain gate takes it."""
    from retrieval.tuning import coordinate_ascent, popularity_weights, recall_per_user

    truth = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 1]], np.float32))
    fused = sp.csr_matrix(np.array([[0.9, 0.8, 0, 0], [0, 0, 0, 0.1], [0, 0, 0.5, 0.4]], np.float32))
    w = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(recall_per_user(fused, truth, 2), [0.5, 0, 0.5])
    np.testing.assert_allclose(recall_per_user(fused, truth, 2, w), [0.25, 0, 4 / 6])
    np.testing.assert_allclose(popularity_weights(sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 0]]))), [2, 1, 1])

    # Each user holds out one heavy target (weight 50) and two light ones (weight 1). "main" ranks
    # a heavy decoy, then the heavy target; "side" finds both light targets for 40% of the users,
    # and weighted high enough it pushes the heavy target out of the top 2.
    n_users, n_items = 400, 60
    item_weights = np.r_[np.full(10, 50.0), np.ones(50)]
    rng = np.random.default_rng(0)
    truth = np.zeros((n_users, n_items), np.float32)
    main = np.zeros((n_users, n_items), np.float32)
    side = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        heavy, decoy = rng.choice(10, 2, replace=False)
        light = 10 + rng.choice(50, 2, replace=False)
        truth[u, [heavy, *light]] = 1
        main[u, decoy], main[u, heavy] = 1.0, 0.8
        if u % 5 < 2:
            side[u, light] = [1.0, 0.95]
    cands = {"main": sp.csr_matrix(main), "side": sp.csr_matrix(side)}
    truth = sp.csr_matrix(truth)
    plain, _, single = coordinate_ascent(cands, truth, 2)
    shifted, _, _ = coordinate_ascent(cands, truth, 2, item_weights=item_weights)
    assert max(single, key=single.get) == "main"
    assert plain["side"] > 0 and shifted == {"main": 1.0, "side": 0.0}

    # A second carve where "side" finds nothing: the plain gate keeps it off too; a second carve
    # like the first lets it in.
    from retrieval.tuning import Carve

    empty_side = {"main": cands["main"], "side": sp.csr_matrix(side.shape, dtype=np.float32)}
    replicated, _, _ = coordinate_ascent(cands, truth, 2, replicas=[Carve(empty_side, truth)])
    assert replicated == {"main": 1.0, "side": 0.0}
    agreed, _, _ = coordinate_ascent(cands, truth, 2, replicas=[Carve(cands, truth)])
    assert agreed == plain
