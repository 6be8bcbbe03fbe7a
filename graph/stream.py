"""``graphrec stream``: events from a Kafka topic into the store, durably and idempotently.

Each message of the events topic is one event: a JSON object with the keys and validation of
an event file (:mod:`graph.events`). A :class:`StreamIngestor` repeats one micro-batch:

1. take up to ``batch_size`` messages, waiting at most ``max_wait_ms`` for them;
2. validate each; the valid ones are written to the store with the batched, idempotent
   :func:`graph.ingest.ingest` (first write wins per key);
3. each invalid one goes to the dead-letter topic: key ``topic/partition/offset``, value a JSON
   object with the ``reason``, ``topic``, ``partition``, ``offset``, ``timestamp_ms``, ``key``
   and the ``raw`` message (``raw_base64`` when it is not UTF-8), and the producer waits until the
   broker has them;
4. only then are the batch's offsets committed (synchronously, explicit offsets).

A crash anywhere before step 4 means the batch is delivered again (at least once); writing it
again adds nothing, so each event is stored once. A store that is unavailable is retried (the
consumer seeks back to the batch's first offsets) for ``store_retry_s`` before the stream gives
up with nothing committed. Dead letters can repeat after a crash; their key identifies them.

Counters (consumed, written, dead letters, lag, throughput) are a :class:`StreamStats`
snapshot (:meth:`StreamIngestor.stats`), logged every ``log_every_s`` and rendered for
Prometheus by :meth:`StreamStats.prometheus`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from graph.errors import InputError, StoreUnavailableError, StreamUnavailableError
from graph.events import EventColumns, add_event
from graph.ingest import DEFAULT_BATCH_SIZE, GraphColumns, ingest
from graph.kafka_client import PRODUCER_DEFAULTS, client_config, confluent, missing_topics
from graph.store import GraphStore

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "events"
DEFAULT_GROUP = "graphrec-ingest"
DLQ_SUFFIX = ".dlq"
#: The most bytes of an invalid message a dead letter carries (its ``raw``).
RAW_LIMIT = 64 * 1024
#: Dead letters logged one by one per logging interval; the rest are only counted.
_DEAD_LOG_LIMIT = 10


@dataclass(frozen=True)
class StreamConfig:
    """Where to read and how. ``client_config`` adds librdkafka settings (security, timeouts)
    to both the consumer and the dead-letter producer."""

    bootstrap: str
    topic: str = DEFAULT_TOPIC
    group: str = DEFAULT_GROUP
    dead_letter_topic: str | None = None  # None: TOPIC.dlq
    batch_size: int = 5000  # most events per micro-batch
    max_wait_ms: int = 500  # longest wait to fill a micro-batch
    write_batch_size: int = DEFAULT_BATCH_SIZE  # rows per store transaction
    store_retry_s: float = 60.0  # how long an unavailable store is retried before giving up
    # A consumer that died without leaving the group (SIGKILL, OOM, power) holds its partitions
    # until the broker stops hearing from it: its restart waits this long (librdkafka's 45 s
    # default made each crash a 45 s stall). Heartbeats come from a background thread, so a slow
    # store write does not count against it (max.poll.interval.ms does).
    session_timeout_ms: int = 10_000
    # Static group membership (group.instance.id): a restart with the same id takes its
    # partitions back at once, with no rebalance and no session timeout to wait out. Give each
    # running stream process its own id; a stopped one's partitions wait for the session timeout.
    instance_id: str | None = None
    log_every_s: float = 10.0
    client_config: Mapping[str, object] = field(default_factory=dict)

    @property
    def dlq(self) -> str:
        return self.dead_letter_topic or self.topic + DLQ_SUFFIX

    def check(self) -> None:
        """Raise :class:`InputError` naming the first bad setting."""
        if not self.topic or not self.group:
            raise InputError("topic and group must be non-empty")
        if self.dlq == self.topic:
            raise InputError(f"the dead-letter topic must differ from the events topic ({self.topic!r})")
        for name in ("batch_size", "max_wait_ms", "write_batch_size", "session_timeout_ms"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.store_retry_s < 0 or self.log_every_s <= 0:
            raise InputError("store_retry_s must be >= 0 and log_every_s > 0")


@dataclass(frozen=True)
class StreamStats:
    """A snapshot of a stream's counters (totals since it started)."""

    topic: str
    group: str
    consumed: int = 0  # messages handled and committed (valid + dead letters)
    written: int = 0  # valid events written to the store (again when redelivered)
    dead_letters: int = 0
    batches: int = 0
    commits: int = 0
    commit_failures: int = 0  # harmless: the batch is delivered again
    store_retries: int = 0
    lag: int | None = None  # messages behind the end of the assigned partitions; None: unknown
    lag_by_partition: Mapping[int, int] = field(default_factory=dict)
    uptime_s: float = 0.0
    events_per_s: float = 0.0  # consumed / uptime
    recent_events_per_s: float = 0.0  # over the last logging interval
    last_commit_unix: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def prometheus(self, prefix: str = "graphrec_stream") -> str:
        """The counters in the Prometheus text format (for a service's ``/metrics``)."""
        labels = f'{{topic="{_escape(self.topic)}",group="{_escape(self.group)}"}}'
        rows = [
            (
                "consumed_total",
                "counter",
                "Messages consumed and committed (valid and dead-lettered).",
                self.consumed,
            ),
            ("written_total", "counter", "Valid events written to the store.", self.written),
            (
                "dead_letters_total",
                "counter",
                "Invalid events sent to the dead-letter topic.",
                self.dead_letters,
            ),
            ("batches_total", "counter", "Micro-batches handled.", self.batches),
            (
                "commit_failures_total",
                "counter",
                "Offset commits that failed (batch redelivered).",
                self.commit_failures,
            ),
            (
                "store_retries_total",
                "counter",
                "Micro-batches retried because the store was unavailable.",
                self.store_retries,
            ),
            ("lag", "gauge", "Messages behind the end of the assigned partitions.", self.lag),
            (
                "events_per_second",
                "gauge",
                "Events consumed per second over the last interval.",
                self.recent_events_per_s,
            ),
            (
                "last_commit_timestamp_seconds",
                "gauge",
                "Unix time of the last offset commit.",
                self.last_commit_unix,
            ),
        ]
        out = []
        for name, kind, help_text, value in rows:
            if value is None:
                continue
            out += [
                f"# HELP {prefix}_{name} {help_text}",
                f"# TYPE {prefix}_{name} {kind}",
                f"{prefix}_{name}{labels} {value}",
            ]
        return "\n".join(out) + "\n"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def decode_event(value: bytes | None) -> object:
    """A message's value as decoded JSON; :class:`InputError` saying why when it is not JSON."""
    if value is None:
        raise InputError("empty message (no value)")
    try:
        return json.loads(value.decode("utf-8"))  # not json.loads(bytes): that also takes UTF-16/32
    except UnicodeDecodeError:
        raise InputError("the message is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise InputError("invalid JSON: nested too deeply") from None


def dead_letter(message, reason: str) -> dict:
    """The dead-letter record of a consumed message (see the module docstring)."""
    raw = message.value() or b""
    kind, ts = message.timestamp()
    doc: dict[str, object] = {
        "reason": reason,
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp_ms": ts if kind != 0 else None,  # 0 = TIMESTAMP_NOT_AVAILABLE
        "key": None if message.key() is None else message.key().decode("utf-8", "replace"),
    }
    part = raw[:RAW_LIMIT]
    try:
        doc["raw"] = part.decode("utf-8")
    except UnicodeDecodeError:
        doc["raw_base64"] = base64.b64encode(part).decode()
    if len(raw) > RAW_LIMIT:
        doc["raw_truncated_from"] = len(raw)
    return doc


class StreamIngestor:
    """Consumes the events topic into ``store`` (see the module docstring).

    ``with StreamIngestor(store, StreamConfig(bootstrap)) as s: s.run(idle_exit_s=5)``. One thread
    drives it (:meth:`run` or :meth:`step`); :meth:`stats` may be read from any thread.
    """

    def __init__(self, store: GraphStore, config: StreamConfig):
        config.check()
        ck = confluent()
        self._ck = ck
        self.store, self.config = store, config
        extra = dict(config.client_config)
        self._consumer = ck.Consumer(
            client_config(
                config.bootstrap,
                extra,
                **{
                    "group.id": config.group,
                    "client.id": "graphrec-stream",
                    "enable.auto.commit": False,  # offsets are committed after the durable write
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",  # a new group reads the topic from its start
                    "isolation.level": "read_committed",  # never events of aborted transactions
                    "session.timeout.ms": config.session_timeout_ms,
                    **({"group.instance.id": config.instance_id} if config.instance_id else {}),
                },
            )
        )
        self._producer = ck.Producer(
            client_config(
                config.bootstrap, extra, **PRODUCER_DEFAULTS, **{"client.id": "graphrec-stream-dlq"}
            )
        )
        self._subscribed = False
        self._assigned_at: float | None = None
        self._closed = False
        self._stop: threading.Event | None = None
        self._t0 = time.monotonic()
        self._n = {
            k: 0
            for k in ("consumed", "written", "dead", "batches", "commits", "commit_failures", "store_retries")
        }
        self._lag: dict[int, int] = {}
        self._last_commit: float | None = None
        self._failing_since: float | None = None
        self._failures_in_a_row = 0
        self._interval = (self._t0, 0)  # (start, consumed at start) of the current logging interval
        self._recent_rate = 0.0
        self._dead_logged = 0
        self._errors_logged: set[int] = set()
        self._stats = StreamStats(config.topic, config.group)

    # -- public -----------------------------------------------------------------------------

    def stats(self) -> StreamStats:
        """The counters as of the last micro-batch (cheap; any thread)."""
        return self._stats

    def subscribe(self) -> None:
        """Check that both topics exist, then join the consumer group (idempotent)."""
        if self._subscribed:
            return
        cfg = self.config
        missing = missing_topics(cfg.bootstrap, [cfg.topic, cfg.dlq], config=cfg.client_config)
        if missing:
            raise InputError(
                f"topic(s) {missing} do not exist on {cfg.bootstrap}; create them (graphrec stream --create-topics, "
                "or kafka-topics.sh --create)"
            )
        self._consumer.subscribe(
            [cfg.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        self._subscribed = True
        log.info(
            "stream: consuming %s as group %s into %s (dead letters to %s)",
            cfg.topic,
            cfg.group,
            self.store,
            cfg.dlq,
        )

    def run(
        self,
        *,
        max_events: int | None = None,
        idle_exit_s: float | None = None,
        stop: threading.Event | None = None,
    ) -> StreamStats:
        """Handle micro-batches until ``stop`` is set, ``max_events`` messages were handled, or
        nothing arrived for ``idle_exit_s`` seconds; return the final counters."""
        self.subscribe()
        self._stop = stop
        cfg = self.config
        start = last_message = time.monotonic()
        next_log = start + cfg.log_every_s
        while not (stop is not None and stop.is_set()):
            limit = (
                cfg.batch_size
                if max_events is None
                else min(cfg.batch_size, max_events - self._n["consumed"])
            )
            if limit <= 0:
                break
            got = self.step(limit)
            now = time.monotonic()
            if got:
                last_message = now
            elif idle_exit_s is not None and self._idle_for(now, start, last_message) >= idle_exit_s:
                log.info("stream: no events for %.1f s; stopping", idle_exit_s)
                break
            if now >= next_log:
                self._refresh_lag(query=True)
                self._log_progress()
                next_log = now + cfg.log_every_s
        self._refresh_lag(query=True)
        self._log_progress()
        return self.stats()

    def _idle_for(self, now: float, start: float, last_message: float) -> float:
        """Seconds without messages, counted from the last assignment (joining the group takes a
        moment, and a rebalance hands over partitions that may still hold events); before the
        first assignment only waits longer than 30 s count."""
        if self._assigned_at is None:
            return now - start - 30.0
        return now - max(last_message, self._assigned_at)

    def step(self, limit: int | None = None) -> int:
        """One micro-batch (see the module docstring); returns the number of messages received."""
        self.subscribe()
        cfg = self.config
        messages = self._consumer.consume(
            num_messages=limit or cfg.batch_size, timeout=cfg.max_wait_ms / 1000
        )
        records = [m for m in messages if m.error() is None]
        for m in messages:
            if m.error() is not None:
                self._on_error(m.error())
        if not records:
            self._publish()
            return 0
        t0 = time.monotonic()
        events, dead = EventColumns(), []
        for m in records:
            try:
                add_event(events, decode_event(m.value()))
            except InputError as exc:
                dead.append((m, str(exc)))
        valid = len(records) - len(dead)
        if valid:
            try:
                ingest(
                    self.store,
                    GraphColumns.from_events(events),
                    batch_size=cfg.write_batch_size,
                    progress=False,
                )
            except StoreUnavailableError as exc:
                self._retry_later(records, exc)
                return len(records)
        self._failing_since, self._failures_in_a_row = None, 0
        if dead:
            self._send_dead_letters(dead)
        self._commit(records)
        self._n["consumed"] += len(records)
        self._n["written"] += valid
        self._n["dead"] += len(dead)
        self._n["batches"] += 1
        self._refresh_lag(query=False)
        self._publish()
        log.debug("stream: batch of %d (%d dead) in %.3f s", len(records), len(dead), time.monotonic() - t0)
        return len(records)

    def close(self) -> None:
        """Leave the group (commits nothing: offsets are only committed after a write)."""
        if self._closed:
            return
        self._closed = True
        self._producer.flush(10)
        self._consumer.close()

    def __enter__(self) -> StreamIngestor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the steps --------------------------------------------------------------------------

    def _retry_later(self, records: list, exc: StoreUnavailableError) -> None:
        """Seek back to the batch's first offsets so the next step reads it again, after a pause."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since > self.config.store_retry_s:
            raise StoreUnavailableError(
                f"{exc} (the store has failed for {now - self._failing_since:.0f} s; giving up. Nothing of this "
                "batch was committed: it is delivered again when the stream restarts)"
            ) from exc
        first: dict[tuple[str, int], int] = {}
        for m in records:
            key = (m.topic(), m.partition())
            first[key] = min(first.get(key, m.offset()), m.offset())
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(self._ck.TopicPartition(topic, partition, offset))
            except self._ck.KafkaException as err:  # no longer assigned: its new owner reads it
                log.info("stream: cannot seek %s[%d] back to %d: %s", topic, partition, offset, err)
        self._n["store_retries"] += 1
        self._failures_in_a_row += 1
        delay = min(10.0, 0.5 * 2 ** min(self._failures_in_a_row, 5))
        log.warning("stream: the store failed (%s); retrying the batch in %.1f s", exc, delay)
        if self._stop is not None:
            self._stop.wait(delay)
        else:
            time.sleep(delay)

    def _send_dead_letters(self, dead: list) -> None:
        failures: list[str] = []

        def delivered(err, msg) -> None:
            if err is not None:
                failures.append(str(err))

        for m, reason in dead:
            key = f"{m.topic()}/{m.partition()}/{m.offset()}".encode()
            value = json.dumps(dead_letter(m, reason)).encode()
            self._producer.produce(self.config.dlq, key=key, value=value, on_delivery=delivered)
            if self._dead_logged < _DEAD_LOG_LIMIT:
                log.warning("stream: dead letter %s: %s", key.decode(), reason)
            self._dead_logged += 1
        left = self._producer.flush(30)
        if left or failures:
            raise StreamUnavailableError(
                f"{left + len(failures)} of {len(dead)} dead letters were not delivered to {self.config.dlq!r}"
                + (f" ({failures[0]})" if failures else " within 30 s")
                + "; offsets were not committed: the batch is delivered again when the stream restarts"
            )

    def _commit(self, records: list) -> None:
        """Commit the offset after each partition's last message of the batch, synchronously."""
        last: dict[tuple[str, int], int] = {}
        for m in records:
            key = (m.topic(), m.partition())
            last[key] = max(last.get(key, -1), m.offset())
        offsets = [self._ck.TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False) or []
            failed = [tp for tp in result if tp.error is not None]
            if failed:
                raise self._ck.KafkaException(failed[0].error)
        except self._ck.KafkaException as exc:
            err = exc.args[0]
            if getattr(err, "fatal", lambda: False)():
                raise StreamUnavailableError(f"committing offsets failed fatally: {err}") from exc
            self._n["commit_failures"] += 1
            log.warning(
                "stream: committing offsets failed (%s); the batch will be delivered again, which the store absorbs",
                err,
            )
            return
        self._n["commits"] += 1
        self._last_commit = time.time()

    # -- bookkeeping ------------------------------------------------------------------------

    def _on_error(self, err) -> None:
        if err.code() == self._ck.KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise StreamUnavailableError(f"the Kafka consumer failed: {err}")
        if err.code() not in self._errors_logged:  # once per kind and logging interval
            self._errors_logged.add(err.code())
            log.warning("stream: %s", err)

    def _on_assign(self, consumer, partitions) -> None:
        log.info("stream: assigned %s", _describe(partitions))
        self._assigned_at = time.monotonic()

    def _on_revoke(self, consumer, partitions) -> None:
        log.info("stream: revoked %s", _describe(partitions))
        for tp in partitions:
            self._lag.pop(tp.partition, None)

    def _refresh_lag(self, *, query: bool) -> None:
        """Lag per assigned partition: the cached high watermark (updated with every fetch) minus
        the position; with ``query``, ask the broker where nothing is cached or consumed yet."""
        try:
            assigned = self._consumer.assignment()
            positions = self._consumer.position(assigned) if assigned else []
        except (self._ck.KafkaException, RuntimeError):
            return
        lag = {}
        for tp in positions:
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
                position = tp.offset
                if (high < 0 or position < 0) and query:
                    low, high = self._consumer.get_watermark_offsets(tp, timeout=2.0) or (-1, -1)
                    if position < 0:
                        committed = self._consumer.committed([tp], timeout=2.0)[0].offset
                        position = committed if committed >= 0 else low
            except self._ck.KafkaException:
                continue
            if high >= 0 and position >= 0:
                lag[tp.partition] = max(0, high - position)
        self._lag = lag

    def _publish(self) -> None:
        up = time.monotonic() - self._t0
        n = self._n
        self._stats = StreamStats(
            topic=self.config.topic,
            group=self.config.group,
            consumed=n["consumed"],
            written=n["written"],
            dead_letters=n["dead"],
            batches=n["batches"],
            commits=n["commits"],
            commit_failures=n["commit_failures"],
            store_retries=n["store_retries"],
            lag=sum(self._lag.values()) if self._lag else None,
            lag_by_partition=dict(self._lag),
            uptime_s=round(up, 3),
            events_per_s=round(n["consumed"] / up, 1) if up > 0 else 0.0,
            recent_events_per_s=round(self._recent_rate, 1),
            last_commit_unix=self._last_commit,
        )

    def _log_progress(self) -> None:
        now = time.monotonic()
        start, consumed_then = self._interval
        if now > start:
            self._recent_rate = (self._n["consumed"] - consumed_then) / (now - start)
        self._interval = (now, self._n["consumed"])
        self._publish()
        s = self._stats
        extra = (
            f" ({self._dead_logged - _DEAD_LOG_LIMIT} more not logged)"
            if self._dead_logged > _DEAD_LOG_LIMIT
            else ""
        )
        log.info(
            "stream %s: consumed %d (%.0f/s recently, %.0f/s overall), written %d, dead letters %d%s, lag %s, "
            "commits %d (%d failed), store retries %d",
            s.topic,
            s.consumed,
            s.recent_events_per_s,
            s.events_per_s,
            s.written,
            s.dead_letters,
            extra,
            "unknown" if s.lag is None else s.lag,
            s.commits,
            s.commit_failures,
            s.store_retries,
        )
        self._dead_logged = 0
        self._errors_logged.clear()


def _describe(partitions) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return ", ".join(f"{t}{sorted(p)}" for t, p in by_topic.items()) or "nothing"
