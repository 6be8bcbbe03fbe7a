"""Walk kernels (graph.walks) against their pure-Python references, networkx and
hand-computed answers; the candidate sources and methods built on them."""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from numba.core.dispatcher import Dispatcher

from evaluation import adapters
from graph import walk_kernels, walk_primitives, walk_topk, walks
from graph import walks_reference as ref
from graph.errors import GraphRecError, InputError
from graph.kernels import TwinKernel
from graph.schema import KINDS
from graph.snapshot import build_snapshot
from retrieval import walk_sources as ws

# ---------------------------------------------------------------------------
# helpers


def random_snapshot(
    seed: int, nu: int = 30, nt: int = 40, n_follow: int = 90, n_eng: int = 160, *, isolated: int = 2
):
    """A small random snapshot with a few isolated users and tweets (no edges)."""
    rng = np.random.default_rng(seed)
    eu = rng.integers(0, nu, n_eng)
    return build_snapshot(
        user_ids=np.arange(nu + isolated),
        tweet_ids=np.arange(nt + isolated),
        follow_src=rng.integers(0, nu, n_follow),
        follow_dst=rng.integers(0, nu, n_follow),
        follow_ts=np.zeros(n_follow, np.int64),
        eng_user=eu,
        eng_tweet=rng.integers(0, nt, n_eng),
        eng_kind=rng.integers(0, 4, n_eng).astype(np.int8),
        eng_ts=rng.integers(1_000, 100_000, n_eng),
        eng_weight=np.ones(n_eng, np.float32),
        tweet_author=np.where(rng.random(nt + isolated) < 0.5, rng.integers(0, nu, nt + isolated), -1),
        tweet_created=np.zeros(nt + isolated, np.int64),
    )


def random_csr(rng, n: int, m: int, *, self_loops: bool = True):
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    if not self_loops:
        keep = src != dst
        src, dst = src[keep], dst[keep]
    key = np.unique(src * n + dst)
    src, dst = key // n, key % n
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return indptr, dst.astype(np.int32)


def csr_edges(indptr, indices) -> set[tuple[int, int]]:
    return {(i, int(indices[j])) for i in range(len(indptr) - 1) for j in range(indptr[i], indptr[i + 1])}


def assert_ranked(ids: np.ndarray, scores: np.ndarray):
    """Contract: -1 only as trailing padding (score 0), unique ids, scores non-increasing."""
    for row_ids, row_scores in zip(np.atleast_2d(ids), np.atleast_2d(scores)):
        n = int((row_ids >= 0).sum())
        assert (row_ids[:n] >= 0).all() and (row_ids[n:] == -1).all()
        assert (row_scores[n:] == 0).all() and (row_scores[:n] > 0).all()
        assert len(set(row_ids[:n].tolist())) == n
        assert (np.diff(row_scores[:n]) <= 0).all()


def pixie_arrays(snap, **weight_params):
    g = ws.pixie_graph(snap, **weight_params)
    args = (g.ut_indptr, g.ut_indices, g.tu_indptr, g.tu_indices, g.fo_indptr, g.fo_indices)
    return g, args


# ---------------------------------------------------------------------------
# sampling primitives


def alias_probabilities(indptr, sampler) -> np.ndarray:
    """Probability of each edge under the alias tables: (prob of its own slot + the
    rejected mass of slots aliasing to it) / deg."""
    prob, alias = sampler
    out = np.zeros(len(prob))
    for r in range(len(indptr) - 1):
        a, b = indptr[r], indptr[r + 1]
        for j in range(a, b):
            if alias[j] < 0:
                continue
            out[j] += prob[j] / (b - a)
            out[a + alias[j]] += (1.0 - prob[j]) / (b - a)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_alias_tables_encode_the_weights(seed):
    rng = np.random.default_rng(seed)
    indptr, indices = random_csr(rng, 40, 300)
    w = rng.choice([0.0, 0.1, 1.0, 2.5, 40.0], size=len(indices))
    w[indptr[3] : indptr[4]] = 0.0  # an all-zero row: a dead end
    sampler = walks.alias_table(indptr, w)
    assert sampler[0].dtype == np.float32 and sampler[1].dtype == np.int32
    got = alias_probabilities(indptr, sampler)
    row_total = np.repeat(np.add.reduceat(np.append(w, 0), indptr[:-1]), np.diff(indptr))
    want = np.divide(w, row_total, out=np.zeros_like(w), where=row_total > 0)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert (got[w == 0] == 0).all()  # weightless edges are never drawn
    with pytest.raises(InputError, match="non-negative"):
        walks.alias_table(indptr, -w - 1)
    with pytest.raises(InputError, match="entries"):
        walks.alias_table(indptr, w[:-1])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weighted", [False, True])
def test_every_step_follows_an_edge(seed, weighted):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    indptr, indices = random_csr(rng, n, int(rng.integers(0, 4 * n + 1)))
    w = rng.choice([0.0, 0.5, 1.0, 3.0], size=len(indices)) if weighted else None
    sampler = walks.alias_table(indptr, w) if weighted else None
    edges = csr_edges(indptr, indices)
    positive = {
        (i, int(indices[j]))
        for i in range(n)
        for j in range(indptr[i], indptr[i + 1])
        if w is None or w[j] > 0
    }
    starts = rng.integers(0, n, 50)
    paths = walks.random_walks(indptr, indices, starts, 25, sampler=sampler, seed=seed)
    assert paths.shape == (50, 26) and (paths[:, 0] == starts).all()
    for path in paths:
        alive = path[path >= 0]
        assert (path[len(alive) :] == -1).all()  # -1 only after a dead end
        for a, b in zip(alive[:-1], alive[1:]):
            assert (a, b) in (positive if weighted else edges)
    np.testing.assert_array_equal(
        paths, ref.random_walks(indptr, indices, starts, 25, sampler=sampler, seed=seed)
    )


@pytest.mark.parametrize("seed", range(4))
def test_alternating_walks_follow_bipartite_edges(seed):
    snap = random_snapshot(seed)
    g, _ = pixie_arrays(snap)
    # the same call to the kernel and to its reference twin
    args = (g.ut_indptr, g.ut_indices, g.tu_indptr, g.tu_indices, np.arange(snap.n_users), 12)
    params = dict(a_sampler=g.ut_sampler, b_sampler=g.tu_sampler, seed=seed)
    paths = walks.alternating_walks(*args, **params)
    ut = csr_edges(g.ut_indptr, g.ut_indices)
    tu = csr_edges(g.tu_indptr, g.tu_indices)
    for path in paths:
        alive = path[path >= 0]
        for s, (a, b) in enumerate(zip(alive[:-1], alive[1:])):
            assert (a, b) in (ut if s % 2 == 0 else tu)
    np.testing.assert_array_equal(paths, ref.alternating_walks(*args, **params))


def test_weighted_sampling_matches_weights():
    # one node with five out-edges weighted 1, 2, 3, 0, 4: frequencies 0.1, 0.2, 0.3, 0, 0.4
    indptr = np.array([0, 5, 5, 5, 5, 5, 5], np.int64)
    indices = np.array([1, 2, 3, 4, 5], np.int32)
    sampler = walks.alias_table(indptr, np.array([1.0, 2.0, 3.0, 0.0, 4.0]))
    paths = walks.random_walks(indptr, indices, np.zeros(200_000, np.int64), 1, sampler=sampler, seed=3)
    freq = np.bincount(paths[:, 1], minlength=6)[1:] / len(paths)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.0, 0.4], atol=0.005)
    assert freq[3] == 0.0


# ---------------------------------------------------------------------------
# Pixie


PIXIE_CASES = [
    dict(),
    dict(n_p=3, n_v=2),
    dict(beta=0.5, restart_prob=0.3, followee_weight=2.0, max_followees=3),
    dict(restart_prob=1.0),
    dict(followee_weight=0.0, n_walkers=1),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", range(len(PIXIE_CASES)))
def test_pixie_matches_reference(seed, case):
    snap = random_snapshot(seed)
    g, args = pixie_arrays(snap, half_life_s=20_000.0)
    assert g.ut_sampler is not None  # kinds and decay make this a weighted walk
    params = dict(
        ut_sampler=g.ut_sampler,
        tu_sampler=g.tu_sampler,
        exclude=(g.ut_indptr, g.ut_indices),
        exclude2=(snap.authored_indptr, snap.authored_indices),
        n_steps=3_000,
        n_walkers=4,
        seed=seed,
    )
    params.update(PIXIE_CASES[case])
    users = np.arange(snap.n_users)
    got = walks.pixie_walks(*args, users, 8, **params)
    want = ref.pixie_walks(*args, users, 8, **params)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert_ranked(got[0], got[1])
    if not params.get("n_p"):
        walked = got[2][got[2] > 0]
        assert (walked >= 0.95 * 3_000).all() and (walked < 3_000 + 2 * 4 * 1 + 3_000 * 0.05).all()


def test_pixie_candidates_are_reachable_and_not_excluded():
    snap = random_snapshot(7, nu=60, nt=80, n_follow=150, n_eng=200)
    users = np.arange(snap.n_users)
    ids, scores = ws.pixie_candidates_batch(snap, users, 15, n_steps=5_000)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (len(users), 15)
    assert_ranked(ids, scores)
    g = ws.pixie_graph(snap)  # engagements plus authorship edges
    ut, fo = snap.eng_user_indptr, snap.follow_out_indptr
    for u, row in zip(users, ids):
        engaged = set(snap.eng_user_indices[ut[u] : ut[u + 1]].tolist())
        authored = set(snap.authored_indices[snap.authored_indptr[u] : snap.authored_indptr[u + 1]].tolist())
        assert not (set(row.tolist()) & (engaged | authored))
        # every candidate is reachable from the user or one of its followees in the walk graph
        starts = [u, *snap.follow_out_indices[fo[u] : fo[u + 1]].tolist()]
        seen_users, seen_tweets, queue = set(starts), set(), deque(starts)
        while queue:
            x = queue.popleft()
            for t in g.ut_indices[g.ut_indptr[x] : g.ut_indptr[x + 1]].tolist():
                if t not in seen_tweets:
                    seen_tweets.add(t)
                    for y in g.tu_indices[g.tu_indptr[t] : g.tu_indptr[t + 1]].tolist():
                        if y not in seen_users:
                            seen_users.add(y)
                            queue.append(y)
        assert set(row[row >= 0].tolist()) <= seen_tweets


def test_pixie_same_seed_same_candidates_any_thread_count():
    snap = random_snapshot(11, nu=200, nt=300, n_follow=1_500, n_eng=2_500)
    users = np.arange(snap.n_users)
    a = ws.pixie_candidates_batch(snap, users, 20, n_steps=4_000, seed=5, n_threads=1)
    b = ws.pixie_candidates_batch(snap, users, 20, n_steps=4_000, seed=5, n_threads=2)
    c = ws.pixie_candidates_batch(snap, users, 20, n_steps=4_000, seed=6, n_threads=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    one = ws.pixie_candidates(snap, 17, 20, n_steps=4_000, seed=5)
    np.testing.assert_array_equal(one[0], a[0][17])


@pytest.mark.parametrize(
    "single,batch,params",
    [
        (ws.pixie_candidates, ws.pixie_candidates_batch, dict(n_steps=3_000, seed=3)),
        (ws.ppr_candidates, ws.ppr_candidates_batch, dict()),
        (ws.ppr_candidates, ws.ppr_candidates_batch, dict(mode="montecarlo", n_steps=2_000, seed=3)),
        (ws.salsa_candidates, ws.salsa_candidates_batch, dict(cot_steps=300, n_steps=1_000, seed=3)),
        (ws.fof_candidates, ws.fof_candidates_batch, dict()),
    ],
)
def test_one_user_calls_use_the_serial_kernel_with_the_same_answer(single, batch, params):
    """A one-query call runs the serial twin of the parallel kernel: same lists, same scores."""
    snap = random_snapshot(12, nu=120, nt=150, n_follow=900, n_eng=1_500)
    users = np.arange(snap.n_users)
    ids, scores = batch(snap, users, 15, n_threads=2, **params)
    for u in (0, 7, 55, snap.n_users - 1):
        one_ids, one_scores = single(snap, int(u), 15, **params)
        np.testing.assert_array_equal(one_ids, ids[u])
        np.testing.assert_allclose(one_scores, scores[u], rtol=1e-6)


FORK_SCRIPT = """
import multiprocessing as mp, sys
import numpy as np
sys.path.insert(0, {root!r})
from tests.test_walks import random_snapshot
from retrieval import walk_sources as ws

snap = random_snapshot(3, nu=80, nt=100, n_follow=500, n_eng=900)
ws.pixie_candidates_batch(snap, np.arange(snap.n_users), 5, n_steps=2_000, n_threads=2)  # parallel: threads started
want = ws.pixie_candidates(snap, 4, 5, n_steps=2_000)[0]

def child(q):
    q.put(ws.pixie_candidates(snap, 4, 5, n_steps=2_000)[0].tolist())
    q.put(ws.salsa_candidates(snap, 4, 5, cot_steps=200, n_steps=500)[0].tolist())

ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
got = q.get(timeout=60)
q.get(timeout=60)
p.join(120)
assert p.exitcode == 0, p.exitcode
assert got == want.tolist(), (got, want)
print("ok")
"""


def run_fork_script(tmp_path, name: str, template: str) -> None:
    """Run ``template`` (with ``{root}`` = the repository) as a script in a fresh interpreter
    and check that it exits cleanly and prints "ok" (a fork-safety script)."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    script = tmp_path / name
    script.write_text(template.format(root=root))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_forked_worker_can_serve_single_user_walks(tmp_path):
    """A pre-fork server fits (parallel kernels), forks, and its workers answer one user per
    call: with numba's OpenMP layer a parallel kernel in the child aborts the process."""
    run_fork_script(tmp_path, "fork_walks.py", FORK_SCRIPT)


def test_every_walk_kernel_has_a_serial_twin():
    """Forked workers rely on the serial twins: every compiled kernel is a TwinKernel."""
    kernels = {
        name: obj
        for module in (walk_primitives, walk_kernels)
        for name, obj in vars(module).items()
        if name.endswith("_kernel")
    }
    assert set(kernels) == {
        "_alias_kernel",
        "_alternating_walks_kernel",
        "_pixie_kernel",
        "_ppr_mc_kernel",
        "_ppr_power_kernel",
        "_salsa_kernel",
        "_fof_kernel",
    }
    for name, obj in kernels.items():
        assert isinstance(obj, TwinKernel), name


def test_walk_modules_share_one_cache_stamp():
    """numba keys a cached function on its own source file only, and the walk modules compile
    into one another: each of their cached functions is keyed on all three sources, so that
    an edit of one recompiles the others instead of loading them stale."""
    here = Path(walk_primitives.__file__).parent
    sources = b"".join((here / name).read_bytes() for name in walk_primitives._WALK_NUMBA_FILES)
    want = hashlib.sha256(sources).hexdigest()
    n = 0
    for module in (walk_primitives, walk_topk, walk_kernels):
        for obj in vars(module).values():
            for f in (obj.parallel, obj.serial) if isinstance(obj, TwinKernel) else (obj,):
                if isinstance(f, Dispatcher) and f.py_func.__module__ == module.__name__:
                    assert f._cache._cache_file._source_stamp[1] == want, f
                    n += 1
    assert n >= 25


def test_walks_keeps_its_public_names():
    for name in walks.__all__:
        assert callable(getattr(walks, name)), name


def follow_engage_snapshot(follows, engagements, n_users, n_tweets):
    src, dst = (np.array(x, np.int64) for x in zip(*follows)) if follows else (np.zeros(0, np.int64),) * 2
    eu, et = (np.array(x, np.int64) for x in zip(*engagements))
    return build_snapshot(
        user_ids=np.arange(n_users),
        tweet_ids=np.arange(n_tweets),
        follow_src=src,
        follow_dst=dst,
        follow_ts=np.zeros(len(src), np.int64),
        eng_user=eu,
        eng_tweet=et,
        eng_kind=np.full(len(eu), KINDS["like"], np.int8),
        eng_ts=np.zeros(len(eu), np.int64),
        eng_weight=np.ones(len(eu), np.float32),
        tweet_author=np.full(n_tweets, -1),
        tweet_created=np.zeros(n_tweets, np.int64),
    )


def test_pixie_step_allotment_follows_pixie_degree_scaling():
    # user 0 (no engagements) follows 1 (1 engagement) and 2 (4); C = log(4) + 1
    snap = follow_engage_snapshot([(0, 1), (0, 2)], [(1, 0), (2, 1), (2, 2), (2, 3), (2, 4)], 3, 10)
    g, args = pixie_arrays(snap)
    # restart after every visit: every step of query node q visits one of q's own tweets
    n = 100_000
    ids, scores, steps = walks.pixie_walks(*args, [0], 10, restart_prob=1.0, n_steps=n, n_walkers=1, beta=0)
    c = np.log(4) + 1
    s1, s2 = 1 * (c - np.log(1)), 4 * (c - np.log(4))
    got = dict(zip(ids[0].tolist(), scores[0].tolist()))
    # tweet 0: all visits of node 1 -> n * share1^2; tweets 1-4: a quarter each of node 2's
    assert got[0] == pytest.approx(n * (s1 / (s1 + s2)) ** 2, rel=1e-6)
    for t in (1, 2, 3, 4):
        assert got[t] == pytest.approx(n * (s2 / (s1 + s2) * 0.5) ** 2, rel=0.05)
    assert steps[0] == pytest.approx(n, abs=2)
    # with engagements of its own, the user walks 1 / (1 + followee_weight) of the steps
    snap = follow_engage_snapshot([(0, 1)], [(0, 5), (1, 0)], 2, 10)
    g, args = pixie_arrays(snap)
    ex = (g.ut_indptr[:1].repeat(3), g.ut_indices[:0])  # no exclusions
    ids, scores, _ = walks.pixie_walks(
        *args, [0], 10, exclude=ex, restart_prob=1.0, n_steps=n, n_walkers=1, followee_weight=0.25, beta=0
    )
    got = dict(zip(ids[0].tolist(), scores[0].tolist()))
    assert got[5] == pytest.approx(n * 0.8**2, rel=1e-6) and got[0] == pytest.approx(n * 0.2**2, rel=1e-6)


def test_pixie_multi_hit_boost():
    # user 0 follows 1 and 2 (equal degrees, equal shares); 1 engaged tweets 0 and 1, 2 engaged
    # tweets 0 and 2. Tweet 0 has the visits of tweets 1 and 2 together, but from two query
    # nodes: Pixie's boost scores it 4x tweet 1 (a plain visit count would give 2x).
    snap = follow_engage_snapshot([(0, 1), (0, 2)], [(1, 0), (1, 1), (2, 0), (2, 2)], 3, 3)
    g, args = pixie_arrays(snap)
    ids, scores, _ = walks.pixie_walks(*args, [0], 3, restart_prob=1.0, n_steps=80_000, n_walkers=2, beta=0)
    got = dict(zip(ids[0].tolist(), scores[0].tolist()))
    assert ids[0][0] == 0
    assert got[0] / got[1] == pytest.approx(4.0, rel=0.05) and got[0] / got[2] == pytest.approx(4.0, rel=0.05)


def test_authorship_edges_reach_what_followees_post():
    # user 0 follows 1; 1 engaged tweet 0 and wrote tweet 1 (which nobody engaged with)
    snap = build_snapshot(
        user_ids=np.arange(2),
        tweet_ids=np.arange(2),
        follow_src=np.array([0]),
        follow_dst=np.array([1]),
        follow_ts=np.zeros(1, np.int64),
        eng_user=np.array([1]),
        eng_tweet=np.array([0]),
        eng_kind=np.array([KINDS["like"]], np.int8),
        eng_ts=np.zeros(1, np.int64),
        eng_weight=np.ones(1, np.float32),
        tweet_author=np.array([-1, 1]),
        tweet_created=np.zeros(2, np.int64),
    )
    ids, scores = ws.pixie_candidates(snap, 0, 3, n_steps=10_000, author_weight=0.0, beta=0)
    assert ids.tolist() == [0, -1, -1]
    ids, scores = ws.pixie_candidates(snap, 0, 3, n_steps=10_000, author_weight=3.0, beta=0)
    assert ids.tolist() == [1, 0, -1]  # authorship weighs 3, the like 1
    assert scores[0] / scores[1] == pytest.approx(3.0, rel=0.1)
    ids, _ = ws.pixie_candidates(snap, 1, 3, n_steps=10_000, author_weight=3.0)
    assert 1 not in ids.tolist()  # the user's own tweet is excluded


def test_time_decay_and_kind_weights():
    kinds = np.array([KINDS["like"], KINDS["retweet"], KINDS["reply"], KINDS["engage"]], np.int8)
    ts = np.array([1_000, 1_000, 0, 600], np.int64)
    w = ws.engagement_weights(kinds, ts, None, half_life_s=200.0, ref_time=1_000)
    np.testing.assert_allclose(w, [1.0, 2.0, 3.0, 0.25])  # ts=0: unknown, not decayed
    w = ws.engagement_weights(kinds, ts, None, kind_weights={"like": 5.0}, half_life_s=None, ref_time=1_000)
    np.testing.assert_allclose(w, [5.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(ws.engagement_weights(kinds, ts, None, ref_time=0), [1.0, 2.0, 3.0, 1.0])
    with pytest.raises(InputError, match="unknown engagement kind"):
        ws.engagement_weights(kinds, ts, None, kind_weights={"favourite": 1.0})
    # a recent engagement is followed far more often than an old one of the same kind
    snap = build_snapshot(
        user_ids=np.arange(2),
        tweet_ids=np.arange(2),
        follow_src=np.zeros(0, np.int64),
        follow_dst=np.zeros(0, np.int64),
        follow_ts=np.zeros(0, np.int64),
        eng_user=np.array([0, 0, 1, 1]),
        eng_tweet=np.array([0, 1, 0, 1]),
        eng_kind=np.full(4, KINDS["like"], np.int8),
        eng_ts=np.array([10_000, 100_000, 10_000, 100_000]),
        eng_weight=np.ones(4, np.float32),
        tweet_author=np.full(2, -1),
        tweet_created=np.zeros(2, np.int64),
    )
    g, args = pixie_arrays(snap, half_life_s=30_000.0)
    ids, scores, _ = walks.pixie_walks(
        *args,
        np.array([0]),
        2,
        ut_sampler=g.ut_sampler,
        tu_sampler=g.tu_sampler,
        restart_prob=1.0,
        n_steps=20_000,
        n_walkers=2,
        beta=0,
    )
    got = dict(zip(ids[0].tolist(), scores[0].tolist()))
    assert got[1] / got[0] == pytest.approx(8.0, rel=0.1)  # 3 half-lives apart


# ---------------------------------------------------------------------------
# personalized PageRank


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("weighted", [False, True])
def test_ppr_power_matches_networkx(seed, weighted):
    rng = np.random.default_rng(seed)
    n = 25
    indptr, indices = random_csr(rng, n, 60)  # leaves dangling and isolated nodes
    w = rng.uniform(0.1, 3.0, len(indices)) if weighted else None
    G = nx.DiGraph()
    G.add_nodes_from(range(n))
    for i in range(n):
        for j in range(indptr[i], indptr[i + 1]):
            G.add_edge(i, int(indices[j]), weight=1.0 if w is None else float(w[j]))
    for u in (0, int(rng.integers(0, n))):
        expected = nx.pagerank(
            G, alpha=0.85, personalization={u: 1.0}, tol=1e-13, max_iter=10_000, weight="weight"
        )
        ids, scores, iters = walks.ppr_power(
            indptr, indices, [u], n, weights=w, restart_prob=0.15, n_iter=1_000, tol=1e-12
        )
        got = np.zeros(n)
        got[ids[0][ids[0] >= 0]] = scores[0][ids[0] >= 0]
        np.testing.assert_allclose(got, [expected[i] for i in range(n)], atol=1e-6)
        dense = ref.ppr_vector(indptr, indices, u, weights=w, restart_prob=0.15)
        np.testing.assert_allclose(got, dense, atol=1e-6)


def test_ppr_power_batch_matches_reference_top_k():
    rng = np.random.default_rng(3)
    indptr, indices = random_csr(rng, 40, 150)
    q = np.arange(40)
    ids, scores, _ = walks.ppr_power(
        indptr,
        indices,
        q,
        6,
        exclude=(indptr, indices),
        exclude_self=True,
        n_iter=100,
        tol=1e-12,
        n_threads=2,
    )
    rids, rscores = ref.ppr_power(
        indptr, indices, q, 6, exclude=(indptr, indices), exclude_self=True, n_iter=100, tol=1e-12
    )
    np.testing.assert_allclose(scores, rscores, atol=1e-6)
    assert_ranked(ids, scores)
    for u in q:
        assert u not in ids[u] and not set(ids[u].tolist()) & set(indices[indptr[u] : indptr[u + 1]].tolist())


def test_ppr_montecarlo_matches_reference_and_converges_to_power_iteration():
    rng = np.random.default_rng(4)
    n = 50
    indptr, indices = random_csr(rng, n, 200)
    u = int(np.argmax(np.diff(indptr)))
    q = np.arange(n)
    got = walks.ppr_montecarlo(indptr, indices, q, 5, n_steps=2_000, n_walkers=3, seed=2)
    want = ref.ppr_montecarlo(indptr, indices, q, 5, n_steps=2_000, n_walkers=3, seed=2)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    exact = ref.ppr_vector(indptr, indices, u, restart_prob=0.15)
    ids, scores, steps = walks.ppr_montecarlo(indptr, indices, [u], n, n_steps=2_000_000, restart_prob=0.15)
    est = np.zeros(n)
    est[ids[0][ids[0] >= 0]] = scores[0][ids[0] >= 0]
    assert np.abs(est - exact).sum() < 0.02
    assert steps[0] >= 2_000_000


# ---------------------------------------------------------------------------
# SALSA and friends of friends


@pytest.mark.parametrize("seed", range(4))
def test_salsa_matches_reference(seed):
    rng = np.random.default_rng(seed)
    indptr, indices = random_csr(rng, 40, 160, self_loops=False)
    q = np.arange(40)
    params = dict(exclude=(indptr, indices), n_hubs=6, cot_steps=500, n_steps=1_000, n_walkers=3, seed=seed)
    got = walks.salsa_walks(indptr, indices, q, 7, **params)
    want = ref.salsa_walks(indptr, indices, q, 7, **params)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert_ranked(got[0], got[1])
    for u in q:
        followed = set(indices[indptr[u] : indptr[u + 1]].tolist())
        assert not (set(got[0][u].tolist()) & (followed | {u}))


def test_undirected_ppr_walks_both_directions_and_excludes_followed():
    snap = random_snapshot(5)
    n = snap.n_users
    G = nx.Graph()  # undirected: a follow in either direction is a tie
    G.add_nodes_from(range(n))
    out = snap.follow_out_indptr
    for i in range(n):
        for j in snap.follow_out_indices[out[i] : out[i + 1]]:
            G.add_edge(i, int(j))  # self-follows stay (one self-loop edge, as in the CSR)
    u = int(np.argmax(np.diff(out)))
    expected = nx.pagerank(G.to_directed(), alpha=0.85, personalization={u: 1.0}, tol=1e-13, max_iter=10_000)
    ids, scores = ws.ppr_candidates(
        snap, u, n, direction="undirected", restart_prob=0.15, n_iter=2_000, tol=1e-13
    )
    followed = set(snap.follow_out_indices[out[u] : out[u + 1]].tolist()) | {u}
    ok = ids >= 0
    assert not followed & set(ids[ok].tolist())
    for i, sc in zip(ids[ok].tolist(), scores[ok].tolist()):
        assert sc == pytest.approx(expected[i], abs=1e-6)
    with pytest.raises(InputError, match="direction"):
        adapters.PPRMethod(direction="sideways")


def test_undirected_follow_graph_is_built_once_per_snapshot():
    snap, other = random_snapshot(5), random_snapshot(6)
    first = ws._follow_csr(snap, "undirected")
    assert ws._follow_csr(snap, "undirected") is first  # cached: no rebuild per call
    out = snap.follow_out_indptr
    edges = {(i, int(j)) for i in range(snap.n_users) for j in snap.follow_out_indices[out[i] : out[i + 1]]}
    undirected = edges | {(j, i) for i, j in edges}
    indptr, indices = first
    got = {(i, int(j)) for i in range(snap.n_users) for j in indices[indptr[i] : indptr[i + 1]]}
    assert got == undirected
    assert ws._follow_csr(other, "undirected") is not first  # another snapshot, its own graph


def test_salsa_scores_authorities_of_the_circle():
    # 0 follows 1 and 2; both follow 3 and 4; 1 also follows 5. SALSA ranks 3, 4 above 5.
    src = np.array([0, 0, 1, 1, 2, 2, 1])
    dst = np.array([1, 2, 3, 4, 3, 4, 5])
    n = 6
    key = np.unique(src * n + dst)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(key // n, minlength=n), out=indptr[1:])
    indices = (key % n).astype(np.int32)
    ids, scores, _ = walks.salsa_walks(
        indptr, indices, [0], 5, exclude=(indptr, indices), n_hubs=3, cot_steps=5_000, n_steps=50_000
    )
    assert set(ids[0][:2].tolist()) == {3, 4} and ids[0][2] == 5 and ids[0][3] == -1


def test_fof_known_answer_and_reference():
    # 0 follows 1, 2; 1 follows 3, 4; 2 follows 3, 0; 3 follows 0
    src = np.array([0, 0, 1, 1, 2, 2, 3])
    dst = np.array([1, 2, 3, 4, 3, 0, 0])
    indptr = np.zeros(6, np.int64)
    np.cumsum(np.bincount(src, minlength=5), out=indptr[1:])
    indices = dst[np.argsort(src * 10 + dst)].astype(np.int32)
    ids, scores = walks.fof_scores(indptr, indices, [0], 3, exclude=(indptr, indices))
    np.testing.assert_array_equal(ids[0], [3, 4, -1])  # 0 itself is excluded
    np.testing.assert_array_equal(scores[0], [2.0, 1.0, 0.0])
    ids, scores = walks.fof_scores(indptr, indices, [0], 3, exclude=(indptr, indices), normalize=True)
    np.testing.assert_allclose(scores[0], [1.0, 0.5, 0.0])
    rng = np.random.default_rng(1)
    indptr, indices = random_csr(rng, 50, 300)
    q = np.arange(50)
    for norm in (False, True):
        got = walks.fof_scores(indptr, indices, q, 8, exclude=(indptr, indices), normalize=norm)
        want = ref.fof_scores(indptr, indices, q, 8, exclude=(indptr, indices), normalize=norm)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


# ---------------------------------------------------------------------------
# edge cases and validation


ALL_SOURCES = [
    (ws.pixie_candidates, dict(n_steps=2_000)),
    (ws.ppr_candidates, dict()),
    (ws.ppr_candidates, dict(mode="montecarlo", n_steps=2_000)),
    (ws.salsa_candidates, dict(cot_steps=500, n_steps=1_000)),
    (ws.fof_candidates, dict()),
]


@pytest.mark.parametrize("source,params", ALL_SOURCES)
def test_users_without_edges_and_isolated_tweets(source, params):
    snap = random_snapshot(2)  # users and tweets n..n+1 have no edges at all
    lonely = snap.n_users - 1
    ids, scores = source(snap, lonely, 10, **params)
    assert ids.shape == (10,) and (ids == -1).all() and (scores == 0).all()
    for u in range(snap.n_users):
        ids, scores = source(snap, u, 10, **params)
        assert_ranked(ids, scores)
        if source is ws.pixie_candidates:
            assert not set(ids.tolist()) & {snap.n_tweets - 1, snap.n_tweets - 2}


@pytest.mark.parametrize("source,params", ALL_SOURCES)
def test_single_node_graph(source, params):
    empty = np.zeros(0, np.int64)
    snap = build_snapshot(
        user_ids=np.array([42]),
        tweet_ids=empty,
        follow_src=empty,
        follow_dst=empty,
        follow_ts=empty,
        eng_user=empty,
        eng_tweet=empty,
        eng_kind=np.zeros(0, np.int8),
        eng_ts=empty,
        eng_weight=np.zeros(0, np.float32),
        tweet_author=empty,
        tweet_created=empty,
    )
    ids, scores = source(snap, 0, 5, **params)
    assert (ids == -1).all() and (scores == 0).all()


def test_bad_inputs_raise_input_errors():
    snap = random_snapshot(0)
    with pytest.raises(InputError, match="out of range"):
        ws.pixie_candidates(snap, snap.n_users, 5)
    with pytest.raises(InputError, match="restart_prob"):
        ws.ppr_candidates(snap, 0, 5, restart_prob=0.0)
    with pytest.raises(InputError, match="seed"):
        ws.salsa_candidates(snap, 0, 5, seed=-1)
    with pytest.raises(InputError, match="mode"):
        ws.ppr_candidates(snap, 0, 5, mode="exact")
    with pytest.raises(InputError, match="n_threads"):
        ws.fof_candidates(snap, 0, 5, n_threads=0)
    assert issubclass(InputError, GraphRecError)


def test_scratch_memory_is_left_zeroed():
    snap = random_snapshot(5)
    users = np.arange(snap.n_users)
    ws.pixie_candidates_batch(snap, users, 5, n_steps=1_000, n_threads=2)
    ws.ppr_candidates_batch(snap, users, 5, n_threads=2)
    ws.ppr_candidates_batch(snap, users, 5, mode="montecarlo", n_steps=1_000, n_threads=2)
    ws.salsa_candidates_batch(snap, users, 5, cot_steps=300, n_steps=500, n_threads=2)
    ws.fof_candidates_batch(snap, users, 5, n_threads=2)
    for (kind, _), arr in walks._scratch_local.arrays.items():
        assert kind.endswith(".list") or not arr.any(), kind


# ---------------------------------------------------------------------------
# method contract


@pytest.mark.parametrize(
    "cls,task,params",
    [
        (adapters.PixieMethod, "tweets", dict(n_steps=2_000)),
        (adapters.PPRMethod, "follows", dict()),
        (adapters.SalsaMethod, "follows", dict(cot_steps=500, n_steps=1_000)),
        (adapters.FriendsOfFriendsMethod, "follows", dict()),
    ],
)
def test_method_contract(cls, task, params):
    snap = random_snapshot(9)
    other = "follows" if task == "tweets" else "tweets"
    assert task in cls.tasks and other not in cls.tasks
    with pytest.raises(InputError, match="recommend"):
        cls(**params).recommend(np.array([0]), 5)
    with pytest.raises(InputError, match="task"):
        cls(**params).fit(snap, other)
    m = cls(seed=1, **params).fit(snap, task)
    users = np.array([0, 3, snap.n_users - 1])
    ids, scores = m.recommend(users, 7)
    assert ids.shape == scores.shape == (3, 7) and ids.dtype == np.int64 and scores.dtype == np.float32
    assert_ranked(ids, scores)
    n_items = snap.n_tweets if task == "tweets" else snap.n_users
    assert ids.max() < n_items
    train = (
        (snap.eng_user_indptr, snap.eng_user_indices)
        if task == "tweets"
        else (
            snap.follow_out_indptr,
            snap.follow_out_indices,
        )
    )
    for u, row in zip(users, ids):
        seen = set(train[1][train[0][u] : train[0][u + 1]].tolist()) | (
            {int(u)} if task == "follows" else set()
        )
        assert not set(row.tolist()) & seen
    np.testing.assert_array_equal(m.recommend(users, 7)[0], ids)  # same seed, same answer
    assert {"pixie", "ppr", "salsa", "fof"} >= {cls.name}
