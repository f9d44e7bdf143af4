"""The server under test: starting and stopping it, its process tree, /proc figures, its log."""
import ctypes
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY, CHANNEL, SERVER_CPU, CLIENT_CPU = "bench-key", "topic:bench", 0, 1
SECRET = "bench-secret-0123456789"
START_SECONDS = 20  # for the server to listen and, with workers, for all of them to report
STOP_SECONDS = 30  # for the server to stop politely (a supervisor stops workers, then sequencer)
MAX_PROCS = 256  # bound on the server's process tree walk
PROBLEM = re.compile(r"ERROR|CRITICAL|Traceback|WARNING")
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
    """As many descriptors as the kernel allows a process (fs.nr_open, at most 2**20),
    which needs CAP_SYS_RESOURCE; without it, the hard limit. Returns the soft limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open("/proc/sys/fs/nr_open") as f:
        cap = min(int(f.read()), 1 << 20)
    for limit in (max(cap, hard) if hard != resource.RLIM_INFINITY else cap, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            break
        except (ValueError, OSError):
            pass  # not permitted, or an unlimited hard limit refused as a soft one
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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
    return _cpu_ns(pid) / 1e9 or (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), rss


def _cpu_ns(pid):
    """Nanoseconds on a CPU of every thread of ``pid`` (schedstat), or 0 where the
    kernel keeps none: utime and stime count whole clock ticks, 10 ms, too coarse for
    a short phase of a fast server."""
    total = 0
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                total += int(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return 0
    return total


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


def rss_of(samples):
    """The RSS in KiB summed over a sample's live processes."""
    return sum(s[1] for s in samples.values() if s)


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


def log_tail(tmp, lines=20):
    with open(os.path.join(tmp, "server.log"), errors="replace") as f:
        return "".join(f.readlines()[-lines:])


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


def write_config(tmp, send_queue, max_per_channel, max_connections, rules=None):
    """rulecast.yaml in ``tmp``; ``rules``: the text of a rules file to load, or None."""
    if rules:
        with open(os.path.join(tmp, "bench-rules.yaml"), "w") as f:
            f.write(rules)
    with open(os.path.join(tmp, "rulecast.yaml"), "w") as f:
        json.dump({"secret": SECRET, "api_keys": [KEY],
                   "rules": ["bench-rules.yaml"] if rules else [],
                   "public_topics": ["bench*"],
                   "history": {"max_per_channel": max_per_channel},
                   "limits": {"max_connections": max_connections,
                              "send_queue": send_queue}}, f)  # JSON is YAML


def start_server(tmp, workers, server="rulecast", nagle=False, send_queue=1000,
                 max_per_channel=1000, max_connections=50000, rules=None, source=None):
    """A `rulecast serve --workers N` (or, with ``server`` "socketio", the Flask-SocketIO
    peer, one process) on a free port, in its own session (so its whole process tree can
    be killed as one group), pinned to SERVER_CPU only when N == 1; returns (Popen, port,
    {pid: role}) once it answers and, with N > 1, all N workers report alive in /healthz.
    The other arguments go to rulecast's configuration (limits, history, the text of a
    rules file); ``source``: a source tree to run rulecast from instead of this one (its
    directory goes first on PYTHONPATH, e.g. a `git worktree` of an older commit)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if server == "socketio":
        workers = 1
        cmd = [sys.executable, PEER, "--port", str(port)] + ["--nagle"] * nagle
    else:
        write_config(tmp, send_queue, max_per_channel, max_connections, rules)
        cmd = [sys.executable, "-m", "rulecast", "serve", "--config", "rulecast.yaml",
               "--listen", "127.0.0.1:%d" % port, "--workers", str(workers)]
    if workers == 1 and shutil.which("taskset"):  # taskset execs: the PID is the server's
        cmd = ["taskset", "-c", str(SERVER_CPU)] + cmd
    with open(os.path.join(tmp, "server.log"), "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=os.path.abspath(source or ROOT)),
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
