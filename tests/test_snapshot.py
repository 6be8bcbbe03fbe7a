import numpy as np
import pytest

from graph.errors import GraphRecError, SnapshotError
from graph.schema import KINDS
from graph.snapshot import ARRAY_DTYPES, GraphSnapshot, build_snapshot


def tiny(**over):
    cols = dict(
        user_ids=np.array([30, 10, 20]),
        tweet_ids=np.array([7, 5]),
        follow_src=np.array([10, 10, 20, 10]),
        follow_dst=np.array([30, 20, 10, 30]),  # (10, 30) twice: first wins
        follow_ts=np.array([100, 200, 300, 999]),
        eng_user=np.array([20, 10, 20]),
        eng_tweet=np.array([7, 5, 5]),
        eng_kind=np.array([KINDS["like"], KINDS["retweet"], KINDS["like"]], dtype=np.int8),
        eng_ts=np.array([1, 2, 3]),
        eng_weight=np.array([1.0, 2.0, 1.0], dtype=np.float32),
        tweet_author=np.array([30, -1]),
        tweet_created=np.array([50, 0]),
        tweet_texts={7: "hello graph"},
    )
    cols.update(over)
    return build_snapshot(**cols)


def test_known_answer_csr():
    s = tiny()
    assert s.user_ids.tolist() == [10, 20, 30]
    assert s.tweet_ids.tolist() == [5, 7]
    # follower 10 (idx 0) follows 20 (idx 1) and 30 (idx 2); 20 follows 10
    assert s.follow_out_indptr.tolist() == [0, 2, 3, 3]
    assert s.follow_out_indices.tolist() == [1, 2, 0]
    assert s.follow_out_ts.tolist() == [200, 100, 0 + 300]
    assert s.follow_in_indptr.tolist() == [0, 1, 2, 3]
    assert s.follow_in_indices.tolist() == [1, 0, 0]
    # engagements: user 10 -> tweet 5 (retweet); user 20 -> tweet 5 (like), tweet 7 (like)
    assert s.eng_user_indptr.tolist() == [0, 1, 3, 3]
    assert s.eng_user_indices.tolist() == [0, 0, 1]
    assert s.eng_user_kinds.tolist() == [KINDS["retweet"], KINDS["like"], KINDS["like"]]
    assert s.eng_tweet_indptr.tolist() == [0, 2, 3]
    assert s.eng_tweet_indices.tolist() == [0, 1, 1]
    assert s.tweet_author.tolist() == [-1, 2]
    assert s.tweet_created.tolist() == [0, 50]
    assert s.authored_indptr.tolist() == [0, 0, 0, 1]
    assert s.authored_indices.tolist() == [1]
    assert s.n_follows == 3 and s.n_engagements == 3
    assert s.stats()["reciprocated_follows"] == 2


def test_dtypes_and_lookup():
    s = tiny()
    for name, dtype in ARRAY_DTYPES.items():
        assert s.arrays[name].dtype == dtype, name
    assert s.user_index([30, 10]).tolist() == [2, 0]
    assert s.user_index([99], strict=False).tolist() == [-1]
    with pytest.raises(GraphRecError, match="unknown user id"):
        s.user_index([99])
    with pytest.raises(GraphRecError, match="integers"):
        s.user_index(np.array([1.5]))


def test_unknown_endpoint_is_an_error():
    with pytest.raises(GraphRecError, match=r"unknown user \(followee\) id\(s\): \[77\]"):
        tiny(follow_dst=np.array([30, 20, 10, 77]))


def test_save_load_roundtrip_mmap(tmp_path):
    s = tiny()
    s.save(tmp_path / "snap")
    loaded = GraphSnapshot.load(tmp_path / "snap")
    assert loaded.equals(s)
    assert isinstance(loaded.follow_out_indices, np.memmap)
    assert loaded.tweet_texts == {7: "hello graph"}
    eager = GraphSnapshot.load(tmp_path / "snap", mmap=False)
    assert not isinstance(eager.follow_out_indices, np.memmap)


def test_load_rejects_corrupt(tmp_path):
    s = tiny()
    s.save(tmp_path / "snap")
    (tmp_path / "snap" / "follow_out_indices.npy").unlink()
    with pytest.raises(SnapshotError, match="missing array file"):
        GraphSnapshot.load(tmp_path / "snap")
    with pytest.raises(SnapshotError, match="not a snapshot"):
        GraphSnapshot.load(tmp_path)


def test_snapshot_id_depends_on_content():
    assert tiny().snapshot_id == tiny().snapshot_id
    assert tiny().snapshot_id != tiny(follow_ts=np.array([100, 200, 301, 999])).snapshot_id


def test_empty_graph():
    e = np.zeros(0, np.int64)
    s = build_snapshot(
        user_ids=np.array([1]),
        tweet_ids=e,
        follow_src=e,
        follow_dst=e,
        follow_ts=e,
        eng_user=e,
        eng_tweet=e,
        eng_kind=e.astype(np.int8),
        eng_ts=e,
        eng_weight=e.astype(np.float32),
        tweet_author=e,
        tweet_created=e,
    )
    assert s.n_users == 1 and s.n_tweets == 0 and s.stats()["follows"] == 0
