"""`graphrec stream` (graph/stream.py) against the real Kafka broker and both real stores:
streamed events end as the batch ingest of the same events would; a crash between the write
and the offset commit redelivers the batch and still stores each event once; invalid events
land in the dead-letter topic with reason and offset while the stream goes on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from graph.errors import InputError, StoreUnavailableError
from graph.events import EventColumns, add_event
from graph.kafka_client import confluent, ensure_topics, produce_events
from graph.local_store import LocalStore
from graph.stream import StreamConfig, StreamIngestor, StreamStats, dead_letter, decode_event
from graph.stream_checks import MALFORMED, batch_graph, sample_events, store_graph

pytestmark = pytest.mark.kafka

PARTITIONS = 3
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def topic(kafka_bootstrap) -> str:
    name = f"events-{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, {name: PARTITIONS, name + ".dlq": 1})
    return name


def _config(bootstrap: str, topic: str, **kw) -> StreamConfig:
    kw.setdefault("batch_size", 60)
    kw.setdefault("max_wait_ms", 200)
    return StreamConfig(bootstrap, topic=topic, group=f"g-{topic}", log_every_s=60, **kw)


def _offsets(bootstrap: str, topic: str, group: str) -> tuple[dict[int, int], dict[int, int]]:
    """(committed offset, end offset) per partition."""
    ck = confluent()
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [ck.TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    finally:
        consumer.close()
    return committed, ends


def _read_topic(bootstrap: str, topic: str, expected: int) -> list:
    """Every message of ``topic`` as (partition, offset, key, value); waits for ``expected`` and
    then a little longer, so extra messages would show."""
    ck = confluent()
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out, empty_polls = [], 0
    try:
        for _ in range(200):
            batch = [m for m in consumer.consume(500, 0.5) if m.error() is None]
            out += [(m.partition(), m.offset(), m.key(), m.value()) for m in batch]
            empty_polls = 0 if batch else empty_polls + 1
            if len(out) >= expected and empty_polls >= 2:
                break
    finally:
        consumer.close()
    return out


def test_streamed_events_equal_a_batch_ingest(store, kafka_bootstrap, topic, tmp_path):
    events = sample_events(seed=1)
    assert produce_events(kafka_bootstrap, topic, events) == len(events)
    with StreamIngestor(store, _config(kafka_bootstrap, topic)) as stream:
        stats = stream.run(max_events=len(events))
    assert (stats.consumed, stats.written, stats.dead_letters) == (len(events), len(events), 0)
    assert (
        stats.batches >= len(events) // 60 and stats.commits == stats.batches and stats.commit_failures == 0
    )
    assert stats.lag == 0
    assert store_graph(store) == batch_graph(events, tmp_path / "batch")
    committed, ends = _offsets(kafka_bootstrap, topic, f"g-{topic}")
    assert committed == ends and sum(ends.values()) == len(events)


def test_crash_between_write_and_commit_redelivers_and_stores_each_event_once(
    store, kafka_bootstrap, topic, tmp_path
):
    events = sample_events(seed=2)
    produce_events(kafka_bootstrap, topic, events)
    config = _config(kafka_bootstrap, topic, batch_size=50)
    first = StreamIngestor(store, config)
    commit, committed_sizes = first._commit, []

    def crash_on_the_third_commit(records):
        if len(committed_sizes) == 2:
            raise RuntimeError("crash after the durable write, before the commit")
        commit(records)
        committed_sizes.append(len(records))

    first._commit = crash_on_the_third_commit
    with pytest.raises(RuntimeError, match="crash after"):
        first.run(max_events=len(events))
    first.close()  # leaves the group without committing anything more
    assert first.stats().consumed == sum(committed_sizes)
    assert store.counts()["follows"] + store.counts()["engagements"] > 0

    remaining = len(events) - sum(committed_sizes)
    with StreamIngestor(store, config) as second:
        stats = second.run(max_events=remaining)
        assert stats.consumed == remaining  # the third batch came again, the first two did not
        assert second.run(idle_exit_s=1.5).consumed == remaining  # and nothing else is pending
    committed, ends = _offsets(kafka_bootstrap, topic, config.group)
    assert committed == ends and sum(ends.values()) == len(events)
    assert store_graph(store) == batch_graph(events, tmp_path / "batch")


def test_invalid_events_go_to_the_dead_letter_topic_and_the_stream_goes_on(
    local_store, kafka_bootstrap, topic, tmp_path
):
    valid = sample_events(seed=3, n=120)
    invalid = list(MALFORMED)
    # Invalid events first, in the middle and last: the valid ones around them are all stored.
    messages: list = [invalid[0][0], *[json.dumps(e) for e in valid[:60]], *[m for m, _ in invalid[1:-1]]]
    messages += [json.dumps(e) for e in valid[60:]] + [invalid[-1][0]]
    produce_events(kafka_bootstrap, topic, messages)
    with StreamIngestor(local_store, _config(kafka_bootstrap, topic)) as stream:
        stats = stream.run(max_events=len(messages))
    assert (stats.consumed, stats.written, stats.dead_letters) == (len(messages), len(valid), len(invalid))
    assert store_graph(local_store) == batch_graph(valid, tmp_path / "batch")

    originals = {(p, o): v for p, o, _, v in _read_topic(kafka_bootstrap, topic, len(messages))}
    letters = _read_topic(kafka_bootstrap, topic + ".dlq", len(invalid))
    assert len(letters) == len(invalid)
    reasons = {}
    for _, _, key, value in letters:
        doc = json.loads(value)
        assert key.decode() == f"{topic}/{doc['partition']}/{doc['offset']}"
        assert doc["topic"] == topic and doc["timestamp_ms"] > 0
        raw = originals[(doc["partition"], doc["offset"])]
        assert doc.get("raw", "").encode() == raw or doc.get("raw_base64") is not None
        reasons[raw] = doc["reason"]
    for raw, why in invalid:
        assert why in reasons[raw], (raw, reasons[raw])
    committed, ends = _offsets(kafka_bootstrap, topic, f"g-{topic}")
    assert committed == ends


class _FlakyStore:
    """A real store whose first follow write fails as if the server were gone."""

    def __init__(self, inner):
        self.inner, self.failures = inner, 1

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write_follows(self, batch):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("simulated outage")
        self.inner.write_follows(batch)


def test_an_unavailable_store_is_retried_from_the_same_offsets(local_store, kafka_bootstrap, topic, tmp_path):
    events = sample_events(seed=4, n=150)
    produce_events(kafka_bootstrap, topic, events)
    flaky = _FlakyStore(local_store)
    with StreamIngestor(flaky, _config(kafka_bootstrap, topic, batch_size=1000, store_retry_s=30)) as stream:
        stats = stream.run(max_events=len(events))
    assert flaky.failures == 0 and stats.store_retries == 1
    assert stats.consumed == stats.written == len(events)
    assert store_graph(local_store) == batch_graph(events, tmp_path / "batch")


def test_cli_produce_then_stream(kafka_bootstrap, tmp_path, capsys):
    from graphrec.cli import main

    topic = f"cli-{uuid.uuid4().hex[:10]}"
    events = sample_events(seed=5, n=80)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"event": "nope", "user": 1}\n')
    assert (
        main(
            [
                "produce",
                "--bootstrap",
                kafka_bootstrap,
                "--topic",
                topic,
                "--events",
                str(path),
                "--create-topics",
            ]
        )
        == 0
    )
    assert f"produced {len(events) + 1} events to {topic}" in capsys.readouterr().out
    store_dir = tmp_path / "store"
    args = [
        "stream",
        "--bootstrap",
        kafka_bootstrap,
        "--topic",
        topic,
        "--store",
        str(store_dir),
        "--create-topics",
    ]
    assert main([*args, "--idle-exit-s", "2", "--max-wait-ms", "200"]) == 0
    out = capsys.readouterr().out
    assert (
        f"streamed {len(events) + 1} events from {topic}" in out
        and "1 dead letters" in out
        and "lag 0" in out
    )
    with LocalStore(store_dir, create=False) as store:
        assert store_graph(store) == batch_graph(events, tmp_path / "batch")
    assert main([*args, "--idle-exit-s", "1"]) == 0  # committed: a restart finds nothing new
    assert "streamed 0 events" in capsys.readouterr().out


def test_sigterm_finishes_the_batch_commits_and_exits(kafka_bootstrap, topic, tmp_path):
    events = sample_events(seed=6, n=50)
    produce_events(kafka_bootstrap, topic, events)
    cmd = [sys.executable, "-m", "graphrec", "stream", "--bootstrap", kafka_bootstrap, "--topic", topic]
    cmd += ["--group", f"g-{topic}", "--store", str(tmp_path / "store"), "--log-every-s", "0.5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):  # until everything is committed (or the process died)
            committed, ends = _offsets(kafka_bootstrap, topic, f"g-{topic}")
            if committed == ends or proc.poll() is not None:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"streamed {len(events)} events from {topic}" in out and "lag 0" in out
    assert "stream " + topic + ": consumed" in err  # the progress line, without -v


def test_a_missing_topic_is_a_clear_error(kafka_bootstrap, local_store):
    config = StreamConfig(kafka_bootstrap, topic=f"absent-{uuid.uuid4().hex[:8]}")
    with (
        StreamIngestor(local_store, config) as stream,
        pytest.raises(InputError, match="do not exist.*--create-topics"),
    ):
        stream.run(max_events=1)


# -- without a broker -------------------------------------------------------------------------


def test_add_event_validates_one_object_and_leaves_columns_intact_on_error():
    ev = EventColumns()
    add_event(ev, {"event": "like", "user": 1, "target": 2, "weight": 2.5})
    with pytest.raises(InputError, match="weight"):
        add_event(ev, {"event": "like", "user": 3, "target": 4, "weight": -1})
    with pytest.raises(InputError, match="unknown key"):
        add_event(ev, {"event": "like", "user": 3, "target": 4, "extra": 1})
    with pytest.raises(InputError, match="JSON object"):
        add_event(ev, [1, 2])
    arrays = ev.arrays()
    assert [len(arrays[k]) for k in ("eng_user", "eng_tweet", "eng_kind", "eng_ts", "eng_weight")] == [1] * 5
    assert arrays["eng_weight"].tolist() == [2.5]


def test_decode_event_and_dead_letter_records():
    assert decode_event(b'{"event": "user", "user": 1}') == {"event": "user", "user": 1}
    for value, why in [
        (None, "empty"),
        (b"{", "invalid JSON"),
        (b"\xff", "UTF-8"),
        (b"[" * 100_000, "nested"),
    ]:
        with pytest.raises(InputError, match=why):
            decode_event(value)

    class Message:
        def __init__(self, value):
            self._value = value

        def value(self):
            return self._value

        def key(self):
            return b"7"

        def topic(self):
            return "events"

        def partition(self):
            return 2

        def offset(self):
            return 41

        def timestamp(self):
            return (1, 1700000000000)

    doc = dead_letter(Message(b"\xff" * 70_000), "the message is not UTF-8 text")
    assert (
        doc["offset"] == 41
        and doc["partition"] == 2
        and doc["key"] == "7"
        and doc["raw_truncated_from"] == 70_000
    )
    assert "raw" not in doc and len(doc["raw_base64"]) > 0
    assert dead_letter(Message(b"{oops"), "x")["raw"] == "{oops"


def test_stream_config_and_stats_rendering():
    with pytest.raises(InputError, match="dead-letter"):
        StreamConfig("b:1", topic="t", dead_letter_topic="t").check()
    with pytest.raises(InputError, match="batch_size"):
        StreamConfig("b:1", batch_size=0).check()
    assert StreamConfig("b:1", topic="t").dlq == "t.dlq"
    text = StreamStats("events", "g", consumed=5, written=4, dead_letters=1, lag=3).prometheus()
    assert 'graphrec_stream_consumed_total{topic="events",group="g"} 5' in text
    assert 'graphrec_stream_dead_letters_total{topic="events",group="g"} 1' in text
    assert "# TYPE graphrec_stream_lag gauge" in text and "last_commit" not in text
