"""Webhooks that rules send: off the request path, retried with back-off, bounded, counted."""
import logging
import random
from urllib.parse import urlsplit, urlunsplit

import gevent
import requests
from gevent.pool import Group
from prometheus_client import CollectorRegistry, Counter

__all__ = ["Request", "Sender", "redact"]

log = logging.getLogger("rulecast.webhooks")


def redact(url):
    """``url`` without query string, fragment and user:password, which may hold secrets."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


class Request:
    """One webhook to send: JSON ``body`` to ``url``, on behalf of ``rule``."""

    __slots__ = ("url", "method", "headers", "body", "retries", "timeout", "rule")

    def __init__(self, url, method="POST", headers=None, body=None, retries=3, timeout=5.0,
                 rule=""):
        self.url = url
        self.method = method
        self.headers = dict(headers or {})
        self.body = body
        self.retries = retries
        self.timeout = timeout
        self.rule = rule

    def __repr__(self):
        # Headers and query string may hold credentials: never in a repr.
        return "<webhook %s %s rule=%s>" % (self.method, redact(self.url), self.rule)


def _describe(exc, url):
    """An error's reason without the URL's query string, which requests may quote."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = "%s: %s" % (type(exc).__name__, reason or exc)
    query = urlsplit(url).query
    return text.replace(query, "…") if query else text


class Sender:
    """Sends each request from a greenlet of its own, so rules never wait on an endpoint."""

    #: Seconds before the first retry; doubled for each next one, up to backoff_max.
    backoff = 0.5
    backoff_max = 30.0
    #: Requests sent or waiting to be retried at once; beyond, new ones are dropped, so a
    #: dead endpoint cannot grow memory without bound.
    max_in_flight = 1000

    def __init__(self, metrics_registry=None):
        self.registry = registry = (CollectorRegistry() if metrics_registry is None
                                    else metrics_registry)
        self.sent = Counter("rulecast_webhooks_sent", "Webhooks an endpoint accepted.",
                            ["rule"], registry=registry)
        self.failures = Counter("rulecast_webhook_failures", "Webhooks given up on: refused, "
                                "out of retries, or dropped over the in-flight bound.",
                                ["rule"], registry=registry)
        self.greenlets = Group()

    def send(self, request):
        """Start sending ``request`` and return at once (the greenlet, or None if dropped)."""
        if len(self.greenlets) >= self.max_in_flight:
            self._failed(request, "(dropped): %d webhooks already in flight"
                         % self.max_in_flight)
            return None
        return self.greenlets.spawn(self._deliver, request)

    def join(self, timeout=None):
        """Wait for the sends in flight; True when all finished within ``timeout``."""
        return bool(self.greenlets.join(timeout))

    def delay(self, retry):
        """Seconds to wait before retry number ``retry`` (1, 2, …), with ±20% jitter so
        webhooks that failed together do not all come back together."""
        nominal = self.backoff * 2 ** min(retry - 1, 32)
        return min(self.backoff_max, nominal * random.uniform(0.8, 1.2))

    def _deliver(self, request):
        attempts = max(0, request.retries) + 1
        for attempt in range(attempts):
            if attempt:
                gevent.sleep(self.delay(attempt))
            try:
                # Redirects are not followed: a webhook goes where the rule says.
                response = requests.request(
                    request.method, request.url, json=request.body, headers=request.headers,
                    timeout=request.timeout, allow_redirects=False)
            except (requests.ConnectionError, requests.Timeout) as exc:
                outcome = _describe(exc, request.url)
                continue
            except Exception as exc:  # bad URL, header or body: every attempt would fail alike
                self._failed(request, "(not retried): " + _describe(exc, request.url))
                return
            status = response.status_code
            if status < 300:
                self.sent.labels(request.rule).inc()
                return
            outcome = "HTTP %d" % status
            if status < 500 and status != 429:
                self._failed(request, "(not retried): " + outcome)
                return
        self._failed(request, "after %d attempt%s: %s"
                     % (attempts, "s" if attempts > 1 else "", outcome))

    def _failed(self, request, outcome):
        self.failures.labels(request.rule).inc()
        log.warning("rule %s: webhook %s %s failed %s", request.rule, request.method,
                    redact(request.url), outcome)
