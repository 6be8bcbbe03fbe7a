import numpy as np
import pytest

from graph.errors import InputError
from graph.synthetic import generate, users_for_edges


def test_same_seed_same_graph_other_seed_other_graph():
    a, b, c = (
        generate(500, seed=4).snapshot(),
        generate(500, seed=4).snapshot(),
        generate(500, seed=5).snapshot(),
    )
    assert a.snapshot_id == b.snapshot_id != c.snapshot_id


def test_structure():
    g = generate(3000, seed=0)
    s = g.snapshot()
    assert s.n_follows > 0 and s.n_engagements > 0 and s.n_tweets == 9000
    assert (g.follow_src != g.follow_dst).all()
    # power law: the most followed account has far more followers than the mean
    indeg = np.diff(s.follow_in_indptr)
    assert indeg.max() > 20 * indeg.mean()
    # communities: most follows stay inside the follower's community
    same = (g.community[g.follow_src] == g.community[g.follow_dst]).mean()
    assert same > 0.6
    # engagements come after the tweet was created, and carry every kind
    assert (g.eng_ts >= g.tweet_created[g.eng_tweet]).all()
    assert len(np.unique(g.eng_kind)) == 4
    assert all(len(t.split()) == 6 for t in g.tweet_texts[:10])


def test_scales_to_target_edge_count():
    n = users_for_edges(200_000)
    g = generate(n, seed=1, with_text=False)
    assert 120_000 < g.n_edges < 260_000


def test_bad_parameters():
    with pytest.raises(InputError, match="n_users"):
        generate(1)
    with pytest.raises(InputError, match="in_community"):
        generate(10, in_community=2.0)
