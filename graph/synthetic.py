"""Seeded synthetic Twitter-like graph generator.

The graph has the structure the algorithms rely on, at any scale from a thousand
to tens of millions of edges, generated with vectorised NumPy (no Python loop
per user or edge):

* users belong to communities of Zipf-distributed size and have a power-law
  popularity; out-degrees are heavy-tailed; most follows stay inside the
  follower's community and prefer popular accounts (preferential attachment);
* tweets are posted by active users, carry topic words of their author's
  community, and have creation times over a window;
* engagements (like / retweet / reply / quote) mostly go to tweets of accounts
  the user follows, then to popular tweets of the user's community, then to
  globally popular tweets, with timestamps after the tweet's creation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from graph.errors import InputError
from graph.schema import KINDS

log = logging.getLogger(__name__)

DAY = 86_400
#: Start of the synthetic time window (2024-01-01 UTC).
T0 = 1_704_067_200

_SYLLABLES = np.array(
    [
        "ka",
        "lo",
        "mi",
        "re",
        "su",
        "ta",
        "ne",
        "vo",
        "li",
        "ra",
        "po",
        "de",
        "zu",
        "ma",
        "ki",
        "no",
        "sa",
        "te",
        "fi",
        "gu",
        "be",
        "ho",
        "ja",
        "wu",
        "ri",
        "xe",
        "ny",
        "co",
        "da",
        "pe",
    ]
)


@dataclass
class SyntheticGraph:
    """External-id columns of a generated graph (ids are 0-based ints)."""

    user_ids: np.ndarray
    community: np.ndarray
    follow_src: np.ndarray
    follow_dst: np.ndarray
    follow_ts: np.ndarray
    tweet_ids: np.ndarray
    tweet_author: np.ndarray
    tweet_created: np.ndarray
    tweet_topic: np.ndarray
    tweet_texts: list[str] | None
    eng_user: np.ndarray
    eng_tweet: np.ndarray
    eng_kind: np.ndarray
    eng_ts: np.ndarray
    eng_weight: np.ndarray

    @property
    def n_edges(self) -> int:
        return len(self.follow_src) + len(self.eng_user) + len(self.tweet_ids)

    def snapshot(self):
        """Build the :class:`~graph.snapshot.GraphSnapshot` of this graph."""
        from graph.snapshot import build_snapshot

        texts = {} if self.tweet_texts is None else dict(zip(self.tweet_ids.tolist(), self.tweet_texts))
        return build_snapshot(
            user_ids=self.user_ids,
            tweet_ids=self.tweet_ids,
            follow_src=self.follow_src,
            follow_dst=self.follow_dst,
            follow_ts=self.follow_ts,
            eng_user=self.eng_user,
            eng_tweet=self.eng_tweet,
            eng_kind=self.eng_kind,
            eng_ts=self.eng_ts,
            eng_weight=self.eng_weight,
            tweet_author=self.tweet_author,
            tweet_created=self.tweet_created,
            tweet_texts=texts,
        )


def generate(
    n_users: int = 1000,
    *,
    avg_follows: float = 20.0,
    tweets_per_user: float = 3.0,
    avg_engagements: float = 25.0,
    n_communities: int | None = None,
    in_community: float = 0.8,
    days: int = 30,
    with_text: bool = True,
    seed: int = 0,
) -> SyntheticGraph:
    """Generate a synthetic Twitter-like graph.

    The number of relationships is about ``n_users * (avg_follows +
    avg_engagements + tweets_per_user)``; e.g. ``n_users=40_000`` gives ~2
    million. Same arguments, same graph.
    """
    _check_params(n_users, avg_follows, tweets_per_user, avg_engagements, in_community, days)
    rng = np.random.default_rng(seed)
    n_comm = n_communities or max(2, int(round(np.sqrt(n_users) / 4)))
    users = np.arange(n_users, dtype=np.int64)

    # Community sizes follow Zipf; popularity is Pareto (power law) per user.
    comm_weight = 1.0 / np.arange(1, n_comm + 1) ** 0.8
    community = rng.choice(n_comm, size=n_users, p=comm_weight / comm_weight.sum()).astype(np.int32)
    popularity = rng.pareto(1.2, size=n_users) + 1.0
    activity = rng.pareto(1.5, size=n_users) + 1.0

    follow_src, follow_dst = _follow_edges(rng, community, popularity, activity, avg_follows, in_community)
    window = days * DAY
    follow_ts = T0 + rng.integers(0, window, size=len(follow_src), dtype=np.int64)

    n_tweets = max(1, int(round(n_users * tweets_per_user)))
    tweet_author = _sample_weighted(rng, activity * np.sqrt(popularity), n_tweets)
    tweet_ids = np.arange(n_tweets, dtype=np.int64)
    tweet_created = T0 + rng.integers(0, window, size=n_tweets, dtype=np.int64)
    off_topic = rng.random(n_tweets) > 0.85
    tweet_topic = np.where(off_topic, rng.integers(0, n_comm, n_tweets), community[tweet_author]).astype(
        np.int32
    )
    texts = _tweet_texts(rng, tweet_topic, n_comm) if with_text else None

    eng_user, eng_tweet = _engagements(
        rng, community, activity, follow_src, follow_dst, tweet_author, tweet_topic, avg_engagements, n_comm
    )
    kind_codes = np.array([KINDS["like"], KINDS["retweet"], KINDS["reply"], KINDS["quote"]], dtype=np.int8)
    eng_kind = kind_codes[rng.choice(4, size=len(eng_user), p=[0.7, 0.15, 0.1, 0.05])]
    delay = rng.exponential(6 * 3600, size=len(eng_user)).astype(np.int64)
    eng_ts = np.minimum(tweet_created[eng_tweet] + delay, T0 + window + 7 * DAY)
    weight_of = np.array([1.0, 2.0, 3.0, 2.5, 1.0], dtype=np.float32)
    eng_weight = weight_of[eng_kind]

    # One engagement per (user, tweet, kind), like the stores keep.
    key = (eng_user * n_tweets + eng_tweet) * len(KINDS) + eng_kind
    _, first = np.unique(key, return_index=True)
    first.sort()
    g = SyntheticGraph(
        user_ids=users,
        community=community,
        follow_src=follow_src,
        follow_dst=follow_dst,
        follow_ts=follow_ts,
        tweet_ids=tweet_ids,
        tweet_author=tweet_author.astype(np.int64),
        tweet_created=tweet_created,
        tweet_topic=tweet_topic,
        tweet_texts=texts,
        eng_user=eng_user[first],
        eng_tweet=eng_tweet[first],
        eng_kind=eng_kind[first],
        eng_ts=eng_ts[first],
        eng_weight=eng_weight[first],
    )
    log.info(
        "synthetic graph: %d users, %d communities, %d follows, %d tweets, %d engagements",
        n_users,
        n_comm,
        len(follow_src),
        n_tweets,
        len(g.eng_user),
    )
    return g


def users_for_edges(n_edges: int, **params) -> int:
    """How many users give about ``n_edges`` relationships with the given parameters."""
    per_user = (
        params.get("avg_follows", 20.0)
        + params.get("avg_engagements", 25.0)
        + params.get("tweets_per_user", 3.0)
    )
    return max(10, int(round(n_edges / per_user)))


def _check_params(n_users, avg_follows, tweets_per_user, avg_engagements, in_community, days) -> None:
    if int(n_users) < 2:
        raise InputError(f"n_users must be at least 2, got {n_users}")
    for name, value in [
        ("avg_follows", avg_follows),
        ("tweets_per_user", tweets_per_user),
        ("avg_engagements", avg_engagements),
    ]:
        if not value >= 0:
            raise InputError(f"{name} must be >= 0, got {value}")
    if not 0.0 <= in_community <= 1.0:
        raise InputError(f"in_community must be in [0, 1], got {in_community}")
    if days < 1:
        raise InputError(f"days must be >= 1, got {days}")


def _sample_weighted(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    return np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right").clip(0, len(weights) - 1)


def _heavy_tailed_counts(rng: np.random.Generator, activity: np.ndarray, mean: float) -> np.ndarray:
    """Per-user counts with the given mean, proportional to a heavy-tailed activity."""
    if mean <= 0:
        return np.zeros(len(activity), dtype=np.int64)
    lam = activity / activity.mean() * mean
    return rng.poisson(np.minimum(lam, 50 * mean)).astype(np.int64)


def _grouped_sampler(rng, groups: np.ndarray, weights: np.ndarray, n_groups: int):
    """Return ``sample(group_of_each_draw) -> member`` drawing ∝ weights within a group."""
    order = np.argsort(groups, kind="stable")
    w = weights[order].astype(np.float64)
    bounds = np.searchsorted(groups[order], np.arange(n_groups + 1))
    cdf = np.cumsum(w)
    start_mass = np.concatenate([[0.0], cdf])[bounds[:-1]]
    end_mass = np.concatenate([[0.0], cdf])[bounds[1:]]

    def sample(draw_groups: np.ndarray) -> np.ndarray:
        lo, hi = start_mass[draw_groups], end_mass[draw_groups]
        pos = np.searchsorted(cdf, lo + rng.random(len(draw_groups)) * (hi - lo), side="right")
        pos = np.clip(pos, bounds[draw_groups], np.maximum(bounds[draw_groups + 1] - 1, bounds[draw_groups]))
        empty = bounds[draw_groups + 1] == bounds[draw_groups]
        pos = np.minimum(pos, len(order) - 1)
        out = order[pos]
        return np.where(empty, -1, out)

    return sample


def _follow_edges(rng, community, popularity, activity, avg_follows, in_community):
    n_users = len(community)
    out_deg = _heavy_tailed_counts(rng, np.sqrt(activity), avg_follows)
    src = np.repeat(np.arange(n_users, dtype=np.int64), out_deg)
    local = rng.random(len(src)) < in_community
    dst = _sample_weighted(rng, popularity, len(src)).astype(np.int64)
    sample_in = _grouped_sampler(rng, community, popularity, int(community.max()) + 1)
    local_dst = sample_in(community[src[local]])
    dst[local] = np.where(local_dst >= 0, local_dst, dst[local])
    keep = src != dst
    src, dst = src[keep], dst[keep]
    key = np.unique(src * n_users + dst)
    return key // n_users, key % n_users


def _engagements(rng, community, activity, f_src, f_dst, tweet_author, tweet_topic, mean, n_comm):
    n_users = len(community)
    n_tweets = len(tweet_author)
    counts = _heavy_tailed_counts(rng, activity, mean)
    user = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    tweet = np.empty(len(user), dtype=np.int64)
    tweet_pop = rng.pareto(1.3, size=n_tweets) + 1.0
    route = rng.random(len(user))

    # 1) a tweet by someone the user follows
    f_indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(f_src, minlength=n_users), out=f_indptr[1:])
    a_order = np.argsort(tweet_author, kind="stable")
    a_indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(tweet_author, minlength=n_users), out=a_indptr[1:])
    deg = f_indptr[user + 1] - f_indptr[user]
    via_follow = (route < 0.6) & (deg > 0)
    u = user[via_follow]
    edge = f_indptr[u] + (rng.random(len(u)) * deg[via_follow]).astype(np.int64)
    author = f_dst[edge]
    n_auth = a_indptr[author + 1] - a_indptr[author]
    picked = a_order[
        np.minimum(a_indptr[author] + (rng.random(len(u)) * n_auth).astype(np.int64), n_tweets - 1)
    ]
    follow_hit = n_auth > 0
    # 2) a popular tweet on the user's community topic
    by_topic = _grouped_sampler(rng, tweet_topic.astype(np.int64), tweet_pop, n_comm)
    topical = by_topic(community[user].astype(np.int64))
    # 3) a globally popular tweet
    global_pick = _sample_weighted(rng, tweet_pop, len(user))

    tweet[:] = np.where((route < 0.9) & (topical >= 0), topical, global_pick)
    idx = np.flatnonzero(via_follow)
    tweet[idx[follow_hit]] = picked[follow_hit]
    return user, tweet


def _tweet_texts(rng, topic: np.ndarray, n_comm: int, words_per_topic: int = 12) -> list[str]:
    """Topic words: each community has its own small pseudo-word vocabulary."""
    n_words = n_comm * words_per_topic + 200
    a = rng.integers(0, len(_SYLLABLES), size=(n_words, 3))
    vocab = np.char.add(np.char.add(_SYLLABLES[a[:, 0]], _SYLLABLES[a[:, 1]]), _SYLLABLES[a[:, 2]])
    vocab = np.char.add(vocab, np.char.mod("%d", np.arange(n_words)))
    n = len(topic)
    on_topic = topic[:, None] * words_per_topic + rng.integers(0, words_per_topic, size=(n, 4))
    filler = n_comm * words_per_topic + rng.integers(0, 200, size=(n, 2))
    words = vocab[np.concatenate([on_topic, filler], axis=1)]
    return [" ".join(row) for row in words.tolist()]
