"""The gevent-websocket fixes, seen from real clients: close codes, limits, masking, Origin."""
import base64
import json
import os
import socket
import struct

import pytest
import requests


def raw_handshake(server, path="/rulecast/ws", origin=None, extra=""):
    """A raw TCP socket after a WebSocket handshake; returns (sock, status line)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    head = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
            % (path, server.port, key))
    if origin:
        head += "Origin: %s\r\n" % origin
    sock.sendall((head + extra + "\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            break
        response += chunk
    return sock, response.split(b"\r\n")[0].decode()


def frame(payload, opcode=0x1, masked=True, fin=True):
    """A client frame, masked unless told otherwise."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frames(sock, timeout=5):
    """Server frames as (opcode, payload) until the close frame or EOF."""
    sock.settimeout(timeout)
    buf, frames = b"", []
    while True:
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            offset = 2
            if n == 126:
                n, offset = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                n, offset = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < offset + n:
                break
            frames.append((buf[0] & 0x0F, buf[offset:offset + n]))
            buf = buf[offset + n:]
            if frames[-1][0] == 0x8:
                return frames
        chunk = sock.recv(65536)
        if not chunk:
            return frames
        buf += chunk


def close_code_of(frames):
    closes = [p for op, p in frames if op == 0x8]
    assert closes, "no close frame among %r" % frames
    return struct.unpack("!H", closes[0][:2])[0]


def test_close_code_reaches_a_real_client(server):
    """A bad token closes with 1008, and the client reads that code."""
    c = server.connect(token="not-a-token")
    assert c.close_code() == 1008


def test_oversized_frame_closes_1009(make_server):
    """A frame over limits.max_message_bytes is refused with 1009 before it is read."""
    s = make_server(limits={"max_message_bytes": 1024})
    c = s.connect(token=s.token("ann"))
    c.recv_type("welcome")
    c.ws.send(json.dumps({"type": "ping", "pad": "x" * 2000}))
    assert c.close_code() == 1009


def test_fragmented_message_over_limit_closes_1009(make_server):
    """Fragments that add up to more than the limit close with 1009 too."""
    s = make_server(limits={"max_message_bytes": 1024})
    sock, status = raw_handshake(s)
    assert "101" in status
    sock.sendall(frame(b"x" * 800, fin=False) + frame(b"y" * 800, opcode=0x0))
    assert close_code_of(read_frames(sock)) == 1009


def test_invalid_utf8_closes_1007(server):
    """A text frame that is not UTF-8 closes with 1007."""
    sock, _ = raw_handshake(server)
    sock.sendall(frame(b'{"type":"ping","x":"\xff\xfe"}'))
    assert close_code_of(read_frames(sock)) == 1007


def test_unmasked_client_frame_closes_1002(server):
    """RFC 6455 §5.1: an unmasked client frame is a protocol error (1002)."""
    sock, _ = raw_handshake(server)
    sock.sendall(frame(b'{"type":"ping"}', masked=False))
    assert close_code_of(read_frames(sock)) == 1002


def test_binary_frame_closes_1003(server):
    """The protocol is JSON text: a binary message closes with 1003."""
    sock, _ = raw_handshake(server)
    sock.sendall(frame(b"\x00\x01", opcode=0x2))
    assert close_code_of(read_frames(sock)) == 1003


def test_client_close_is_echoed_with_its_code(server):
    """A client's close frame is answered with the same code."""
    sock, _ = raw_handshake(server)
    sock.sendall(frame(struct.pack("!H", 1000) + b"bye", opcode=0x8))
    assert close_code_of(read_frames(sock)) == 1000


def test_ping_control_frame_gets_pong(server):
    """A WebSocket ping control frame is answered with a pong carrying its payload."""
    sock, _ = raw_handshake(server)
    sock.sendall(frame(b"hello", opcode=0x9))
    sock.settimeout(5)
    data = sock.recv(4096)
    frames = []
    while data:
        n = data[1] & 0x7F
        frames.append((data[0] & 0x0F, data[2:2 + n]))
        data = data[2 + n:]
    assert (0xA, b"hello") in frames


def test_foreign_origin_refused_403(server):
    """An upgrade from an Origin that is neither ours nor allowed gets HTTP 403."""
    _, status = raw_handshake(server, origin="https://evil.example")
    assert " 403 " in status


def test_allowed_origin_accepted(server):
    """An Origin listed in allowed_origins is upgraded."""
    _, status = raw_handshake(server, origin="https://ok.example")
    assert " 101 " in status


def test_own_origin_accepted(server):
    """The server's own Origin is upgraded."""
    _, status = raw_handshake(server, origin="http://127.0.0.1:%d" % server.port)
    assert " 101 " in status


def test_plain_get_on_ws_endpoint_is_426(server):
    """A plain GET on the WebSocket endpoint says to use a WebSocket client."""
    r = requests.get(server.url + "/rulecast/ws")
    assert r.status_code == 426
    assert "WebSocket" in r.json()["errors"]["_"][0]


def test_tcp_nodelay_set_on_accepted_sockets(make_server):
    """Accepted sockets have TCP_NODELAY, so keep-alive clients never wait on delayed ACK."""
    s = make_server(app="tests.apps:app")
    assert requests.get(s.url + "/nodelay").json() == {"nodelay": 1}


@pytest.mark.parametrize("version", ["8", "12"])
def test_old_protocol_versions_refused(server, version):
    """Only WebSocket version 13 is spoken; others get 426 with the version to use."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET /rulecast/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                  "Sec-WebSocket-Version: %s\r\n\r\n" % (key, version)).encode())
    assert b" 426 " in sock.recv(4096).split(b"\r\n")[0]


def test_token_in_url_never_logged(make_server):
    """The access log redacts ?token= values."""
    s = make_server()
    token = s.token("secretive")
    c = s.connect(query="token=" + token)
    c.recv_type("welcome")
    c.close()
    requests.get(s.url + "/rulecast/healthz", params={"token": token})
    s.stop()
    log = s.output()
    assert "token=[redacted]" in log
    assert token not in log
