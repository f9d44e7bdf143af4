"""A server under test with its connected load client, measured phase by phase."""
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time

from loadclient import client_main
from procs import (bus_metrics, fd_count, log_problems, log_tail, process_tree, rss_of, sample,
                   start_server, stop_server)
from publisher import PACED, paced_main, publisher_main, ws_paced_main


def wait_for(pipe, deadline, what):
    if not pipe.poll(max(0.0, deadline - time.time())):
        raise TimeoutError("no %s before the deadline" % what)
    return pipe.recv()


class Target:
    """Starts the server (``server``, ``workers``; the rest is its configuration) in a
    temporary directory; :meth:`connect` then opens the subscribers once and
    :meth:`phase` publishes to them as often as needed. Everything it waits for is
    bounded by ``seconds`` from its start. Use it in a ``with``: leaving stops the server,
    the load client and the publisher, and collects the server log's problems."""

    def __init__(self, server="rulecast", workers=1, seconds=60, nagle=False, **config):
        self.server, self.workers, self.deadline = server, workers, time.time() + seconds
        self.tmp, self.kids, self.notes, self.problems = tempfile.mkdtemp(
            prefix="rulecast-bench-"), [], [], []
        self.client, self.base, self.ctx = None, 0, mp.get_context("fork")
        try:
            self.proc, self.port, self.roles = start_server(self.tmp, workers, server, nagle,
                                                            **config)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.pids = process_tree(self.proc.pid)
        self.rss0 = rss_of(sample(self.pids))
        self.fds0 = {p: fd_count(p) for p in self.pids}

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and self.proc is not None:
            print("run failed; the end of the server's log:\n" + log_tail(self.tmp),
                  file=sys.stderr)
        self.close()

    def spawn(self, target, *args):
        mine, theirs = self.ctx.Pipe()
        self.kids.append(self.ctx.Process(target=target, args=(theirs, self.port) + args,
                                          daemon=True))
        self.kids[-1].start()
        return mine

    def connect(self, n, addresses=1, until_failure=False, seconds=None, paths=None):
        """Opens ``n`` subscribers (see loadclient.LoadClient.connect; ``paths``: each
        one's WebSocket path, for targeted mode); the client's report
        (within ``seconds``) with the server's CPU per ready subscriber and busy share
        meanwhile, its RSS growth per ready subscriber, and the descriptors each server
        process took (``conns``, by pid)."""
        before = sample(self.pids)
        self.client = self.spawn(client_main, n, self.deadline, self.server, addresses,
                                 until_failure, seconds, paths)
        report = wait_for(self.client, self.deadline + 5, "connect report")
        # The whole tree again, in case a process was restarted.
        self.pids = process_tree(self.proc.pid)
        now = sample(self.pids)
        cpu = sum(now[p][0] - before[p][0] for p in now if now[p] and before.get(p))
        report.update(server_busy=cpu / max(report["connect_s"], 1e-9),
                      cpu_us_per_connect=cpu * 1e6 / max(report["ready"], 1))
        report.update(rss_kib=rss_of(now), rss_growth_kib=rss_of(now) - self.rss0,
                      rss_kib_per_conn=(rss_of(now) - self.rss0) / max(report["ready"], 1),
                      conns={p: fd_count(p) - self.fds0.get(p, 0) for p in self.pids})
        return report

    def count(self):
        """{open: subscribers the client still holds, codes: {close code: how many}} and
        the server's RSS now."""
        self.client.send(("count",))
        report = wait_for(self.client, self.deadline + 5, "count")
        report["rss_kib"] = rss_of(sample(self.pids))
        return report

    def phase(self, messages, rate, connections=1, slow=0, watch_rss=False, workload=None):
        """Publishes ``messages`` at ``rate``/s (None: as fast as ``connections`` get
        answers), with ``slow`` subscribers stopped; with a ``workload``
        (workload.Workload), by the paced publisher on PACED connections instead (HTTP,
        or service WebSockets for a workload of transport "ws"). The
        client's figures of this phase
        (loadclient.LoadClient.phase) plus the publisher's (``sent``), the server's CPU
        over the phase (``cpu_s``, ``wall_s``, per process in ``procs``) and, with
        ``watch_rss``, its RSS every 0.2 s (``rss_kib``)."""
        self.client.send(("phase", self.base, messages, slow))
        wait_for(self.client, self.deadline + 5, "start of the phase")
        pids = self.pids = process_tree(self.proc.pid)
        before, rss = sample(pids), []
        if workload:
            paced = ws_paced_main if workload.transport == "ws" else paced_main
            publisher = self.spawn(paced, workload, messages, rate, self.deadline, PACED,
                                   self.base)
        else:
            publisher = self.spawn(publisher_main, messages, rate, self.deadline, connections,
                                   self.server, self.base)
        self.base += messages
        while not publisher.poll(0.2):
            if time.time() > self.deadline + 15:
                raise TimeoutError("no publisher report before the deadline")
            if watch_rss:
                rss.append(rss_of(sample(pids)))
        sent = publisher.recv()
        self.client.send(sent["ok"])
        while not self.client.poll(0.2):
            if time.time() > self.deadline + 5:
                raise TimeoutError("no end of deliveries before the deadline")
            if watch_rss:
                rss.append(rss_of(sample(pids)))
        self.client.recv()
        after, wall = sample(pids), time.time() - sent["first"]
        got = wait_for(self.client, self.deadline + 30, "client figures")
        self.kids = [k for k in self.kids if k.is_alive()]
        born = sorted(set(process_tree(self.proc.pid)) - set(pids))
        if born:
            self.notes.append("server process(es) %s started during a phase (a restart?): "
                              "their CPU is missing" % born)
        gone = sorted(p for p in pids if not before[p] or not after[p])
        if gone:
            self.notes.append("server process(es) %s ended before or during a phase: their "
                              "CPU is missing" % gone)
        procs = [dict(role=self.roles.get(p, "sequencer" if self.workers > 1 else "child"),
                      pid=p, busy=(after[p][0] - before[p][0]) / wall)
                 for p in pids if before[p] and after[p]]
        if watch_rss:
            rss = [rss_of(before)] + rss + [rss_of(after)]
        return dict(got, sent=sent, procs=procs, wall_s=wall,
                    cpu_s=sum(p["busy"] for p in procs) * wall, rss_kib=rss)

    def metrics(self):
        """(refilled, 1013 closes) from rulecast's /metrics; (None, None) for the peer."""
        if self.server != "rulecast":
            return None, None
        return bus_metrics(self.port, self.workers)

    def close(self):
        """Stops everything; notes what went wrong into ``notes`` and ``problems``."""
        if self.proc is None:
            return
        if self.client:
            try:
                self.client.send(("quit",))
            except OSError:
                pass  # the client is gone already
        for kid in self.kids:
            kid.join(1)
            kid.terminate()
            kid.join(5)
        self.kids = []
        killed, self.proc = stop_server(self.proc), None
        if killed:
            self.notes.append("server processes %s were still running after the server's "
                              "stop and were killed" % killed)
        self.problems = log_problems(os.path.join(self.tmp, "server.log"))
        shutil.rmtree(self.tmp, ignore_errors=True)
