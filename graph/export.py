"""Export a store to a :class:`~graph.snapshot.GraphSnapshot`, streaming in batches."""

from __future__ import annotations

import logging
import time

import numpy as np
from tqdm.auto import tqdm

from graph.ingest import GraphColumns
from graph.snapshot import GraphSnapshot, build_snapshot
from graph.store import GraphStore

log = logging.getLogger(__name__)


def export_snapshot(store: GraphStore, *, batch_size: int = 20_000, progress: bool = True) -> GraphSnapshot:
    """Read every node and relationship of ``store`` in batches and build a snapshot.

    The same data in any store gives an identical snapshot (same arrays, same
    ``snapshot_id``): vocabularies are sorted ids and CSR rows are sorted. Every read goes
    through one :meth:`~graph.store.GraphStore.read_view`, so an ingest that commits batches
    meanwhile (another thread or process) cannot tear the snapshot: it is the graph after some
    prefix of the committed batches.
    """
    t0 = time.perf_counter()
    with store.read_view() as view:
        # A store that can hand over the whole view as columns at once (Neo4j with graphrec's
        # procedures) does; the others are read batch by batch below.
        export_columns = getattr(view, "export_columns", None)
        cols = export_columns() if export_columns is not None else None
        if cols is not None:
            snap = snapshot_from_columns(cols)
            log.info(
                "exported snapshot %s from %s in %.1fs", snap.snapshot_id, store, time.perf_counter() - t0
            )
            return snap
        counts = view.counts()  # for the progress bar only
        total = sum(counts.values())
        bar = tqdm(
            total=total, unit="row", desc=f"export <- {store.kind}", disable=not progress, mininterval=1.0
        )
        users = []
        for ids in view.iter_users(batch_size):
            users.append(ids)
            bar.update(len(ids))
        t_ids, t_auth, t_created, texts = [], [], [], {}
        for b in view.iter_tweets(batch_size):
            t_ids.append(b.ids)
            t_auth.append(b.authors)
            t_created.append(b.created)
            texts.update((int(i), t) for i, t in zip(b.ids.tolist(), b.texts) if t)
            bar.update(len(b.ids))
        f_src, f_dst, f_ts = [], [], []
        for b in view.iter_follows(batch_size):
            f_src.append(b.src)
            f_dst.append(b.dst)
            f_ts.append(b.ts)
            bar.update(len(b.src))
        e_u, e_t, e_k, e_ts, e_w = [], [], [], [], []
        for b in view.iter_engagements(batch_size):
            e_u.append(b.users)
            e_t.append(b.tweets)
            e_k.append(b.kinds)
            e_ts.append(b.ts)
            e_w.append(b.weights)
            bar.update(len(b.users))
        bar.close()

    def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

    snap = build_snapshot(
        user_ids=cat(users, np.int64),
        tweet_ids=cat(t_ids, np.int64),
        follow_src=cat(f_src, np.int64),
        follow_dst=cat(f_dst, np.int64),
        follow_ts=cat(f_ts, np.int64),
        eng_user=cat(e_u, np.int64),
        eng_tweet=cat(e_t, np.int64),
        eng_kind=cat(e_k, np.int8),
        eng_ts=cat(e_ts, np.int64),
        eng_weight=cat(e_w, np.float32),
        tweet_author=cat(t_auth, np.int64),
        tweet_created=cat(t_created, np.int64),
        tweet_texts=texts,
    )
    log.info("exported snapshot %s from %s in %.1fs", snap.snapshot_id, store, time.perf_counter() - t0)
    return snap


def snapshot_from_columns(cols: GraphColumns) -> GraphSnapshot:
    """The snapshot of external-id columns (every node listed; duplicate keys keep their first row)."""
    texts = {}
    if cols.tweet_texts is not None:
        texts = {int(i): t for i, t in zip(np.asarray(cols.tweet_ids).tolist(), cols.tweet_texts) if t}
    return build_snapshot(
        user_ids=np.asarray(cols.users, np.int64),
        tweet_ids=np.asarray(cols.tweet_ids, np.int64),
        follow_src=np.asarray(cols.follow_src, np.int64),
        follow_dst=np.asarray(cols.follow_dst, np.int64),
        follow_ts=np.asarray(cols.follow_ts, np.int64),
        eng_user=np.asarray(cols.eng_user, np.int64),
        eng_tweet=np.asarray(cols.eng_tweet, np.int64),
        eng_kind=np.asarray(cols.eng_kind, np.int8),
        eng_ts=np.asarray(cols.eng_ts, np.int64),
        eng_weight=np.asarray(cols.eng_weight, np.float32),
        tweet_author=np.asarray(cols.tweet_authors, np.int64),
        tweet_created=np.asarray(cols.tweet_created, np.int64),
        tweet_texts=texts,
    )
