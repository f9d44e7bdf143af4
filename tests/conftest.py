"""Test harness: real rulecast servers in subprocesses, real WebSocket and HTTP clients."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests
import websocket
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    """A `rulecast serve` subprocess on a free port, with its own config and var dir."""

    def __init__(self, directory, extra_path=(), workers=1, **config):
        self.dir = str(directory)
        self.workers = workers
        #: Folders put on the server's PYTHONPATH before the repository (installed add-ons).
        self.extra_path = list(extra_path)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        config.setdefault("secret", "test-secret-0123456789")
        config.setdefault("api_keys", ["test-key"])
        config.setdefault("rules", [])
        self.config = config
        self.api_key = config["api_keys"][0] if config["api_keys"] else None
        self.path = os.path.join(self.dir, "rulecast.yaml")
        with open(self.path, "w") as f:
            yaml.safe_dump(config, f)
        self.url = "http://127.0.0.1:%d" % self.port
        self.ws_url = "ws://127.0.0.1:%d/rulecast/ws" % self.port
        self.proc = None
        self.log = os.path.join(self.dir, "server.log")

    def start(self, *extra):
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rulecast", "serve", "--config", self.path,
             "--listen", "127.0.0.1:%d" % self.port, "--workers", str(self.workers), *extra],
            cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(self.extra_path + [ROOT])))
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited %s:\n%s" % (self.proc.returncode, self.output()))
            try:
                health = requests.get(self.url + "/rulecast/healthz", timeout=0.5).json()
                if health["status"] == "ok" and self.alive_workers(health) == self.workers:
                    return self
            except (requests.ConnectionError, requests.Timeout, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + self.output())

    @staticmethod
    def alive_workers(health):
        """How many workers a /healthz answer shows alive (a single process is one)."""
        if "workers" not in health:
            return 1
        return sum(1 for w in health["workers"] if w["alive"])

    def output(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout=10):
        """SIGTERM and wait; returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout)
        self._log.close()
        return self.proc.returncode

    def restart(self):
        self.stop()
        return self.start()

    def token(self, user, groups=(), roles=(), ttl=None):
        from rulecast import tokens
        return tokens.issue(user, groups, roles, ttl=ttl, secret=self.config["secret"])

    def publish(self, channel, data, key=None):
        r = requests.post(self.url + "/rulecast/api/publish", json={"channel": channel, "data": data},
                          headers={"Authorization": "Bearer " + (key or self.api_key)}, timeout=5)
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def connect(self, token=None, query="", timeout=5, **kw):
        """A real WebSocket client; returns a Client reading JSON frames."""
        url = self.ws_url + (("?" + query) if query else "")
        header = kw.pop("header", [])
        if token:
            header = header + ["Authorization: Bearer " + token]
        ws = websocket.create_connection(url, timeout=timeout, header=header, **kw)
        return Client(ws)


class Client:
    """A websocket-client connection speaking JSON frames."""

    def __init__(self, ws):
        self.ws = ws

    def send(self, frame):
        self.ws.send(json.dumps(frame))

    def recv(self, timeout=5):
        self.ws.settimeout(timeout)
        return json.loads(self.ws.recv())

    def recv_type(self, type, timeout=5):
        """The next frame of ``type``, skipping others."""
        deadline = time.time() + timeout
        while True:
            frame = self.recv(max(0.01, deadline - time.time()))
            if frame["type"] == type:
                return frame

    def messages(self, n, timeout=10):
        """The next ``n`` message frames."""
        return [self.recv_type("message", timeout) for _ in range(n)]

    def close_code(self, timeout=5):
        """Read until the server's close frame; return its status code."""
        self.ws.settimeout(timeout)
        while True:
            opcode, data = self.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(data[:2], "big") if len(data) >= 2 else None

    def close(self):
        self.ws.close()


@pytest.fixture
def make_server(tmp_path):
    """Start servers with given config keys; all stopped at the end of the test."""
    started = []

    def make(extra_path=(), workers=1, **config):
        server = RunningServer(tmp_path / ("s%d" % len(started)), extra_path, workers, **config)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server shared by a test module, with public topics and client publishing on."""
    s = RunningServer(tmp_path_factory.mktemp("server"), public_topics=["public-*", "board-*"],
                      client_publish=["topic:board-*"], allowed_origins=["https://ok.example"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory):
    """One redis-server for the store tests (skipped when redis-py or redis-server is
    missing)."""
    from tests.test_redis import RedisServer
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(redis_server_url):
    """That Redis, emptied for each test."""
    from rulecast.store.redis import RedisStore
    store = RedisStore(redis_server_url)
    store.client.flushall()
    store.close()
    return redis_server_url


def store_opener(make):
    """For a fixture: yields ``open(**options)``, a new store from ``make(**options)``;
    every store it opened is closed when the fixture ends."""
    stores = []

    def open_store(**options):
        stores.append(make(**options))
        return stores[-1]

    yield open_store
    for store in stores:
        store.close()
