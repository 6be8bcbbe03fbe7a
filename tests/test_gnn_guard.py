"""The validation guard (issue 21): a model is measured against popularity on its own validation
carve, the embedding job refuses to publish one that does not beat it, and the tuning gate
switches such an embedding source off. Small sparse synthetic graphs (fast)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import scipy.sparse as sp

from gnn import artifacts
from gnn.cli import main as gnn_main
from gnn.data import PairSet
from gnn.job import BelowPopularityError, run_embed
from gnn.pipeline import fit_lightgcn
from gnn.trainer import EmbeddingTask, Trainer
from graph.synthetic import generate

TINY = {
    "epochs": 2,
    "batch_size": 2048,
    "chunk_size": 2048,
    "val_users": 150,
    "dim": 16,
    "refit_epochs": 0,
    "progress": False,
}
#: a model trained to be useless: random start, steps too small to move it (ranks at random)
BAD = {**TINY, "init": "random", "lr": 1e-7, "decoupled_weight_decay": 0.0}


def _sparse_graph(seed: int = 5):
    """Engagements only, many tweets per user: most tweets are engaged once or never."""
    import dataclasses

    g = generate(300, tweets_per_user=10, avg_engagements=30, seed=seed, with_text=False)
    return dataclasses.replace(
        g, follow_src=g.follow_src[:0], follow_dst=g.follow_dst[:0], follow_ts=g.follow_ts[:0]
    )


@pytest.fixture(scope="module")
def sparse():
    return _sparse_graph().snapshot()


@pytest.fixture(scope="module")
def sparse_dir(sparse, tmp_path_factory):
    path = tmp_path_factory.mktemp("sparse") / "snap"
    sparse.save(path)
    return path


def test_popularity_on_the_carve_ranks_by_training_count_without_the_users_own_items():
    # 4 users x 5 targets; counts per target: 3, 2, 1, 0, 1
    train = np.array([[1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 1]], np.float32)
    val = np.array([[0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [1, 0, 0, 0, 0]], np.float32)
    tr = PairSet.from_matrix("tweets", sp.csr_matrix(train), 4)
    va = PairSet.from_matrix("tweets", sp.csr_matrix(val), 4)
    task = EmbeddingTask(model=None, forward=None, train=[tr], val=[va], fingerprint={})
    m = Trainer(k=1).validate_popularity(task)
    # top-1 after the user's own items: user 0 -> 2 (hit), user 1 -> 1 (hit), user 2 -> 2 (miss: wants 3),
    # user 3 -> 0 (hit)
    assert m["val_recall@1"] == pytest.approx(0.75)


def test_fit_measures_the_model_against_popularity_and_warns(sparse, caplog):
    with caplog.at_level(logging.WARNING, logger="gnn.pipeline"):
        res = fit_lightgcn(sparse, "tweets", params=BAD)
    m = res.metrics
    assert m["beats_popularity"] is False
    assert 0 <= m["val_recall@20"] < m["popularity_val_recall@20"]
    assert m["val_recall@20"] == m["best_metric"]
    assert any("does not beat popularity" in r.getMessage() for r in caplog.records)


def test_embed_job_refuses_a_model_below_popularity_unless_allowed(sparse, sparse_dir, tmp_path):
    out = tmp_path / "emb"
    with pytest.raises(BelowPopularityError, match="allow-below-popularity"):
        run_embed(sparse_dir, "lightgcn", out, task="tweets", params=BAD, progress=False)
    assert not (out / "LATEST").exists()
    assert list((out / ".work").glob("*.pt"))  # kept: --resume publishes it without retraining
    rep = run_embed(
        sparse_dir,
        "lightgcn",
        out,
        task="tweets",
        params=BAD,
        resume=True,
        allow_below_popularity=True,
        progress=False,
    )
    art = artifacts.load_artifact(out, snapshot_id=sparse.snapshot_id)
    assert art.path == rep.artifact
    metrics = json.loads((art.path / "metrics.json").read_text())
    assert metrics["beats_popularity"] is False
    assert metrics["val_recall@20"] < metrics["popularity_val_recall@20"]


def test_embed_command_exits_2_below_popularity_and_the_flag_overrides(sparse_dir, tmp_path, capsys):
    out = tmp_path / "emb"
    args = ["embed", "--store", str(sparse_dir), "--model", "lightgcn", "--out", str(out), "--task", "tweets"]
    args += ["--no-progress", "--epochs", "2", "--dim", "16", "--lr", "1e-7", "--param", "init=random"]
    args += ["--param", "val_users=150", "--param", "refit_epochs=0", "--param", "decoupled_weight_decay=0"]
    assert gnn_main(args) == 2
    assert "does not beat popularity" in capsys.readouterr().err
    assert not (out / "LATEST").exists()
    assert gnn_main([*args, "--allow-below-popularity", "--resume"]) == 0
    assert "DOES NOT BEAT popularity" in capsys.readouterr().out
    assert (out / "LATEST").exists()


def test_the_inductive_model_is_guarded_too(sparse):
    from gnn.pipeline import fit_sage

    res = fit_sage(sparse, "tweets", params={**BAD, "n_text": 256})
    assert res.metrics["beats_popularity"] is False
    assert res.metrics["popularity_val_recall@20"] > 0


def test_tuning_switches_off_an_embedding_source_below_popularity(sparse, tmp_path):
    from retrieval.autotune import tune_config
    from retrieval.recommender import RecommenderConfig

    below = {"beats_popularity": False, "val_recall@20": 0.01, "popularity_val_recall@20": 0.04}
    fast = {"tasks": ["tweets"], "val_users": 100, "sources": ["popular", "co_engagement"]}
    config, report = tune_config(sparse, **fast, embedding_metrics=below)
    assert config.tweet_weights["embedding"] == 0.0
    reason = config.switched_off["tweets"]["embedding"]
    assert "does not beat popularity" in reason and "0.0100" in reason and "0.0400" in reason
    assert report["tweets"]["embedding"].startswith("switched off")
    config.save(tmp_path / "c.json")
    assert RecommenderConfig.load(tmp_path / "c.json") == config
    # a model that beats popularity keeps its configured weight, and so does one never checked
    above = {**below, "beats_popularity": True, "val_recall@20": 0.06}
    for metrics in (above, None, {}):
        config, _ = tune_config(sparse, **fast, embedding_metrics=metrics)
        assert config.tweet_weights["embedding"] == RecommenderConfig().tweet_weights["embedding"]
        assert not config.switched_off
