"""A targeted workload: who subscribes where, and each server's request for a batch of messages."""
import json
import sys

from procs import ROOT, SECRET, SERVERS
from publisher import STAMP

RULES = 100  # rules loaded for the events workload; each event type matches exactly one
KINDS = ("publish", "events")
TRANSPORTS = ("http", "ws")  # HTTP requests, or frames on service WebSockets (rulecast's)
_T = "@t@"  # the send time's place in a body, until it becomes STAMP


def user(n, subscribers):
    """Message number ``n`` is for this user's subscriber only, round robin."""
    return "u%d" % (n % subscribers)


def rules_text(count=RULES):
    """``count`` rules ``on: bench.e<k>``, each notifying the event's owner with a templated
    title, and the message's number and send time as extra data for the load client."""
    return "".join("""- name: bench-%d
  on: bench.e%d
  then:
    - notify:
        to: "user:{{ object.owner }}"
        title: "Event {{ data.n }} for {{ object.owner }}"
        data: {t: "{{ data.t }}", n: "{{ data.n }}"}
""" % (k, k) for k in range(count))


def paths(server, subscribers):
    """Each subscriber's WebSocket path: rulecast's carries a token of user u<i> (so it is
    subscribed to user:u<i> at connect), the peer's names room u<i>."""
    if server == "socketio":
        return [SERVERS[server]["ws"] + b"&room=u%d" % i for i in range(subscribers)]
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)  # this tree's rulecast, not whichever one is installed
    from rulecast.tokens import issue
    return [SERVERS[server]["ws"] + b"?token=" + issue("u%d" % i, secret=SECRET).encode()
            for i in range(subscribers)]


class Workload:
    """``kind`` "publish" (to channel user:u<i>, or the peer's room u<i>) or "events" (an
    event of type bench.e<n mod RULES> owned by u<i>, rulecast only), ``batch`` messages
    per request: a JSON list when above 1. ``transport`` "ws" (rulecast only, one message
    per frame): frames ``publish`` or ``emit`` on a service WebSocket, ``path``."""

    def __init__(self, kind, server, subscribers, batch=1, transport="http"):
        if kind not in KINDS or transport not in TRANSPORTS or server != "rulecast" and (
                kind == "events" or transport == "ws") or transport == "ws" and batch > 1:
            raise ValueError("no %s workload over %s for %s, batch %d" % (
                kind, transport, server, batch))
        self.kind, self.server, self.subscribers, self.batch = kind, server, subscribers, batch
        self.transport = transport
        self.path = "/rulecast/ws" if transport == "ws" else "/rulecast/api/events" \
            if kind == "events" else SERVERS[server]["publish"]

    def item(self, n):
        data, to = {"t": _T, "n": n}, user(n, self.subscribers)
        if self.kind == "events":
            return {"type": "bench.e%d" % (n % RULES), "object": {"owner": to}, "data": data}
        if self.server == "socketio":
            return {"room": to, "data": data}
        return {"channel": "user:" + to, "data": data}

    def body(self, numbers):
        """The JSON body (or frame) for messages ``numbers``, with STAMP where the send
        time goes."""
        items = [self.item(n) for n in numbers]
        body = items if self.batch > 1 else items[0]
        if self.transport == "ws":
            body = {"type": "emit", "event": body} if self.kind == "events" \
                else dict({"type": "publish"}, **body)
        text = json.dumps(body, separators=(",", ":"))
        return text.encode().replace(b'"%s"' % _T.encode(), STAMP)

