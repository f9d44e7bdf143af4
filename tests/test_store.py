"""What only the SQLite store does; what every store does is in test_store_contract.py."""
import os
import sqlite3

import pytest

from rulecast.store import open_store
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


def test_creates_parent_directory(path, store):
    """Opening a store creates the missing directory of its file."""
    assert os.path.isfile(path)


def test_append_many_is_one_transaction(store):
    """A failing item in append_many leaves none of the batch stored."""
    store.append("topic:a", {})
    with pytest.raises(sqlite3.IntegrityError):
        store.append_many([("topic:a", {"n": 1}, None), (None, {"n": 2}, None)])
    assert len(store.since(0, ["topic:a"])) == 1
    assert store.last_id() == 1
    assert store.append("topic:a", {}).id == 2


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
