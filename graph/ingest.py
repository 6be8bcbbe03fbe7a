"""Batched, idempotent ingest of graph columns into any store.

Order: users, tweets (with authorship), follows, engagements. Each batch is one
transaction in the store; a batch is first de-duplicated by its key (first
occurrence wins, as in the stores), so re-running an ingest, or resuming one that
was interrupted, adds nothing and ends with the same graph. The columns are checked
against the bounds of :mod:`graph.validation` before the first batch, so bad input
fails before anything is written, never half-way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from graph.errors import GraphRecError, StoreUnavailableError
from graph.schema import KINDS
from graph.store import EngagementBatch, FollowBatch, GraphStore, TweetBatch
from graph.validation import validate_columns

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 20_000


@dataclass
class GraphColumns:
    """External-id columns to ingest; any part may be empty."""

    users: np.ndarray
    tweet_ids: np.ndarray
    tweet_authors: np.ndarray
    tweet_created: np.ndarray
    tweet_texts: list[str | None] | None
    follow_src: np.ndarray
    follow_dst: np.ndarray
    follow_ts: np.ndarray
    eng_user: np.ndarray
    eng_tweet: np.ndarray
    eng_kind: np.ndarray
    eng_ts: np.ndarray
    eng_weight: np.ndarray

    @property
    def n_relationships(self) -> int:
        authored = int((np.asarray(self.tweet_authors) >= 0).sum())
        return len(self.follow_src) + len(self.eng_user) + authored

    @classmethod
    def from_dataset(cls, ds, splits: tuple[str, ...] = ("train", "val", "test")) -> GraphColumns:
        """Columns of a :class:`graph.datasets.Dataset` (chosen splits)."""
        eu = np.concatenate([getattr(ds, f"{s}_user") for s in splits])
        et = np.concatenate([getattr(ds, f"{s}_item") for s in splits])
        ew = np.concatenate(
            [
                ds.train_weight if s == "train" else np.ones(len(getattr(ds, f"{s}_user")), np.float32)
                for s in splits
            ]
        )
        n_items = len(ds.item_ids)
        return cls(
            users=ds.user_ids,
            tweet_ids=ds.item_ids,
            tweet_authors=np.full(n_items, -1, np.int64),
            tweet_created=np.zeros(n_items, np.int64),
            tweet_texts=None,
            follow_src=ds.follow_src,
            follow_dst=ds.follow_dst,
            follow_ts=np.zeros(len(ds.follow_src), np.int64),
            eng_user=eu,
            eng_tweet=et,
            eng_kind=np.full(len(eu), KINDS["engage"], np.int8),
            eng_ts=np.zeros(len(eu), np.int64),
            eng_weight=ew,
        )

    @classmethod
    def from_synthetic(cls, g) -> GraphColumns:
        """Columns of a :class:`graph.synthetic.SyntheticGraph`."""
        return cls(
            users=g.user_ids,
            tweet_ids=g.tweet_ids,
            tweet_authors=g.tweet_author,
            tweet_created=g.tweet_created,
            tweet_texts=g.tweet_texts,
            follow_src=g.follow_src,
            follow_dst=g.follow_dst,
            follow_ts=g.follow_ts,
            eng_user=g.eng_user,
            eng_tweet=g.eng_tweet,
            eng_kind=g.eng_kind,
            eng_ts=g.eng_ts,
            eng_weight=g.eng_weight,
        )

    @classmethod
    def from_events(cls, ev) -> GraphColumns:
        """Columns of parsed event files (:class:`graph.events.EventColumns`)."""
        a = ev.arrays()
        return cls(
            users=a["users"],
            tweet_ids=a["tweet_ids"],
            tweet_authors=a["tweet_authors"],
            tweet_created=a["tweet_created"],
            tweet_texts=list(ev.tweet_texts),
            follow_src=a["follow_src"],
            follow_dst=a["follow_dst"],
            follow_ts=a["follow_ts"],
            eng_user=a["eng_user"],
            eng_tweet=a["eng_tweet"],
            eng_kind=a["eng_kind"],
            eng_ts=a["eng_ts"],
            eng_weight=a["eng_weight"],
        )


def ingest(
    store: GraphStore,
    cols: GraphColumns,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> dict[str, int]:
    """Write ``cols`` into ``store`` in transactional batches; returns rows sent per part.

    Raises :class:`~graph.errors.InputError` before writing anything when a value is out of
    bounds (:func:`graph.validation.validate_columns`).
    """
    if batch_size < 1:
        raise GraphRecError(f"batch_size must be >= 1, got {batch_size}")
    validate_columns(cols)
    store.ensure_schema()
    total = len(cols.users) + len(cols.tweet_ids) + len(cols.follow_src) + len(cols.eng_user)
    bar = tqdm(total=total, unit="row", desc=f"ingest -> {store.kind}", disable=not progress, mininterval=1.0)
    sent = {"users": 0, "tweets": 0, "follows": 0, "engagements": 0}
    done_batches = 0
    try:
        for part, n, write in _batches(cols, batch_size):
            write(store)
            sent[part] += n
            done_batches += 1
            bar.update(n)
    except StoreUnavailableError as exc:
        raise StoreUnavailableError(
            f"{exc} (after {done_batches} committed batches; re-running the same ingest is safe: it is "
            f"idempotent and finishes the rest)"
        ) from exc
    finally:
        bar.close()
    log.info("ingested into %s: %s", store, sent)
    return sent


def _batches(cols: GraphColumns, size: int):
    users = np.unique(np.asarray(cols.users, np.int64))
    for lo in range(0, len(users), size):
        chunk = users[lo : lo + size]
        yield "users", len(chunk), lambda s, c=chunk: s.write_users(c)

    texts = cols.tweet_texts
    for lo in range(0, len(cols.tweet_ids), size):
        sl = slice(lo, lo + size)
        keep = _first_occurrence(cols.tweet_ids[sl])
        batch = TweetBatch(
            ids=np.asarray(cols.tweet_ids[sl], np.int64)[keep],
            authors=np.asarray(cols.tweet_authors[sl], np.int64)[keep],
            created=np.asarray(cols.tweet_created[sl], np.int64)[keep],
            texts=[texts[lo + i] for i in keep.tolist()] if texts is not None else [None] * len(keep),
        )
        yield "tweets", len(cols.tweet_ids[sl]), lambda s, b=batch: s.write_tweets(b)

    for lo in range(0, len(cols.follow_src), size):
        sl = slice(lo, lo + size)
        src = np.asarray(cols.follow_src[sl], np.int64)
        dst = np.asarray(cols.follow_dst[sl], np.int64)
        keep = _first_occurrence(np.stack([src, dst], axis=1))
        batch = FollowBatch(src[keep], dst[keep], np.asarray(cols.follow_ts[sl], np.int64)[keep])
        yield "follows", len(src), lambda s, b=batch: s.write_follows(b)

    for lo in range(0, len(cols.eng_user), size):
        sl = slice(lo, lo + size)
        u = np.asarray(cols.eng_user[sl], np.int64)
        t = np.asarray(cols.eng_tweet[sl], np.int64)
        k = np.asarray(cols.eng_kind[sl], np.int8)
        keep = _first_occurrence(np.stack([u, t, k.astype(np.int64)], axis=1))
        batch = EngagementBatch(
            u[keep],
            t[keep],
            k[keep],
            np.asarray(cols.eng_ts[sl], np.int64)[keep],
            np.asarray(cols.eng_weight[sl], np.float32)[keep],
        )
        yield "engagements", len(u), lambda s, b=batch: s.write_engagements(b)


def _first_occurrence(keys: np.ndarray) -> np.ndarray:
    """Positions of the first row of each distinct key, in input order."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(keys, axis=0 if keys.ndim > 1 else None, return_index=True)
    return np.sort(first)
