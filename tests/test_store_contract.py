"""What every store promises (rulecast.store.Store), run on SQLite and on Redis."""
import pytest

from rulecast.message import Message
from rulecast.store import Store
from rulecast.store.sqlite import SQLiteStore
from tests.conftest import store_opener

OLD = "2001-01-01T00:00:00.000Z"


@pytest.fixture(params=["sqlite", "redis"])
def opened(request, tmp_path):
    """Opens stores of the backend under test on one database, empty at the start."""
    if request.param == "sqlite":
        path = str(tmp_path / "var" / "store.db")
        yield from store_opener(lambda **kw: SQLiteStore(path, **kw))
    else:
        from rulecast.store.redis import RedisStore
        url = request.getfixturevalue("redis_url")
        yield from store_opener(lambda **kw: RedisStore(url, **kw))


@pytest.fixture
def store(opened):
    return opened()


def ids(messages):
    return [m.id for m in messages]


def test_is_a_store(store):
    """The backend implements the Store interface."""
    assert isinstance(store, Store)


def test_last_id_zero_when_empty(store):
    """last_id is 0 before anything was stored."""
    assert store.last_id() == 0


def test_ids_strictly_increasing(store):
    """Every appended message gets a larger id than the one before."""
    got = [store.append("topic:a", {"n": i}).id for i in range(5)]
    got += ids(store.append_many([("topic:b", {"n": i}, None) for i in range(5)]))
    assert got == sorted(got) and len(set(got)) == len(got)
    assert store.last_id() == got[-1]


def test_ids_not_reused_after_pruning_newest(store):
    """Pruning the newest messages does not let their ids be handed out again."""
    store.append("topic:a", {})
    newest = store.append("topic:a", {}, time=OLD).id
    assert store.prune() == 1
    assert store.last_id() == newest
    assert store.append("topic:a", {}).id > newest


def test_append_many_returns_messages(store):
    """append_many returns Message objects in id order, stamped with a time when None."""
    out = store.append_many([("user:bob", {"a": 1}, None), ("topic:x", {"b": 2}, OLD)])
    assert all(isinstance(m, Message) for m in out)
    assert ids(out) == sorted(ids(out))
    assert out[0].time.endswith("Z") and len(out[0].time) == len(OLD) and out[1].time == OLD
    assert [m.channel for m in out] == ["user:bob", "topic:x"]
    assert [m.time for m in store.since(0, ["user:bob", "topic:x"])] == [m.time for m in out]


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
    """Stored data comes back decoded, unicode, newlines and nesting intact."""
    data = {"text": "héllo ✓\nline two \u2028", "list": [1, 2.5, None, True],
            "nested": {"k": "v"}}
    store.append("topic:x", data)
    got = store.since(0, ["topic:x"])[0]
    assert got.data == data
    assert got.frame()["data"] == data and b'"type":"message"' in got.json


def test_between(store):
    """between() returns every channel's messages in (after, upto], in id order."""
    m = store.append_many([(c, {}, None) for c in ["user:a", "topic:x", "user:b", "group:g"]])
    assert ids(store.between(m[0].id, m[2].id)) == [m[1].id, m[2].id]
    assert store.between(m[3].id, m[3].id + 5) == []


def test_latest_newest_oldest_first(store):
    """latest() returns the newest `limit` messages of the channels, oldest first."""
    m = store.append_many([(c, {}, None) for c in
                           ["user:a", "group:g", "topic:x", "user:a", "group:g", "user:a"]])
    assert ids(store.latest(["user:a", "group:g", "user:a"], 3)) == [m[3].id, m[4].id, m[5].id]
    assert ids(store.latest(["user:a", "group:g"], 10)) == [m[0].id, m[1].id, m[3].id,
                                                            m[4].id, m[5].id]


def test_count_since(store):
    """count_since counts the channels' messages after the id."""
    m = store.append_many([(c, {}, None) for c in
                           ["user:a", "topic:x", "user:a", "group:g", "user:b"]])
    assert store.count_since(0, ["user:a", "group:g"]) == 3
    assert store.count_since(m[0].id, ["user:a", "group:g"]) == 2
    assert store.count_since(m[-1].id, ["user:a"]) == 0


def test_empty_channel_list(store):
    """Queries over no channels answer with nothing."""
    store.append("topic:a", {})
    assert store.since(0, []) == []
    assert store.latest([], 10) == []
    assert store.count_since(0, iter(())) == 0


def test_many_channels(store):
    """Queries over more channels than one statement or HMGET holds answer in id order."""
    channels = ["topic:%d" % i for i in range(1200)]
    # Interleaved, so that each chunk of channels holds messages spread over the ids.
    m = store.append_many([(channels[(i * 7) % 1200], {"n": i}, None) for i in range(1200)])
    assert ids(store.since(0, channels)) == ids(m)
    assert ids(store.since(m[10].id, channels, limit=50)) == ids(m[11:61])
    assert ids(store.latest(channels, 20)) == ids(m[-20:])
    assert store.count_since(m[99].id, channels) == 1100
    assert ids(store.between(0, m[-1].id)) == ids(m)


def test_mark_read_never_moves_backwards(store):
    """mark_read keeps the larger mark and returns the mark in force."""
    assert store.last_read("bob") == 0
    assert store.mark_read("bob", 10) == 10
    assert store.mark_read("bob", 4) == 10
    assert store.last_read("bob") == 10
    assert store.mark_read("bob", 12) == 12


def test_history_survives_a_new_store_object(opened):
    """Messages and read marks written through one store object are there for the next
    (a restart, or another process)."""
    first = opened()
    m = first.append("user:a", {"x": 1})
    first.mark_read("a", m.id)
    first.close()
    then = opened()
    got = then.since(0, ["user:a"])
    assert ids(got) == [m.id] and got[0].data == {"x": 1}
    assert then.last_read("a") == m.id
    assert then.last_id() == m.id


def test_two_store_objects_see_each_others_writes(opened):
    """A second store object on the same database sees what the first one writes."""
    writer, reader = opened(), opened()
    assert reader.since(0, ["topic:a"]) == []
    m = writer.append("topic:a", {"x": 1})
    writer.mark_read("bob", m.id)
    assert ids(reader.since(0, ["topic:a"])) == [m.id]
    assert reader.last_id() == m.id
    assert reader.last_read("bob") == m.id


def test_append_requests_one_result_per_request(store):
    """append_requests answers each request's messages, in order, with consecutive ids."""
    a, b = store.append_requests([("tok-a", [("topic:a", {"n": 1}), ("topic:a", {"n": 2})]),
                                  ("tok-b", [("topic:b", {"n": 3})])])
    assert [m.data["n"] for m in a + b] == [1, 2, 3]
    assert ids(a + b) == list(range(a[0].id, a[0].id + 3))
    assert ids(store.since(0, ["topic:a", "topic:b"])) == ids(a + b)


def test_resolve_finds_a_stored_publish(store):
    """resolve() of a stored token answers its messages with their ids."""
    items = [("topic:a", {"n": 1}), ("topic:b", {"n": 2})]
    stored, = store.append_requests([("tok-1", items)])
    found = store.resolve("tok-1", items)
    assert ids(found) == ids(stored) and [m.data for m in found] == [{"n": 1}, {"n": 2}]


def test_resolved_token_is_refused_later(store):
    """A token resolve() found unknown is given up: a late publish of it stores nothing."""
    items = [("topic:a", {"n": 1})]
    assert store.resolve("tok-late", items) is None
    late, other = store.append_requests([("tok-late", items), ("tok-other", items)])
    assert late is None and len(other) == 1
    assert ids(store.since(0, ["topic:a"])) == ids(other)
    assert store.resolve("tok-late", items) is None
