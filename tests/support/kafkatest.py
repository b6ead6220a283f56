"""Kafka helpers shared by the Python test suites (confluent-kafka against the
local stack's broker): topics, producing, reading a topic back. Every helper takes
`brokers=` for a test's private broker (default: the stack's, BROKERS)."""
import os
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BROKERS = os.environ.get("MLOPS_TEST_KAFKA_BROKERS", "127.0.0.1:9092")


def admin(brokers=None):
    return AdminClient({"bootstrap.servers": brokers or BROKERS})


def create_topics(names, partitions=3, brokers=None):
    a = admin(brokers)  # keep the client alive until the futures resolve
    fs = a.create_topics([NewTopic(n, partitions, 1) for n in names])
    for f in fs.values():
        f.result(30)


def delete_topics(names, brokers=None):
    a = admin(brokers)
    try:
        for f in a.delete_topics(names).values():
            f.result(30)
    except Exception:  # cleanup is not the scenario
        pass


def produce(topic, items, flush=True, brokers=None):
    """items: (key, value bytes or None) pairs."""
    p = Producer({"bootstrap.servers": brokers or BROKERS, "enable.idempotence": True,
                  "linger.ms": 5, "message.max.bytes": 8_000_000})
    failed = []

    def on_delivery(err, msg):
        if err:
            failed.append(err)

    for key, value in items:
        while True:
            try:
                p.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
    if flush:
        assert p.flush(60) == 0
        assert not failed, f"the test could not produce its input: {failed[:3]}"


def consume_all(topic, expect=None, timeout=60, isolation="read_committed", quiet=5,
                brokers=None):
    """Read a topic from the start until `expect` records arrived, or until it
    stayed quiet for `quiet` seconds after the last record."""
    c = Consumer({"bootstrap.servers": brokers or BROKERS,
                  "group.id": f"it-reader-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": isolation})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    out = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while time.monotonic() < deadline:
        if expect is not None and len(out) >= expect:
            break
        if expect is None and out and time.monotonic() - last > quiet:
            break
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        out.append(m)
        last = time.monotonic()
    c.close()
    return out


def read_to_end(topic, isolation="read_uncommitted", timeout=60, brokers=None):
    """Every record of a topic up to its end now (each partition read until EOF); with
    read_uncommitted also the records of aborted transactions."""
    from confluent_kafka import KafkaError
    c = Consumer({"bootstrap.servers": brokers or BROKERS,
                  "group.id": f"it-reader-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    pending, out = set(md.partitions), []
    deadline = time.monotonic() + timeout
    while pending:
        assert time.monotonic() < deadline, f"{topic}: partitions {pending} not read to the end"
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(m.partition())
            continue
        out.append(m)
    c.close()
    return out
