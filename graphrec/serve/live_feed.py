"""A serving worker's live feed: it consumes the events topic itself and applies each
micro-batch to the live graph of the recommender it serves (:meth:`Recommender.apply_events`).

Every worker (and every replica) reads the topic on its own, with no consumer group
coordination and no commits: it assigns itself every partition, from a minute before the
snapshot's newest event (or from the beginning), so any number of processes stay fresh.
Starting early is safe: the live graph ignores what the snapshot already holds (first write
wins). Events are validated as event files are (:func:`graph.events.add_event`); an invalid one
is counted and skipped here (``graphrec stream``, the durable writer, dead-letters it). The
durable store is not this module's business: freshness comes from the live segments.

A worker reports ready only once its feed has caught up with the topic as it was when the
feed started, so a reload never serves a live graph that is behind.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from graph.errors import GraphRecError, InputError
from graph.events import EventColumns, add_event
from graph.ingest import GraphColumns
from graph.kafka_client import client_config, confluent
from graph.stream import decode_event

log = logging.getLogger(__name__)

#: How far before the snapshot's newest event the feed starts reading, in seconds.
START_MARGIN_S = 60.0
#: Seconds a starting worker waits for its feed to catch up before it serves anyway.
CATCH_UP_TIMEOUT_S = 20.0
#: A feed that cannot start (broker away, topic without a leader yet) tries again after this
#: long, doubling up to the most.
ASSIGN_RETRY_FIRST_S, ASSIGN_RETRY_MAX_S = 0.5, 10.0


@dataclass(frozen=True)
class LiveSettings:
    """Where the live events come from (``graphrec serve --live-bootstrap ...``)."""

    bootstrap: str
    topic: str = "events"
    start: str = "snapshot"  # "snapshot": a minute before its newest event; "earliest": the whole topic
    batch_size: int = 5000
    max_wait_ms: int = 10
    walk_refresh_s: float = 1.0  # folds of the live graph for the walks; 0: walks read the snapshot

    def __post_init__(self) -> None:
        if self.start not in ("snapshot", "earliest"):
            raise GraphRecError(f"--live-start must be snapshot or earliest, got {self.start!r}")
        if not (self.walk_refresh_s >= 0 and self.walk_refresh_s < float("inf")):
            raise GraphRecError(f"--live-walk-refresh must be >= 0 seconds, got {self.walk_refresh_s}")
        if self.batch_size < 1 or self.max_wait_ms < 1:
            raise GraphRecError("the live feed's batch size and wait must be positive")


@dataclass
class FeedStats:
    applied: int = 0  # valid events applied to the live graph
    invalid: int = 0
    batches: int = 0
    lag: int = 0  # messages behind the partitions' ends at the last check
    last_applied_at: float = 0.0  # wall clock of the last applied batch
    caught_up: bool = False


class LiveFeed:
    """Consumes ``settings.topic`` into ``rec``'s live graph on a background thread."""

    def __init__(
        self,
        settings: LiveSettings,
        rec,
        newest_event_s: int,
        worker: int = 0,
        start_offsets: dict[int, int] | None = None,
    ):
        """``rec``: what the events are applied to (a :class:`retrieval.recommender.Recommender`,
        or anything with its ``snap``, ``live``, ``attach_live`` and ``apply_events``).
        ``start_offsets`` (partition -> offset, e.g. where a compaction stopped) overrides
        ``settings.start``; partitions it does not name start at the beginning."""
        self.settings, self.rec, self.worker = settings, rec, worker
        self.newest_event_s = newest_event_s
        self.start_offsets = start_offsets
        self._next: dict[int, int] = {}  # partition -> offset after the last applied message
        self.stats = FeedStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._targets: dict[int, int] = {}  # partition -> end offset when the feed started
        self.error: str | None = None

    def start(self) -> LiveFeed:
        from graph.live import LiveGraph

        if self.rec.live is None:
            refresh = self.settings.walk_refresh_s or None
            self.rec.attach_live(LiveGraph(self.rec.snap), walk_refresh_s=refresh)
        self._thread = threading.Thread(target=self._run, name=f"graphrec-live-{self.worker}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def positions(self) -> dict[int, int]:
        """Partition -> the offset after the last message applied (where a successor starts);
        read it after :meth:`stop`."""
        return dict(self._next)

    def wait_caught_up(self, timeout_s: float = CATCH_UP_TIMEOUT_S) -> bool:
        end = time.monotonic() + timeout_s
        while not self.stats.caught_up and time.monotonic() < end and self.error is None:
            time.sleep(0.01)
        return self.stats.caught_up

    # -- the consumer thread -------------------------------------------------------------
    def _run(self) -> None:
        consumer = self._assign_retrying()
        if consumer is None:
            return
        try:
            last_lag_check = 0.0
            while not self._stop.is_set():
                messages = consumer.consume(
                    num_messages=self.settings.batch_size, timeout=self.settings.max_wait_ms / 1000
                )
                if messages:
                    self._apply([m for m in messages if m.error() is None])
                now = time.monotonic()
                if not self.stats.caught_up or now - last_lag_check > 1.0:
                    self._check_lag(consumer)
                    last_lag_check = now
        finally:
            consumer.close()

    def _assign_retrying(self):
        """:meth:`_assign` until it succeeds or the feed is stopped. The broker may be down or
        restarting, or a topic just created may have no leader yet: the worker serves the
        snapshot alone meanwhile (``error`` says why) and the feed starts as soon as it can."""
        delay = ASSIGN_RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                consumer = self._assign()
            except Exception as exc:  # noqa: BLE001 - any failure: try again later, say why
                first = self.error is None
                self.error = f"{type(exc).__name__}: {exc}"
                (log.error if first else log.debug)(
                    "worker %d: live feed not started (%s); serving the snapshot alone, retrying every %.0f s",
                    self.worker,
                    self.error,
                    ASSIGN_RETRY_MAX_S,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, ASSIGN_RETRY_MAX_S)
                continue
            if self.error is not None:
                log.info("worker %d: live feed started after: %s", self.worker, self.error)
            self.error = None
            return consumer
        return None

    def _assign(self):
        ck = confluent()
        s = self.settings
        self._targets.clear()
        consumer = ck.Consumer(
            client_config(
                s.bootstrap,
                None,
                **{
                    "group.id": f"graphrec-serve-{uuid.uuid4().hex}",  # never joined: partitions are assigned
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "enable.partition.eof": False,
                },
            )
        )
        try:
            return self._assign_partitions(ck, consumer)
        except BaseException:
            consumer.close()
            self._targets.clear()
            raise

    def _assign_partitions(self, ck, consumer):
        s = self.settings
        topics = consumer.list_topics(s.topic, timeout=10).topics
        meta = topics.get(s.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise GraphRecError(f"no topic {s.topic!r} on {s.bootstrap}")
        parts = [ck.TopicPartition(s.topic, p) for p in sorted(meta.partitions)]
        if self.start_offsets is not None:
            parts = [
                ck.TopicPartition(
                    s.topic, p.partition, int(self.start_offsets.get(p.partition, ck.OFFSET_BEGINNING))
                )
                for p in parts
            ]
        elif s.start == "snapshot" and self.newest_event_s > 0:
            at_ms = int((self.newest_event_s - START_MARGIN_S) * 1000)
            wanted = [ck.TopicPartition(s.topic, p.partition, at_ms) for p in parts]
            found = consumer.offsets_for_times(wanted, timeout=10)
            parts = [
                ck.TopicPartition(s.topic, f.partition, f.offset if f.offset >= 0 else ck.OFFSET_END)
                for f in found
            ]
        else:
            parts = [ck.TopicPartition(s.topic, p.partition, ck.OFFSET_BEGINNING) for p in parts]
        for p in parts:
            low, high = consumer.get_watermark_offsets(p, timeout=10)
            start = low if p.offset == ck.OFFSET_BEGINNING else (high if p.offset < 0 else p.offset)
            self._targets[p.partition] = high if start < high else -1  # -1: nothing to catch up on
            self._next[p.partition] = max(start, low)
        consumer.assign(parts)
        log.info("worker %d: live feed on %s/%s from %s", self.worker, s.bootstrap, s.topic, s.start)
        return consumer

    def _apply(self, messages) -> None:
        events = EventColumns()
        invalid = 0
        for m in messages:
            try:
                add_event(events, decode_event(m.value()))
            except InputError:
                invalid += 1
        valid = len(messages) - invalid
        if valid:
            self.rec.apply_events(GraphColumns.from_events(events))
        st = self.stats
        st.applied += valid
        st.invalid += invalid
        st.batches += 1
        st.last_applied_at = time.time()
        for m in messages:
            self._next[m.partition()] = max(self._next.get(m.partition(), 0), m.offset() + 1)
            if m.offset() + 1 >= self._targets.get(m.partition(), 0):
                self._targets[m.partition()] = -1  # reached where the topic ended at the start

    def _check_lag(self, consumer) -> None:
        lag = 0
        for tp in consumer.position(consumer.assignment()):
            if tp.offset < 0:  # nothing fetched yet: the position is not known
                continue
            high = consumer.get_watermark_offsets(tp, timeout=5, cached=True)[1]
            lag += max(high - tp.offset, 0)
            if self._targets.get(tp.partition, -1) >= 0 and tp.offset >= self._targets[tp.partition]:
                self._targets[tp.partition] = -1
        self.stats.lag = lag
        if all(v < 0 for v in self._targets.values()):
            self.stats.caught_up = True
