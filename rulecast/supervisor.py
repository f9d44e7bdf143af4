"""The supervisor: one listening socket, a sequencer and N workers, kept alive."""
import ctypes
import logging
import os
import signal
import socket
import time

import gevent

from rulecast import logs
from rulecast.config_schema import is_redis
from rulecast.nanomsg_io import clean_run_dir

log = logging.getLogger("rulecast.supervisor")

__all__ = ["Supervisor"]


def listen(host, port, backlog=2048):
    """A listening TCP socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


class Supervisor:
    """Forks the sequencer and the workers, restarts whichever dies, forwards SIGHUP,
    and on SIGTERM/SIGINT stops the workers (their clients get 1001) and then the
    sequencer. It never opens a nanomsg socket itself: it must be able to fork again,
    and nanomsg does not survive a fork."""

    #: Seconds between checks for dead children; a dead one is back within a second.
    poll = 0.1
    #: Seconds workers get to close their connections before they are killed.
    stop_timeout = 10.0
    #: A child that dies sooner than this after its start is restarted only after it.
    crash_pause = 1.0
    #: Quick deaths in a row after which a slot counts as broken and the server stops.
    crash_limit = 5

    def __init__(self, config):
        self.config = config
        self.run_dir = os.path.join(config.var_dir, "run")
        self.children = {}  # pid -> (role, slot, started)
        self.stopping = False
        self.hup = False
        self.code = 0
        self.quick_deaths = {}  # (role, slot) -> deaths in a row right after starting
        self.restarts = []  # (when, role, slot): crashed children waiting to come back

    def run(self):
        """Serve until told to stop; returns the exit code."""
        self.sock = listen(self.config.host, self.config.port)
        clean_run_dir(self.run_dir)
        pid_file = os.path.join(self.config.var_dir, "rulecast.pid")
        with open(pid_file, "w") as f:
            f.write("%d\n" % os.getpid())
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        if not is_redis(self.config.bus):
            self._spawn("sequencer", None)  # with the Redis bus, workers use Redis directly
        for slot in range(self.config.workers):
            self._spawn("worker", slot)
        log.info("supervisor %d: %d workers on http://%s:%d/", os.getpid(),
                 self.config.workers, *self.sock.getsockname()[:2])
        try:
            while not self.stopping:
                gevent.sleep(self.poll)
                self._reap()
                self._restart_due()
                if self.hup:
                    self.hup = False
                    self._signal_role("worker", signal.SIGHUP)
            self._shutdown()
        finally:
            if os.path.exists(pid_file):
                os.unlink(pid_file)
        return self.code

    def _on_stop(self, signum, frame):
        self.stopping = True

    def _on_hup(self, signum, frame):
        self.hup = True

    def _spawn(self, role, slot):
        pid = os.fork()
        if pid == 0:  # the child: a new gevent process with its own nanomsg sockets
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(signum, signal.SIG_DFL)
                _die_with_parent(os.getppid())
                code = self._child(role, slot)
            except BaseException:
                log.exception("%s %s failed", role, slot if slot is not None else "")
            finally:
                os._exit(code)
        self.children[pid] = (role, slot, time.monotonic())

    def _child(self, role, slot):
        logs.set_process(role if slot is None else "%s-%d" % (role, slot))
        if role == "sequencer":
            from rulecast.sequencer import Sequencer
            Sequencer(self.config, self.run_dir, self.config.workers).run()
        else:
            from rulecast.server import Server
            Server(self.config, worker=slot, run_dir=self.run_dir).serve_forever(self.sock)
        return 0

    def _reap(self):
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            role, slot, started = self.children.pop(pid, (None, None, 0))
            if role is None or self.stopping:
                continue
            name = role if slot is None else "%s-%d" % (role, slot)
            quick = time.monotonic() - started < self.crash_pause
            deaths = self.quick_deaths[role, slot] = (
                self.quick_deaths.get((role, slot), 0) + 1 if quick else 0)
            if deaths >= self.crash_limit:
                log.error("%s died %d times right after starting (%s); stopping: see the "
                          "errors above", name, deaths, _describe(status))
                self.stopping, self.code = True, 1
                return
            log.error("%s (pid %d) died (%s); restarting it", name, pid, _describe(status))
            # A crash loop must not become a fork loop: a quick death waits a little.
            self.restarts.append((time.monotonic() + (self.crash_pause if quick else 0),
                                  role, slot))

    def _restart_due(self):
        now = time.monotonic()
        for item in [r for r in self.restarts if r[0] <= now]:
            self.restarts.remove(item)
            self._spawn(item[1], item[2])

    def _signal_role(self, role, signum):
        for pid, (r, _, _) in list(self.children.items()):
            if r == role:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass

    def _wait_role(self, role, timeout):
        deadline = time.monotonic() + timeout
        while any(r == role for r, _, _ in self.children.values()):
            if time.monotonic() > deadline:
                log.error("%ss still running after %gs; killing them", role, timeout)
                self._signal_role(role, signal.SIGKILL)
                deadline = float("inf")
            gevent.sleep(self.poll / 2)
            self._reap()

    def _shutdown(self):
        log.info("stopping %d workers", self.config.workers)
        self._signal_role("worker", signal.SIGTERM)
        self._wait_role("worker", self.stop_timeout)
        self._signal_role("sequencer", signal.SIGTERM)
        self._wait_role("sequencer", self.stop_timeout)
        self.sock.close()
        log.info("stopped")


def _die_with_parent(parent):
    """Have the kernel stop this child (SIGTERM) if the supervisor dies, even by kill -9:
    orphaned workers would hold the port and serve without a sequencer."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the supervisor's own SIGTERM handling still stops children
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _describe(status):
    if os.WIFSIGNALED(status):
        return "signal %d" % os.WTERMSIG(status)
    return "exit code %d" % os.WEXITSTATUS(status)
