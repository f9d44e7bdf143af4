"""Fan-out benchmark: N raw-socket subscribers on one topic, a publisher, server cost;
against rulecast, or against its peer Flask-SocketIO (bench/peer_socketio.py)."""
import argparse
import base64
import ctypes
import hashlib
import http.client
import itertools
import json
import multiprocessing as mp
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY, CHANNEL, SERVER_CPU, CLIENT_CPU = "bench-key", "topic:bench", 0, 1
RUN_SECONDS = 60  # overall deadline of one run: start, connect, publish, drain
IDLE_DRAIN = 5.0  # once all is published, give up on the rest after this long without a delivery
IN_FLIGHT = 64  # gevent listens with backlog 128; overflowing it costs a 1 s SYN retry per socket
PUBLISHERS = 4  # keep-alive publisher connections in parallel in throughput mode
START_SECONDS = 20  # for the server to listen and, with workers, for all of them to report
STOP_SECONDS = 30  # for the server to stop politely (a supervisor stops workers, then sequencer)
MAX_PROCS = 256  # bound on the server's process tree walk
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# The server encodes compactly in a fixed key order, so id, t and n are found without
# json.loads, which would otherwise be most of the client's cost per delivery.
MESSAGE = re.compile(rb'\{"type":"message","id":(\d+),.*?"data":\{"t":([-0-9.eE+]+),"n":(\d+)\}')
PROBLEM = re.compile(r"ERROR|CRITICAL|Traceback|WARNING")
# The peer, Flask-SocketIO: an Engine.IO v4 message packet (4) carrying a Socket.IO event
# (2), encoded by python-socketio with compact separators; the data's keys keep their order.
SIO_MESSAGE = re.compile(rb'42\["message",\{"t":([-0-9.eE+]+),"n":(\d+)\}\]')
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_socketio.py")
# Per server: WebSocket path, health check path, publish path, publish body.
SERVERS = {
    "rulecast": dict(ws=b"/rulecast/ws", health="/rulecast/healthz",
                     publish="/rulecast/api/publish",
                     body=lambda t, i: {"channel": CHANNEL, "data": {"t": t, "n": i}}),
    "socketio": dict(ws=b"/socket.io/?EIO=4&transport=websocket", health="/healthz",
                     publish="/publish", body=lambda t, i: {"data": {"t": t, "n": i}}),
}


def raise_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass  # an unlimited hard limit is refused as a soft one: keep the soft limit


_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def server_preexec():
    """In the server's process before exec: more descriptors, and SIGTERM when the bench
    dies, even by SIGKILL (a test's timeout), so the server never outlives it."""
    raise_nofile()
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def pin(cpu):
    """Run on ``cpu`` only; for the bench's own children, and die with the bench."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass  # a one-CPU machine: measure anyway; the busy shares show the contention


# -- the server's processes -------------------------------------------------------------

def proc_stats(pid):
    """(utime + stime in seconds, VmRSS in KiB) of process ``pid``; None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()  # fields 14, 15 after a name with spaces
        with open("/proc/%d/status" % pid) as f:
            rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    except (OSError, IndexError, ValueError):
        return None
    if fields[0] == "Z":
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), rss


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def process_tree(pid):
    """``pid`` and all its descendants, from the ``children`` file of each of their threads
    (/proc/PID/task/TID/children), parents first; at most MAX_PROCS of them."""
    found, todo = [], [pid]
    while todo and len(found) < MAX_PROCS:
        p = todo.pop(0)
        if p in found:
            continue
        found.append(p)
        try:
            tids = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    todo += [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                pass
    return found


def sample(pids):
    """{pid: (cpu s, rss KiB) or None} for ``pids``."""
    return {p: proc_stats(p) for p in pids}


def group_members(pgid):
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(name))
    return members


def log_problems(path):
    """The server log's WARNING/ERROR lines, each traceback as its last line (the error)."""
    problems, in_traceback = [], False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip()
            if in_traceback and line and not line[0].isspace():
                problems.append("Traceback: " + line)
                in_traceback = False
            if line.startswith("Traceback"):
                in_traceback = True
            elif not in_traceback and PROBLEM.search(line):
                problems.append(line)
    return problems


def http_get(port, path, timeout=2.0):
    """(status, body bytes) of a GET on the server; (None, error text) when it failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException) as exc:
        return None, str(exc)
    finally:
        conn.close()


def start_server(tmp, workers, messages, server="rulecast", nagle=False):
    """A `rulecast serve --workers N` (or, with ``server`` "socketio", the Flask-SocketIO
    peer, one process) on a free port, in its own session (so its whole process tree can
    be killed as one group), pinned to SERVER_CPU only when N == 1; returns (Popen, port,
    {pid: role}) once it answers and, with N > 1, all N workers report alive in /healthz."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if server == "socketio":
        workers = 1
        cmd = [sys.executable, PEER, "--port", str(port)] + ["--nagle"] * nagle
    else:
        cmd = None
    # The queue and history bounds sit above the run's message count: the load client
    # never resumes, so a 1013 close or a pruned gap would read as loss, not as a bug.
    with open(os.path.join(tmp, "rulecast.yaml"), "w") as f:
        json.dump({"secret": "bench-secret-0123456789", "api_keys": [KEY], "rules": [],
                   "public_topics": ["bench*"],
                   "history": {"max_per_channel": max(1000, 2 * messages + 1000)},
                   "limits": {"max_connections": 50000,
                              "send_queue": max(10000, messages + 1000)}}, f)  # JSON is YAML
    cmd = cmd or [sys.executable, "-m", "rulecast", "serve", "--config", "rulecast.yaml",
                  "--listen", "127.0.0.1:%d" % port, "--workers", str(workers)]
    if workers == 1 and shutil.which("taskset"):  # taskset execs: the PID is the server's
        cmd = ["taskset", "-c", str(SERVER_CPU)] + cmd
    with open(os.path.join(tmp, "server.log"), "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=ROOT),
                                preexec_fn=server_preexec, start_new_session=True)
    why, end = "", time.time() + START_SECONDS
    try:
        while time.time() < end and proc.poll() is None:
            time.sleep(0.05)
            status, body = http_get(port, SERVERS[server]["health"])
            if status != 200:
                why = "healthz: %s" % (status or body)
                continue
            health = json.loads(body)
            roles = {proc.pid: "server" if workers == 1 else "supervisor"}
            alive = [w for w in health.get("workers", ()) if w.get("alive")]
            if workers > 1 and len(alive) < workers:
                why = "healthz: %d of %d workers alive" % (len(alive), workers)
                continue
            roles.update((w["pid"], "worker-%d" % w["worker"]) for w in alive)
            return proc, port, roles
    except BaseException:
        stop_server(proc)
        raise
    stop_server(proc)
    with open(os.path.join(tmp, "server.log"), errors="replace") as f:
        raise RuntimeError("server did not start (%s):\n%s" % (why or "exited", f.read()))


def stop_server(proc):
    """SIGTERM to the server (a supervisor then stops its workers and its sequencer), and
    SIGKILL to whatever of its process group is still there after that; returns the
    members that had to be killed."""
    pgid = proc.pid  # start_new_session: the server leads its own process group
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    left = group_members(pgid)
    try:
        os.killpg(pgid, signal.SIGKILL)  # the leader too, if it did not stop in time
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        left.append(proc.pid)
    return left


# -- the load client ----------------------------------------------------------------------

class Sub:
    """One subscriber socket. state: 0 TCP connecting, 1 HTTP upgrade, 2 WebSocket, 3 ready.
    ``got``: for the peer, which has no message ids, one byte per message number n."""
    __slots__ = ("sock", "buf", "state", "accept", "seen", "last_id", "got")

    def __init__(self, port, messages=0):
        self.sock, self.buf, self.state, self.seen, self.last_id = socket.socket(), b"", 0, 0, 0
        self.got = bytearray(messages)
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))  # EINPROGRESS; EPOLLOUT tells when done


def masked(payload):
    """A masked client text frame: RFC 6455 requires it, and servers close on unmasked ones."""
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))


def client_main(pipe, port, n, deadline, server="rulecast", messages=0):
    """The load client: N subscribers on one epoll; reports through ``pipe``. With
    ``server`` "socketio" it speaks Engine.IO v4 / Socket.IO 5 over the raw WebSocket:
    open packet ``0{...}``, namespace connect ``40`` answered by ``40{...}``, events as
    ``42["message",{...}]``, and a pong ``3`` for every ping ``2`` of the server."""
    pin(CLIENT_CPU)
    ep, subs, lat, pfd = select.epoll(), {}, [], pipe.fileno()
    ep.register(pfd, select.EPOLLIN)  # the orchestrator's word wakes the same loop
    st = dict(ready=0, failed=0, received=0, dup=0, closed=0, errors=0, last=0.0, why="",
              pings=0)
    sio, ws_path = server == "socketio", SERVERS[server]["ws"]
    subscribe = masked(json.dumps({"type": "subscribe", "channel": CHANNEL}).encode())
    sio_connect, sio_pong = masked(b"40"), masked(b"3")
    expect = []

    def drop(fd, s, why):
        st["failed" if s.state < 3 else "closed"] += 1
        st["why"] = st["why"] or why
        ep.unregister(fd)
        s.sock.close()
        del subs[fd]

    def frames(fd, s, buf, now):
        pos, size = 0, len(buf)
        while size - pos >= 2:
            op, ln, hl = buf[pos] & 15, buf[pos + 1] & 127, 2  # server frames are unmasked
            if ln >= 126:
                hl = 4 if ln == 126 else 10
                if size - pos < hl:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + hl], "big")
            if pos + hl + ln > size:
                break
            start, pos = pos + hl, pos + hl + ln
            if sio:
                if op != 1:
                    if op == 8:
                        return drop(fd, s, "server closed with %r" % buf[start:pos][:80])
                    continue
                m = SIO_MESSAGE.match(buf, start, pos)
                if m:  # no ids: the message number n, once per connection
                    k = int(m.group(2))
                    if k < len(s.got) and not s.got[k]:
                        s.got[k], st["received"], st["last"] = 1, st["received"] + 1, now
                        lat.append(now - float(m.group(1)))
                    else:
                        st["dup"] += 1
                    continue
                packet = buf[start:pos]
                if packet == b"2":  # Engine.IO ping: without a pong the server disconnects
                    s.sock.send(sio_pong)
                    st["pings"] += 1
                elif packet[:1] == b"0" and s.state == 2:  # open: connect to namespace /
                    s.sock.send(sio_connect)
                elif packet[:2] == b"40" and s.state == 2:  # joined room "bench" already
                    s.state, st["ready"] = 3, st["ready"] + 1
                elif packet[:1] == b"1" or packet[:2] in (b"41", b"44"):
                    st["errors"] += packet[:2] == b"44"
                    return drop(fd, s, "server sent %r" % packet[:80])
                continue
            m = MESSAGE.match(buf, start, pos)
            # Ids, not n: with parallel publishers the server may number them in another
            # order than n, but it promises each connection increasing ids.
            if m and int(m.group(1)) > s.last_id:
                s.last_id, st["received"], st["last"] = int(m.group(1)), st["received"] + 1, now
                lat.append(now - float(m.group(2)))
            elif m:
                st["dup"] += 1
            elif op == 8:
                return drop(fd, s, "server closed with %r" % buf[start:pos][:80])
            elif op == 1:
                kind = json.loads(buf[start:pos]).get("type")
                s.seen |= {"welcome": 1, "subscribed": 2}.get(kind, 0)
                st["errors"] += kind == "error"
                if s.state == 2 and s.seen == 3:
                    s.state, st["ready"] = 3, st["ready"] + 1
        s.buf = buf[pos:]

    def pump(timeout):
        for fd, _ in ep.poll(timeout, 1000):
            s = subs.get(fd)
            if fd == pfd:
                expect.append(pipe.recv())
            elif s and s.state == 0:  # connected or refused: send the upgrade request
                err = s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    drop(fd, s, os.strerror(err))
                    continue
                key = base64.b64encode(os.urandom(16))
                s.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                s.sock.send(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: "
                            b"websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                            b"Sec-WebSocket-Version: 13\r\n\r\n" % (ws_path, port, key))
                ep.modify(fd, select.EPOLLIN)
                s.state = 1
            elif s:
                why = "server closed the TCP connection"
                try:
                    data = s.sock.recv(65536)  # more is malloc'd with mmap: page faults per read
                except OSError as exc:
                    data, why = b"", str(exc)
                buf, end = s.buf + data, 0
                if s.state == 1 and data:
                    end = buf.find(b"\r\n\r\n") + 4
                    if end < 4:
                        s.buf = buf
                        continue
                    why = buf[:end].split(b"\r\n")[0].decode("latin-1")
                    if buf.startswith(b"HTTP/1.1 101") and s.accept in buf[:end]:
                        if not sio:  # the peer's client waits for the open packet
                            s.sock.send(subscribe)
                        s.state = 2
                if s.state < 2 or not data:
                    drop(fd, s, why)
                    continue
                frames(fd, s, buf[end:] if end else buf, time.time())

    opened, t0 = 0, time.time()
    while st["ready"] + st["failed"] < n and time.time() < deadline:
        while opened < min(n, st["ready"] + st["failed"] + IN_FLIGHT):
            s = Sub(port, messages if sio else 0)
            subs[s.sock.fileno()] = s
            ep.register(s.sock.fileno(), select.EPOLLOUT)
            opened += 1
        pump(0.05)
    pipe.send((time.time() - t0, st["ready"], st["why"]))
    if pipe.recv() != "go":  # the orchestrator has read the server's RSS and CPU
        return
    cpu0, wall0 = time.process_time(), time.time()
    while time.time() < deadline and subs:
        pump(0.1)
        if expect and (st["received"] >= expect[0] or
                       time.time() - max(st["last"], wall0) > IDLE_DRAIN):
            break
    busy = (time.process_time() - cpu0) / (time.time() - wall0)
    pipe.send("done")  # before the sums below, so the server's CPU window ends here
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0
    pipe.send(dict(st, busy=busy, p50=q(0.50), p99=q(0.99), max=q(1.0)))


def publisher_main(pipe, port, m, rate, deadline, connections, server="rulecast"):
    """POSTs ``m`` messages, numbered n = 0…m-1, on ``connections`` keep-alive connections
    (one thread each, taking the next n as soon as its previous publish was answered),
    paced at ``rate``/s overall, or as fast as the server answers when ``rate`` is None;
    reports what it did."""
    pin(CLIENT_CPU)  # CPU 0 stays the server's alone (with one worker)
    headers = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    numbers, t0, done = itertools.count(), time.time(), []
    path, body = SERVERS[server]["publish"], SERVERS[server]["body"]

    def publish():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        ok, errors, first, last = 0, [], None, None
        while True:  # bounded: every thread stops once n reaches m
            i = next(numbers)
            if i >= m:
                break
            if rate:  # when behind, at once: pub/s shows it
                time.sleep(max(0.0, t0 + i / rate - time.time()))
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
                   first=min(firsts), last=max(lasts)))


# -- one run ---------------------------------------------------------------------------------

def wait_for(pipe, deadline, what):
    if not pipe.poll(max(0.0, deadline - time.time())):
        raise TimeoutError("no %s before the deadline" % what)
    return pipe.recv()


def bus_metrics(port, workers):
    """(messages refilled from the store, 1013 closes) summed over the workers' /metrics."""
    if workers > 1:
        time.sleep(1.1)  # each worker rewrites its figures for the others every second
    status, body = http_get(port, "/rulecast/metrics", timeout=5)
    sums = dict.fromkeys(("rulecast_gaps_repaired_total", "rulecast_slow_consumer_closes_total"))
    if status != 200:
        return None, None
    for line in body.decode("utf-8", "replace").splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            sums[name] = (sums[name] or 0) + float(line.rsplit(" ", 1)[1])
    return tuple(sums.values())


def run_once(n, cfg):
    """One run with ``n`` subscribers; ``cfg``: server, workers, mode, messages, rate."""
    deadline, ctx = time.time() + RUN_SECONDS, mp.get_context("fork")
    tmp, proc, kids, problems, notes = tempfile.mkdtemp(prefix="rulecast-bench-"), None, [], [], []
    throughput, server = cfg.mode == "throughput", getattr(cfg, "server", "rulecast")

    def spawn(target, *a):
        mine, theirs = ctx.Pipe()
        kids.append(ctx.Process(target=target, args=(theirs, port) + a, daemon=True))
        kids[-1].start()
        return mine

    try:
        proc, port, roles = start_server(tmp, cfg.workers, cfg.messages, server,
                                         getattr(cfg, "peer_nagle", False))
        pids = process_tree(proc.pid)
        rss0 = sum(s[1] for s in sample(pids).values() if s)
        fds0 = {p: fd_count(p) for p in pids}
        client = spawn(client_main, n, deadline, server, cfg.messages)
        connect_s, ready, why = wait_for(client, deadline + 5, "connect report")
        # The publish phase starts: the whole tree again, in case a process was restarted.
        pids = process_tree(proc.pid)
        before = sample(pids)
        conns = {p: fd_count(p) - fds0.get(p, 0) for p in pids}
        rss1 = sum(s[1] for s in before.values() if s)
        client.send("go" if ready else "stop")
        if not ready:
            raise RuntimeError("no subscriber got through: %s" % why)
        sent = wait_for(spawn(publisher_main, cfg.messages, None if throughput else cfg.rate,
                              deadline, PUBLISHERS if throughput else 1, server),
                        deadline + 15, "publisher report")
        client.send(ready * sent["ok"])
        wait_for(client, deadline + 5, "end of deliveries")
        after, wall = sample(pids), time.time() - sent["first"]
        born = sorted(set(process_tree(proc.pid)) - set(pids))
        if born:
            notes.append("server process(es) %s started during the publish phase (a restart?): "
                         "their CPU is missing" % born)
        got = wait_for(client, deadline + 30, "client figures")
        refilled, slow_closes = (bus_metrics(port, cfg.workers) if server == "rulecast"
                                 else (None, None))
        if sent["ok"] + len(sent["errors"]) < cfg.messages:
            sent["errors"].insert(0, "the %d s deadline stopped the publisher after %d messages"
                                  % (RUN_SECONDS, sent["ok"] + len(sent["errors"])))
    except BaseException:
        if proc:
            with open(os.path.join(tmp, "server.log"), errors="replace") as f:
                tail = f.readlines()[-20:]
            print("run failed; the end of the server's log:\n" + "".join(tail), file=sys.stderr)
        raise
    finally:
        for kid in kids:
            kid.terminate()
            kid.join(5)
        if proc:
            killed = stop_server(proc)
            if killed:
                notes.append("server processes %s were still running after the server's "
                             "stop and were killed" % killed)
            problems = log_problems(os.path.join(tmp, "server.log"))
        shutil.rmtree(tmp, ignore_errors=True)
    gone = sorted(p for p in pids if not before[p] or not after[p])
    if gone:
        notes.append("server process(es) %s ended before or during the publish phase: "
                     "their CPU is missing" % gone)
    # Per process, by role: busy share over the publish phase and connections taken
    # (growth of its open descriptors while the subscribers connected).
    procs = [dict(role=roles.get(p, "sequencer" if cfg.workers > 1 else "child"), pid=p,
                  busy=(after[p][0] - before[p][0]) / wall, conns=conns.get(p, 0))
             for p in pids if before[p] and after[p]]
    cpu = sum(p["busy"] for p in procs) * wall
    expected = ready * sent["ok"]
    return dict(subscribers=n, server=server, workers=cfg.workers, mode=cfg.mode,
                messages=cfg.messages, pings_answered=got["pings"],
                connect_s=connect_s,
                failed_connects=n - ready,
                publish_rate=(sent["ok"] - (0 if throughput else 1))
                / max(sent["last"] - sent["first"], 1e-9),
                published=sent["ok"], publish_errors=len(sent["errors"]),
                deliveries=got["received"], lost=n * cfg.messages - got["received"],
                undelivered=expected - got["received"], duplicates=got["dup"],
                closed_by_server=got["closed"], error_frames=got["errors"],
                deliveries_per_s=got["received"] / max(got["last"] - sent["first"], 1e-9),
                drain_ms=max(0.0, got["last"] - sent["last"]) * 1000,
                p50_ms=got["p50"], p99_ms=got["p99"], max_ms=got["max"],
                cpu_us_per_delivery=cpu * 1e6 / max(got["received"], 1),
                server_busy=cpu / wall, rss_kib_per_conn=(rss1 - rss0) / n,
                client_busy=got["busy"], server_log_problems=len(problems),
                refilled=refilled, slow_closes=slow_closes, procs=procs,
                notes=sorted(({why or got["why"]} | set(sent["errors"][:1]) | set(problems[:3])
                              | set(notes)) - {""}))


def loss_report(r):
    """A loud line when deliveries are missing or repeated, else None."""
    if r["lost"] <= 0 and r["duplicates"] <= 0:
        return None
    return ("!!! LOST %d of %d deliveries (%d subscribers failed to connect, %d publishes "
            "failed, %d accepted messages' deliveries never arrived, %d duplicates, %d "
            "connections closed by the server): a loss is a bug, see the notes"
            % (r["lost"], r["subscribers"] * r["messages"],
               r["failed_connects"], r["publish_errors"], r["undelivered"], r["duplicates"],
               r["closed_by_server"]))


# -- output -------------------------------------------------------------------------------

COLUMNS = [("subs", "subscribers", "%d"), ("connect s", "connect_s", "%.2f"),
           ("pub/s", "publish_rate", "%.1f"), ("deliv/s", "deliveries_per_s", "%.0f"),
           ("msg/s out", "messages_out", "%.1f"),
           ("p50 ms", "p50_ms", "%.1f"), ("p99 ms", "p99_ms", "%.1f"), ("max ms", "max_ms", "%.1f"),
           ("lost", "lost", "%.0f"), ("srv us/deliv", "cpu_us_per_delivery", "%.1f"),
           ("srv busy", "server_busy", "%.0f%%"), ("srv KiB/conn", "rss_kib_per_conn", "%.1f"),
           ("client busy", "client_busy", "%.0f%%")]


#: Throughput mode adds how long deliveries went on after the last publish was answered.
THROUGHPUT_COLUMNS = COLUMNS[:5] + [("drain ms", "drain_ms", "%.0f")] + COLUMNS[5:]


def table(rows, columns=COLUMNS):
    cells = [[h for h, _, _ in columns]] + [
        [f % (r[k] * 100 if f.endswith("%%") else r[k]) for _, k, f in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


def summarize(mine):
    """The medians of one configuration's runs, with every run's notes."""
    keys = [k for k, v in mine[0].items() if isinstance(v, (int, float))
            and k not in ("workers", "messages", "refilled", "slow_closes")]
    result = {k: statistics.median(r[k] for r in mine) for k in keys}
    for k in ("refilled", "slow_closes"):
        values = [r[k] for r in mine if r[k] is not None]
        result[k] = max(values) if values else None
    result.update(server=mine[0]["server"], workers=mine[0]["workers"], mode=mine[0]["mode"],
                  messages=mine[0]["messages"],
                  messages_out=result["deliveries_per_s"] / mine[0]["subscribers"],
                  lost=max(r["lost"] for r in mine),  # a loss in any run is not averaged away
                  duplicates=max(r["duplicates"] for r in mine),
                  notes=sorted({note for r in mine for note in r["notes"]}))
    return result


def headline(cfg, runs):
    what = ("%d messages as fast as %d connections get answers" % (cfg.messages, PUBLISHERS)
            if cfg.mode == "throughput" else "%d messages at %g/s" % (cfg.messages, cfg.rate))
    pinned = ("pinned to CPU %d" % SERVER_CPU if shutil.which("taskset")
              else "NOT pinned (no taskset)")
    if getattr(cfg, "server", "rulecast") == "socketio":
        return ("Flask-SocketIO fan-out (gevent + gevent-websocket, one process, %s), %s "
                "mode: %s to room bench, median of %d run(s); server %s, load client and "
                "publisher on CPU %d" % ("Nagle on (stock)" if getattr(cfg, "peer_nagle", False)
                                         else "TCP_NODELAY like rulecast", cfg.mode, what, runs,
                                         pinned, CLIENT_CPU))
    where = ("server %s" % pinned if cfg.workers == 1 else
             "server NOT pinned (its %d workers, sequencer and supervisor use both cores, so "
             "it shares CPU %d with the load client)" % (cfg.workers, CLIENT_CPU))
    return ("rulecast fan-out, --workers %d, %s mode: %s to %s, median of %d run(s); %s, "
            "load client and publisher on CPU %d"
            % (cfg.workers, cfg.mode, what, CHANNEL, runs, where, CLIENT_CPU))


def details(results):
    """The lines below a table: per-process split, bus refills, notes, losses."""
    lines = []
    for r in results:
        n = r["subscribers"]
        for i, run in enumerate(r["runs"]):
            if r["workers"] > 1:
                lines.append("N=%d run %d processes (busy over the publish phase, conns "
                             "taken): %s" % (n, i + 1, ", ".join(
                                 "%s %.0f%%%s" % (p["role"], p["busy"] * 100,
                                                  " %d" % p["conns"] if "worker" in p["role"]
                                                  else "") for p in run["procs"])))
        if r["refilled"]:
            lines.append("N=%d: the bus refilled up to %d messages from the store (drops "
                         "between the sequencer and a worker)" % (n, r["refilled"]))
        if r["slow_closes"]:
            lines.append("N=%d: the server closed up to %d connections as too slow (1013)"
                         % (n, r["slow_closes"]))
        for note in r["notes"]:
            lines.append("N=%d: %s" % (n, note))
        for run in r["runs"]:
            loud = loss_report(run)
            if loud:
                lines.append("N=%d: %s" % (n, loud))
    return lines


def measure(plans, counts, runs):
    """Runs every plan (a config) for every N, ``runs`` times, interleaving the plans run
    by run so that a drift in the machine's load hits them alike; {plan index: results}."""
    out = {i: [] for i in range(len(plans))}
    for n in counts:
        mine = {i: [] for i in range(len(plans))}
        for k in range(runs):
            for i, cfg in enumerate(plans):
                print("N=%d %s --workers %d %s run %d/%d" % (
                    n, getattr(cfg, "server", "rulecast"), cfg.workers, cfg.mode, k + 1, runs),
                    file=sys.stderr, flush=True)
                r = run_once(n, cfg)
                loud = loss_report(r)
                if loud:
                    print(loud, file=sys.stderr, flush=True)
                mine[i].append(r)
        for i in mine:
            out[i].append(dict(summarize(mine[i]), runs=mine[i]))
    return out


RATIOS = {"rate": [("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("max ms", "max_ms"),
                   ("srv us/deliv", "cpu_us_per_delivery"), ("srv busy", "server_busy"),
                   ("srv KiB/conn", "rss_kib_per_conn")],
          "throughput": [("accepted msg/s", "publish_rate"), ("deliveries/s", "deliveries_per_s"),
                         ("msg/s out", "messages_out"), ("drain ms", "drain_ms"),
                         ("p50 ms", "p50_ms"),
                         ("p99 ms", "p99_ms"), ("srv us/deliv", "cpu_us_per_delivery"),
                         ("srv busy", "server_busy")]}


#: Against the peer: every figure of the table.
PEER_RATIOS = {"rate": [("connect s", "connect_s"), ("pub/s", "publish_rate"),
                        ("deliveries/s", "deliveries_per_s"), ("p50 ms", "p50_ms"),
                        ("p99 ms", "p99_ms"), ("max ms", "max_ms"),
                        ("srv us/deliv", "cpu_us_per_delivery"), ("srv busy", "server_busy"),
                        ("srv KiB/conn", "rss_kib_per_conn"), ("client busy", "client_busy")],
               "throughput": [("connect s", "connect_s"), ("accepted msg/s", "publish_rate"),
                              ("deliveries/s", "deliveries_per_s"), ("msg/s out", "messages_out"),
                              ("drain ms", "drain_ms"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"),
                              ("max ms", "max_ms"), ("srv us/deliv", "cpu_us_per_delivery"),
                              ("srv busy", "server_busy"), ("srv KiB/conn", "rss_kib_per_conn"),
                              ("client busy", "client_busy")]}


def ratio_table(pairs, many, heads=None, figures=RATIOS):
    """``pairs``: (mode label, mode, results of workers 1, results of workers ``many``);
    ``heads``: other column names (first, second, ratio) for another comparison."""
    heads = heads or ("workers 1", "workers %d" % many, "w%d/w1" % many)
    rows = [("mode", "subs", "figure") + tuple(heads)]
    for label, mode, one, other in pairs:
        for a, b in zip(one, other):
            for name, key in figures[mode] + [("lost", "lost")]:
                ratio = ("%.2f" % (b[key] / a[key]) if a[key] and key != "lost" else "-")
                share = key in ("server_busy", "client_busy")
                fmt = "%.0f%%" if share else "%.2f" if key == "connect_s" else "%.1f"
                scale = 100 if share else 1
                rows.append((label, "%d" % a["subscribers"], name, fmt % (a[key] * scale),
                             fmt % (b[key] * scale), ratio))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def strip(results):
    return [{k: v for k, v in r.items() if k != "runs"} for r in results]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--subscribers", default="100,1000", help="comma-separated counts N")
    p.add_argument("--workers", type=int, default=1,
                   help="`rulecast serve --workers N`; above 1 the server is not pinned")
    p.add_argument("--mode", choices=("rate", "throughput"), default="rate",
                   help="rate: publish at --rate; throughput: as fast as the server answers "
                        "%d parallel connections" % PUBLISHERS)
    p.add_argument("--messages", type=int, default=None,
                   help="messages published per run (default 200 in rate mode, 2000 in "
                        "throughput mode)")
    p.add_argument("--rate", type=float, default=50, help="messages published per second")
    p.add_argument("--runs", type=int, default=3, help="runs per N; figures are their medians")
    p.add_argument("--compare", action="store_true",
                   help="--workers 1 against --workers M (M = --workers if above 1, else 2), "
                        "in rate mode (--messages at --rate) and in throughput mode "
                        "(--throughput-messages), with the ratios")
    p.add_argument("--throughput-messages", type=int, default=2000,
                   help="with --compare: messages per throughput-mode run")
    p.add_argument("--server", choices=sorted(SERVERS), default="rulecast",
                   help="the server to measure: rulecast, or the peer Flask-SocketIO "
                        "(bench/peer_socketio.py, gevent + gevent-websocket, one process; "
                        "needs flask-socketio installed)")
    p.add_argument("--peer", action="store_true",
                   help="the same scenario (--mode, --messages, --rate) against rulecast and "
                        "against Flask-SocketIO, alternating run by run, with the ratios "
                        "rulecast/peer")
    p.add_argument("--peer-nagle", action="store_true",
                   help="run the peer stock, without the TCP_NODELAY that rulecast sets (each "
                        "keep-alive publish then waits ~40 ms for a delayed ACK)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    # SIGTERM ends the bench like Ctrl-C: through the finally blocks that stop the server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    counts = [int(c) for c in args.subscribers.split(",")]
    if args.workers < 1 or args.runs < 1 or min(counts) < 1:
        p.error("--workers, --runs and every N must be at least 1")
    if args.peer and args.compare:
        p.error("--peer and --compare do not go together: run them one after the other")
    if args.peer and args.server != "rulecast":
        p.error("--peer already runs both servers: leave out --server")
    if args.server == "socketio" and args.workers != 1:
        p.error("the Flask-SocketIO peer is one process: --workers must be 1")
    if args.peer or args.server == "socketio":
        import importlib.util  # the peer's process imports it; here, only look for it
        if importlib.util.find_spec("flask_socketio") is None:
            p.error("the peer needs flask-socketio: .venv/bin/pip install flask-socketio")
    raise_nofile()  # the forked load client inherits it
    if max(counts) + 100 > resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
        p.error("%d subscribers need more file descriptors than RLIMIT_NOFILE" % max(counts))
    if args.messages is None:
        args.messages = 2000 if args.mode == "throughput" else 200
    if args.compare:
        many = max(2, args.workers)
        plans = [argparse.Namespace(workers=w, mode=m, rate=args.rate,
                                    messages=args.messages if m == "rate"
                                    else args.throughput_messages)
                 for m in ("rate", "throughput") for w in (1, many)]
    elif args.peer:
        plans = [argparse.Namespace(server=server, workers=args.workers if server == "rulecast"
                                    else 1, mode=args.mode, rate=args.rate,
                                    messages=args.messages, peer_nagle=args.peer_nagle)
                 for server in ("rulecast", "socketio")]
    else:
        plans = [argparse.Namespace(server=args.server, workers=args.workers, mode=args.mode,
                                    rate=args.rate, messages=args.messages,
                                    peer_nagle=args.peer_nagle)]
    out = measure(plans, counts, args.runs)
    lost = any(r["lost"] > 0 or r["duplicates"] > 0 for rs in out.values() for r in rs)
    if args.json:
        print(json.dumps({"runs": args.runs, "configs": [
            dict(vars(cfg), results=strip(out[i]), all_runs=[x for r in out[i] for x in r["runs"]])
            for i, cfg in enumerate(plans)], **({} if args.compare or args.peer else dict(
                vars(plans[0]), results=strip(out[0]),
                all_runs=[x for r in out[0] for x in r["runs"]]))}, indent=2))
        return 1 if lost else 0
    for i, cfg in enumerate(plans):
        if i:
            print()
        print(headline(cfg, args.runs))
        print(table(out[i], THROUGHPUT_COLUMNS if cfg.mode == "throughput" else COLUMNS))
        for line in details(out[i]):
            print(line)
    if args.compare:
        print()
        print("--workers %d against --workers 1 (medians; lost is the worst run)" % many)
        print(ratio_table([("rate %g/s" % args.rate, "rate", out[0], out[1]),
                           ("throughput", "throughput", out[2], out[3])], many))
    if args.peer:
        label = "rate %g/s" % args.rate if args.mode == "rate" else "throughput"
        print()
        print("rulecast (--workers %d) against Flask-SocketIO, %s mode, %d messages (medians; "
              "lost is the worst run)" % (args.workers, args.mode, args.messages))
        print(ratio_table([(label, args.mode, out[1], out[0])], 1,
                          heads=("Flask-SocketIO", "rulecast", "rulecast/peer"),
                          figures=PEER_RATIOS))
    if lost:
        print("\n!!! DELIVERIES WERE LOST OR DUPLICATED: see the lines starting with !!! "
              "above. The server refills drops from its store, so this is a bug.")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
