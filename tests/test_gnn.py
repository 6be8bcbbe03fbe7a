"""GNN models, trainer, artifacts and the embed job, on small synthetic graphs (fast)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from evaluation.embedding_methods import LightGCNMethod, SageMethod
from gnn import artifacts
from gnn.checkpoints import CheckpointError, read_checkpoint
from gnn.data import PairSet, carve_early_stopping, joint_adjacency, positives
from gnn.item_neighbors import item_neighbors, item_neighbors_reference
from gnn.job import load_sage, run_embed, save_embeddings
from gnn.losses import sampled_loss
from gnn.models import LightGCN, Propagation, _Propagate, spectral_init
from gnn.negatives import NegativeSampler, bpr_negatives, hardest_of
from gnn.pipeline import embed_snapshot_inductive, fit_lightgcn, fit_sage
from gnn.ranking import recall_ndcg, topk_scores
from gnn.trainer import TrainConfig
from graph.errors import GraphRecError, InputError, SnapshotError
from graph.snapshot import build_snapshot
from graph.synthetic import generate
from graph.tasks import exclusion_matrix

FAST = {
    "epochs": 6,
    "batch_size": 1024,
    "chunk_size": 1024,
    "n_negatives": 128,
    "val_users": 150,
    "dim": 32,
    "cosine": False,
    "temperature": 1.0,
    "refit_epochs": 0,  # the plumbing tests count epochs; refit has its own test
}


@pytest.fixture(scope="module")
def graph():
    return generate(400, seed=3)


@pytest.fixture(scope="module")
def snap():
    """A smaller graph for the tests that check plumbing rather than quality."""
    return generate(200, seed=4).snapshot()


def _split_snapshot(g, share=0.2, seed=0):
    """(train snapshot, held-out (user, tweet) dense pairs) from a synthetic graph."""
    rng = np.random.default_rng(seed)
    test = rng.random(len(g.eng_user)) < share
    cols = dict(
        user_ids=g.user_ids,
        tweet_ids=g.tweet_ids,
        follow_src=g.follow_src,
        follow_dst=g.follow_dst,
        follow_ts=g.follow_ts,
        tweet_author=g.tweet_author,
        tweet_created=g.tweet_created,
        tweet_texts=dict(zip(g.tweet_ids.tolist(), g.tweet_texts)),
    )
    keep = ~test
    train = build_snapshot(
        eng_user=g.eng_user[keep],
        eng_tweet=g.eng_tweet[keep],
        eng_kind=g.eng_kind[keep],
        eng_ts=g.eng_ts[keep],
        eng_weight=g.eng_weight[keep],
        **cols,
    )
    u, t = train.user_index(g.eng_user[test]), train.tweet_index(g.eng_tweet[test])
    truth = sp.csr_matrix((np.ones(len(u), np.float32), (u, t)), shape=(train.n_users, train.n_tweets))
    truth.sum_duplicates()
    truth.data[:] = 1
    truth = truth - truth.multiply(exclusion_matrix(train, "tweets"))
    truth.eliminate_zeros()
    return train, truth.tocsr()


def _recall(method, truth, k=20):
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    ids, _ = method.recommend(users, k)
    rec, _ = recall_ndcg(ids, truth, users, k)
    return rec.mean()


# -- data and sampling --------------------------------------------------------------------


def test_negative_sampler_never_returns_a_positive():
    rng = np.random.default_rng(0)
    dense = rng.random((50, 12)) < 0.6  # most targets are positives
    dense[:, 0] = False  # every user keeps at least one negative
    pairs = PairSet.from_matrix("tweets", sp.csr_matrix(dense.astype(np.float32)), 50)
    sampler = NegativeSampler(pairs, rng)
    users = np.repeat(np.arange(50), 40)
    neg = sampler.sample(users, 3)
    assert not dense[users[:, None], neg].any()
    pool, mask = sampler.pool(users[:200], 10)
    assert len(np.unique(pool)) == len(pool)
    np.testing.assert_array_equal(mask, dense[users[:200, None], pool[None, :]])


def test_hard_negatives_are_the_best_scoring_candidates_and_never_positives():
    scores = torch.tensor([[[0.1, 0.9, 0.3], [2.0, -1.0, 2.0]]])
    cand = np.array([[[7, 8, 9], [4, 5, 6]]])
    assert hardest_of(scores, cand).tolist() == [[8, 4]]  # ties: the first candidate

    rng = np.random.default_rng(0)
    dense = rng.random((40, 30)) < 0.3
    dense[:, :3] = False
    pairs = PairSet.from_matrix("tweets", sp.csr_matrix(dense.astype(np.float32)), 40)
    emb = torch.randn(70, 8, generator=torch.Generator().manual_seed(0))
    users = np.repeat(np.arange(40), 25)
    u = emb[torch.from_numpy(users)]

    def negatives(c):
        sampler = NegativeSampler(pairs, np.random.default_rng(1))
        neg = bpr_negatives(emb, u, pairs, sampler, users, 2, c)
        assert neg.shape == (len(users), 2) and not dense[users[:, None], neg].any()
        return float(torch.einsum("bd,bmd->bm", u, emb[torch.from_numpy(neg + 40)]).mean())

    assert negatives(8) > negatives(1) + 0.5  # harder: scored well above uniform draws
    with pytest.raises(InputError, match="hard_negative_candidates"):
        TrainConfig(hard_negative_candidates=0).validate()


def test_uniform_negatives_mix_with_hard_ones():
    """With ``uniform_negatives`` u of m negatives, m - u are hard and u uniform: the mixed
    loss lies between the all-hard and the all-uniform one (hard negatives score higher)."""
    rng = np.random.default_rng(0)
    dense = rng.random((60, 200)) < 0.1
    pairs = PairSet.from_matrix("tweets", sp.csr_matrix(dense.astype(np.float32)), 60)
    emb = torch.randn(260, 8, generator=torch.Generator().manual_seed(0))
    part = np.arange(len(pairs))

    def loss(candidates=32, **kw):
        cfg = TrainConfig(loss="bpr", bpr_negatives=2, hard_negative_candidates=candidates, **kw).validate()
        return float(
            sampled_loss(emb, pairs, NegativeSampler(pairs, np.random.default_rng(3)), part, len(part), cfg)
        )

    assert loss(candidates=1) < loss(uniform_negatives=1) < loss()
    with pytest.raises(InputError, match="uniform_negatives"):
        TrainConfig(loss="bpr", bpr_negatives=2, uniform_negatives=2).validate()


def test_compiled_hard_negatives_match_the_torch_reference():
    from gnn.data import user_indptr
    from gnn.negatives import hardest_negatives

    rng = np.random.default_rng(3)
    dense = rng.random((50, 12)) < 0.4
    dense[0] = True  # a user with no negative at all: every slot comes back -1
    pairs = PairSet.from_matrix("tweets", sp.csr_matrix(dense.astype(np.float32)), 0)
    users = np.repeat(np.arange(50), 6)
    uvec = rng.standard_normal((len(users), 8)).astype(np.float32)
    tvec = rng.standard_normal((12, 8)).astype(np.float32)
    tvec[5] = tvec[4]  # exact ties: the first candidate wins
    cand = rng.integers(0, 12, size=(len(users), 3, 5))
    got = hardest_negatives(uvec, tvec, users, user_indptr(pairs), pairs.targets, cand)

    scores = torch.einsum(
        "bd,bkd->bk", torch.from_numpy(uvec), torch.from_numpy(tvec[cand.reshape(len(users), -1)])
    )
    scores = scores.reshape(cand.shape).masked_fill(
        torch.from_numpy(dense[users[:, None, None], cand]), -torch.inf
    )
    want = hardest_of(scores, cand)
    none_left = dense[users[:, None, None], cand].all(axis=2)
    want[none_left] = -1
    assert none_left[users == 0].all() and 18 < none_left.sum() < none_left.size // 2  # both paths exercised
    np.testing.assert_array_equal(got, want)
    assert not dense[users[:, None], np.maximum(got, 0)][got >= 0].any()


def test_sampler_rejects_users_without_negatives():
    pairs = PairSet.from_matrix("tweets", sp.csr_matrix(np.ones((2, 3), np.float32)), 2)
    with pytest.raises(InputError, match="every target"):
        NegativeSampler(pairs, np.random.default_rng(0)).sample(np.array([0]), 1)


def test_validation_is_carved_from_training(snap):
    full = positives(snap, "tweets")
    train, val = carve_early_stopping(full, n_users=50, share=0.2, seed=1)
    assert len(train) + len(val) == len(full)
    assert not train.contains(val.users, val.targets).any()
    assert len(np.unique(val.users)) == 50
    # every validation user keeps training positives
    assert np.isin(np.unique(val.users), train.users).all()


def test_joint_adjacency_is_symmetric_normalised(snap):
    a = joint_adjacency(snap.n_users, snap.n_tweets, positives(snap, "tweets"), positives(snap, "follows"))
    assert abs(a - a.T).max() < 1e-6
    # D^-1/2 A D^-1/2 has sqrt(degree) as eigenvector with eigenvalue 1
    binary = a.copy()
    binary.data[:] = 1.0
    root = np.sqrt(np.asarray(binary.sum(axis=1)).ravel())
    np.testing.assert_allclose(a @ root, root, rtol=1e-4)


# -- models ------------------------------------------------------------------------------


def test_propagation_gradient_matches_autograd(snap):
    a = joint_adjacency(snap.n_users, snap.n_tweets, positives(snap, "tweets"), None)
    prop = Propagation(a, 3)
    x = torch.randn(a.shape[0], 4, dtype=torch.float32, requires_grad=True)
    w = torch.randn(a.shape[0], 4)
    (_Propagate.apply(x, prop) * w).sum().backward()
    # reference: dense matrices, plain autograd
    dense = torch.from_numpy(a.toarray())
    x2 = x.detach().clone().requires_grad_()
    h, out = x2, x2 / 4
    for _ in range(3):
        h = dense @ h
        out = out + h / 4
    (out * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)


def test_joint_adjacency_asymmetric_exponents(snap):
    eng, fol = positives(snap, "tweets"), positives(snap, "follows")
    a = joint_adjacency(snap.n_users, snap.n_tweets, eng, fol, exponents=(0.6, -0.1))
    binary = joint_adjacency(snap.n_users, snap.n_tweets, eng, fol)
    binary.data[:] = 1.0
    deg = np.asarray(binary.sum(axis=1)).ravel()
    inv = np.where(deg > 0, np.maximum(deg, 1e-12), 1.0)
    expected = sp.diags(np.where(deg > 0, inv**-0.6, 0)) @ binary @ sp.diags(np.where(deg > 0, inv**0.1, 0))
    assert abs(a - expected).max() < 1e-5
    assert abs(a - a.T).max() > 1e-3  # D^-a A D^-b is not symmetric unless a == b


@pytest.mark.parametrize("exponents", [(0.5, 0.5), (0.6, -0.1)])
def test_lightgcn_pp_propagation_gradient_matches_autograd(snap, exponents):
    """LightGCN++'s layers (unit-length inputs, an asymmetric adjacency, the ego layer's share)
    against dense autograd: the backward through the cached transpose is the exact gradient."""
    a = joint_adjacency(snap.n_users, snap.n_tweets, positives(snap, "tweets"), None, exponents=exponents)
    prop = Propagation(a, 3, layer0_weight=0.2, normalize_inputs=True)
    assert not prop.self_adjoint
    assert prop.weights == pytest.approx([0.2, 0.8 / 3, 0.8 / 3, 0.8 / 3])
    x = torch.randn(a.shape[0], 4, dtype=torch.float32, requires_grad=True)
    w = torch.randn(a.shape[0], 4)
    (prop.apply_differentiable(x) * w).sum().backward()
    dense = torch.from_numpy(a.toarray())
    x2 = x.detach().clone().requires_grad_()
    h, out = x2, 0.2 * x2
    for _ in range(3):
        h = dense @ torch.nn.functional.normalize(h, dim=1, eps=1e-12)
        out = out + 0.8 / 3 * h
    (out * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(prop.apply(x.detach()), out.detach(), rtol=1e-4, atol=1e-5)


def test_lightgcn_uses_the_self_adjoint_shortcut_only_when_it_holds(snap):
    eng = positives(snap, "tweets")
    sym = joint_adjacency(snap.n_users, snap.n_tweets, eng, None)
    asym = joint_adjacency(snap.n_users, snap.n_tweets, eng, None, exponents=(0.6, -0.1))
    assert LightGCN(snap.n_users, snap.n_tweets, sym, dim=4).prop.self_adjoint
    assert not LightGCN(snap.n_users, snap.n_tweets, asym, dim=4).prop.self_adjoint
    assert not LightGCN(snap.n_users, snap.n_tweets, sym, dim=4, normalize_inputs=True).prop.self_adjoint
    with pytest.raises(InputError, match="layer0_weight"):
        Propagation(sym, 3, layer0_weight=1.5)


def test_propagation_through_pyg_equals_the_sparse_reference(snap):
    a = joint_adjacency(snap.n_users, snap.n_tweets, positives(snap, "tweets"), None)
    prop = Propagation(a, 3)
    x = torch.randn(a.shape[0], 8)
    torch.testing.assert_close(prop.apply(x), prop.apply_reference(x), rtol=1e-5, atol=1e-6)
    from torch_geometric.nn import LGConv

    assert isinstance(prop.conv, LGConv)


def test_spectral_init_matches_svd_of_bipartite_graph(snap):
    eng = positives(snap, "tweets")
    a = joint_adjacency(snap.n_users, snap.n_tweets, eng, None)
    init = spectral_init(a, 8, scale=1.0)
    assert init.shape == (a.shape[0], 8)
    # eigenvalues of the bipartite Â are the singular values of its user-tweet block
    block = a[: snap.n_users, snap.n_users :].toarray()
    s = np.linalg.svd(block, compute_uv=False)[:8]
    from scipy.sparse.linalg import eigsh

    vals = np.sort(eigsh(a.astype(np.float64), k=8, which="LA")[0])[::-1]
    np.testing.assert_allclose(vals, s, rtol=1e-4)


# -- training ------------------------------------------------------------------------------


def test_lightgcn_loss_decreases_and_beats_random(graph):
    train, truth = _split_snapshot(graph)
    m = LightGCNMethod(cache_dir=None, **FAST).fit(train, "tweets")
    res_hist = fit_lightgcn(train, "tweets", params={**FAST, "progress": False}).metrics["history"]
    losses = [h["loss"] for h in res_hist]
    assert losses[-1] < losses[0]
    random_recall = 20 / train.n_tweets
    assert _recall(m, truth) > 3 * random_recall


def test_bpr_loss_trains_too(graph):
    train, truth = _split_snapshot(graph)
    res = fit_lightgcn(train, "tweets", params={**FAST, "loss": "bpr", "lr": 0.01, "progress": False})
    losses = [h["loss"] for h in res.metrics["history"]]
    assert losses[-1] < losses[0]
    assert np.isfinite(res.tweet_vectors).all()


def test_bpr_with_several_negatives_trains_and_beats_random(graph):
    train, truth = _split_snapshot(graph)
    params = {**FAST, "loss": "bpr", "bpr_negatives": 4, "lr": 0.01, "weight_decay": 1e-4}
    res = fit_lightgcn(train, "tweets", params={**params, "progress": False})
    losses = [h["loss"] for h in res.metrics["history"]]
    assert losses[-1] < losses[0]
    m = LightGCNMethod(cache_dir=None, **params).fit(train, "tweets")
    assert _recall(m, truth) > 3 * 20 / train.n_tweets
    with pytest.raises(InputError, match="bpr_negatives"):
        fit_lightgcn(train, "tweets", params={**params, "bpr_negatives": 0})


@pytest.mark.parametrize("k", [1, 4, 40])
def test_item_neighbors_match_the_dense_reference(k):
    rng = np.random.default_rng(k)
    for _ in range(10):
        nu, nt = 25, 30
        key = np.unique(rng.integers(0, nu, 150) * nt + rng.integers(0, nt, 150))
        pairs = PairSet("engaged", key // nt, key % nt, nu, nt, nu)
        ids, weights = item_neighbors(pairs, k)
        ref_ids, ref_weights = item_neighbors_reference(pairs, k)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(weights, ref_weights, rtol=1e-5, atol=1e-6)
        assert (ids != np.arange(nt)[:, None])[weights > 0].all()  # never itself
    with pytest.raises(InputError, match="item_neighbors"):
        item_neighbors(pairs, 0)


def test_item_neighbor_term_is_the_weighted_pairwise_loss_of_the_neighbours():
    """The constraint adds, per positive, its target's neighbours as positives against the same
    negatives: checked against the formula, negatives drawn with the same seed."""
    rng = np.random.default_rng(0)
    dense = rng.random((40, 30)) < 0.3
    pairs = PairSet.from_matrix("tweets", sp.csr_matrix(dense.astype(np.float32)), 40)
    emb = torch.randn(70, 8, generator=torch.Generator().manual_seed(0))
    part = np.arange(len(pairs))
    cfg = TrainConfig(loss="bpr", bpr_negatives=3, item_neighbor_weight=0.7).validate()
    nb = item_neighbors(pairs, 4)

    def loss(neighbors):
        sampler = NegativeSampler(pairs, np.random.default_rng(5))
        return float(sampled_loss(emb, pairs, sampler, part, len(part), cfg, neighbors))

    neg = NegativeSampler(pairs, np.random.default_rng(5)).sample(pairs.users, 3)
    u, ids, w = emb[pairs.users], nb[0][pairs.targets], torch.from_numpy(nb[1][pairs.targets])
    s_neg = torch.einsum("bd,bmd->bm", u, emb[torch.from_numpy(neg + 40)])
    s_nb = torch.einsum("bd,bkd->bk", u, emb[torch.from_numpy(ids + 40)])
    term = -(w * torch.nn.functional.logsigmoid(s_nb[:, :, None] - s_neg[:, None, :]).mean(2)).sum() / len(
        part
    )
    assert loss(nb) == pytest.approx(loss(None) + 0.7 * float(term), rel=1e-5)


def test_item_neighbor_constraint_trains(graph):
    train, truth = _split_snapshot(graph)
    params = {**FAST, "loss": "bpr", "bpr_negatives": 2, "lr": 0.01, "layer0_weight": 0.2}
    res = fit_lightgcn(train, "tweets", params={**params, "item_neighbor_weight": 0.5, "progress": False})
    losses = [h["loss"] for h in res.metrics["history"]]
    assert losses[-1] < losses[0]
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    u, t = torch.from_numpy(res.user_vectors), torch.from_numpy(res.tweet_vectors)
    ids, _ = topk_scores(u, t, users, 20, exclusion_matrix(train, "tweets"))
    assert recall_ndcg(ids, truth, users, 20)[0].mean() > 3 * 20 / train.n_tweets
    with pytest.raises(InputError, match="needs loss 'bpr'"):
        fit_lightgcn(train, "tweets", params={**FAST, "loss": "softmax", "item_neighbor_weight": 0.5})
    with pytest.raises(InputError, match="item_neighbor_weight"):
        fit_lightgcn(train, "tweets", params={**params, "item_neighbor_weight": -1.0})


def test_learning_rate_drops_after_each_evaluation_without_validation_gain(graph):
    train, _ = _split_snapshot(graph)
    params = {**FAST, "epochs": 8, "patience": 8, "loss": "bpr", "lr": 0.3, "plateau_factor": 0.5}
    metrics = fit_lightgcn(train, "tweets", params={**params, "progress": False}).metrics
    history = metrics["history"]
    best, lr = metrics["start_metric"], 0.3  # the starting state is validated first (eval_start)
    for record in history:
        gained = record["val_recall@20"] > best
        best = max(best, record["val_recall@20"])
        lr = lr if gained else lr * 0.5
        assert record["lr"] == pytest.approx(lr)
    assert history[-1]["lr"] < 0.3  # the schedule did act in this run
    with pytest.raises(InputError, match="plateau_factor"):
        fit_lightgcn(train, "tweets", params={**params, "plateau_factor": 0.0})


def test_cosine_schedule_anneals_the_learning_rate_by_epoch(graph):
    train, _ = _split_snapshot(graph)
    params = {**FAST, "epochs": 4, "patience": 8, "loss": "bpr", "lr": 0.2, "lr_schedule": "cosine"}
    history = fit_lightgcn(train, "tweets", params={**params, "progress": False}).metrics["history"]
    want = [0.2 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert [r["lr"] for r in history] == pytest.approx(want)
    with pytest.raises(InputError, match="lr_schedule"):
        fit_lightgcn(train, "tweets", params={**params, "lr_schedule": "step"})
    with pytest.raises(InputError, match="plateau_factor"):
        fit_lightgcn(train, "tweets", params={**params, "plateau_factor": 0.5})


def test_decoupled_weight_decay_shrinks_the_embedding_table(graph):
    train, _ = _split_snapshot(graph)
    params = {
        **FAST,
        "epochs": 3,
        "loss": "bpr",
        "lr": 0.05,
        "progress": False,
        "decoupled_weight_decay": 0.0,
        "eval_start": False,  # the trained tables, not a start that validates better
    }
    plain = fit_lightgcn(train, "tweets", params=params).model.embedding.detach()
    decayed = fit_lightgcn(
        train, "tweets", params={**params, "decoupled_weight_decay": 2.0}
    ).model.embedding.detach()
    assert decayed.norm(dim=1).mean() < 0.9 * plain.norm(dim=1).mean()
    with pytest.raises(InputError, match="decoupled_weight_decay"):
        fit_lightgcn(train, "tweets", params={**params, "decoupled_weight_decay": -1.0})


def test_full_softmax_loss_trains_and_beats_random(graph):
    train, truth = _split_snapshot(graph)
    res = fit_lightgcn(train, "tweets", params={**FAST, "loss": "full_softmax", "progress": False})
    losses = [h["loss"] for h in res.metrics["history"]]
    assert losses[-1] < losses[0]
    m = LightGCNMethod(cache_dir=None, **{**FAST, "loss": "full_softmax"}).fit(train, "tweets")
    assert _recall(m, truth) > 3 * 20 / train.n_tweets


def test_sage_beats_random(graph):
    train, truth = _split_snapshot(graph)
    m = SageMethod(cache_dir=None, **{**FAST, "epochs": 4}).fit(train, "tweets")
    assert _recall(m, truth) > 3 * 20 / train.n_tweets


def test_same_seed_same_embeddings_on_cpu(snap):
    p = {**FAST, "epochs": 1, "progress": False, "device": "cpu"}
    a = fit_lightgcn(snap, "both", params=p)
    b = fit_lightgcn(snap, "both", params=p)
    c = fit_lightgcn(snap, "both", params={**p, "seed": 1})
    np.testing.assert_array_equal(a.user_vectors, b.user_vectors)
    np.testing.assert_array_equal(a.tweet_vectors, b.tweet_vectors)
    assert not np.array_equal(a.user_vectors, c.user_vectors)
    s1 = fit_sage(snap, "tweets", params=p)
    s2 = fit_sage(snap, "tweets", params=p)
    np.testing.assert_array_equal(s1.tweet_vectors, s2.tweet_vectors)


def test_resume_gives_the_same_result_as_one_run(snap, tmp_path):
    p = {**FAST, "epochs": 3, "progress": False, "patience": 100}
    straight = fit_lightgcn(snap, "tweets", params=p)
    ck = tmp_path / "run.pt"
    fit_lightgcn(snap, "tweets", params={**p, "epochs": 2}, checkpoint=ck)
    assert read_checkpoint(ck)["result"]["epochs_run"] == 2
    resumed = fit_lightgcn(snap, "tweets", params=p, checkpoint=ck, resume=True)
    assert len(resumed.metrics["history"]) == p["epochs"]
    np.testing.assert_allclose(resumed.user_vectors, straight.user_vectors, atol=1e-6)


def test_refit_epochs_train_on_the_validation_positives_too(snap, tmp_path):
    from gnn.pipeline import LIGHTGCN_DEFAULTS, _split, split_params

    # eval_start off: on this small graph the warm start can validate better than 2 epochs,
    # and the refit only runs from a trained epoch
    p = {**FAST, "epochs": 2, "progress": False, "patience": 100, "lr": 0.05, "batch_size": 256}
    p["eval_start"] = False
    plain = fit_lightgcn(snap, "tweets", params={**p, "epochs": 4})
    ck = tmp_path / "refit.pt"
    # `epochs` counts every epoch, the refit ones included (`graphrec embed --epochs 4` trains 4)
    refit = fit_lightgcn(snap, "tweets", params={**p, "epochs": 4, "refit_epochs": 2}, checkpoint=ck)
    assert [h.get("refit") for h in refit.metrics["history"]] == [None, None, 1, 2]
    assert refit.metrics["refit_epochs"] == 2 and refit.metrics["epochs_run"] == 4
    short = fit_lightgcn(snap, "tweets", params={**p, "epochs": 2, "refit_epochs": 5})
    assert short.metrics["epochs_run"] == 2 and short.metrics["refit_epochs"] == 1

    # the carve's pairs were training data in the refit epochs: they now outrank random tweets
    # far more often than after as many epochs without them
    mp, tc = split_params({**LIGHTGCN_DEFAULTS, **p})
    val = _split(snap, "tweets", mp, tc.seed)[2]["tweets"]
    other = np.random.default_rng(0).integers(0, snap.n_tweets, len(val))

    def auc(e):
        u = e.user_vectors[val.users]
        return float(np.mean((u * e.tweet_vectors[val.targets]).sum(1) > (u * e.tweet_vectors[other]).sum(1)))

    assert auc(refit) > auc(plain) + 0.05
    # a finished run resumes as itself
    again = fit_lightgcn(
        snap, "tweets", params={**p, "epochs": 4, "refit_epochs": 2}, checkpoint=ck, resume=True
    )
    np.testing.assert_array_equal(again.user_vectors, refit.user_vectors)
    with pytest.raises(InputError, match="refit_epochs"):
        fit_sage(snap, "tweets", params={**p, "refit_epochs": 1})
    with pytest.raises(InputError, match="refit_epochs"):
        TrainConfig(refit_epochs=-1).validate()


def test_corrupt_or_mismatched_checkpoint_is_a_clear_error(snap, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(bad)
    p = {**FAST, "epochs": 1, "progress": False}
    ck = tmp_path / "ok.pt"
    fit_lightgcn(snap, "tweets", params=p, checkpoint=ck)
    # truncated file
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(ck.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(trunc)
    # other model settings
    with pytest.raises(CheckpointError, match="dim"):
        fit_lightgcn(snap, "tweets", params={**p, "dim": 16}, checkpoint=ck, resume=True)
    # other data
    other = generate(150, seed=9).snapshot()
    with pytest.raises(CheckpointError, match="other data"):
        fit_lightgcn(other, "tweets", params=p, checkpoint=ck, resume=True)
    # other model kind
    with pytest.raises(GraphRecError, match="lightgcn"):
        fit_sage(snap, "tweets", params=p, init_from=ck)


def test_fine_tune_on_a_newer_snapshot(graph, tmp_path):
    old, _ = _split_snapshot(graph, share=0.3)
    ck = tmp_path / "old.pt"
    p = {**FAST, "epochs": 2, "progress": False}
    fit_lightgcn(old, "tweets", params=p, checkpoint=ck)
    new = graph.snapshot()
    res = fit_lightgcn(new, "tweets", params={**p, "epochs": 1}, init_from=ck)
    assert res.tweet_vectors.shape == (new.n_tweets, 32)
    assert np.isfinite(res.tweet_vectors).all()


# -- inductive ------------------------------------------------------------------------------


def test_unseen_tweet_gets_an_embedding_from_its_content(graph):
    snap = graph.snapshot()
    res = fit_sage(snap, "tweets", params={**FAST, "epochs": 3, "progress": False})
    # a new tweet: text of topic 0 words (taken from an existing topic-0 tweet), no author, no engagement
    topic = graph.tweet_topic
    src = int(np.flatnonzero(topic == 0)[0])
    new_id = int(graph.tweet_ids.max()) + 1
    texts = dict(zip(graph.tweet_ids.tolist(), graph.tweet_texts))
    texts[new_id] = graph.tweet_texts[src]
    bigger = build_snapshot(
        user_ids=graph.user_ids,
        tweet_ids=np.append(graph.tweet_ids, new_id),
        follow_src=graph.follow_src,
        follow_dst=graph.follow_dst,
        follow_ts=graph.follow_ts,
        eng_user=graph.eng_user,
        eng_tweet=graph.eng_tweet,
        eng_kind=graph.eng_kind,
        eng_ts=graph.eng_ts,
        eng_weight=graph.eng_weight,
        tweet_author=np.append(graph.tweet_author, -1),
        tweet_created=np.append(graph.tweet_created, 0),
        tweet_texts=texts,
    )
    users, tweets = embed_snapshot_inductive(res, bigger)
    vec = tweets[bigger.tweet_index([new_id])[0]]
    assert np.isfinite(vec).all() and np.linalg.norm(vec) > 0
    # users of the topic's community rank it above the other users (AUC of their scores)
    scores = users @ vec
    inside, outside = scores[graph.community == 0], scores[graph.community != 0]
    auc = (inside[:, None] > outside[None, :]).mean()
    assert auc > 0.7, auc
    # known nodes keep the embeddings of the trained model
    np.testing.assert_allclose(tweets[bigger.tweet_index(graph.tweet_ids)], res.tweet_vectors, atol=1e-4)


# -- ranking, artifacts, job ----------------------------------------------------------------


def test_recall_and_ndcg_known_answer():
    truth = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]], np.float32))
    ids = np.array([[1, 2], [3, 4]])
    rec, nd = recall_ndcg(ids, truth, np.array([0, 1]), 2)
    np.testing.assert_allclose(rec, [0.5, 0.0])
    np.testing.assert_allclose(nd, [1.0 / (1.0 + 1.0 / np.log2(3)), 0.0])


def test_topk_excludes_and_pads():
    u = torch.eye(2)
    t = torch.tensor([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0]])
    ex = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 1]], np.float32))
    ids, scores = topk_scores(u, t, np.array([0, 1]), 4, ex)
    assert ids.tolist() == [[1, 2, -1, -1], [0, 1, -1, -1]]
    assert scores.dtype == np.float32 and scores[0, 0] == 0.5


def test_method_contract_follows_excludes_self_and_followees(snap):
    m = LightGCNMethod(cache_dir=None, **{**FAST, "epochs": 1}).fit(snap, "follows")
    users = np.arange(30)
    ids, scores = m.recommend(users, 10)
    assert ids.shape == scores.shape == (30, 10) and ids.dtype == np.int64 and scores.dtype == np.float32
    excl = exclusion_matrix(snap, "follows")
    for u, row in zip(users, ids):
        assert u not in row
        assert not excl[u, row[row >= 0]].toarray().any()
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_method_reuses_a_matching_artifact(snap, tmp_path):
    p = {**FAST, "epochs": 1}
    first = LightGCNMethod(cache_dir=str(tmp_path), **p).fit(snap, "tweets")
    again = LightGCNMethod(cache_dir=str(tmp_path), **p).fit(snap, "tweets")
    assert first.artifact == again.artifact
    torch.testing.assert_close(first.user_vectors, again.user_vectors)
    other = LightGCNMethod(cache_dir=str(tmp_path), **{**p, "dim": 16}).fit(snap, "tweets")
    assert other.artifact != first.artifact


def test_unknown_parameter_is_rejected():
    with pytest.raises(InputError, match="unknown parameter 'dimension'"):
        LightGCNMethod(dimension=3)


def test_artifact_round_trip_and_verification(snap, tmp_path):
    res = fit_lightgcn(snap, "both", params={**FAST, "epochs": 1, "progress": False})
    path = save_embeddings(res, snap, tmp_path / "emb")
    assert (tmp_path / "emb" / "LATEST").read_text().strip() == path.name
    art = artifacts.load_artifact(tmp_path / "emb", snapshot_id=snap.snapshot_id)
    np.testing.assert_array_equal(art.user_vectors, res.user_vectors)
    np.testing.assert_array_equal(art.tweet_vectors, res.tweet_vectors)
    np.testing.assert_array_equal(art.user_ids, snap.user_ids)
    assert art.config["model"] == "lightgcn" and art.config["dim"] == 32 and art.config["task"] == "both"
    assert art.metrics["epochs_run"] == 1
    assert json.loads((path / "snapshot.json").read_text())["users"] == snap.n_users
    with pytest.raises(SnapshotError, match="come from snapshot"):
        artifacts.load_artifact(path, snapshot_id="0000")
    arr = np.load(path / "user_embeddings.npy")
    arr[0, 0] += 1
    np.save(path / "user_embeddings.npy", arr)
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        artifacts.load_artifact(path)


def test_embed_job_from_snapshot_dir_and_cli(snap, tmp_path):
    from gnn.cli import main

    snap_dir = snap.save(tmp_path / "snap")
    out = tmp_path / "out"
    rc = main(
        [
            "embed",
            "--store",
            str(snap_dir),
            "--model",
            "sage",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--dim",
            "16",
            "--param",
            "val_users=100",
            "--param",
            "batch_size=4096",
            "--no-progress",
        ]
    )
    assert rc == 0
    art = artifacts.load_artifact(out, snapshot_id=snap.snapshot_id)
    assert art.config["model"] == "sage" and art.checkpoint is not None
    # the stored model embeds the same snapshot to the same vectors
    model = load_sage(out)
    users, tweets = embed_snapshot_inductive(model, snap)
    np.testing.assert_allclose(tweets, art.tweet_vectors, atol=1e-5)
    # fine-tune from the artifact
    rep = run_embed(
        snap_dir,
        "sage",
        out,
        task="tweets",
        params={"epochs": 1, "dim": 16, "val_users": 100},
        init_from=out,
        progress=False,
    )
    assert rep.metrics["fine_tuned_from"].endswith("checkpoint.pt")
    assert (
        main(["embed", "--store", str(tmp_path / "nowhere"), "--model", "lightgcn", "--out", str(out)]) == 2
    )
