"""A fleet console's case index fed from the Redis Stream with a consumer group (real redis-server):
every case the daemons wrote arrives, a console that stopped between reading and indexing reads
its unacknowledged entries again, and a second console's group sees every case too."""

from __future__ import annotations

import redis
from realparts import wait_for
from test_console_security import event

from streetscan.console.feed import RedisCaseFeed
from streetscan.console.index import CaseIndex
from streetscan.delivery.sinks import RedisStreamSink


def test_the_index_gets_every_case_of_the_stream_once_even_after_a_crash(redis_url, tmp_path):
    stream = "feed-test"
    sink = RedisStreamSink(redis_url, stream=stream)
    for i in range(30):
        sink.emit(event(i))
    index = CaseIndex(tmp_path / "cases.db")
    feed = RedisCaseFeed(index, redis_url, stream=stream, group="console-a", consumer="c1", batch=10)
    feed.reader.ensure_group()
    # A crash after reading a batch, before indexing it: the entries stay pending for this consumer.
    client = redis.Redis.from_url(redis_url)
    assert len(client.xreadgroup("console-a", "c1", {stream: ">"}, count=10)[0][1]) == 10
    feed.start()
    try:
        for i in range(30, 40):
            sink.emit(event(i))
        sink.emit(event(0, "updated", 1))
        wait_for(
            lambda: index.count() == 40 and index.case(event(0)["event_id"]).event["revision"] == 1,
            20,
            what="every case indexed",
        )
        wait_for(lambda: client.xpending(stream, "console-a")["pending"] == 0, 10, what="everything acknowledged")
    finally:
        feed.stop()
        feed.join(5)
    assert feed.indexed == 41  # 40 first revisions and the update, each once

    other = CaseIndex(tmp_path / "other.db")
    second = RedisCaseFeed(other, redis_url, stream=stream, group="console-b", consumer="c1")
    second.reader.ensure_group()
    while second.read_once():
        pass
    assert other.count() == 40
    sink.close()
