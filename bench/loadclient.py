"""The load client: N raw-socket WebSocket subscribers on one epoll, run phase by phase."""
import base64
import collections
import hashlib
import json
import os
import re
import select
import socket
import time

from procs import CHANNEL, CLIENT_CPU, SERVERS, pin, raise_nofile

IN_FLIGHT = 64  # gevent listens with backlog 128; overflowing it costs a 1 s SYN retry per socket
IDLE_DRAIN = 5.0  # once all is published, give up on the rest after this long without a delivery
STALL = 10.0  # connecting ends when no handshake finished for this long (a server at its limit)
SLOW_DRAIN = 3.0  # for the stopped subscribers to show, once read again, how the server left them
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# The server encodes compactly in a fixed key order, so id, t and n are found without
# json.loads, which would otherwise be most of the client's cost per delivery.
# t and n are the data's last keys: first for a publish, after notify's own keys for a
# rule's message, and strings there, as a rule's templates render them.
MESSAGE = re.compile(rb'\{"type":"message","id":(\d+),.*?"t":"?([-0-9.eE+]+)"?,"n":"?(\d+)"?\}')
# The peer, Flask-SocketIO: an Engine.IO v4 message packet (4) carrying a Socket.IO event
# (2), encoded by python-socketio with compact separators; the data's keys keep their order.
SIO_MESSAGE = re.compile(rb'42\["message",\{"t":([-0-9.eE+]+),"n":(\d+)\}\]')


def source_addresses(count):
    """127.0.0.1 … 127.0.0.count: each has its own ~28,000 ephemeral ports towards the server."""
    return ["127.0.0.%d" % k for k in range(1, count + 1)]


class Sub:
    """One subscriber socket. state: 0 TCP connecting, 1 HTTP upgrade, 2 WebSocket, 3 ready.
    ``got``: for the peer, which has no message ids, one byte per message number n of the
    phase; ``count``: this phase's deliveries; ``slow``: it stopped reading; ``index``: its
    place in connect order, which makes it user u<index> in targeted mode."""
    __slots__ = ("sock", "buf", "state", "accept", "seen", "last_id", "got", "count", "slow",
                 "index")

    def __init__(self, port, address, index):
        self.sock, self.buf, self.state, self.seen, self.last_id = socket.socket(), b"", 0, 0, 0
        self.got, self.count, self.slow, self.index = bytearray(), 0, False, index
        try:
            self.sock.setblocking(False)
            self.sock.bind((address, 0))  # the port is the kernel's choice, per address
        except OSError:
            self.sock.close()
            raise
        self.sock.connect_ex(("127.0.0.1", port))  # EINPROGRESS; EPOLLOUT tells when done


def masked(payload, mask=None, op=1):
    """A masked client frame (text unless ``op``), with ``mask`` or a random one: RFC 6455
    requires it, and servers close on unmasked ones."""
    mask, n = mask or os.urandom(4), len(payload)
    size = bytes([0x80 | n]) if n < 126 else bytes([0xFE]) + n.to_bytes(2, "big") \
        if n < 65536 else bytes([0xFF]) + n.to_bytes(8, "big")
    return bytes([0x80 | op]) + size + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))


def frame_at(buf, pos):
    """(opcode, payload start, end) of the server frame (unmasked) at ``pos`` in ``buf``,
    or None when it is not complete there."""
    size = len(buf)
    if size - pos < 2:
        return None
    ln, hl = buf[pos + 1] & 127, 2
    if ln >= 126:
        hl = 4 if ln == 126 else 10
        if size - pos < hl:
            return None
        ln = int.from_bytes(buf[pos + 2:pos + hl], "big")
    if pos + hl + ln > size:
        return None
    return buf[pos] & 15, pos + hl, pos + hl + ln


class LoadClient:
    """The subscribers and their figures. With ``server`` "socketio" it speaks Engine.IO v4
    / Socket.IO 5 over the raw WebSocket: open packet ``0{...}``, namespace connect ``40``
    answered by ``40{...}``, events as ``42["message",{...}]``, and a pong ``3`` for every
    ping ``2`` of the server, between phases too.

    Targeted mode (``paths``: each subscriber's WebSocket path, by connect order): subscriber
    i is user u<i>, alone on its channel (rulecast: ``user:u<i>`` from its token, which its
    welcome must list; the peer: room ``u<i>``), and message number n is for subscriber
    n mod N only: a delivery elsewhere is misrouted, and each n counts once in the phase."""

    def __init__(self, pipe, port, server, addresses, paths=None):
        self.pipe, self.port, self.addresses = pipe, port, source_addresses(addresses)
        self.ep, self.subs, self.commands = select.epoll(), {}, []
        self.ep.register(pipe.fileno(), select.EPOLLIN)  # the orchestrator's word wakes the loop
        self.sio, self.ws_path = server == "socketio", SERVERS[server]["ws"]
        self.subscribe = masked(json.dumps({"type": "subscribe", "channel": CHANNEL}).encode())
        self.sio_connect, self.sio_pong = masked(b"40"), masked(b"3")
        self.paths, self.targeted = paths, paths is not None
        self.ready = self.failed = self.pings = self.stale = 0
        # Subscribers taken off the epoll: they stopped reading.
        self.why, self.unwatched, self.slow_codes = "", set(), {}
        self.new_phase(0, 0)

    def new_phase(self, base, messages):
        """Forget the last phase's figures; this one's messages are numbered base…base+messages-1."""
        self.base, self.messages, self.lat, self.codes = base, messages, [], collections.Counter()
        self.received = self.gone_received = self.dup = self.errors = self.misrouted = 0
        self.slow_received, self.last = 0, 0.0
        self.got = bytearray(messages if self.targeted else 0)  # each n once, phase-wide
        for s in self.subs.values():
            s.count = 0
            if self.sio and s.state == 3 and not s.slow and not self.targeted:
                s.got = bytearray(messages)

    def drop(self, fd, s, why):
        """Close ``s``; ``why``: the close code of the server's close frame, or the reason."""
        if s.state < 3:
            self.failed += 1
            self.why = self.why or (
                "closed by the server with code %d" % why if isinstance(why, int) else why)
        else:
            self.codes[str(why)] += 1
            self.ready -= 1
            if not s.slow:
                self.gone_received += s.count
        if fd not in self.unwatched:
            self.ep.unregister(fd)
        self.unwatched.discard(fd)
        s.sock.close()
        del self.subs[fd]

    def deliver(self, s, n, t, now):
        k = n - self.base
        if k < 0:
            self.stale += 1  # late from an earlier phase
        elif self.targeted and (k >= len(self.got) or self.got[k]):
            self.dup += 1
        elif self.targeted and n % len(self.paths) != s.index:
            self.misrouted += 1
        elif s.slow:
            s.count += 1
            self.slow_received += 1
        else:
            if self.targeted:
                self.got[k] = 1
            s.count += 1
            self.received, self.last = self.received + 1, now
            self.lat.append(now - t)

    def frames(self, fd, s, buf, now):
        pos = 0
        while True:
            frame = frame_at(buf, pos)
            if frame is None:
                break
            op, start, pos = frame
            if op == 8:
                code = int.from_bytes(buf[start:start + 2], "big") if pos - start >= 2 \
                    else 1005
                return self.drop(fd, s, code)
            if op != 1:
                continue
            if self.sio:
                m = SIO_MESSAGE.match(buf, start, pos)
                if m and self.targeted:  # deliver() tells duplicates by n, phase-wide
                    self.deliver(s, int(m.group(2)), float(m.group(1)), now)
                    continue
                if m:  # no ids: the message number n, once per connection
                    n, k = int(m.group(2)), int(m.group(2)) - self.base
                    if k < 0 or k >= len(s.got) or not s.got[k]:
                        if 0 <= k < len(s.got):
                            s.got[k] = 1
                        self.deliver(s, n, float(m.group(1)), now)
                    else:
                        self.dup += 1
                    continue
                packet = buf[start:pos]
                if packet == b"2":  # Engine.IO ping: without a pong the server disconnects
                    s.sock.send(self.sio_pong)
                    self.pings += 1
                elif packet[:1] == b"0" and s.state == 2:  # open: connect to namespace /
                    s.sock.send(self.sio_connect)
                elif packet[:2] == b"40" and s.state == 2:  # joined room "bench" already
                    s.state, self.ready = 3, self.ready + 1
                    s.got = bytearray(self.messages)
                elif packet[:1] == b"1" or packet[:2] in (b"41", b"44"):
                    self.errors += packet[:2] == b"44"
                    return self.drop(fd, s, "server sent %r" % packet[:80])
                continue
            m = MESSAGE.match(buf, start, pos)
            # Ids, not n: with parallel publishers the server may number them in another
            # order than n, but it promises each connection increasing ids.
            if m and self.targeted:
                self.deliver(s, int(m.group(3)), float(m.group(2)), now)
            elif m and int(m.group(1)) > s.last_id:
                s.last_id = int(m.group(1))
                self.deliver(s, int(m.group(3)), float(m.group(2)), now)
            elif m:
                self.dup += 1
            else:
                frame = json.loads(buf[start:pos])
                kind = frame.get("type")
                if kind == "welcome" and self.targeted:
                    mine = "user:u%d" % s.index
                    if mine not in frame.get("channels", ()):
                        return self.drop(fd, s, "welcome without %s: %r" % (mine, frame))
                    s.seen |= 2  # subscribed at connect: no subscribe frame to wait for
                s.seen |= {"welcome": 1, "subscribed": 2}.get(kind, 0)
                self.errors += kind == "error"
                if s.state == 2 and s.seen == 3:
                    s.state, self.ready = 3, self.ready + 1
        s.buf = buf[pos:]

    def pump(self, timeout):
        events = self.ep.poll(timeout, 1000)
        # A delivery's time is when epoll said its socket was readable: the frame had
        # arrived by then. Reading the sockets before it in the batch is the client's
        # own cost, which would otherwise add up to ~10 ms per 1,000 subscribers.
        now = time.time()
        for fd, _ in events:
            s = self.subs.get(fd)
            if fd == self.pipe.fileno():
                self.commands.append(self.pipe.recv())
            elif s and s.state == 0:  # connected or refused: send the upgrade request
                err = s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.drop(fd, s, os.strerror(err))
                    continue
                key = base64.b64encode(os.urandom(16))
                s.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                path = self.paths[s.index] if self.targeted else self.ws_path
                s.sock.send(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: "
                            b"websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                            b"Sec-WebSocket-Version: 13\r\n\r\n" % (path, self.port, key))
                self.ep.modify(fd, select.EPOLLIN)
                s.state = 1
            elif s:
                why = "EOF"  # the server closed the TCP connection without a close frame
                try:
                    data = s.sock.recv(65536)  # more is malloc'd with mmap: page faults per read
                except OSError as exc:
                    data, why = b"", os.strerror(exc.errno) if exc.errno else str(exc)
                buf, end = s.buf + data, 0
                if s.state == 1 and data:
                    end = buf.find(b"\r\n\r\n") + 4
                    if end < 4:
                        s.buf = buf
                        continue
                    why = buf[:end].split(b"\r\n")[0].decode("latin-1")
                    if buf.startswith(b"HTTP/1.1 101") and s.accept in buf[:end]:
                        if not self.sio and not self.targeted:  # the peer's: open packet first
                            s.sock.send(self.subscribe)
                        s.state = 2
                if s.state < 2 or not data:
                    self.drop(fd, s, why)
                    continue
                self.frames(fd, s, buf[end:] if end else buf, now)

    def connect(self, n, deadline, until_failure):
        """Opens ``n`` subscribers, round robin over the source addresses, at most IN_FLIGHT
        handshakes at a time; with ``until_failure``, stops opening at the first failure.
        Returns the connect report."""
        opened, t0, progress, stalled = 0, time.time(), 0, time.time()
        cpu0 = time.process_time()
        while self.ready + self.failed < opened or opened < n:
            if time.time() > deadline or time.time() - stalled > STALL:
                self.why = self.why or "%s after %.0f s, %d handshakes unfinished" % (
                    "time limit" if time.time() > deadline else "no progress for %d s" % STALL,
                    time.time() - t0, opened - self.ready - self.failed)
                break
            while opened < min(n, self.ready + self.failed + IN_FLIGHT) and not (
                    until_failure and self.failed):
                try:
                    s = Sub(self.port, self.addresses[opened % len(self.addresses)], opened)
                except OSError as exc:  # EMFILE (RLIMIT_NOFILE), EADDRINUSE (ports used up)
                    self.failed, self.why = self.failed + 1, self.why or "socket: %s" % exc
                    n = opened  # no more sockets: wait for those in flight
                    break
                self.subs[s.sock.fileno()] = s
                self.ep.register(s.sock.fileno(), select.EPOLLOUT)
                opened += 1
            if until_failure and self.failed:
                n = opened
            self.pump(0.05)
            if self.ready + self.failed > progress:
                progress, stalled = self.ready + self.failed, time.time()
        wall = time.time() - t0
        return dict(connect_s=wall, ready=self.ready, failed=self.failed, why=self.why,
                    busy=(time.process_time() - cpu0) / max(wall, 1e-9))

    def phase(self, base, messages, slow, deadline):
        """Stops ``slow`` ready subscribers reading (spread over them), says "started", takes
        the publisher's count of accepted messages, waits for everyone reading to get them
        (or IDLE_DRAIN without a delivery), says "done", lets the stopped ones read again for
        up to SLOW_DRAIN and sends this phase's figures."""
        self.new_phase(base, messages)
        ready = [(fd, s) for fd, s in self.subs.items() if s.state == 3 and not s.slow]
        stopped = ready[::max(1, len(ready) // slow)][:slow] if slow else []
        for fd, s in stopped:
            s.slow = True  # unregistered, the kernel's buffers fill and the server must act
            self.ep.unregister(fd)
            self.unwatched.add(fd)
        reading = len(ready) - len(stopped)
        self.pipe.send("started")
        cpu0, wall0, accepted = time.process_time(), time.time(), None
        while time.time() < deadline:
            self.pump(0.1)
            if accepted is None and self.commands:
                accepted = self.commands.pop(0)
            # Targeted, each accepted message is one delivery; else one per reader left.
            fan = 1 if self.targeted else reading - sum(self.codes.values())
            if accepted is not None and (
                    self.received - (0 if self.targeted else self.gone_received)
                    >= accepted * fan
                    or time.time() - max(self.last, wall0) > IDLE_DRAIN):
                break
        busy = (time.process_time() - cpu0) / (time.time() - wall0)
        self.pipe.send("done")  # before the slow drain, so the server's CPU window ends here
        codes = dict(self.codes)
        slow_open = self.drain_slow([fd for fd, _ in stopped], accepted or 0)
        self.lat.sort()
        lat = self.lat
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0
        expected = (accepted or 0) * (1 if self.targeted else reading)
        self.pipe.send(dict(
            reading=reading, received=self.received, expected=expected,
            lost=expected - self.received, duplicates=self.dup, misrouted=self.misrouted,
            closed=sum(codes.values()), codes=codes, error_frames=self.errors, pings=self.pings,
            stale=self.stale, busy=busy, last=self.last, p50=q(0.50), p99=q(0.99), max=q(1.0),
            slow=len(stopped), slow_open=slow_open, slow_closed=len(stopped) - slow_open,
            slow_codes=self.slow_codes, slow_received=self.slow_received, open=self.ready))

    def drain_slow(self, fds, accepted):
        """Reads the stopped subscribers again until each is closed or has all ``accepted``
        messages, or SLOW_DRAIN passed; they stay stopped for later phases.
        Returns how many are still open. Their closes land in ``codes`` after the reading
        subscribers' were counted."""
        self.slow_codes = {}
        if not fds:
            return 0
        self.codes = collections.Counter()
        for fd in fds:
            self.ep.register(fd, select.EPOLLIN)
            self.unwatched.discard(fd)
        end = time.time() + SLOW_DRAIN
        while time.time() < end and any(
                fd in self.subs and self.subs[fd].count < accepted for fd in fds):
            self.pump(0.1)
        for fd in fds:
            if fd in self.subs:
                self.ep.unregister(fd)
                self.unwatched.add(fd)
        self.slow_codes = dict(self.codes)
        return sum(fd in self.subs for fd in fds)

    def serve(self, deadline):
        """Answers the orchestrator until it says "quit": ("phase", base, messages, slow) or
        ("count",) for the subscribers still open."""
        while time.time() < deadline:
            self.pump(0.1)
            while self.commands:
                command = self.commands.pop(0)
                if command[0] == "quit":
                    return
                if command[0] == "count":
                    self.pipe.send(dict(open=self.ready, codes=dict(self.codes), why=self.why))
                elif command[0] == "phase":
                    self.phase(*command[1:], deadline)


def client_main(pipe, port, n, deadline, server="rulecast", addresses=1, until_failure=False,
                connect_seconds=None, paths=None):
    """The load client's process: connects ``n`` subscribers from ``addresses`` source
    addresses (for at most ``connect_seconds``; ``paths``: targeted mode, see LoadClient),
    reports, then runs the orchestrator's phases until ``deadline``."""
    pin(CLIENT_CPU)
    nofile = raise_nofile()
    client = LoadClient(pipe, port, server, addresses, paths)
    report = client.connect(n, min(deadline, time.time() + connect_seconds) if connect_seconds
                            else deadline, until_failure)
    pipe.send(dict(report, nofile=nofile))
    client.serve(deadline)
