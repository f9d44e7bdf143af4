"""The publisher process: numbered messages POSTed over keep-alive connections, paced or not."""
import base64
import collections
import hashlib
import http.client
import itertools
import json
import os
import re
import select
import socket
import threading
import time

from loadclient import GUID, frame_at, masked
from procs import CLIENT_CPU, KEY, SERVERS, pin

PUBLISHERS = 4  # keep-alive connections when one cannot keep up: throughput mode, steps


def publisher_main(pipe, port, m, rate, deadline, connections, server="rulecast",
                   base=0):
    """POSTs ``m`` messages, numbered n = base…base+m-1 (a phase's own range), on
    ``connections`` keep-alive connections (one thread each, taking the next n as soon as its previous publish was answered),
    paced at ``rate``/s overall, or as fast as the server answers when ``rate`` is None;
    reports what it did, with its own busy share (near 100 %: the publisher, not the
    server, set the pace)."""
    pin(CLIENT_CPU)  # CPU 0 stays the server's alone (with one worker)
    headers = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    numbers, t0, cpu0, done = itertools.count(base), time.time(), time.process_time(), []
    path, body = SERVERS[server]["publish"], SERVERS[server]["body"]

    def publish():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        ok, errors, first, last = 0, [], None, None
        while True:  # bounded: every thread stops once n reaches base + m
            i = next(numbers)
            if i >= base + m:
                break
            if rate:  # when behind, at once: pub/s shows it
                time.sleep(max(0.0, t0 + (i - base) / rate - time.time()))
            t = time.time()
            if t > deadline:
                break
            first = first or t
            try:
                conn.request("POST", path, json.dumps(body(t, i)), headers)
                r = conn.getresponse()
                r.read()
                ok += r.status == 202
                errors += [] if r.status == 202 else ["publish: HTTP %d" % r.status]
            except (OSError, http.client.HTTPException) as exc:
                errors.append("publish: %r" % exc)
                conn.close()  # http.client reconnects on the next request
            last = time.time()
        conn.close()
        done.append(dict(ok=ok, errors=errors, first=first, last=last))

    threads = [threading.Thread(target=publish, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.1, deadline + 12 - time.time()))  # a request times out in 10 s
    stuck = len(threads) - len(done)
    done = list(done)
    firsts = [d["first"] for d in done if d["first"]] or [t0]
    lasts = [d["last"] for d in done if d["last"]] or [time.time()]
    pipe.send(dict(ok=sum(d["ok"] for d in done),
                   errors=["%d publisher connection(s) still stuck at the deadline" % stuck]
                   * bool(stuck) + [e for d in done for e in d["errors"]],
                   first=min(firsts), last=max(lasts),
                   busy=(time.process_time() - cpu0) / max(time.time() - t0, 1e-9)))


#: A send time as the bodies carry it, %.6f: the same width until the year 2286, so a
#: request is built whole before the clock starts and only this is filled in as it goes.
STAMP = b"0000000000.000000"
CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")
PACED = 8  # keep-alive connections of the paced publisher, one request in flight on each


def http_request(port, path, body):
    """The bytes of a keep-alive JSON POST with the API key."""
    return b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n" \
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
               path.encode(), port, KEY.encode(), len(body), body)


def responses(buf):
    """The complete responses at the start of ``buf`` as (status, body), and the rest."""
    done = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            break
        length = CONTENT_LENGTH.search(buf, 0, end)
        size = int(length.group(1)) if length else 0
        if len(buf) < end + 4 + size:
            break
        done.append((int(buf[9:12]), buf[end + 4:end + 4 + size]))
        buf = buf[end + 4 + size:]
    return done, buf


def paced_main(pipe, port, workload, m, rate, deadline, connections=PACED, base=0):
    """POSTs ``m`` messages numbered base…base+m-1, ``workload.batch`` per request (its
    ``path`` and ``body(numbers)``, a body holding STAMP for the send time), from raw
    non-blocking keep-alive sockets on one epoll, one request in flight on each of
    ``connections``; request j is due at j × batch ÷ ``rate`` s from the start (None: at
    once) and goes on the first free connection. Reports like publisher_main, with
    ``ok`` counting accepted messages, plus ``requests``, ``statuses`` (answers by HTTP
    status), ``refused`` (the first non-202 answer's body) and ``late_ms`` (how far
    behind schedule the latest send went)."""
    pin(CLIENT_CPU)
    k = workload.batch
    todo = [(http_request(port, workload.path, workload.body(range(j, min(j + k, base + m)))),
             min(k, base + m - j)) for j in range(base, base + m, k)]
    ep, conns, idle, errors, statuses = select.epoll(), {}, [], [], collections.Counter()
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        ep.register(sock.fileno(), select.EPOLLIN)
        conns[sock.fileno()] = [sock, b"", 0]  # socket, unread bytes, messages in flight
        idle.append(sock.fileno())
    ok = j = late = 0
    refused, first, last = None, None, None
    t0, cpu0 = time.time(), time.process_time()
    while (j < len(todo) or len(idle) < len(conns)) and conns and time.time() < deadline:
        now = time.time()
        while idle and j < len(todo) and (not rate or t0 + j * k / rate <= now):
            c = conns[idle.pop()]
            request, c[2] = todo[j]
            late = max(late, now - t0 - j * k / rate) if rate else 0
            t = time.time()
            data = request.replace(STAMP, b"%.6f" % t)  # each message of a batch
            sent = c[0].send(data)
            if sent < len(data):  # rare for a few KiB on a drained socket: finish blocking
                c[0].setblocking(True)
                c[0].sendall(data[sent:])
                c[0].setblocking(False)
            first, j = first or t, j + 1
        due = t0 + j * k / rate - time.time() if rate and idle and j < len(todo) else 1.0
        for fd, _ in ep.poll(max(0.0, min(due, 1.0))):
            c = conns[fd]
            try:
                data = c[0].recv(65536)
            except OSError as exc:
                data = b""
                errors.append("publish: %s" % exc)
            if not data:  # the server closed it: what was in flight is not accepted
                errors.append("publish: the server closed a connection with %d message(s) "
                              "in flight" % c[2])
                ep.unregister(fd)
                c[0].close()
                del conns[fd]
                if fd in idle:
                    idle.remove(fd)
                continue
            done, c[1] = responses(c[1] + data)
            for status, body in done:
                statuses[status] += 1
                if status == 202:
                    ok += c[2]
                else:
                    refused = refused or body[:300].decode("utf-8", "replace").strip()
                    errors.append("publish: HTTP %d %s" % (status, refused))
                c[2], last = 0, time.time()
                idle.append(fd)
    if j < len(todo):
        errors.insert(0, "the publisher stopped after %d of %d requests (%s)" % (
            j, len(todo), "no connection left" if not conns else "deadline"))
    for c in conns.values():
        c[0].close()
    pipe.send(dict(ok=ok, requests=j, errors=errors, statuses=dict(statuses), refused=refused,
                   first=first or t0, last=last or time.time(), late_ms=late * 1000,
                   busy=(time.process_time() - cpu0) / max(time.time() - t0, 1e-9)))


WS_CAP = 200  # unanswered frames per service connection (the Python Publisher's bound too)
_ACCEPTED = (b'{"type":"published"', b'{"type":"emitted"')


def server_frames(buf, limit=None):
    """The complete (unmasked) server frames at the start of ``buf`` as (opcode,
    payload), at most ``limit`` of them, and the rest."""
    done, pos = [], 0
    while len(done) != limit:
        frame = frame_at(buf, pos)
        if frame is None:
            break
        op, start, pos = frame
        done.append((op, buf[start:pos]))
    return done, buf[pos:]


def service_connect(port, path):
    """A service connection: a blocking upgrade of ``path`` with the API key, read up to
    its ``welcome``; the socket, non-blocking, and the bytes after the welcome."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16))
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nAuthorization: Bearer %s\r\nSec-WebSocket-Key: "
                     b"%s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), port,
                                                                    KEY.encode(), key))
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the upgrade")
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101") or \
                base64.b64encode(hashlib.sha1(key + GUID).digest()) not in head:
            raise ConnectionError(head.split(b"\r\n")[0].decode("latin-1"))
        while True:
            frames, rest = server_frames(buf, 1)
            if frames:
                op, payload = frames[0]
                if op == 8:
                    raise ConnectionError("closed with code %d %s" % (
                        int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")))
                if not payload.startswith(b'{"type":"welcome"'):
                    raise ConnectionError("not a welcome first: %r" % payload[:200])
                sock.setblocking(False)
                return sock, rest
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed before the welcome")
            buf += data
    except BaseException:
        sock.close()
        raise


def stamped_frame(body):
    """A masked frame of ``body`` (which holds STAMP once) built ahead, as the bytes before
    the send time, the time's mask as an integer, and the bytes after: the time is masked
    in at send time with one XOR."""
    frame, at = masked(body), body.index(STAMP)
    start = len(frame) - len(body) + at  # the header and the mask come first
    key = frame[start - at - 4:start - at]
    k = int.from_bytes(bytes(key[(at + i) % 4] for i in range(len(STAMP))), "big")
    return frame[:start], k, frame[start + len(STAMP):]


def ws_paced_main(pipe, port, workload, m, rate, deadline, connections=PACED, base=0,
                  cap=WS_CAP):
    """paced_main over service connections: ``m`` messages numbered base…base+m-1, one
    frame each (``workload.body([n])``), from ``connections`` WebSockets to
    ``workload.path`` with the API key, on one epoll; frame j is due at j ÷ ``rate`` s
    from the start (None: at once) and goes on the next connection round robin that has
    fewer than ``cap`` frames unanswered, without waiting for replies. Replies
    ``published`` and ``emitted`` count as accepted, any other as an error; reports like
    paced_main, with ``requests`` the frames sent and ``statuses`` the replies by type."""
    pin(CLIENT_CPU)
    todo = [stamped_frame(workload.body([n])) for n in range(base, base + m)]
    ep, conns, errors, statuses = select.epoll(), {}, [], collections.Counter()
    refused = None
    for _ in range(connections):
        try:
            sock, rest = service_connect(port, workload.path)
        except OSError as exc:
            refused = refused or "service connection: %s" % exc
            errors.append("publish: %s" % refused)
            continue
        ep.register(sock.fileno(), select.EPOLLIN)
        # socket, unread bytes, bytes to send, frames unanswered, epoll mask
        conns[sock.fileno()] = [sock, rest, bytearray(), 0, select.EPOLLIN]
    ring, turn, ok, j, late, first, last = list(conns), 0, 0, 0, 0, None, None

    def drop(fd, why):
        c = conns.pop(fd)
        errors.append("publish: %s with %d frame(s) unanswered" % (why, c[3]))
        ep.unregister(fd)
        c[0].close()
        ring.remove(fd)

    def flush(fd, c):
        try:
            del c[2][:c[0].send(c[2])]
        except BlockingIOError:
            pass
        except OSError as exc:
            return drop(fd, "send: %s" % exc)
        want = select.EPOLLIN | (select.EPOLLOUT if c[2] else 0)
        if want != c[4]:
            ep.modify(fd, want)
            c[4] = want

    t0, cpu0 = time.time(), time.process_time()
    while (j < len(todo) or any(c[3] for c in conns.values())) and conns \
            and time.time() < deadline:
        now = time.time()
        while j < len(todo) and (not rate or t0 + j / rate <= now):
            for _ in range(len(ring)):  # the next connection with room
                fd, turn = ring[turn % len(ring)], turn + 1
                if conns[fd][3] < cap:
                    break
            else:
                break  # every connection has ``cap`` frames unanswered: wait for replies
            c, (head, key, tail) = conns[fd], todo[j]
            late = max(late, now - t0 - j / rate) if rate else 0
            t = time.time()
            c[2] += head + (int.from_bytes(b"%.6f" % t, "big") ^ key).to_bytes(
                len(STAMP), "big") + tail
            c[3] += 1
            first, j = first or t, j + 1
            flush(fd, c)
            if not ring:
                break
        room = j < len(todo) and any(c[3] < cap for c in conns.values())
        due = t0 + j / rate - time.time() if rate and room else 1.0
        for fd, event in ep.poll(max(0.0, min(due, 1.0))):
            c = conns.get(fd)
            if c is None:
                continue  # dropped earlier in this batch
            if event & select.EPOLLOUT:
                flush(fd, c)
                if fd not in conns or not event & (select.EPOLLIN | select.EPOLLHUP
                                                   | select.EPOLLERR):
                    continue
            try:
                data = c[0].recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                drop(fd, "recv: %s" % exc)
                continue
            if not data:
                drop(fd, "the server closed a connection")
                continue
            frames, c[1] = server_frames(c[1] + data)
            for op, payload in frames:
                if op == 9:  # a ping: pong, ahead of nothing (frames go whole)
                    c[2] += masked(payload, op=10)
                    flush(fd, c)
                elif op == 8:
                    drop(fd, "closed with code %d" % int.from_bytes(payload[:2], "big"))
                    break
                elif op == 1:
                    c[3], last = c[3] - 1, time.time()
                    if payload.startswith(_ACCEPTED):
                        ok += workload.batch
                        statuses[payload[9:payload.index(b'"', 9)].decode()] += 1
                    else:
                        text = payload[:300].decode("utf-8", "replace")
                        try:
                            reply = json.loads(payload)
                            statuses[" ".join(str(reply.get(k)) for k in ("type", "code")
                                              if k in reply)] += 1
                        except ValueError:
                            statuses["not JSON"] += 1
                        refused = refused or text
                        errors.append("publish: %s" % text)
                if fd not in conns:
                    break
    if j < len(todo):
        errors.insert(0, "the publisher stopped after %d of %d frames (%s)" % (
            j, len(todo), "no connection left" if not conns else "deadline"))
    elif any(c[3] for c in conns.values()):
        errors.insert(0, "%d frame(s) still unanswered at the deadline"
                      % sum(c[3] for c in conns.values()))
    for c in conns.values():
        c[0].close()
    pipe.send(dict(ok=ok, requests=j, errors=errors, statuses=dict(statuses), refused=refused,
                   first=first or t0, last=last or time.time(), late_ms=late * 1000,
                   busy=(time.process_time() - cpu0) / max(time.time() - t0, 1e-9)))
