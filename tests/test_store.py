"""Tests for the SQLite store: ids, history queries, limits, read marks, store URLs."""
import os
import sqlite3

import pytest

from rulecast.message import Message
from rulecast.store import Store, open_store
from rulecast.store.sqlite import SQLiteStore

OLD = "2001-01-01T00:00:00.000Z"


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "var" / "store.db")


@pytest.fixture
def store(path):
    s = SQLiteStore(path)
    yield s
    s.close()


def ids(messages):
    return [m.id for m in messages]


def test_is_a_store(store):
    """SQLiteStore implements the Store interface."""
    assert isinstance(store, Store)


def test_creates_parent_directory(path, store):
    """Opening a store creates the missing directory of its file."""
    assert os.path.isfile(path)


def test_ids_strictly_increasing(store):
    """Every appended message gets a larger id than the one before."""
    got = [store.append("topic:a", {"n": i}).id for i in range(5)]
    got += ids(store.append_many([("topic:b", {"n": i}, None) for i in range(5)]))
    assert got == sorted(got) and len(set(got)) == len(got)
    assert store.last_id() == got[-1]


def test_append_many_returns_messages(store):
    """append_many returns Message objects in id order, stamped with a time when None."""
    out = store.append_many([("user:bob", {"a": 1}, None), ("topic:x", {"b": 2}, OLD)])
    assert all(isinstance(m, Message) for m in out)
    assert ids(out) == sorted(ids(out))
    assert out[0].time.endswith("Z") and out[1].time == OLD
    assert [m.channel for m in out] == ["user:bob", "topic:x"]


def test_append_many_is_one_transaction(store):
    """A failing item in append_many leaves none of the batch stored."""
    store.append("topic:a", {})
    with pytest.raises(sqlite3.IntegrityError):
        store.append_many([("topic:a", {"n": 1}, None), (None, {"n": 2}, None)])
    assert len(store.since(0, ["topic:a"])) == 1
    assert store.last_id() == 1
    assert store.append("topic:a", {}).id == 2


def test_last_id_zero_when_empty(store):
    """last_id is 0 before anything was stored."""
    assert store.last_id() == 0


def test_ids_not_reused_after_pruning_newest(store):
    """Pruning the newest rows does not let their ids be handed out again."""
    store.append("topic:a", {})
    newest = store.append("topic:a", {}, time=OLD).id
    assert store.prune() == 1
    assert store.last_id() == newest
    assert store.append("topic:a", {}).id > newest


def test_ids_not_reused_after_reopen(path):
    """A restarted store continues after the largest id ever assigned."""
    s = SQLiteStore(path)
    s.append("topic:a", {})
    newest = s.append("topic:a", {}, time=OLD).id
    s.prune()
    s.close()
    s = SQLiteStore(path)
    try:
        assert s.last_id() == newest
        assert s.append("topic:a", {}).id > newest
    finally:
        s.close()


def test_since_filters_channels_in_id_order(store):
    """since() returns only the asked channels, after the id, in id order, once each."""
    m = store.append_many([(c, {"c": c}, None)
                           for c in ["user:a", "topic:x", "user:b", "user:a", "group:g"]])
    got = store.since(m[0].id, ["user:a", "group:g", "user:a"])
    assert ids(got) == [m[3].id, m[4].id]
    assert [g.data for g in got] == [{"c": "user:a"}, {"c": "group:g"}]


def test_since_accepts_any_iterable(store):
    """since() takes a generator or a set of channels, not only a list."""
    m = store.append("topic:x", {})
    assert ids(store.since(0, (c for c in ["topic:x"]))) == [m.id]
    assert ids(store.since(0, {"topic:x"})) == [m.id]


def test_since_limit(store):
    """since() with a limit returns the oldest `limit` matching messages."""
    m = store.append_many([("topic:x", {"n": i}, None) for i in range(10)])
    assert ids(store.since(m[1].id, ["topic:x"], limit=3)) == ids(m[2:5])
    assert store.since(0, ["topic:x"], limit=0) == []


def test_data_round_trips_json(store):
    """Stored data comes back decoded, unicode and nesting intact."""
    data = {"text": "héllo ✓", "list": [1, 2.5, None, True], "nested": {"k": "v"}}
    store.append("topic:x", data)
    assert store.since(0, ["topic:x"])[0].data == data


def test_between(store):
    """between() returns every channel's messages in (after, upto], in id order."""
    m = store.append_many([(c, {}, None) for c in ["user:a", "topic:x", "user:b", "group:g"]])
    assert ids(store.between(m[0].id, m[2].id)) == [m[1].id, m[2].id]


def test_latest_newest_oldest_first(store):
    """latest() returns the newest `limit` messages of the channels, oldest first."""
    m = store.append_many([(c, {}, None) for c in
                           ["user:a", "group:g", "topic:x", "user:a", "group:g", "user:a"]])
    assert ids(store.latest(["user:a", "group:g", "user:a"], 3)) == [m[3].id, m[4].id, m[5].id]
    assert ids(store.latest(["user:a", "group:g"], 10)) == [m[0].id, m[1].id, m[3].id,
                                                            m[4].id, m[5].id]


def test_history_survives_reopen(path):
    """Messages and read marks stored before a restart are there after it."""
    s = SQLiteStore(path)
    m = s.append("user:a", {"x": 1})
    s.mark_read("a", m.id)
    s.close()
    s = SQLiteStore(path)
    try:
        got = s.since(0, ["user:a"])
        assert ids(got) == [m.id] and got[0].data == {"x": 1}
        assert s.last_read("a") == m.id
    finally:
        s.close()


def test_prune_max_per_channel(path):
    """prune() keeps only the newest max_per_channel messages of each channel."""
    s = SQLiteStore(path, max_per_channel=3, max_age=None)
    try:
        a = s.append_many([("topic:a", {}, OLD) for _ in range(5)])
        b = s.append_many([("topic:b", {}, OLD) for _ in range(2)])
        assert s.prune() == 2
        assert ids(s.since(0, ["topic:a"])) == ids(a[2:])
        assert ids(s.since(0, ["topic:b"])) == ids(b)
    finally:
        s.close()


def test_append_prunes_written_channels(path):
    """After PRUNE_EVERY appended messages, append_many trims the channels it wrote."""
    s = SQLiteStore(path, max_per_channel=5)
    try:
        for i in range(SQLiteStore.PRUNE_EVERY):
            last = s.append("topic:a", {"n": i}, time=OLD)
        got = s.since(0, ["topic:a"])
        assert len(got) == 5 and got[-1].id == last.id
    finally:
        s.close()


def test_recent_messages_outlive_the_count_limit(path):
    """Messages younger than KEEP_RECENT stay past max_per_channel: a gap or a quick
    reconnect after a burst can still be filled."""
    s = SQLiteStore(path, max_per_channel=3, max_age=None)
    try:
        old = s.append_many([("topic:a", {}, OLD) for _ in range(3)])
        fresh = s.append_many([("topic:a", {}, None) for _ in range(5)])
        assert s.prune() == 3
        assert ids(s.since(0, ["topic:a"])) == ids(fresh)
        assert old[0].id not in ids(s.since(0, ["topic:a"]))
    finally:
        s.close()


def test_prune_max_age(path):
    """prune() deletes messages older than max_age and keeps recent ones."""
    s = SQLiteStore(path, max_age=3600.0)
    try:
        s.append("topic:a", {}, time=OLD)
        recent = s.append("topic:a", {})
        assert s.prune() == 1
        assert ids(s.since(0, ["topic:a"])) == [recent.id]
    finally:
        s.close()


def test_mark_read_never_moves_backwards(store):
    """mark_read keeps the larger mark and returns the mark in force."""
    assert store.last_read("bob") == 0
    assert store.mark_read("bob", 10) == 10
    assert store.mark_read("bob", 4) == 10
    assert store.last_read("bob") == 10
    assert store.mark_read("bob", 12) == 12


def test_count_since(store):
    """count_since counts the channels' messages after the id."""
    m = store.append_many([(c, {}, None) for c in
                           ["user:a", "topic:x", "user:a", "group:g", "user:b"]])
    assert store.count_since(0, ["user:a", "group:g"]) == 3
    assert store.count_since(m[0].id, ["user:a", "group:g"]) == 2
    assert store.count_since(m[-1].id, ["user:a"]) == 0


def test_two_stores_share_a_file(path):
    """A second store object on the same file sees what the first one writes."""
    writer, reader = SQLiteStore(path), SQLiteStore(path)
    try:
        assert reader.since(0, ["topic:a"]) == []
        m = writer.append("topic:a", {"x": 1})
        writer.mark_read("bob", m.id)
        assert ids(reader.since(0, ["topic:a"])) == [m.id]
        assert reader.last_id() == m.id
        assert reader.last_read("bob") == m.id
    finally:
        writer.close()
        reader.close()


def test_empty_channel_list(store):
    """Queries over no channels answer with nothing."""
    store.append("topic:a", {})
    assert store.since(0, []) == []
    assert store.latest([], 10) == []
    assert store.count_since(0, iter(())) == 0


def test_more_than_500_channels(store):
    """Queries over more channels than one statement holds still answer in id order."""
    channels = ["topic:%d" % i for i in range(1200)]
    # Interleave so each 500-channel chunk holds messages spread over the id range.
    m = store.append_many([(channels[(i * 7) % 1200], {"n": i}, None) for i in range(1200)])
    got = store.since(0, channels)
    assert ids(got) == ids(m)
    assert ids(store.since(m[10].id, channels, limit=50)) == ids(m[11:61])
    assert ids(store.latest(channels, 20)) == ids(m[-20:])
    assert store.count_since(m[99].id, channels) == 1100


def test_open_store_sqlite_absolute(tmp_path):
    """open_store opens sqlite:////absolute/path as an SQLite store at that path."""
    target = tmp_path / "abs" / "x.db"
    s = open_store("sqlite:///" + str(target), max_per_channel=7)
    try:
        assert isinstance(s, SQLiteStore) and s.max_per_channel == 7
        assert target.is_file()
    finally:
        s.close()


def test_open_store_sqlite_relative(tmp_path, monkeypatch):
    """open_store resolves sqlite:///relative.db against the current directory."""
    monkeypatch.chdir(tmp_path)
    s = open_store("sqlite:///var/rel.db")
    try:
        assert (tmp_path / "var" / "rel.db").is_file()
    finally:
        s.close()


@pytest.mark.parametrize("url", ["postgres://db/x", "sqlite://x.db", "sqlite:///", "x.db"])
def test_open_store_bad_url(url):
    """Any other store URL is a ValueError naming the accepted forms."""
    with pytest.raises(ValueError, match="sqlite:////absolute"):
        open_store(url)
