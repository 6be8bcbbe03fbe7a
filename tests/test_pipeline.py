"""One pipeline: what is served is what is evaluated and tuned, and a fitted recommender is
saved once and served from disk (end to end through the CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.adapters import HybridMethod, RecommenderMethod
from graph.errors import GraphRecError, SnapshotError
from graph.synthetic import generate
from graphrec.cli import main
from retrieval.autotune import tune_config
from retrieval.recommender import Recommender, RecommenderConfig


@pytest.fixture(scope="module")
def snap():
    return generate(400, avg_follows=10, avg_engagements=12, seed=5).snapshot()


@pytest.mark.parametrize("task", ["tweets", "follows"])
def test_the_recommender_method_scores_exactly_the_served_lists(snap, task):
    """``--method recommender`` ranks with the same pipeline as ``who_to_follow`` /
    ``tweet_candidates`` (no request options): same ids, same order, same scores."""
    method = RecommenderMethod().fit(snap, task)
    users = np.arange(0, snap.n_users, 23)
    ids, vals = method.recommend(users, 10)
    rec = Recommender(snap)
    call = rec.tweet_candidates if task == "tweets" else rec.who_to_follow
    # the served call filters own tweets by default; the evaluated path has no request options
    from retrieval.filters import FilterOptions

    for row, u in enumerate(users.tolist()):
        served = call(int(snap.user_ids[u]), k=10, filters=FilterOptions(exclude_own_tweets=False))
        target_ids = snap.tweet_ids if task == "tweets" else snap.user_ids
        assert [r.id for r in served] == target_ids[ids[row][ids[row] >= 0]].tolist()
        np.testing.assert_allclose([r.score for r in served], vals[row][ids[row] >= 0], rtol=1e-6)


def test_hybrid_is_the_recommender_with_weights_tuned_on_the_training_carve(snap):
    hybrid = HybridMethod(val_users=200).fit(snap, "follows")
    tuned, report = tune_config(snap, tasks=["follows"], val_users=200)
    assert hybrid.config.follow_weights == tuned.follow_weights
    assert hybrid.get_params()["tuning"]["weights"] == report["follows"]["weights"]
    users = np.arange(0, snap.n_users, 31)
    ids, _ = hybrid.recommend(users, 10)
    ref, _ = Recommender(snap, config=tuned, tasks=["follows"]).rank("follows", users, 10)
    np.testing.assert_array_equal(ids, ref)


def test_recommender_method_reads_a_tuned_config(snap, tmp_path):
    config = RecommenderConfig(follow_weights={"follow_back": 1.0})
    config.save(tmp_path / "c.json")
    method = RecommenderMethod(config=str(tmp_path / "c.json")).fit(snap, "follows")
    assert set(method.rec_.sources["follows"]) == {"follow_back"}
    (tmp_path / "bad.json").write_text(json.dumps({"follow_weights": {"no_such_source": 1.0}}))
    with pytest.raises(GraphRecError, match="no_such_source"):
        RecommenderMethod(config=str(tmp_path / "bad.json"))


def test_a_saved_recommender_answers_as_the_fitted_one(snap, tmp_path):
    rec = Recommender(snap)
    rec.save(tmp_path / "model")
    loaded = Recommender.load(tmp_path / "model", snap)
    for uid in snap.user_ids[:: max(1, snap.n_users // 10)].tolist():
        assert [r.to_dict() for r in loaded.who_to_follow(uid, 10)] == [
            r.to_dict() for r in rec.who_to_follow(uid, 10)
        ]
        a, b = loaded.tweet_candidates(uid, 10), rec.tweet_candidates(uid, 10)
        assert [r.to_dict() for r in a] == [r.to_dict() for r in b]
    other = generate(100, seed=9).snapshot()
    with pytest.raises(SnapshotError, match="fitted on snapshot"):
        Recommender.load(tmp_path / "model", other)


def test_embed_fit_recommend_end_to_end_through_the_cli(snap, tmp_path, capsys):
    """`graphrec embed --out DIR` writes DIR/<version> and DIR/LATEST; `graphrec fit --embeddings DIR`
    reads it through the one artifact reader; `graphrec recommend --model` serves without refitting."""
    snap_dir, emb, model = tmp_path / "snap", tmp_path / "emb", tmp_path / "model"
    snap.save(snap_dir)
    args = ["embed", "--store", str(snap_dir), "--model", "lightgcn", "--out", str(emb), "--epochs", "2"]
    # eval_start off: when the warm start validates best the refit is skipped, and this counts epochs
    args += ["--param", "eval_start=false"]
    assert main([*args, "--dim", "8", "--no-progress", "--param", "val_users=50"]) == 0
    assert (emb / "LATEST").is_file()
    history = json.loads((emb / (emb / "LATEST").read_text().strip() / "metrics.json").read_text())["history"]
    assert len(history) == 2  # --epochs 2 trains 2, refit epochs included
    assert main(["fit", "--snapshot", str(snap_dir), "--embeddings", str(emb), "--out", str(model)]) == 0
    capsys.readouterr()
    uid = str(int(snap.user_ids[3]))
    assert (
        main(["recommend", "--snapshot", str(snap_dir), "--model", str(model), "--user", uid, "--json"]) == 0
    )
    served = json.loads(capsys.readouterr().out)
    assert len(served) == 20 and any("embedding" in r["sources"] for r in served)
    assert main(["recommend", "--model", str(model), "--user", uid]) == 2  # needs --snapshot


def test_cli_checks_arguments_before_heavy_work_and_never_invents_a_store(tmp_path, capsys):
    """`recommend -k 0` fails before any store is opened or model fitted; a mistyped --store path
    is an error (nothing created), not an empty store giving an empty snapshot."""
    missing = tmp_path / "no-such-store"
    assert main(["recommend", "--store", str(missing), "--user", "1", "-k", "0"]) == 2
    assert "k must be at least 1" in capsys.readouterr().err
    assert main(["snapshot", "--store", str(missing), "--out", str(tmp_path / "snap")]) == 2
    assert "no local store here" in capsys.readouterr().err
    assert not missing.exists() and not (tmp_path / "snap").exists()
