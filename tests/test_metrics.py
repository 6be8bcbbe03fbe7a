"""Every metric against a slow, obviously-correct reference on random inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from evaluation import metrics as em
from evaluation.stats import bootstrap_ci, bootstrap_means, paired_test, sign_flip_pvalue
from graph.ranking import (
    filter_lists,
    in_sorted,
    lists_to_csr,
    prune_rows,
    select_candidates,
    top_k,
    top_k_csr,
    top_k_reference,
)

# ---------------------------------------------------------------------------
# random rankings and the reference metrics


def random_case(seed: int, n_users: int = 40, n_items: int = 60, K: int = 25):
    """Random top-K lists (no duplicates, some -1 padding) and random relevant sets."""
    rng = np.random.default_rng(seed)
    topk = np.full((n_users, K), -1, dtype=np.int64)
    truth_sets = []
    for u in range(n_users):
        length = int(rng.integers(0, K + 1))
        topk[u, :length] = rng.choice(n_items, size=length, replace=False)
        n_rel = int(rng.integers(1, 12))
        rel = set(rng.choice(n_items, size=n_rel, replace=False).tolist())
        if length and rng.random() < 0.5:  # make hits likely
            rel |= set(topk[u, : min(length, 3)].tolist())
        truth_sets.append(rel)
    rows = [u for u, s in enumerate(truth_sets) for _ in s]
    cols = [i for s in truth_sets for i in sorted(s)]
    truth = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    return topk, truth, truth_sets


def ref_list(topk_row, k):
    return [int(i) for i in topk_row[:k] if i >= 0]


def ref_recall(topk, sets, k):
    return [len(set(ref_list(r, k)) & s) / len(s) for r, s in zip(topk, sets)]


def ref_precision(topk, sets, k):
    return [len(set(ref_list(r, k)) & s) / k for r, s in zip(topk, sets)]


def ref_ndcg(topk, sets, k):
    out = []
    for r, s in zip(topk, sets):
        dcg = sum(1.0 / math.log2(pos + 2) for pos, i in enumerate(r[:k]) if i >= 0 and int(i) in s)
        idcg = sum(1.0 / math.log2(pos + 2) for pos in range(min(len(s), k)))
        out.append(dcg / idcg)
    return out


def ref_ap(topk, sets, k):
    out = []
    for r, s in zip(topk, sets):
        found, total = 0, 0.0
        for pos, i in enumerate(r[:k]):
            if i >= 0 and int(i) in s:
                found += 1
                total += found / (pos + 1)
        out.append(total / min(len(s), k))
    return out


def ref_rr(topk, sets, k):
    out = []
    for r, s in zip(topk, sets):
        rr = 0.0
        for pos, i in enumerate(r[:k]):
            if i >= 0 and int(i) in s:
                rr = 1.0 / (pos + 1)
                break
        out.append(rr)
    return out


def ref_hit(topk, sets, k):
    return [float(bool(set(ref_list(r, k)) & s)) for r, s in zip(topk, sets)]


def ref_auc(topk, sets, candidates):
    """Pairwise: listed items score by position, unlisted ones tie at the bottom."""
    out = []
    for r, s, cand in zip(topk, sets, candidates):
        listed = [int(i) for i in r if i >= 0]
        score = {i: len(listed) - pos for pos, i in enumerate(listed)}
        pos_items = [i for i in cand if i in s]
        neg_items = [i for i in cand if i not in s]
        if not pos_items or not neg_items:
            out.append(float("nan"))
            continue
        total = 0.0
        for p in pos_items:
            for q in neg_items:
                a, b = score.get(p, 0), score.get(q, 0)
                total += 1.0 if a > b else (0.5 if a == b else 0.0)
        out.append(total / (len(pos_items) * len(neg_items)))
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 5, 20, 25])
def test_accuracy_metrics_match_reference(seed, k):
    topk, truth, sets = random_case(seed)
    hits = em.hit_matrix(topk, truth)
    n_rel = np.diff(truth.indptr)
    np.testing.assert_allclose(em.recall_at_k(hits, n_rel, k), ref_recall(topk, sets, k))
    np.testing.assert_allclose(em.precision_at_k(hits, k), ref_precision(topk, sets, k))
    np.testing.assert_allclose(em.ndcg_at_k(hits, n_rel, k), ref_ndcg(topk, sets, k))
    np.testing.assert_allclose(em.average_precision_at_k(hits, n_rel, k), ref_ap(topk, sets, k))
    np.testing.assert_allclose(em.reciprocal_rank_at_k(hits, k), ref_rr(topk, sets, k))
    np.testing.assert_allclose(em.hit_rate_at_k(hits, k), ref_hit(topk, sets, k))


def test_hit_matrix_matches_reference_and_ignores_padding():
    topk, truth, sets = random_case(7)
    hits = em.hit_matrix(topk, truth)
    expected = np.array([[i >= 0 and int(i) in s for i in row] for row, s in zip(topk, sets)])
    assert np.array_equal(hits, expected)
    assert not hits[topk < 0].any()


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_reference(seed):
    rng = np.random.default_rng(seed)
    topk, truth, sets = random_case(seed, n_users=25, n_items=40, K=15)
    # the candidates of a user: every item except a few "training" items not in the list or truth
    candidates = []
    for row, s in zip(topk, sets):
        blocked = [i for i in range(40) if i not in s and i not in set(row.tolist())]
        drop = (
            set(rng.choice(blocked, size=min(3, len(blocked)), replace=False).tolist()) if blocked else set()
        )
        candidates.append([i for i in range(40) if i not in drop])
    hits = em.hit_matrix(topk, truth)
    got = em.auc_from_ranking(
        hits, (topk >= 0).sum(axis=1), np.diff(truth.indptr), [len(c) for c in candidates]
    )
    np.testing.assert_allclose(got, ref_auc(topk, sets, candidates))


def test_auc_known_answers():
    # one relevant item: at the top -> 1, absent from a list covering nothing -> 0.5
    truth = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 0, 0, 0]], dtype=float))
    topk = np.array([[0, 1, 2, 3], [-1, -1, -1, -1]])
    hits = em.hit_matrix(topk, truth)
    got = em.auc_from_ranking(hits, np.array([4, 0]), np.array([1, 1]), np.array([4, 4]))
    np.testing.assert_allclose(got, [1.0, 0.5])


def test_recall_curve_is_mean_recall_at_each_k():
    topk, truth, sets = random_case(3)
    hits = em.hit_matrix(topk, truth)
    curve = em.recall_curve(hits, np.diff(truth.indptr))
    for k in (1, 7, 25):
        assert curve[k - 1] == pytest.approx(np.mean(ref_recall(topk, sets, k)))
    assert np.all(np.diff(curve) >= -1e-12)


def test_k_out_of_range_is_rejected():
    topk, truth, _ = random_case(0, K=5)
    hits = em.hit_matrix(topk, truth)
    with pytest.raises(ValueError, match="k=6"):
        em.recall_at_k(hits, np.diff(truth.indptr), 6)
    with pytest.raises(ValueError, match="k=0"):
        em.precision_at_k(hits, 0)


# ---------------------------------------------------------------------------
# beyond accuracy


def test_coverage_popularity_novelty_match_reference():
    topk, truth, _ = random_case(11, n_items=60)
    rng = np.random.default_rng(0)
    pop = rng.integers(0, 50, size=60)
    n_users = 70
    k = 10
    items = {int(i) for row in topk for i in row[:k] if i >= 0}
    assert em.catalogue_coverage(topk, 60, k) == pytest.approx(len(items) / 60)
    exp_pop, exp_nov = [], []
    for row in topk:
        lst = ref_list(row, k)
        exp_pop.append(np.mean([pop[i] for i in lst]) if lst else np.nan)
        exp_nov.append(np.mean([-math.log2((pop[i] + 1) / (n_users + 1)) for i in lst]) if lst else np.nan)
    np.testing.assert_allclose(em.average_popularity(topk, pop, k), exp_pop)
    np.testing.assert_allclose(em.novelty(topk, pop, n_users, k), exp_nov)


@pytest.mark.parametrize("dense", [False, True])
def test_intra_list_diversity_matches_pairwise_reference(dense):
    topk, _, _ = random_case(5, n_items=60)
    feats = sp.random(60, 30, density=0.15, random_state=2, format="lil")
    feats[3] = 0  # an item without features
    feats = feats.tocsr()
    topk[0, :3] = [3, 4, -1]
    topk[0, 3:] = -1
    k = 12
    f = feats.toarray()
    got = em.intra_list_diversity(topk, f if dense else feats, k, batch=7)
    for row, value in zip(topk, got):
        lst = ref_list(row, k)
        if len(lst) < 2:
            assert np.isnan(value)
            continue
        sims = []
        for a in lst:
            for b in lst:
                if a == b:
                    continue
                na, nb = np.linalg.norm(f[a]), np.linalg.norm(f[b])
                sims.append(0.0 if na == 0 or nb == 0 else f[a] @ f[b] / (na * nb))
        assert value == pytest.approx(1.0 - np.mean(sims))


def test_exposure_by_group_matches_reference():
    topk, _, _ = random_case(9, n_items=60)
    groups = np.arange(60) % 3
    k = 15
    for discount in (True, False):
        expo = np.zeros(3)
        for row in topk:
            for pos, i in enumerate(row[:k]):
                if i >= 0:
                    expo[groups[i]] += 1.0 / math.log2(pos + 2) if discount else 1.0
        np.testing.assert_allclose(
            em.exposure_by_group(topk, groups, 3, k, discount=discount), expo / expo.sum()
        )


def test_popularity_groups_head_is_most_popular_fifth():
    pop = np.array([5, 1, 9, 9, 0, 3, 2, 8, 7, 6])
    g = em.popularity_groups(pop, 0.2)
    assert g.tolist() == [1, 1, 0, 0, 1, 1, 1, 1, 1, 1]


def test_ranking_metrics_names_and_values():
    topk, truth, sets = random_case(2)
    per_user, system, extra = em.ranking_metrics(
        topk,
        truth,
        10,
        n_candidates=np.full(len(sets), 60),
        item_popularity=np.ones(60),
        n_train_users=5,
        item_features=sp.identity(60, format="csr"),
        item_group=em.popularity_groups(np.arange(60)),
        curve_max_k=25,
    )
    assert {"recall@10", "ndcg@10", "precision@10", "map@10", "mrr@10", "hit_rate@10", "auc@25"} <= set(
        per_user
    )
    assert per_user["recall@10"].mean() == pytest.approx(np.mean(ref_recall(topk, sets, 10)))
    assert set(system) >= {"coverage@10", "exposure_head@10", "exposure_tail@10"}
    assert len(extra["recall_curve"]) == 25


# ---------------------------------------------------------------------------
# top-k selection (compiled) against the reference


@pytest.mark.parametrize("seed", range(4))
def test_top_k_matches_reference_with_ties_masks_and_sorted_rows(seed):
    rng = np.random.default_rng(seed)
    for trial in range(30):
        n, m, k = int(rng.integers(1, 20)), int(rng.integers(1, 400)), int(rng.integers(1, 40))
        s = rng.integers(0, 6, size=(n, m)).astype(np.float32)  # many ties
        if trial % 3 == 0:
            s = np.sort(s, axis=1)  # the heap's worst case
        s[rng.random((n, m)) < 0.3] = -np.inf
        s[rng.random((n, m)) < 0.02] = np.nan
        got_ids, got_vals = top_k(s, k)
        ref_ids, ref_vals = top_k_reference(s, k)
        assert np.array_equal(got_ids, ref_ids)
        assert np.array_equal(got_vals, ref_vals)


def test_top_k_csr_and_prune_rows():
    m = sp.random(30, 50, density=0.2, random_state=3, format="csr", dtype=np.float32)
    dense = np.where(m.toarray() != 0, m.toarray(), -np.inf).astype(np.float32)
    ids, vals = top_k_csr(m, 4)
    ref_ids, ref_vals = top_k_reference(dense, 4)
    assert np.array_equal(ids, ref_ids) and np.array_equal(vals, ref_vals)
    pruned = prune_rows(m, 4)
    assert (np.diff(pruned.indptr) <= 4).all()
    for r in range(30):
        assert set(pruned[r].indices) == {i for i in ref_ids[r] if i >= 0}


# ---------------------------------------------------------------------------
# uncertainty


def test_bootstrap_means_equal_a_slow_loop():
    rng = np.random.default_rng(0)
    v = rng.random(57)
    got = bootstrap_means(v, n_boot=230, seed=4, chunk=100)
    ref_rng = np.random.default_rng(4)
    ref = []
    for start in range(0, 230, 100):  # the documented draw order: blocks of n per replicate
        m = min(100, 230 - start)
        idx = ref_rng.integers(0, len(v), size=(m, len(v)))
        ref.extend(float(np.mean([v[i] for i in row])) for row in idx)
    np.testing.assert_allclose(got, ref)


def test_bootstrap_ci_covers_mean_and_matches_normal_theory():
    rng = np.random.default_rng(1)
    v = rng.exponential(size=4000)
    lo, hi = bootstrap_ci(v, n_boot=2000, seed=0)
    se = v.std(ddof=1) / math.sqrt(len(v))
    assert lo < v.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    # NaNs are left out, as in the point estimate
    lo2, hi2 = bootstrap_ci(np.r_[v, [np.nan] * 10], n_boot=2000, seed=0)
    assert (lo2, hi2) == pytest.approx((lo, hi))


def test_sign_flip_pvalue_matches_exact_enumeration():
    d = np.array([0.3, -0.1, 0.25, 0.4, -0.05, 0.2, 0.1, 0.0, 0.15])
    n = len(d)
    observed = abs(d.mean())
    extreme = 0
    for mask in range(2**n):
        signs = np.array([1 if mask >> j & 1 else -1 for j in range(n)])
        extreme += abs((signs * d).mean()) >= observed - 1e-12
    exact = extreme / 2**n
    assert sign_flip_pvalue(d, n_perm=40_000, seed=0) == pytest.approx(exact, abs=0.01)


def test_paired_test_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(2)
    base = rng.random(500)
    better = base + 0.05 + rng.normal(0, 0.05, 500)
    res = paired_test(better, base, n_perm=2000)
    assert res["diff"] == pytest.approx(np.mean(better - base))
    assert res["diff_ci"][0] > 0 and res["p_value"] < 0.01 and res["p_value_ttest"] < 0.01
    noise = rng.normal(0, 0.05, 250)
    same = base + np.r_[noise, -noise]  # differences with mean exactly zero
    null = paired_test(same, base, n_perm=2000)
    assert (
        null["diff_ci"][0] < 0 < null["diff_ci"][1] and null["p_value"] > 0.5 and null["p_value_ttest"] > 0.5
    )
    with pytest.raises(ValueError, match="same users"):
        paired_test(base, base[:10])


def _ranked_lists(rng, rows, width, n):
    """Random candidate lists ranked like every source ranks them: best first, ties by lower id."""
    ids, vals = np.full((rows, width), -1), np.zeros((rows, width), np.float32)
    for i in range(rows):
        m = rng.integers(0, min(width, n) + 1)
        cand, sc = rng.choice(n, m, replace=False), rng.integers(0, 4, m).astype(np.float32)
        order = np.lexsort((cand, -sc))
        ids[i, :m], vals[i, :m] = cand[order], sc[order]
    return ids, vals


@pytest.mark.parametrize("seed", range(4))
def test_filter_lists_equals_selecting_from_the_lists(seed):
    """filter_lists (order kept, no sort) gives what select_candidates makes of the same lists:
    zero scores dropped, excluded ids dropped, cut to k, padded with -1 / 0."""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        rows, width, n, k = rng.integers(1, 5), rng.integers(0, 9), rng.integers(1, 25), rng.integers(0, 12)
        ids, vals = _ranked_lists(rng, rows, width, n)
        ex = None
        if rng.random() < 0.8:
            ex = sp.random(
                rows, n, density=rng.random() * 0.5, format="csr", random_state=int(rng.integers(1e9))
            )
        got = filter_lists(ids, vals, k, ex)
        want = select_candidates(lists_to_csr(ids, vals, n), k, ex)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_lists_to_csr_sums_repeated_ids_and_sorts_rows():
    ids = np.array([[4, 1, -1, 4], [2, 0, 3, -1]])
    vals = np.array([[1.0, 2.0, 0.0, 0.5], [3.0, 1.0, 2.0, 0.0]], np.float32)
    m = lists_to_csr(ids, vals, 5)
    assert m.has_sorted_indices
    assert m.toarray().tolist() == [[0, 2, 0, 0, 1.5], [1, 0, 3, 2, 0]]


def test_in_sorted_matches_isin():
    rng = np.random.default_rng(0)
    for _ in range(200):
        row = np.unique(rng.integers(0, 50, rng.integers(0, 20)))
        queries = rng.integers(0, 60, rng.integers(0, 30))
        assert np.array_equal(in_sorted(row, queries), np.isin(queries, row))


@pytest.mark.parametrize("seed", range(3))
def test_select_candidates_sparse_equals_dense_with_exclusions(seed):
    """The sparse path (exclusions masked inside the compiled top-k) ranks exactly as the dense
    path (exclusions set to -inf): missing entries and non-positive scores are no candidates."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        rows, n, k = rng.integers(1, 6), rng.integers(1, 40), rng.integers(0, 15)
        m = sp.random(rows, n, density=rng.random(), format="csr", random_state=int(rng.integers(1e9)))
        m.data = np.round(m.data * 4 - 1).astype(np.float32)  # ties, zeros and negatives
        ex = sp.random(rows, n, density=rng.random() * 0.5, format="csr", random_state=int(rng.integers(1e9)))
        if rng.random() < 0.5:
            ex = ex[:, rng.permutation(n)].tocsr()  # rows not sorted: top_k_csr sorts them
            ex.has_sorted_indices = False
        for exclude in (None, ex):
            sparse = select_candidates(m, k, exclude)
            dense = select_candidates(m.toarray(), k, exclude)
            assert np.array_equal(sparse[0], dense[0]) and np.array_equal(sparse[1], dense[1])
