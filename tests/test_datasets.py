from pathlib import Path

import numpy as np
import pytest

from graph.datasets import dataset_snapshot, load_dataset
from graph.errors import InputError

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.mark.parametrize(
    "name,users,items,train,test,follows",
    [
        ("gowalla", 29858, 40981, 810128, 217242, 0),
        ("lastfm", 1892, 4489, 42135, 10533, 25434),
        ("flickr", 8358, 82120, 282444, 32365, 187273),
    ],
)
def test_counts_match_the_datasets_readme(name, users, items, train, test, follows):
    ds = load_dataset(name, DATA)
    s = ds.summary()
    assert (s["users"], s["items"], s["train"], s["test"], s["follows"]) == (
        users,
        items,
        train,
        test,
        follows,
    )


def test_lastfm_keeps_one_based_ids_and_weights():
    ds = load_dataset("lastfm", DATA)
    assert ds.user_ids.min() == 1
    assert ds.train_weight.max() > 1000  # listen counts, not binary


def test_flickr_follows_are_directed():
    snap = dataset_snapshot(load_dataset("flickr", DATA))
    recip = snap.stats()["reciprocated_follows"] / snap.n_follows
    assert 0.10 < recip < 0.13  # 11.5% reciprocated per the README


def test_crlf_and_bad_lines(tmp_path):
    folder = tmp_path / "lastfm"
    folder.mkdir()
    (folder / "data1.txt").write_bytes(b"1\t2\t3\r\n2\t3\t4\r\n")
    (folder / "test1.txt").write_bytes(b"1\t3\t1\r\n")
    (folder / "trustnetwork.txt").write_bytes(b"1\t2\r\n2\t1\r\n")
    ds = load_dataset("lastfm", tmp_path)
    assert ds.train_item.tolist() == [2, 3] and ds.follow_src.tolist() == [1, 2]
    (folder / "data1.txt").write_bytes(b"1\t2\t3\r\n2\tx\t4\r\n")
    with pytest.raises(InputError, match=r"data1.txt:2: non-numeric"):
        load_dataset("lastfm", tmp_path)
    (folder / "data1.txt").write_bytes(b"1\t2\t3\r\n2\r\n")
    with pytest.raises(InputError, match=r"data1.txt:2: expected 3 columns"):
        load_dataset("lastfm", tmp_path)


def test_gowalla_bad_line(tmp_path):
    folder = tmp_path / "gowalla"
    folder.mkdir()
    (folder / "train.txt").write_text("0 1 2\n1 2 -3\n")
    (folder / "test.txt").write_text("0 3\n")
    with pytest.raises(InputError, match=r"train.txt:2: negative id"):
        load_dataset("gowalla", tmp_path)


def test_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(InputError, match="pass --data-dir"):
        load_dataset("flickr", tmp_path)
    with pytest.raises(InputError, match="unknown dataset"):
        load_dataset("movielens", tmp_path)


def test_dataset_snapshot_keeps_all_nodes():
    ds = load_dataset("gowalla", DATA)
    snap = dataset_snapshot(ds)
    assert snap.n_users == 29858 and snap.n_tweets == 40981 and snap.n_engagements == 810128
    assert np.array_equal(snap.user_ids, np.arange(29858))
