"""A damaged, truncated or edited snapshot is a SnapshotError naming the file, never a crash or a
silently different graph; concurrent writers never leave a mix of two snapshots."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.errors import SnapshotError
from graph.snapshot import ARRAY_DTYPES, GraphSnapshot
from graph.synthetic import generate


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    snap = generate(120, seed=3, with_text=True).snapshot()
    path = tmp_path_factory.mktemp("snap") / "s"
    snap.save(path)
    return snap, path


@pytest.fixture
def copy(saved, tmp_path):
    _, path = saved
    out = tmp_path / "s"
    shutil.copytree(path, out)
    return out


def _rewrite(path, name, fn):
    arr = np.load(path / f"{name}.npy")
    np.save(path / f"{name}.npy", fn(arr.copy()))


def _expect(path, *words, trust=False):
    with pytest.raises(SnapshotError) as err:
        GraphSnapshot.load(path, trust=trust)
    for word in words:
        assert word in str(err.value), str(err.value)
    assert "Traceback" not in str(err.value)


def test_a_saved_snapshot_loads_verified_and_equal(saved):
    snap, path = saved
    assert GraphSnapshot.load(path).equals(snap)
    assert GraphSnapshot.load(path, trust=True).equals(snap)


def _swap_first_step_down(a):
    a[2], a[3] = a[3] + 5, a[2]  # indptr goes down: a row would have a negative length
    return a


DAMAGE = [
    # (array, damage, words the error must contain); trust=True: caught by structure alone
    ("follow_out_indptr", _swap_first_step_down, ["follow_out_indptr.npy"]),
    ("follow_out_indptr", lambda a: a[:-1], ["follow_out_indptr.npy", "rows + 1"]),
    (
        "follow_out_indices",
        lambda a: np.where(np.arange(len(a)) == 0, 10**6, a).astype(a.dtype),
        ["out of range"],
    ),
    ("eng_user_indices", lambda a: a[::-1].copy(), ["eng_user_indices.npy"]),
    ("eng_user_weights", lambda a: np.where(np.arange(len(a)) == 3, np.nan, a).astype(a.dtype), ["finite"]),
    ("eng_user_weights", lambda a: -a, ["eng_user_weights.npy", ">= 0"]),
    ("eng_user_kinds", lambda a: (a + 9).astype(a.dtype), ["kind"]),
    ("user_ids", lambda a: a[::-1].copy(), ["user_ids.npy", "increasing"]),
    ("tweet_author", lambda a: np.full_like(a, 10**6), ["tweet_author.npy"]),
    (
        "follow_in_indptr",
        lambda a: np.concatenate([[0], np.full(len(a) - 1, a[-1])]).astype(a.dtype),
        ["follow_in"],
    ),
    ("eng_tweet_ts", lambda a: a[:-1], ["eng_tweet_ts.npy", "one per edge"]),
]


@pytest.mark.parametrize("name,damage,words", DAMAGE, ids=[f"{d[0]}-{i}" for i, d in enumerate(DAMAGE)])
def test_structural_damage_is_caught_even_when_trusted(copy, name, damage, words):
    _rewrite(copy, name, damage)
    _expect(copy, *words, trust=True)


def test_in_range_edits_are_caught_by_the_checksum(copy):
    # A weight changed within range keeps the structure valid: only the content check sees it.
    _rewrite(copy, "eng_user_weights", lambda a: a * 2)
    _rewrite(copy, "eng_tweet_weights", lambda a: a * 2)
    GraphSnapshot.load(copy, trust=True)  # structurally fine
    _expect(copy, "does not match its snapshot id")


def test_a_forged_snapshot_id_is_caught(copy):
    meta = json.loads((copy / "meta.json").read_text())
    meta["snapshot_id"] = "0" * 16
    (copy / "meta.json").write_text(json.dumps(meta))
    _expect(copy, "does not match its snapshot id")


@pytest.mark.parametrize("name", ["follow_out_indptr", "eng_user_weights", "user_ids"])
def test_truncated_and_garbage_files_name_the_file(copy, name):
    data = (copy / f"{name}.npy").read_bytes()
    (copy / f"{name}.npy").write_bytes(data[: len(data) // 2])
    _expect(copy, f"{name}.npy")
    (copy / f"{name}.npy").write_bytes(b"\x93NUMPY garbage")
    _expect(copy, f"{name}.npy")


def test_bad_meta_and_texts_name_the_file(copy):
    (copy / "tweet_texts.json").write_text("[1, 2")
    _expect(copy, "tweet_texts.json")
    (copy / "meta.json").write_text("{not json")
    _expect(copy, "meta.json")
    (copy / "meta.json").unlink()
    _expect(copy, "no meta.json")


def test_concurrent_writers_leave_one_whole_snapshot(tmp_path):
    a = generate(60, seed=1).snapshot()
    b = generate(80, seed=2).snapshot()
    out = tmp_path / "shared"
    errors = []

    def write(snap):
        try:
            for _ in range(5):
                snap.save(out)
        except Exception as exc:  # noqa: BLE001 - any failure fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = GraphSnapshot.load(out)  # verified: a mix of both would fail the checksum
    assert got.equals(a) or got.equals(b)
    assert [p.name for p in tmp_path.iterdir()] == ["shared"]  # no temporary directory left


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(ARRAY_DTYPES)),
    position=st.integers(min_value=0, max_value=10**6),
    value=st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
def test_fuzz_one_changed_element_never_loads_as_a_different_graph(
    saved, tmp_path_factory, name, position, value
):
    """Any single element set to any value: the load either fails with a SnapshotError or
    gives back exactly the saved graph (the value was already there)."""
    snap, path = saved
    out = tmp_path_factory.mktemp("fuzz") / "s"
    shutil.copytree(path, out)
    arr = np.load(out / f"{name}.npy").copy()
    if not len(arr):
        return
    with np.errstate(over="ignore", invalid="ignore"):
        arr[position % len(arr)] = np.array(value).astype(arr.dtype)
    np.save(out / f"{name}.npy", arr)
    try:
        got = GraphSnapshot.load(out)
    except SnapshotError:
        return
    assert got.equals(snap)
