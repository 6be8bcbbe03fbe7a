"""Kafka client plumbing shared by the stream consumer and its tools (confluent-kafka).

* :func:`confluent` imports ``confluent_kafka`` (the ``stream`` extra) or says how to install it.
* :func:`ensure_topics` creates missing topics; :func:`missing_topics` lists absent ones.
* :func:`produce_events` / :func:`produce_event_file` write events (one JSON object per message,
  keyed by the acting user, so one user's events stay in order on one partition) and wait until
  the broker has them all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType

from graph.errors import GraphRecError, InputError, StreamUnavailableError

log = logging.getLogger(__name__)

#: Settings every producer gets: nothing is acknowledged before all in-sync replicas have it,
#: and retries cannot duplicate or reorder messages.
PRODUCER_DEFAULTS = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}


def confluent() -> ModuleType:
    """The ``confluent_kafka`` module; a :class:`GraphRecError` with the install command if absent."""
    try:
        import confluent_kafka
        import confluent_kafka.admin  # noqa: F401 - makes confluent_kafka.admin an attribute
    except ImportError:
        raise GraphRecError(
            "the Kafka client is not installed: pip install 'graphrec[stream]' (confluent-kafka)"
        ) from None
    return confluent_kafka


def client_config(bootstrap: str, extra: Mapping[str, object] | None = None, **settings: object) -> dict:
    """A librdkafka configuration: ``bootstrap.servers``, ``settings``, then ``extra`` (user
    settings such as ``security.protocol`` win)."""
    if not bootstrap or not str(bootstrap).strip():
        raise InputError("no Kafka bootstrap servers given (--bootstrap HOST:PORT or KAFKA_BOOTSTRAP)")
    # librdkafka's own log lines go through this module's logger, not straight to stderr.
    return {"bootstrap.servers": str(bootstrap).strip(), "logger": log, **settings, **(extra or {})}


def missing_topics(
    bootstrap: str,
    topics: Iterable[str],
    *,
    config: Mapping[str, object] | None = None,
    timeout: float = 15.0,
) -> list[str]:
    """The ``topics`` the broker does not have."""
    ck = confluent()
    admin = ck.admin.AdminClient(client_config(bootstrap, config))
    try:
        present = admin.list_topics(timeout=timeout).topics
    except ck.KafkaException as exc:
        raise StreamUnavailableError(
            f"Kafka at {bootstrap} did not answer within {timeout:.0f} s: {exc}"
        ) from exc
    return [t for t in dict.fromkeys(topics) if t not in present]


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication: int = 1,
    config: Mapping[str, object] | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create each topic of ``{name: partitions}`` that does not exist yet; return those created."""
    ck = confluent()
    missing = missing_topics(bootstrap, topics, config=config, timeout=timeout)
    if not missing:
        return []
    admin = ck.admin.AdminClient(client_config(bootstrap, config))
    new = [
        ck.admin.NewTopic(t, num_partitions=int(topics[t]), replication_factor=replication) for t in missing
    ]
    created = []
    for topic, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(topic)
        except ck.KafkaException as exc:
            if exc.args[0].code() != ck.KafkaError.TOPIC_ALREADY_EXISTS:  # created by someone else meanwhile
                raise StreamUnavailableError(
                    f"could not create topic {topic!r} on {bootstrap}: {exc}"
                ) from exc
    if created:
        log.info("created topics %s on %s", created, bootstrap)
    return created


def event_key(value: bytes) -> bytes | None:
    """The message key of an encoded event: its ``user`` id, or None when it has none (an invalid
    event, which then lands on any partition; the stream dead-letters it)."""
    try:
        user = json.loads(value).get("user")
    except (ValueError, AttributeError):
        return None
    return None if user is None or isinstance(user, (dict, list)) else str(user).encode()


def produce_events(
    bootstrap: str,
    topic: str,
    events: Iterable[Mapping | str | bytes],
    *,
    config: Mapping[str, object] | None = None,
    timeout: float = 60.0,
) -> int:
    """Produce ``events`` (dicts are JSON-encoded; str/bytes are sent as they are) to ``topic``,
    keyed by :func:`event_key`; return how many, once the broker acknowledged every one of them.
    Raises :class:`StreamUnavailableError` if any was not delivered."""
    ck = confluent()
    producer = ck.Producer(client_config(bootstrap, config, **PRODUCER_DEFAULTS))
    failures: list[str] = []

    def delivered(err, msg) -> None:
        if err is not None:
            failures.append(f"{msg.topic()}: {err}")

    n = 0
    for event in events:
        value = (
            event
            if isinstance(event, bytes)
            else (event if isinstance(event, str) else json.dumps(event)).encode()
        )
        while True:
            try:
                producer.produce(topic, value=value, key=event_key(value), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)  # the local queue is full: let deliveries drain it
        n += 1
        producer.poll(0)
    left = producer.flush(timeout)
    if left or failures:
        raise StreamUnavailableError(
            f"{left + len(failures)} of {n} events were not delivered to {topic!r} on {bootstrap}"
            + (f", e.g. {failures[0]}" if failures else f" within {timeout:.0f} s")
        )
    log.info("produced %d events to %s", n, topic)
    return n


def produce_event_file(bootstrap: str, topic: str, path: str | Path, **kwargs) -> int:
    """Produce every non-empty line of a JSON Lines event file as one message (unvalidated: the
    stream validates, and dead-letters what is invalid)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such event file", path=str(path))
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".json"):
        raise InputError("the events topic carries JSON: give a .jsonl event file", path=str(path))
    with path.open("rb") as fh:
        return produce_events(
            bootstrap, topic, (line.rstrip(b"\r\n") for line in fh if line.strip()), **kwargs
        )
