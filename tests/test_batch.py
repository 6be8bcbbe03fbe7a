"""Batch candidate generation (graphrec/batch.py): the Ray job with two local workers writes
exactly what the single-process run writes, and that is what the served recommender answers."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from graph.errors import GraphRecError
from graph.synthetic import generate
from graphrec.batch import BatchJob, partitions, read_output, run_batch, select_users
from graphrec.cli import main
from graphrec.serve.settings import ModelPaths
from retrieval.recommender import Recommender, RecommenderConfig

K = {"follows": 7, "tweets": 9}


@pytest.fixture(scope="module")
def snap_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch") / "snap"
    generate(240, avg_follows=8, avg_engagements=10, seed=31).snapshot().save(d)
    return d


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module: two CPUs, no dashboard, its files under pytest's temp dir."""
    import ray  # the `dist` extra (scripts/setup_env.sh installs it): never skipped

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


def _job(snap_dir, config=None, **kw) -> BatchJob:
    return BatchJob(ModelPaths(snap_dir, config=config), k=dict(K), partition_size=50, **kw)


def test_two_ray_workers_write_what_one_process_writes(snap_dir, tmp_path, ray_local):
    users = select_users(snap_dir)
    users = np.concatenate([users, [987_654_321]])  # an unknown user: the cold-start path
    local = run_batch(_job(snap_dir), tmp_path / "local", users, engine="local")
    dist = run_batch(_job(snap_dir), tmp_path / "ray", users, engine="ray", workers=2)
    assert dist.workers == 2 and local.partitions == dist.partitions == 5
    assert local.rows == dist.rows
    for task in K:
        a, b = read_output(tmp_path / "local", task), read_output(tmp_path / "ray", task)
        assert a.num_rows > 0
        assert a.equals(b), task  # same rows, same order, same bytes of every column
        files = sorted(p.name for p in (tmp_path / "ray" / task).iterdir())
        assert files == [f"part-{i:05d}.parquet" for i in range(5)]
    assert set(read_output(tmp_path / "ray", "follows").column("user").to_pylist()) == set(users.tolist())


def test_rows_are_the_served_recommendations(snap_dir, tmp_path):
    """Each row is what Recommender.who_to_follow / tweet_candidates answers for that user."""
    users = select_users(snap_dir, sample=12, seed=3)
    run_batch(_job(snap_dir), tmp_path / "out", users, engine="local")
    rec = Recommender.from_artifacts(snap_dir)
    follows = read_output(tmp_path / "out", "follows").to_pylist()
    tweets = read_output(tmp_path / "out", "tweets").to_pylist()
    expected_f, expected_t = [], []
    for u in users.tolist():
        for rank, r in enumerate(rec.who_to_follow(u, K["follows"]), start=1):
            expected_f.append((u, rank, r.id, np.float32(r.score), r.reason))
        for rank, r in enumerate(rec.tweet_candidates(u, K["tweets"]), start=1):
            expected_t.append((u, rank, r.id, np.float32(r.score), r.reason))
    assert [(r["user"], r["rank"], r["target"], np.float32(r["score"]), r["reason"]) for r in follows] == (
        expected_f
    )
    assert [(r["user"], r["rank"], r["target"], np.float32(r["score"]), r["reason"]) for r in tweets] == (
        expected_t
    )
    assert any(r["reason"] for r in follows)


def test_cli_with_a_config_and_a_saved_model(snap_dir, tmp_path):
    """`graphrec batch recommend` with a tuned config (fitted once by the driver) and with that
    fit saved by `graphrec fit`-style save: the same rows (one process each: the Ray engine is
    the first test's)."""
    cfg = tmp_path / "cfg.json"
    RecommenderConfig(depth=40).save(cfg)
    users = tmp_path / "users.txt"
    ids = select_users(snap_dir, sample=30, seed=1)
    users.write_text("\n".join(map(str, ids.tolist())) + "\n")
    args = ["batch", "recommend", "--snapshot", str(snap_dir), "--config", str(cfg), "--users", str(users)]
    args += ["--partition-size", "8", "--no-progress", "--engine", "local"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    Recommender.from_artifacts(snap_dir, config_path=cfg).save(tmp_path / "model")
    model_args = [a if a != str(cfg) else str(tmp_path / "model") for a in args]
    model_args[model_args.index("--config")] = "--model"
    assert main([*model_args, "--out", str(tmp_path / "b")]) == 0
    for task in K:
        a, b = read_output(tmp_path / "a", task), read_output(tmp_path / "b", task)
        assert a.num_rows == len(ids) * (20 if task == "follows" else 50)
        assert a.equals(b)
    schema = pq.read_schema(tmp_path / "a" / "tweets" / "part-00000.parquet")
    assert schema.names == ["user", "rank", "target", "score", "reason"]
    assert (tmp_path / "a" / "_SUCCESS.json").is_file()


def test_bad_input_names_the_parameter(snap_dir, tmp_path):
    users = np.array([1, 2, 3])
    with pytest.raises(GraphRecError, match="--snapshot"):
        run_batch(_job(tmp_path / "nowhere"), tmp_path / "o", users, engine="local")
    with pytest.raises(GraphRecError, match="--engine"):
        run_batch(_job(snap_dir), tmp_path / "o", users, engine="spark")
    with pytest.raises(GraphRecError, match="partition_size"):
        BatchJob(ModelPaths(snap_dir), partition_size=0)
    with pytest.raises(GraphRecError, match="tasks"):
        BatchJob(ModelPaths(snap_dir), k={"likes": 3})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(GraphRecError, match="--out"):
        run_batch(_job(snap_dir), tmp_path / "full", users, engine="local")
    bad = tmp_path / "users.txt"
    bad.write_text("5\nseven\n")
    with pytest.raises(GraphRecError, match="users.txt:2"):
        select_users(snap_dir, users_file=bad)
    assert main(["batch", "recommend", "--snapshot", str(snap_dir), "--out", str(tmp_path / "t"),
                 "--tasks", "likes"]) == 2  # fmt: skip


def test_partitions_cover_the_users_in_order():
    users = np.arange(103)
    parts = partitions(users, 25)
    assert [len(p) for p in parts] == [25, 25, 25, 25, 3]
    assert np.array_equal(np.concatenate(parts), users)


def test_two_gloo_ranks_train_what_one_process_trains(tmp_path, ray_local):
    """Data-parallel LightGCN (gnn/distributed.py through graphrec/dist_train.py): two gloo ranks
    share each global batch between them (the loss of every epoch is the one-process loss: a
    positive missed or counted twice would move it by far more than the tolerance), take the
    same steps (the vectors agree to float rounding) and keep identical replicas (checked by
    train_distributed). The negative pool is every target, so no draw differs between the runs."""
    from gnn.job import train_embeddings
    from graphrec.dist_train import train_distributed

    snap = generate(150, avg_follows=6, avg_engagements=8, seed=5).snapshot()
    snap.save(tmp_path / "snap")
    params = dict(
        loss="softmax",
        n_negatives=50_000,  # >> the targets: the pool holds all of them
        cosine=True,
        init="random",
        lr=0.05,
        epochs=5,
        batch_size=256,  # several steps an epoch
        dim=16,
        refit_epochs=1,
        val_users=40,
        patience=10,
    )
    one = train_embeddings(snap, progress=False, **params)
    two = train_distributed(tmp_path / "snap", workers=2, params=params)
    loss_one = [h["loss"] for h in one.metrics["history"]]
    loss_two = [h["loss"] for h in two.metrics["history"]]
    assert len(loss_one) == len(loss_two) == 5
    np.testing.assert_allclose(loss_two, loss_one, rtol=1e-3)
    assert one.metrics["best_epoch"] == two.metrics["best_epoch"] > 0  # training improved on the start
    assert abs(two.metrics["val_recall@20"] - one.metrics["val_recall@20"]) < 0.01
    # float rounding of the all-reduce's summation order, grown over 5 epochs at lr 0.05: relative
    # to each value, as the loss check (the ego layer's 0.2 / 0.8/3 weights round differently
    # from the uniform 0.25 and put one value in 7,200 at 1.5e-4 absolute, 8e-4 relative)
    np.testing.assert_allclose(two.user_vectors, one.user_vectors, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(two.tweet_vectors, one.tweet_vectors, rtol=1e-3, atol=1e-4)
