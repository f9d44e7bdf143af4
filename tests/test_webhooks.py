"""The webhook sender against a real local HTTP server, its greenlets driven by join()."""
# The test process is not monkey-patched: the server runs in a real thread, and each
# sender greenlet blocks in requests until its answer, which is all these tests need.
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from rulecast import webhooks
from rulecast.webhooks import Request, Sender


class Endpoint(ThreadingHTTPServer):
    """Answers each request with the next scripted status (200 once the script is done)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script, self.received = [], []
        self.url = "http://127.0.0.1:%d" % self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.command, self.path, dict(self.headers),
                                     json.loads(body) if body else None))
        self.send_response(self.server.script.pop(0) if self.server.script else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_PATCH = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = Endpoint()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sender(monkeypatch):
    monkeypatch.setattr(Sender, "backoff", 0.01)
    return Sender(CollectorRegistry())


@pytest.fixture
def dead_url():
    # Bound but not listening: connecting is refused at once, and no one else gets the port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield "http://127.0.0.1:%d" % s.getsockname()[1]


def sent(sender, rule="r1"):
    return sender.registry.get_sample_value("rulecast_webhooks_sent_total", {"rule": rule}) or 0


def failed(sender, rule="r1"):
    return sender.registry.get_sample_value("rulecast_webhook_failures_total",
                                            {"rule": rule}) or 0


def hook(url, **kw):
    kw.setdefault("rule", "r1")
    return Request(url, kw.pop("method", "POST"), kw.pop("headers", {}),
                   kw.pop("body", {"type": "comment.added"}), kw.pop("retries", 3),
                   kw.pop("timeout", 2), kw.pop("rule"))


def test_success_is_sent_and_counted(endpoint, sender):
    """A 200 answer counts one webhook sent and no failure."""
    sender.send(hook(endpoint.url + "/hook"))
    assert sender.join(5)
    assert [r[::3] for r in endpoint.received] == [("POST", {"type": "comment.added"})]
    assert (sent(sender), failed(sender)) == (1, 0)


def test_method_headers_and_json_body_arrive(endpoint, sender):
    """The method, headers and JSON body are sent as the request gives them."""
    sender.send(hook(endpoint.url + "/h", method="PUT", headers={"X-Token": "t1"},
                     body={"a": [1, "b"]}))
    sender.join(5)
    ((method, path, headers, body),) = endpoint.received
    assert (method, path, headers["X-Token"], headers["Content-Type"], body) == (
        "PUT", "/h", "t1", "application/json", {"a": [1, "b"]})


def test_send_returns_before_the_request_is_made(endpoint, sender):
    """send() only schedules: nothing reaches the endpoint until the hub runs."""
    sender.send(hook(endpoint.url))
    assert endpoint.received == []
    sender.join(5)
    assert len(endpoint.received) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retried_after_server_error(endpoint, sender, status):
    """A 5xx or 429 answer is retried, and the retry's success counts as sent."""
    endpoint.script = [status]
    sender.send(hook(endpoint.url))
    sender.join(5)
    assert len(endpoint.received) == 2
    assert (sent(sender), failed(sender)) == (1, 0)


def test_client_error_not_retried(endpoint, sender, caplog):
    """A 400 answer fails at once, logged and counted, with no second attempt."""
    endpoint.script = [400]
    sender.send(hook(endpoint.url))
    sender.join(5)
    assert len(endpoint.received) == 1
    assert (sent(sender), failed(sender)) == (0, 1)
    assert "failed (not retried): HTTP 400" in caplog.text


def test_gives_up_after_retries(endpoint, sender, caplog):
    """An endpoint failing every time gets 1 + retries attempts, then one failure."""
    endpoint.script = [500] * 10
    sender.send(hook(endpoint.url, retries=2))
    sender.join(5)
    assert len(endpoint.received) == 3
    assert failed(sender) == 1
    assert "failed after 3 attempts: HTTP 500" in caplog.text


def test_unreachable_fails_logged_with_rule(dead_url, sender, caplog):
    """A refused connection is retried, then logged with the rule's name and counted."""
    caplog.set_level(logging.WARNING, logger="rulecast.webhooks")
    sender.send(hook(dead_url + "/hook", rule="comment-to-owner", retries=2))
    sender.join(5)
    assert failed(sender, "comment-to-owner") == 1
    (record,) = caplog.records
    assert record.name == "rulecast.webhooks"
    assert record.getMessage().startswith("rule comment-to-owner: webhook POST %s/hook failed "
                                          "after 3 attempts: ConnectionError" % dead_url)


def test_query_string_and_credentials_not_logged(dead_url, sender, caplog):
    """The log line leaves out the query string and user:password, which may be secret."""
    url = dead_url.replace("//", "//user:pw@") + "/hook?token=s3cret"
    sender.send(hook(url, retries=0))
    sender.join(5)
    assert "/hook failed after 1 attempt: " in caplog.text
    assert "s3cret" not in caplog.text and "pw" not in caplog.text


def test_in_flight_bound_drops_excess(endpoint, sender, monkeypatch, caplog):
    """Beyond max_in_flight, a webhook is dropped at once, logged and counted as failed."""
    monkeypatch.setattr(Sender, "max_in_flight", 2)
    results = [sender.send(hook(endpoint.url)) for _ in range(3)]
    assert results[2] is None and "failed (dropped): 2 webhooks already in flight" in caplog.text
    assert failed(sender) == 1
    sender.join(5)
    assert (len(endpoint.received), sent(sender)) == (2, 2)


def test_backoff_doubles_with_jitter_and_cap():
    """Retry delays start at backoff, double, stay within ±20% and never pass the cap."""
    sender = Sender()
    delays = [sender.delay(n) for n in range(1, 11)]
    for n, delay in enumerate(delays[:6]):
        assert 0.8 * 0.5 * 2 ** n <= delay <= 1.2 * 0.5 * 2 ** n
    assert all(d <= 30 for d in delays) and delays[-1] >= 24


def test_counters_land_in_given_registry(endpoint):
    """The counters are registered in the CollectorRegistry the server passes."""
    registry = CollectorRegistry()
    sender = Sender(registry)
    sender.send(hook(endpoint.url))
    sender.join(5)
    assert registry.get_sample_value("rulecast_webhooks_sent_total", {"rule": "r1"}) == 1


def test_request_repr_hides_secrets():
    """A Request's repr, as explain or a log might print it, has no query or headers."""
    text = repr(Request("https://h.example/x?key=k1", headers={"Authorization": "a1"},
                        rule="r"))
    assert "k1" not in text and "a1" not in text and "https://h.example/x" in text


def test_redact_keeps_scheme_host_and_path():
    """redact() drops only what may be secret."""
    assert webhooks.redact("https://u:p@h.example:8443/a/b?x=1#f") == "https://h.example:8443/a/b"
