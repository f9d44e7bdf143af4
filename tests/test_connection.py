"""Connections: direct sends, a writer for full sockets, bounded queues, exact resume."""
import json
import socket

import gevent
import pytest
from gevent import socket as gsocket

from rulecast.channels import Identity
from rulecast.connection import WebSocketConnection
from rulecast.hub import Hub
from rulecast.message import Message
from rulecast.metrics import Metrics
from rulecast.store.sqlite import SQLiteStore


@pytest.fixture
def pair():
    a, b = gsocket.socketpair()
    yield a, b
    a.close()
    b.close()


def frames(data):
    """Decode unmasked server frames into (opcode, payload) pairs."""
    out = []
    while data:
        n, off = data[1] & 0x7F, 2
        if n == 126:
            n, off = int.from_bytes(data[2:4], "big"), 4
        out.append((data[0] & 0x0F, data[off:off + n]))
        data = data[off + n:]
    return out


def read_all(sock, until_close=True):
    buf = b""
    sock.settimeout(2)
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return buf
        if not chunk:
            return buf
        buf += chunk
        if until_close and frames(buf) and frames(buf)[-1][0] == 0x8:
            return buf


def subscriber(sock, limit):
    """A hub and a connection on ``sock`` subscribed to user:u, queueing up to ``limit``."""
    hub = Hub(Metrics())
    conn = WebSocketConnection(hub, Identity("u"), limit, sock)
    hub.add(conn)
    hub.subscribe(conn, "user:u")
    return hub, conn


def fill(sock):
    """Shrink ``sock``'s buffers so that a few large frames fill them."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


def big(i):
    return Message(i, "user:u", "t", {"n": i, "pad": "x" * 8000})


def test_overflow_closes_1013_and_drops_queue(pair):
    """Past `limit` queued frames the connection closes with 1013 and holds no backlog."""
    server_side, client_side = pair
    fill(server_side)
    fill(client_side)
    hub, conn = subscriber(server_side, 5)
    for i in range(1, 40):  # no yield: the writer cannot drain meanwhile
        hub.deliver(big(i))
    assert conn.closed and len(conn.queue) == 1  # just the close frame
    got = frames(read_all(client_side))
    assert [op for op, _ in got[:-1]] == [0x1] * (len(got) - 1)  # whole frames, then
    assert got[-1] == (0x8, (1013).to_bytes(2, "big") + got[-1][1][2:])
    assert conn not in hub.connections


def test_frames_go_out_at_once_in_order(pair):
    """With room in the socket, each frame is sent as it comes: no writer is needed."""
    server_side, client_side = pair
    hub, conn = subscriber(server_side, 100)
    for i in range(1, 11):
        hub.deliver(Message(i, "user:u", "t", {"n": i}))
        gevent.sleep(0)  # the hub flushes
        assert not conn.queue and conn.writer is None
    conn.close(1000)
    got = frames(read_all(client_side))
    ids = [json.loads(p)["id"] for op, p in got if op == 0x1]
    assert ids == list(range(1, 11))


def test_writer_drains_a_full_socket_in_order(pair):
    """A client that reads late gets every frame, in order, from a writer that then ends."""
    server_side, client_side = pair
    fill(server_side)
    fill(client_side)
    hub, conn = subscriber(server_side, 100)
    for i in range(1, 21):
        hub.deliver(big(i))
    gevent.sleep(0)  # the hub flushes: the socket takes part
    assert conn.writer is not None
    conn.close(1000)
    got = frames(read_all(client_side))
    ids = [json.loads(p)["id"] for op, p in got if op == 0x1]
    assert ids == list(range(1, 21))
    assert got[-1][0] == 0x8
    assert conn.writer is None


def test_resume_holds_live_messages_until_replay_done(pair, tmp_path):
    """Messages delivered live during a replay come after it, with no duplicates."""
    server_side, client_side = pair
    store = SQLiteStore(str(tmp_path / "s.db"))
    for n in range(450):
        store.append("user:u", {"n": n})
    hub, conn = subscriber(server_side, 1000)
    live = []

    def publish_live():
        for _ in range(3):
            m = store.append("user:u", {"live": True})
            live.append(m.id)
            hub.deliver(m)
            gevent.sleep(0)

    gevent.spawn(publish_live)
    conn.live_after("user:u", 450)
    conn.resume(store, 0)
    gevent.sleep(0.05)
    conn.close(1000)
    ids = [json.loads(p)["id"] for op, p in frames(read_all(client_side)) if op == 0x1]
    assert ids == list(range(1, 451)) + live


def test_repeated_resume_sends_nothing_twice(pair, tmp_path):
    """A second resume from an earlier id sends only what the first did not."""
    server_side, client_side = pair
    store = SQLiteStore(str(tmp_path / "s.db"))
    for n in range(10):
        store.append("user:u", {"n": n})
    hub, conn = subscriber(server_side, 1000)
    conn.live_after("user:u", 10)
    conn.resume(store, 6)
    conn.resume(store, 3)
    conn.resume(store, 5)
    conn.close(1000)
    ids = [json.loads(p)["id"] for op, p in frames(read_all(client_side)) if op == 0x1]
    assert ids == [7, 8, 9, 10, 4, 5, 6]


def test_deliveries_before_a_yield_leave_together(pair):
    """Messages delivered in one go wait in the queue and are flushed in one send."""
    server_side, client_side = pair
    hub, conn = subscriber(server_side, 100)
    for i in range(1, 6):
        hub.deliver(Message(i, "user:u", "t", {"n": i}))
    assert len(conn.queue) == 5 and conn.due
    gevent.sleep(0)
    assert not conn.queue and not conn.due
    client_side.settimeout(2)
    assert client_side.recv(65536).count(b'"type":"message"') == 5
