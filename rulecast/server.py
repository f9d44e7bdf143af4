"""The server: store, hub, bus and endpoints wired together behind one gevent listener."""
import gc
import importlib
import logging
import os
import resource
import signal

import gevent
from gevent.event import Event

from rulecast import api, config as config_module, plugins
from rulecast.bus import LocalBus
from rulecast.channels import Policy
from rulecast.config_schema import is_redis
from rulecast.engine import Engine, load_rules
from rulecast.hub import Hub
from rulecast.inprocess import deferring
from rulecast.ingest import Ingest
from rulecast.logs import new_request_id
from rulecast.metrics import Metrics
from rulecast.session import Session
from rulecast.store import open_store
from rulecast.webhooks import Sender
from rulecast.websocket import GeventServer

log = logging.getLogger("rulecast.server")

__all__ = ["Server", "current", "load_app", "raise_open_files"]

#: Descriptors a worker needs besides its connections: listener, store, bus, logs.
SPARE_FILES = 64

_current = None


def current():
    """The server running in this process; RuntimeError when there is none."""
    if _current is None:
        raise RuntimeError("no rulecast server runs in this process; start one with "
                           "`rulecast serve --app module:app` to co-host your app")
    return _current


def load_app(spec):
    """The WSGI app named ``module:attr``."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit("app: cannot import %r: %s" % (module_name, exc)) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SystemExit("app: module %r has no attribute %r" % (module_name, attr)) from None


def raise_open_files(connections):
    """Raise the soft limit on open files to the hard one, which any process may do,
    and warn when ``connections`` per worker would still not fit; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # an unlimited hard limit may be refused as a soft one: keep ours
    needed = connections + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("limits.max_connections is %d, but a worker may open only %d files: "
                    "raise the limit (ulimit -n %d, or LimitNOFILE=%d in a systemd unit) "
                    "or lower max_connections", connections, soft, needed, needed)
    return soft


class Server:
    """One worker's rulecast: everything a request or a connection needs."""

    #: Seconds connections get to flush their close frames on shutdown.
    stop_timeout = 5.0
    #: Seconds between history prunes (age and per-channel limits).
    prune_every = 600.0

    def __init__(self, config, worker=None, run_dir=None):
        """``worker``: this process's slot under a supervisor (None: the only process,
        with an in-process bus); ``run_dir``: where the sequencer's sockets are."""
        self.config = config
        self.worker = worker
        # Before the app is imported: it may issue tokens or read the config at import.
        config_module.activate(config)
        self.hook = plugins.manager(config.plugins).hook
        self.metrics = Metrics()
        self.store = open_store(config.store, max_per_channel=config.history.max_per_channel,
                                max_age=config.history.max_age)
        self.hub = Hub(self.metrics)
        if is_redis(config.bus):
            # Every worker of every host talks to Redis itself: no sequencer.
            from rulecast.bus.redis import RedisBus
            from rulecast.cluster import Cluster
            self.bus = RedisBus(self.store, self.hub, self.hook, self.metrics, config.bus)
            self.cluster = None if worker is None else Cluster(self, run_dir, worker)
        elif worker is None:
            self.bus, self.cluster = LocalBus(self.store, self.hub, self.hook, self.metrics), None
        else:
            from rulecast.bus.nanomsg import NanomsgBus
            from rulecast.cluster import Cluster
            self.bus = NanomsgBus(self.store, self.hub, self.hook, self.metrics, run_dir, worker)
            self.cluster = Cluster(self, run_dir, worker)
        self.policy = Policy(config, self.hook)
        ruleset = load_rules(config.rules, self.hook)
        for problem in ruleset.problems:
            log.error("rules: %s (skipped)", problem)
        log.info("%d rules loaded from %s", len(ruleset.rules), ", ".join(config.rules))
        self.engine = Engine(ruleset, self.bus, self.hook, self.metrics,
                             Sender(self.metrics.registry))
        self.flask = api.create_app(self)
        self.ingest = Ingest(self)
        app = load_app(config.app) if config.app else self._demo()
        self.app = deferring(app, lambda: self.engine)
        self.hook.rulecast_configure(config=config, flask_app=self.flask)
        self.ws_path = config.prefix + "/ws"
        self.http = None
        self.stopped = Event()

    def _demo(self):
        from rulecast import demo
        return demo.create_app(self)

    def wsgi(self, environ, start_response):
        """The one WSGI entry: the WebSocket, rulecast's API, or the co-hosted app."""
        new_request_id(environ.get("HTTP_X_REQUEST_ID"))
        path = environ["PATH_INFO"]
        if path == self.ws_path and environ.get("wsgi.websocket") is not None:
            Session(self, environ).run()
            return []
        ingest = self.ingest.routes.get(path)
        if ingest is not None:
            return self.ingest(ingest, environ, start_response)
        if path.startswith(self.config.prefix + "/"):
            return self.flask(environ, start_response)
        return self.app(environ, start_response)

    def users(self, channel):
        """Who is subscribed to ``channel`` in every worker of this host."""
        return self.cluster.users(channel) if self.cluster else self.hub.users(channel)

    def reload_rules(self):
        """Re-read the rules; with any problem the running set stays. Connections stay."""
        ruleset = load_rules(self.config.rules, self.hook)
        if ruleset.problems:
            for problem in ruleset.problems:
                log.error("reload refused: %s", problem)
            log.error("rules not reloaded: %d problems; the %d running rules stay",
                      len(ruleset.problems), len(self.engine.ruleset.rules))
            self.metrics.rule_reloads.labels("refused").inc()
            return False
        self.engine.ruleset = ruleset
        self.metrics.rule_reloads.labels("done").inc()
        log.info("rules reloaded: %d rules", len(ruleset.rules))
        return True

    @property
    def pid_file(self):
        """Where `rulecast reload` finds this server."""
        return os.path.join(self.config.var_dir, "rulecast.pid")

    def start(self, listener=None):
        """Listen (on ``listener``, a bound socket, or the config's address)."""
        global _current
        _current = self
        config_module.activate(self.config)
        # gevent records who spawned each greenlet and from where, for debugging: a
        # tenth of what an idle connection costs. Servers that want it set
        # GEVENT_TRACK_GREENLET_TREE=1.
        if "GEVENT_TRACK_GREENLET_TREE" not in os.environ:
            gevent.config.track_greenlet_tree = False
        self.bus.start()
        self.http = GeventServer(listener or (self.config.host, self.config.port),
                                 self.wsgi, self.config, self.ws_path)
        self.http.start()
        if self.cluster is not None:
            self.cluster.start()
        # History is pruned by whoever writes it: the only process, or the sequencer.
        self._pruner = gevent.spawn(self._prune_loop) if self.worker is None else None
        # What exists now (modules, Flask, templates, rules) lives as long as the process:
        # keep full collections from walking it again and again, which stalled every
        # connection for 50-85 ms at a time with a thousand subscribers.
        gc.collect()
        gc.freeze()
        gc.set_threshold(7000, 20, 20)
        host, port = self.http.address[:2]
        log.info("listening on http://%s:%d/ (endpoints under %s)", host, port,
                 self.config.prefix)

    def serve_forever(self, listener=None):
        """Start, stop cleanly on SIGTERM or SIGINT, reload rules on SIGHUP, and
        return when stopped. The only process also keeps the pid file."""
        self.start(listener)
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, lambda: gevent.spawn(self.stop))
        gevent.signal_handler(signal.SIGHUP, lambda: gevent.spawn(self.reload_rules))
        if self.worker is not None:
            self.stopped.wait()
            return
        os.makedirs(self.config.var_dir, exist_ok=True)
        with open(self.pid_file, "w") as f:
            f.write("%d\n" % os.getpid())
        try:
            self.stopped.wait()
        finally:
            if os.path.exists(self.pid_file):
                os.unlink(self.pid_file)

    def stop(self):
        """Stop accepting, tell every client 1001 and give them time to flush."""
        global _current
        if self.http is None or self.stopped.is_set():
            return
        log.info("stopping: closing %d connections", len(self.hub.connections))
        self.http.close()  # stop accepting; open connections live on
        self.hub.close_all(1001, "server going away")
        self.http.stop(timeout=self.stop_timeout)
        self.engine.sender.join(self.stop_timeout)
        if self._pruner is not None:
            self._pruner.kill()
        if self.cluster is not None:
            self.cluster.stop()
        self.bus.stop()
        self.store.close()
        if _current is self:
            _current = None
        self.stopped.set()

    def _prune_loop(self):
        while True:
            gevent.sleep(self.prune_every)
            try:
                self.store.prune()
            except Exception:
                log.exception("pruning history failed")
