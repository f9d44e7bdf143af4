"""The SQLite store: message history and inbox read marks in one local database file."""
import heapq
import json
import logging
import os
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from rulecast.message import Message, RawJSON, now_iso
from rulecast.store.base import Store

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)

# SQLite before 3.32 allows 999 bound parameters per statement; 500 channels per
# statement stays well inside that on every version.
CHUNK = 500

SCHEMA = (
    # AUTOINCREMENT keeps the highest id ever assigned in sqlite_sequence, so an id is
    # never handed out twice, even after pruning deleted the newest rows.
    "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " channel TEXT NOT NULL, time TEXT NOT NULL, data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS messages_channel ON messages (channel, id)",
    # Lets the age limit find old rows without scanning the whole history.
    "CREATE INDEX IF NOT EXISTS messages_time ON messages (time)",
    "CREATE TABLE IF NOT EXISTS reads (user TEXT PRIMARY KEY, last_read INTEGER NOT NULL)",
    # What each publish of append_requests stored, by its publisher's token, so that a
    # publisher whose answer was lost can learn it (resolve); first_id NULL: given up.
    "CREATE TABLE IF NOT EXISTS publishes (token TEXT PRIMARY KEY, first_id INTEGER,"
    " time TEXT NOT NULL)",
)

COLUMNS = "SELECT id, channel, time, data FROM messages "


def _message(row):
    return Message(row[0], row[1], row[2], json.loads(row[3]))


def _iso_ago(seconds):
    """The UTC time `seconds` ago, in the same sortable format as :func:`now_iso`."""
    then = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    return then.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _channel_list(channels):
    """Distinct channels in a stable order; a lone string is one channel, not letters."""
    if isinstance(channels, str):
        return [channels]
    return list(dict.fromkeys(channels))


def _chunks(seq, size=CHUNK):
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


class SQLiteStore(Store):
    """History and read marks in an SQLite file that several processes may open."""

    # Per-channel pruning runs after this many appended messages (see append_many). It
    # costs two queries per channel written meanwhile: with every message for another
    # user, at 1,000 that was a tenth of what storing a message costs.
    PRUNE_EVERY = 10000
    # Rows per transaction when pruning by age: other processes write between batches.
    PRUNE_BATCH = 2000
    # Seconds a message is kept even past max_per_channel: a worker refilling a gap the
    # bus left, or a client reconnecting just after a burst, must still find it.
    KEEP_RECENT = 60.0
    # How long a statement waits for another process's lock before failing. It blocks
    # the gevent hub while it waits, so writes must stay short everywhere.
    BUSY_TIMEOUT = 5.0

    def __init__(self, path, max_per_channel=1000, max_age=7 * 86400.0):
        self.path = os.fspath(path)
        self.max_per_channel = max_per_channel  # None: no count limit
        self.max_age = max_age  # seconds; None: no age limit
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        # isolation_level=None: no implicit transactions; writes open their own with
        # BEGIN IMMEDIATE, reads see every commit. timeout= is SQLite's busy_timeout.
        self._db = sqlite3.connect(self.path, timeout=self.BUSY_TIMEOUT,
                                   isolation_level=None)
        # WAL: readers in other processes never block the writer nor each other.
        self._db.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit is in the OS once it returns, so it survives a
        # crash or kill of the process, which is what "accepted is never lost" needs
        # here; a power cut may lose the last transactions. FULL would fsync every
        # commit and stall the hub on each append.
        self._db.execute("PRAGMA synchronous = NORMAL")
        with self._write() as db:
            for statement in SCHEMA:
                db.execute(statement)
        self._dirty = set()  # channels appended to since the last per-channel prune
        self._unpruned = 0

    @contextmanager
    def _write(self):
        """One write transaction. IMMEDIATE takes the write lock up front, so a writer
        waits (busy_timeout) instead of failing when another process wrote first."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # Seconds a publish's token is kept for resolve().
    TOKEN_TTL = 60.0

    def append_many(self, items):
        stamp = now_iso()
        rows = self._rows(items, stamp)
        if not rows:
            return []
        with self._write() as db:
            out = self._insert(db, rows)
        self._after_append(out)
        return out

    def append_requests(self, requests):
        stamp = now_iso()
        encoded = [(token, self._rows([(c, d, None) for c, d in items], stamp))
                   for token, items in requests]
        out = []
        with self._write() as db:
            taken = set()
            for chunk in _chunks([token for token, _ in requests]):
                taken.update(t for (t,) in db.execute(
                    "SELECT token FROM publishes WHERE token IN (%s)"
                    % ",".join("?" * len(chunk)), chunk))
            for token, rows in encoded:
                if token in taken:
                    out.append(None)
                    continue
                messages = self._insert(db, rows)
                db.execute("INSERT INTO publishes (token, first_id, time) VALUES (?, ?, ?)",
                           (token, messages[0].id if messages else 0, stamp))
                out.append(messages)
        self._after_append([m for messages in out if messages for m in messages])
        return out

    def resolve(self, token, items):
        with self._write() as db:
            row = db.execute("SELECT first_id, time FROM publishes WHERE token = ?",
                             (token,)).fetchone()
            if row is None:
                db.execute("INSERT INTO publishes (token, first_id, time) VALUES (?, NULL, ?)",
                           (token, now_iso()))
                return None
        first, time = row
        if first is None:
            return None
        return [Message(first + i, channel, time, data) for i, (channel, data) in enumerate(items)]

    @staticmethod
    def _rows(items, stamp):
        # Encoded before the transaction: bad data fails without taking the lock.
        return [(channel, data, time or stamp,
                 data.decode("utf-8") if type(data) is RawJSON else
                 json.dumps(data, separators=(",", ":"), ensure_ascii=False))
                for channel, data, time in items]

    @staticmethod
    def _insert(db, rows):
        out = []
        for channel, data, time, text in rows:
            cur = db.execute("INSERT INTO messages (channel, time, data) VALUES (?, ?, ?)",
                             (channel, time, text))
            make = Message.encoded if type(data) is RawJSON else Message
            out.append(make(cur.lastrowid, channel, time, data))
        return out

    def _after_append(self, messages):
        """Trim the channels just written, and forget old tokens, every PRUNE_EVERY
        messages: cheap, as it only touches those channels through the (channel, id)
        index."""
        self._dirty.update(m.channel for m in messages)
        self._unpruned += len(messages)
        if self._unpruned < self.PRUNE_EVERY:
            return
        self._unpruned = 0
        dirty, self._dirty = self._dirty, set()
        try:
            with self._write() as db:
                db.execute("DELETE FROM publishes WHERE time < ?", (_iso_ago(self.TOKEN_TTL),))
            if self.max_per_channel is not None:
                self._prune_channels(dirty)
        except sqlite3.Error:
            # The messages are committed; failing the append now would make the caller
            # retry and duplicate them. Try these channels again next time.
            self._dirty |= dirty
            log.warning("store: pruning after append failed", exc_info=True)

    def last_id(self):
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'")
        return (row.fetchone() or (0,))[0]

    def since(self, after_id, channels, limit=None):
        channels = _channel_list(channels)
        if not channels or limit == 0:
            return []
        limit = -1 if limit is None else int(limit)  # -1: no limit in SQLite
        parts = []
        for chunk in _chunks(channels):
            parts.append(self._db.execute(
                COLUMNS + "WHERE id > ? AND channel IN (%s) ORDER BY id LIMIT ?"
                % ",".join("?" * len(chunk)), (after_id, *chunk, limit)).fetchall())
        rows = parts[0] if len(parts) == 1 else heapq.merge(*parts)
        if limit >= 0:
            rows = list(rows)[:limit]
        return [_message(row) for row in rows]

    def between(self, after_id, upto_id):
        rows = self._db.execute(
            COLUMNS + "WHERE id > ? AND id <= ? ORDER BY id", (after_id, upto_id))
        return [_message(row) for row in rows.fetchall()]

    def latest(self, channels, limit):
        channels = _channel_list(channels)
        if not channels or not limit:
            return []
        # One indexed query per channel reads at most `limit` rows from each; an IN
        # list would read every stored row of every channel and then sort them.
        rows = []
        for channel in channels:
            rows += self._db.execute(
                COLUMNS + "WHERE channel = ? ORDER BY id DESC LIMIT ?",
                (channel, limit)).fetchall()
        newest = heapq.nlargest(limit, rows)
        return [_message(row) for row in reversed(newest)]

    def count_since(self, after_id, channels):
        total = 0
        for chunk in _chunks(_channel_list(channels)):
            total += self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE id > ? AND channel IN (%s)"
                % ",".join("?" * len(chunk)), (after_id, *chunk)).fetchone()[0]
        return total

    def last_read(self, user):
        row = self._db.execute("SELECT last_read FROM reads WHERE user = ?", (user,))
        return (row.fetchone() or (0,))[0]

    def mark_read(self, user, upto):
        with self._write() as db:
            db.execute(
                "INSERT INTO reads (user, last_read) VALUES (?, ?) ON CONFLICT (user) "
                "DO UPDATE SET last_read = MAX(last_read, excluded.last_read)",
                (user, int(upto)))
            return self.last_read(user)

    def _prune_channels(self, channels):
        """Keep the newest max_per_channel messages of each of `channels`, and every
        message younger than KEEP_RECENT: a later pass takes those."""
        gone, recent = 0, _iso_ago(self.KEEP_RECENT)
        with self._write() as db:
            for channel in channels:
                # The newest message that is over the limit; it and older ones go.
                row = db.execute(
                    "SELECT id FROM messages WHERE channel = ? "
                    "ORDER BY id DESC LIMIT 1 OFFSET ?",
                    (channel, self.max_per_channel)).fetchone()
                if row:
                    gone += db.execute(
                        "DELETE FROM messages WHERE channel = ? AND id <= ? AND time < ?",
                        (channel, row[0], recent)).rowcount
        return gone

    def prune(self):
        """Full pass over every channel; run it periodically (append_many only trims
        the channels it writes to, by count)."""
        gone = 0
        if self.max_age is not None:
            # ISO times in now_iso()'s format sort like the instants they name.
            cutoff = _iso_ago(self.max_age)
            while True:
                with self._write() as db:
                    n = db.execute(
                        "DELETE FROM messages WHERE id IN "
                        "(SELECT id FROM messages WHERE time < ? LIMIT ?)",
                        (cutoff, self.PRUNE_BATCH)).rowcount
                gone += n
                if n < self.PRUNE_BATCH:
                    break
        if self.max_per_channel is not None:
            crowded = [c for (c,) in self._db.execute(
                "SELECT channel FROM messages GROUP BY channel HAVING COUNT(*) > ?",
                (self.max_per_channel,)).fetchall()]
            for chunk in _chunks(crowded):
                gone += self._prune_channels(chunk)
            self._dirty.clear()
            self._unpruned = 0
        return gone

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None
