"""One host's workers seen together: each writes its status and metrics to the run dir."""
import glob
import json
import os
import time

import gevent
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Cluster"]


class Cluster:
    """Lets any worker answer /healthz and /metrics for all of them: every worker
    rewrites ``worker-N.json`` and ``worker-N.prom`` in the run directory each second."""

    #: Seconds between status writes; a worker silent for three of them is dead.
    every = 1.0

    def __init__(self, server, run_dir, worker):
        self.server = server
        self.run_dir = run_dir
        self.worker = worker
        self.greenlet = None
        self._presence_version = None

    def start(self):
        self.greenlet = gevent.spawn(self._loop)

    def stop(self):
        if self.greenlet is not None:
            self.greenlet.kill()
        for suffix in (".json", ".prom", ".presence"):
            path = self._path(self.worker, suffix)
            if os.path.exists(path):
                os.unlink(path)

    def status(self):
        """This worker's figures."""
        server = self.server
        return {"worker": self.worker, "pid": os.getpid(), "time": time.time(),
                "connections": len(server.hub.connections), "last_id": server.bus.last_id,
                "sequencer": "ok" if server.bus.healthy else "unreachable"}

    def workers(self):
        """Every worker's last status, with ``alive`` (wrote within three periods)."""
        found, now = [], time.time()
        for path in sorted(glob.glob(os.path.join(self.run_dir, "worker-*.json"))):
            try:
                with open(path) as f:
                    status = json.load(f)
            except (OSError, ValueError):
                continue  # being replaced right now, or gone with its worker
            if status["worker"] == self.worker:
                status = self.status()
            status["alive"] = now - status["time"] < 3 * self.every
            found.append(status)
        return found

    def users(self, channel):
        """Who is subscribed to ``channel`` on any worker of this host."""
        users = set(self.server.hub.users(channel))
        for path in glob.glob(os.path.join(self.run_dir, "worker-*.presence")):
            if path != self._path(self.worker, ".presence"):
                try:
                    with open(path) as f:
                        users.update(json.load(f).get(channel, ()))
                except (OSError, ValueError):
                    pass  # being replaced, or gone with its worker
        return users

    def metrics(self):
        """All workers' metrics in one exposition, each sample labelled ``worker``."""
        texts = {self.worker: self.server.metrics.render().decode("utf-8")}
        for path in glob.glob(os.path.join(self.run_dir, "worker-*.prom")):
            worker = int(os.path.basename(path)[len("worker-"):-len(".prom")])
            if worker != self.worker:
                try:
                    with open(path, encoding="utf-8") as f:
                        texts[worker] = f.read()
                except OSError:
                    pass
        families = {}
        for worker, text in sorted(texts.items()):
            for family in text_string_to_metric_families(text):
                merged = families.setdefault(family.name, family)
                if merged is not family:
                    merged.samples.extend(self._labelled(family.samples, worker))
                else:
                    family.samples[:] = self._labelled(family.samples, worker)
        registry = CollectorRegistry()
        registry.register(_Collected(list(families.values())))
        return generate_latest(registry)

    @staticmethod
    def _labelled(samples, worker):
        return [s._replace(labels=dict(s.labels, worker=str(worker))) for s in samples]

    def _path(self, worker, suffix):
        return os.path.join(self.run_dir, "worker-%d%s" % (worker, suffix))

    def _write(self, suffix, data):
        path = self._path(self.worker, suffix)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)  # readers never see half a file

    def _loop(self):
        while True:
            self._write(".json", json.dumps(self.status()).encode())
            self._write(".prom", self.server.metrics.render())
            if self.server.hub.version != self._presence_version:
                self._presence_version = self.server.hub.version
                self._write(".presence", json.dumps(self.server.hub.presence()).encode())
            gevent.sleep(self.every)


class _Collected:
    """A collector handing back metric families read from text."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families
