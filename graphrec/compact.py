"""``graphrec compact``: fold the events since a snapshot into the next snapshot and model.

A serving worker holds the snapshot plus live segments of everything since it
(:mod:`graph.live`); the segments grow until the snapshot is replaced. A compaction replaces it:

1. read the events topic from where the previous compaction stopped (``offsets.json`` of its
   output; the first one starts a minute before the snapshot's newest event) up to the topic's
   end at the start, into a live graph over the snapshot (the serving workers' own feed code);
2. fold the live graph into a new snapshot (:func:`graph.live.fold`: the snapshot a batch export
   of the same events would give);
3. fit the recommender on it with the served model's config; its embeddings carried over, and
   the users and tweets born since folded in (:func:`retrieval.live.extend_vectors`): no
   retraining;
4. write ``snapshot/``, ``model/`` and ``offsets.json`` (partition -> the offset after the last
   event folded in) into a temporary directory, then rename it to ``--out`` (all or nothing).

``graphrec serve --compact-every S`` runs this in a child process every S seconds and swaps the
result in with its reload; the new workers' feeds start at ``offsets.json``, so no event is
skipped or applied twice, and their live segments start empty.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from graph.errors import GraphRecError
from graph.live import LiveGraph, LiveSink, fold
from graph.snapshot import GraphSnapshot

log = logging.getLogger(__name__)

OFFSETS_FILE = "offsets.json"


@dataclass(frozen=True)
class CompactResult:
    out: Path
    snapshot_id: str
    events: int  # valid events read from the topic
    live_edges: int  # edges the fold added (after first-write-wins)
    offsets: dict[int, int]
    seconds: float


def read_offsets(path: Path, topic: str) -> dict[int, int] | None:
    """The offsets a compaction stopped at (None: no file); an error names a file of another topic."""
    file = path / OFFSETS_FILE if path.is_dir() else path
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
        if data["topic"] != topic:
            raise GraphRecError(f"{file}: offsets of topic {data['topic']!r}, not {topic!r}")
        return {int(p): int(o) for p, o in data["offsets"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphRecError(f"{file}: not a compaction's offsets file ({exc})") from None


def compact(
    snapshot: Path,
    live_settings,
    out: Path,
    *,
    model: Path | None = None,
    config: Path | None = None,
    embeddings: Path | None = None,
    start_offsets: dict[int, int] | None = None,
    catch_up_timeout_s: float = 600.0,
) -> CompactResult:
    """Fold the events since ``snapshot`` into a new snapshot and model at ``out`` (see the
    module docstring). ``model``: the served model (its config and embeddings carry over);
    else ``config`` (a tuned config file) or the defaults, and ``embeddings`` (an artifact of
    ``graphrec embed`` trained on ``snapshot``)."""
    from graphrec.serve.live_feed import LiveFeed
    from graphrec.serve.model import newest_event
    from retrieval.live import extend_vectors
    from retrieval.recommender import Recommender, RecommenderConfig

    t0 = time.perf_counter()
    out = Path(out)
    if out.exists():
        raise GraphRecError(f"--out {out} exists; a compaction writes a new directory")
    snap = GraphSnapshot.load(snapshot)
    user_vectors = tweet_vectors = None
    if model is not None:
        old = Recommender.load(model, snapshot)
        cfg, user_vectors, tweet_vectors = old.config, old.user_vectors, old.tweet_vectors
        del old
    else:
        cfg = RecommenderConfig.load(config) if config is not None else RecommenderConfig()
        if embeddings is not None:
            from gnn.artifacts import load_artifact

            artifact = load_artifact(embeddings, snapshot_id=snap.snapshot_id)
            user_vectors, tweet_vectors = artifact.user_vectors, artifact.tweet_vectors

    sink = LiveSink(snap)
    feed = LiveFeed(live_settings, sink, newest_event(snap), start_offsets=start_offsets).start()
    try:
        if not feed.wait_caught_up(catch_up_timeout_s):
            raise GraphRecError(
                f"compaction: the events topic was not read to its end within {catch_up_timeout_s:g} s"
                + (f" ({feed.error})" if feed.error else "")
            )
    finally:
        feed.stop()
    if feed.error:
        raise GraphRecError(f"compaction: the live feed failed: {feed.error}")
    offsets = feed.positions()
    live = sink.live if sink.live is not None else LiveGraph(snap)
    folded = fold(live)
    users, tweets = extend_vectors(snap, folded, user_vectors, tweet_vectors)
    rec = Recommender(folded, config=cfg, user_vectors=users, tweet_vectors=tweets)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        folded.save(tmp / "snapshot")
        rec.save(tmp / "model")
        (tmp / OFFSETS_FILE).write_text(
            json.dumps(
                {"topic": live_settings.topic, "offsets": {str(p): o for p, o in sorted(offsets.items())}}
            )
        )
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = CompactResult(
        out, folded.snapshot_id, feed.stats.applied, live.n_edges, offsets, time.perf_counter() - t0
    )
    log.info(
        "compacted %d events (%d live edges) into snapshot %s at %s in %.1fs",
        result.events,
        result.live_edges,
        result.snapshot_id,
        out,
        result.seconds,
    )
    return result
