"""Live segments (graph.live) and the live stage of the recommender (retrieval.live)."""

from __future__ import annotations

import numpy as np
import pytest

from graph.ingest import GraphColumns
from graph.live import LiveGraph, fold, pack, unpack
from graph.schema import KINDS
from graph.synthetic import generate
from retrieval.filters import FilterOptions
from retrieval.recommender import Recommender


def _columns(**parts) -> GraphColumns:
    i64 = lambda name: np.asarray(parts.get(name, []), np.int64)  # noqa: E731
    return GraphColumns(
        users=i64("users"),
        tweet_ids=i64("tweet_ids"),
        tweet_authors=i64("tweet_authors"),
        tweet_created=i64("tweet_created"),
        tweet_texts=None,
        follow_src=i64("follow_src"),
        follow_dst=i64("follow_dst"),
        follow_ts=np.asarray(parts.get("follow_ts", np.zeros(len(parts.get("follow_src", [])))), np.int64),
        eng_user=i64("eng_user"),
        eng_tweet=i64("eng_tweet"),
        eng_kind=np.asarray(parts.get("eng_kind", [KINDS["like"]] * len(parts.get("eng_user", []))), np.int8),
        eng_ts=np.asarray(parts.get("eng_ts", np.zeros(len(parts.get("eng_user", [])))), np.int64),
        eng_weight=np.asarray(parts.get("eng_weight", np.ones(len(parts.get("eng_user", [])))), np.float32),
    )


def _split(g, fraction: float, seed: int):
    """The synthetic graph's columns cut in two: a base part and the events after it."""
    cols = GraphColumns.from_synthetic(g)
    rng = np.random.default_rng(seed)
    fmask = rng.random(len(cols.follow_src)) < fraction
    emask = rng.random(len(cols.eng_user)) < fraction
    tmask = rng.random(len(cols.tweet_ids)) < fraction / 2

    def part(follow, eng, tw) -> GraphColumns:
        return GraphColumns(
            users=cols.users,
            tweet_ids=cols.tweet_ids[tw],
            tweet_authors=cols.tweet_authors[tw],
            tweet_created=cols.tweet_created[tw],
            tweet_texts=None,
            follow_src=cols.follow_src[follow],
            follow_dst=cols.follow_dst[follow],
            follow_ts=cols.follow_ts[follow],
            eng_user=cols.eng_user[eng],
            eng_tweet=cols.eng_tweet[eng],
            eng_kind=cols.eng_kind[eng],
            eng_ts=cols.eng_ts[eng],
            eng_weight=cols.eng_weight[eng],
        )

    base = part(~fmask, ~emask & ~np.isin(cols.eng_tweet, cols.tweet_ids[tmask]), ~tmask)
    return cols, base, part(fmask, emask, tmask)


def _snapshot(cols: GraphColumns):
    from graph.snapshot import build_snapshot

    return build_snapshot(
        user_ids=cols.users,
        tweet_ids=np.concatenate([cols.tweet_ids, cols.eng_tweet]),
        follow_src=cols.follow_src,
        follow_dst=cols.follow_dst,
        follow_ts=cols.follow_ts,
        eng_user=cols.eng_user,
        eng_tweet=cols.eng_tweet,
        eng_kind=cols.eng_kind,
        eng_ts=cols.eng_ts,
        eng_weight=cols.eng_weight,
        tweet_author=np.concatenate([cols.tweet_authors, np.full(len(cols.eng_tweet), -1)]),
        tweet_created=np.concatenate([cols.tweet_created, np.zeros(len(cols.eng_tweet), np.int64)]),
    )


@pytest.fixture(scope="module")
def graph():
    return generate(300, avg_follows=8, avg_engagements=10, tweets_per_user=2, seed=4, with_text=False)


def test_pack_round_trips_and_sorts_by_source_then_destination():
    rng = np.random.default_rng(0)
    s, d, k = rng.integers(0, 2**28, 500), rng.integers(0, 2**28, 500), rng.integers(0, 8, 500)
    assert all(np.array_equal(a, b) for a, b in zip(unpack(pack(s, d, k)), (s, d, k)))
    order = np.argsort(pack(s, d, k))
    assert np.array_equal(order, np.lexsort((k, d, s)))


@pytest.mark.parametrize("segment_edges", [1, 7, 64, 1 << 15])
def test_lookups_equal_a_brute_force_reference(graph, segment_edges):
    """Over many batches (segments sealed and merged), every lookup equals a scan of the events."""
    cols, base_cols, live_cols = _split(graph, 0.3, seed=segment_edges)
    snap = _snapshot(base_cols)
    live = LiveGraph(snap, segment_edges=segment_edges)
    n = len(live_cols.follow_src)
    for lo in range(0, max(n, len(live_cols.eng_user)), 37):  # many small micro-batches
        sl = slice(lo, lo + 37)
        live.add(
            _columns(
                follow_src=live_cols.follow_src[sl],
                follow_dst=live_cols.follow_dst[sl],
                eng_user=live_cols.eng_user[sl],
                eng_tweet=live_cols.eng_tweet[sl],
                eng_kind=live_cols.eng_kind[sl],
                eng_weight=live_cols.eng_weight[sl],
            )
        )
    if segment_edges < 64:
        assert len(live.follows.sealed) <= 2 * int(np.log2(max(len(live.follows), 2))) + 2  # merged
    base_f = set(zip(base_cols.follow_src.tolist(), base_cols.follow_dst.tolist()))
    expected_f: dict[int, list[int]] = {}
    seen = set(base_f)
    for s, d in zip(live_cols.follow_src.tolist(), live_cols.follow_dst.tolist()):
        if (s, d) not in seen:  # first write wins, the snapshot's edges count as written
            seen.add((s, d))
            expected_f.setdefault(s, []).append(d)
    assert len(live.follows) == sum(len(v) for v in expected_f.values())
    for ext in list(expected_f)[:40] + [int(snap.user_ids[0])]:
        u = live.users.lookup(np.array([ext]), create=False)
        got = sorted(live.users.external(live.follows.out_edges(u)[1]).tolist())
        assert got == sorted(expected_f.get(ext, []))
        followers = live.users.external(live.follows.in_edges(u)[0]).tolist()
        want = sorted(s for s, ds in expected_f.items() for d in ds if d == ext)
        assert sorted(followers) == want


def test_first_write_wins_and_a_replay_adds_nothing(graph):
    _, base_cols, live_cols = _split(graph, 0.2, seed=1)
    live = LiveGraph(_snapshot(base_cols))
    first = live.add(live_cols)
    assert first["follows"] > 0 and first["engagements"] > 0
    again = live.add(live_cols)
    assert again == {"users": 0, "tweets": 0, "follows": 0, "engagements": 0}
    old = live.add(base_cols)  # already in the snapshot
    assert old["follows"] == 0 and old["engagements"] == 0


def test_folding_the_live_graph_gives_the_snapshot_of_all_events(graph):
    """The live segments hold exactly what a fresh snapshot of every event would hold."""
    cols, base_cols, live_cols = _split(graph, 0.25, seed=2)
    live = LiveGraph(_snapshot(base_cols), segment_edges=50)
    for lo in range(0, len(live_cols.follow_src), 500):
        sl = slice(lo, lo + 500)
        live.add(
            _columns(
                users=live_cols.users[sl],
                tweet_ids=live_cols.tweet_ids[sl],
                tweet_authors=live_cols.tweet_authors[sl],
                tweet_created=live_cols.tweet_created[sl],
                follow_src=live_cols.follow_src[sl],
                follow_dst=live_cols.follow_dst[sl],
                follow_ts=live_cols.follow_ts[sl],
            )
        )
    live.add(
        _columns(
            eng_user=live_cols.eng_user,
            eng_tweet=live_cols.eng_tweet,
            eng_kind=live_cols.eng_kind,
            eng_ts=live_cols.eng_ts,
            eng_weight=live_cols.eng_weight,
        )
    )
    whole = _snapshot(
        GraphColumns(
            users=cols.users,
            tweet_ids=np.concatenate([base_cols.tweet_ids, live_cols.tweet_ids]),
            tweet_authors=np.concatenate([base_cols.tweet_authors, live_cols.tweet_authors]),
            tweet_created=np.concatenate([base_cols.tweet_created, live_cols.tweet_created]),
            tweet_texts=None,
            follow_src=np.concatenate([base_cols.follow_src, live_cols.follow_src]),
            follow_dst=np.concatenate([base_cols.follow_dst, live_cols.follow_dst]),
            follow_ts=np.concatenate([base_cols.follow_ts, live_cols.follow_ts]),
            eng_user=np.concatenate([base_cols.eng_user, live_cols.eng_user]),
            eng_tweet=np.concatenate([base_cols.eng_tweet, live_cols.eng_tweet]),
            eng_kind=np.concatenate([base_cols.eng_kind, live_cols.eng_kind]),
            eng_ts=np.concatenate([base_cols.eng_ts, live_cols.eng_ts]),
            eng_weight=np.concatenate([base_cols.eng_weight, live_cols.eng_weight]),
        )
    )
    folded = fold(live)
    assert folded.snapshot_id == whole.snapshot_id


def test_an_event_fills_in_a_snapshot_tweet_known_only_through_an_engagement(tmp_path):
    """Found by the fault matrix: a tweet engaged with before the snapshot and published (its
    tweet event) after it. The stores fill in its author and time (first write wins per field);
    the live graph must too, or fold(live) differs from a fresh snapshot of the same events."""
    from graph.export import export_snapshot
    from graph.ingest import ingest
    from graph.local_store import LocalStore

    base = _columns(users=[1, 2], eng_user=[1, 2], eng_tweet=[500, 501], eng_ts=[10, 11])
    events = _columns(
        tweet_ids=[500, 500, 501, 600],  # 500 twice: the first author wins; 600 is new
        tweet_authors=[7, 2, 1, 2],  # 7: an author born after the snapshot
        tweet_created=[20, 21, 22, 23],
        follow_src=[7],
        follow_dst=[1],
    )
    with LocalStore(tmp_path / "store") as store:
        ingest(store, base, progress=False)
        live = LiveGraph(export_snapshot(store, progress=False))
        assert live.tweet_author(live.tweets.lookup(np.array([500]), create=False)).tolist() == [-1]
        ingest(store, events, progress=False)
        fresh = export_snapshot(store, progress=False)
    live.add(events)
    dense = live.tweets.lookup(np.array([500, 501, 600]), create=False)
    authors = live.users.external(live.tweet_author(dense))
    assert authors.tolist() == [7, 1, 2] and live.tweet_created(dense).tolist() == [20, 22, 23]
    assert sorted(
        live.tweets.external(live.new_tweets_by(live.users.lookup(np.array([7]), create=False)))
    ) == [500]
    assert fold(live).snapshot_id == fresh.snapshot_id
    assert live.add(events)["tweets"] == 0  # a replay changes nothing


def test_live_edges_cost_at_most_32_bytes(graph):
    _, base_cols, live_cols = _split(graph, 0.3, seed=3)
    live = LiveGraph(_snapshot(base_cols), segment_edges=256)
    live.add(live_cols)
    assert live.n_edges > 500
    assert live.nbytes / live.n_edges <= 32


# -- the recommender reads base + live -------------------------------------------------------


@pytest.fixture
def rec(graph):
    return Recommender(graph.snapshot())


def _ids(recs) -> list[int]:
    return [r.id for r in recs]


def _followees(snap, u: int) -> set[int]:
    lo, hi = snap.follow_out_indptr[u], snap.follow_out_indptr[u + 1]
    return set(snap.user_ids[snap.follow_out_indices[lo:hi]].tolist())


def test_a_new_follow_leaves_who_to_follow_at_once_and_brings_its_followees(rec):
    snap = rec.snap
    u = 5
    uid = int(snap.user_ids[u])
    target = _ids(rec.who_to_follow(uid, 20))[0]
    rec.apply_events(_columns(follow_src=[uid], follow_dst=[target]))
    after = rec.who_to_follow(uid, 50)
    assert target not in _ids(after)
    second_hop = _followees(snap, int(snap.user_index([target])[0])) - _followees(snap, u) - {uid, target}
    assert second_hop
    assert second_hop <= set(_ids(rec.who_to_follow(uid, 10_000)))  # every new second-hop account
    live_items = [r for r in after if "live" in r.sources]
    assert live_items and all(r.reason for r in live_items)


def test_a_new_follower_is_proposed_back(rec):
    snap = rec.snap
    a, b = int(snap.user_ids[7]), int(snap.user_ids[8])
    rec.apply_events(_columns(follow_src=[b], follow_dst=[a]))
    got = {r.id: r for r in rec.who_to_follow(a, 10_000)}
    assert b in _followees(snap, 7) or "live" in got[b].sources


def test_a_new_engagement_is_excluded_and_network_engagements_arrive(rec):
    snap = rec.snap
    u = 10
    uid = int(snap.user_ids[u])
    tweets = _ids(rec.tweet_candidates(uid, 5))
    followee = int(snap.follow_out_indices[snap.follow_out_indptr[u]])
    fresh = next(int(t) for t in snap.tweet_ids[::-1] if int(t) not in tweets)
    rec.apply_events(_columns(eng_user=[uid, int(snap.user_ids[followee])], eng_tweet=[tweets[0], fresh]))
    got = _ids(rec.tweet_candidates(uid, 10_000))
    assert tweets[0] not in got
    assert fresh in got


def test_users_and_tweets_born_after_the_snapshot(rec):
    snap = rec.snap
    new_user, new_tweet = 10**9, 10**12
    author = int(snap.user_ids[3])
    rec.apply_events(
        _columns(
            users=[new_user],
            follow_src=[new_user],
            follow_dst=[author],
            tweet_ids=[new_tweet],
            tweet_authors=[author],
            tweet_created=[int(np.asarray(snap.tweet_created).max()) + 10],
        )
    )
    follows = rec.who_to_follow(new_user, 20, strict=True)  # known now: no cold start
    assert follows and author not in _ids(follows) and new_user not in _ids(follows)
    tweets = rec.tweet_candidates(new_user, 20, strict=True)
    assert new_tweet in _ids(tweets)  # a new tweet by the account they follow
    # the filters and diversity know the new tweet's author
    muted = rec.tweet_candidates(new_user, 20, filters=FilterOptions(muted=[author]))
    assert new_tweet not in _ids(muted)
    capped = rec.tweet_candidates(new_user, 20, per_author_cap=1)
    assert new_tweet in _ids(capped) or any(r.id != new_tweet for r in capped)
    assert rec.tweet_candidates(new_user, 20, filters=FilterOptions(max_age_seconds=1.0))


def test_the_live_stage_is_off_until_attached(graph):
    snap = graph.snapshot()
    plain = Recommender(snap)
    uid = int(snap.user_ids[2])
    expect = [r.to_dict() for r in plain.who_to_follow(uid, 10)]
    plain.apply_events(_columns())  # an empty live graph changes nothing
    assert [r.to_dict() for r in plain.who_to_follow(uid, 10)] == expect
    other = generate(50, avg_follows=3, avg_engagements=3, seed=9).snapshot()
    with pytest.raises(Exception, match="extends snapshot"):
        plain.attach_live(LiveGraph(other))


# -- the walks over live edges (the walk view) -------------------------------------------------


def _walk_lists(rec, task: str, users_ext) -> dict:
    """Each walk source's weighted list per user on the walk view's snapshot, as
    {source: {user: {target id: value}}}."""
    out: dict = {}
    width = rec.overlay.n_targets(task)
    for uid in users_ext:
        idx = rec.overlay.user_index(uid)
        parts = rec._walked_on_fold(task, idx, rec.overlay.walks.current(), width)
        for name, m in parts.items():
            row = m.tocsr()[0]
            ext = rec.overlay.external_ids(task, row.indices)
            out.setdefault(name, {})[uid] = dict(zip(ext.tolist(), np.round(row.data, 6).tolist()))
    return out


def test_walks_step_over_live_edges_as_on_a_fresh_snapshot_of_every_event(graph):
    cols, base, events = _split(graph, 0.2, seed=11)
    rec = Recommender(_snapshot(base))
    rec.attach_live(LiveGraph(rec.snap))
    rec.apply_events(events)
    assert rec.overlay.walks is not None and rec.overlay.walks.snap is None
    assert rec.refresh_walks() and not rec.refresh_walks()  # nothing new: no second fold
    fresh = Recommender(fold(rec.live))  # what a compaction would serve, walked on its snapshot
    fresh.attach_live(LiveGraph(fresh.snap))
    fresh.overlay.walks._state = (fresh.snap, fresh._prepare_walks(fresh.snap))
    users = [int(u) for u in rec.snap.user_ids[:: max(1, rec.snap.n_users // 12)]]
    for task in ("follows", "tweets"):
        live, batch = _walk_lists(rec, task, users), _walk_lists(fresh, task, users)
        assert set(live) == set(batch) and live  # pixie / ppr / salsa walked, popular / recent refitted
        assert {"popular"} <= set(live)
        assert live == batch
    # the answers use them: walk sources in the served contributions, history still left out
    uid = users[1]
    got = rec.who_to_follow(uid, 50)
    assert any(set(r.sources) & {"ppr", "salsa"} for r in got)
    f = fold(rec.live)
    u = int(f.user_index([uid])[0])
    mine = set(f.user_ids[f.follow_out_indices[f.follow_out_indptr[u] : f.follow_out_indptr[u + 1]]].tolist())
    assert not mine & set(_ids(got))


def test_a_user_born_since_the_snapshot_gets_walk_candidates_after_the_next_fold(rec):
    snap = rec.snap
    rec.attach_live(LiveGraph(snap))
    new_user = 10**9
    followees = [int(snap.user_ids[i]) for i in (3, 4, 5)]
    rec.apply_events(_columns(users=[new_user], follow_src=[new_user] * 3, follow_dst=followees))
    before = rec.who_to_follow(new_user, 50, strict=True)
    assert not any(set(r.sources) & {"ppr", "salsa"} for r in before)
    rec.refresh_walks()
    after = rec.who_to_follow(new_user, 50, strict=True)
    walked = [r for r in after if set(r.sources) & {"ppr", "salsa"}]
    assert walked and all(r.reason for r in walked)
    assert not set(followees) & set(_ids(after)) and new_user not in _ids(after)


def test_the_walk_view_folds_in_the_background_and_drops_replaced_folds(graph):
    import time

    from retrieval import walk_sources

    cols, base, events = _split(graph, 0.2, seed=12)
    rec = Recommender(_snapshot(base))
    rec.attach_live(LiveGraph(rec.snap), walk_refresh_s=0.05)
    view = rec.overlay.walks
    try:
        half = len(events.follow_src) // 2
        folds = []
        for part in (slice(0, half), slice(half, None)):
            rec.apply_events(_columns(follow_src=events.follow_src[part], follow_dst=events.follow_dst[part]))
            target = rec.live.n_edges
            deadline = time.monotonic() + 60
            while (view.snap is None or view.snap.n_follows < rec.snap.n_follows + target) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.02)
            assert view.snap is not None and view.snap.n_follows == rec.snap.n_follows + target
            folds.append(view.snap)
        assert view.folds >= 2 and folds[0] is not folds[1]
        with walk_sources._cache_lock:
            held = [s for s, _ in walk_sources._graph_cache.values()]
        assert any(s is folds[1] for s in held)  # the current fold's walk graphs are built
        assert not any(s is folds[0] for s in held)  # the replaced fold's are gone
    finally:
        rec.attach_live(None)
    assert view._thread is None  # detaching stops the fold thread


def test_a_user_born_since_the_snapshot_gets_a_folded_in_embedding(graph):
    snap = graph.snapshot()
    rng = np.random.default_rng(5)
    users = rng.standard_normal((snap.n_users, 8)).astype(np.float32)
    tweets = rng.standard_normal((snap.n_tweets, 8)).astype(np.float32)
    rec = Recommender(snap, user_vectors=users, tweet_vectors=tweets)
    newcomer = 10**9 + 1
    followees, engaged = [3, 9], [4, 17]
    rec.apply_events(
        _columns(
            users=[newcomer],
            follow_src=[newcomer] * 2,
            follow_dst=snap.user_ids[followees],
            eng_user=[newcomer] * 2,
            eng_tweet=snap.tweet_ids[engaged],
        )
    )
    vec = np.concatenate([users[followees], tweets[engaged]]).mean(axis=0)
    got = {r.id: r for r in rec.tweet_candidates(newcomer, 10_000, strict=True)}
    order = np.argsort(-(tweets @ vec), kind="stable")
    best = [int(snap.tweet_ids[t]) for t in order if t not in engaged][:5]
    assert all("embedding" in got[t].sources for t in best)  # the model's best tweets for the vector
    follows = {r.id: r for r in rec.who_to_follow(newcomer, 10_000, strict=True)}
    order = np.argsort(-(users @ vec), kind="stable")
    best = [int(snap.user_ids[u]) for u in order if u not in followees][:5]
    assert all("embedding" in follows[u].sources for u in best)


def test_the_walk_view_folds_with_serial_kernels_only(graph, monkeypatch):
    from graph.kernels import TwinKernel

    cols, base, events = _split(graph, 0.2, seed=13)
    rec = Recommender(_snapshot(base))
    rec.attach_live(LiveGraph(rec.snap))
    rec.apply_events(events)
    picked = []
    pick = TwinKernel.pick

    def spy(self, n_chunks):
        kernel = pick(self, n_chunks)
        picked.append(kernel is self.serial)
        return kernel

    monkeypatch.setattr(TwinKernel, "pick", spy)
    assert rec.refresh_walks()
    assert picked and all(picked)  # the Pixie alias tables among them: serial in a worker


def test_a_tweet_that_trends_since_the_snapshot_is_popular_after_the_next_fold(rec):
    snap = rec.snap
    rec.attach_live(LiveGraph(snap))
    new_tweet, author = 10**12 + 5, int(snap.user_ids[0])
    fans = [int(u) for u in snap.user_ids[1:120]]  # more engagements than any snapshot tweet has
    newest = int(np.asarray(snap.tweet_created).max())
    rec.apply_events(
        _columns(
            tweet_ids=[new_tweet],
            tweet_authors=[author],
            tweet_created=[newest + 60],
            eng_user=fans,
            eng_tweet=[new_tweet] * len(fans),
            eng_ts=[newest + 120] * len(fans),
        )
    )
    outsider = int(snap.user_ids[-1])
    before = {r.id: r for r in rec.tweet_candidates(outsider, 10_000)}
    assert new_tweet not in before or "popular" not in before[new_tweet].sources
    rec.refresh_walks()
    after = {r.id: r for r in rec.tweet_candidates(outsider, 10_000)}
    assert "popular" in after[new_tweet].sources and "recent" in after[new_tweet].sources
    mine = {r.id for r in rec.tweet_candidates(fans[0], 10_000)}
    assert new_tweet not in mine  # the fold's history: engaged just now, never proposed
