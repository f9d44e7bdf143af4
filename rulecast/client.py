"""A client for other processes: publish and emit over HTTP or one WebSocket, subscribe."""
import collections
import json
import os
import random
import select
import struct
import sys
import time
from urllib.parse import urlencode

import requests
import websocket

__all__ = ["ClientError", "AuthError", "Unconfirmed", "BatchError", "publish", "publish_many", "emit",
           "Publisher", "subscribe", "listen_command"]

#: Seconds of silence after which the client sends a ping frame.
PING_AFTER = 20.0
#: Seconds of further silence after that ping before the connection counts as dead.
DEAD_AFTER = 10.0
#: First back-off in seconds; doubles per failed attempt up to ``max_delay``.
FIRST_DELAY = 0.5
#: Seconds allowed for the TCP connect and the WebSocket handshake.
CONNECT_TIMEOUT = 10.0


class ClientError(Exception):
    """The server refused a request: ``status`` (None over WebSocket) and ``errors``."""

    def __init__(self, message, status=None, errors=None, code=None):
        super().__init__(message)
        self.status = status
        self.errors = errors or {}
        #: The error frame's code (``forbidden``…) or the close code, over WebSocket.
        self.code = code


class AuthError(ClientError):
    """The server closed the socket with 1008: the token is bad or expired."""


class Unconfirmed(ClientError):
    """The connection dropped before the server answered: what was sent may or may
    not have been published. ``ids`` holds the ids answered, None for the rest."""

    def __init__(self, message, ids):
        super().__init__(message, errors={"_": [message]})
        self.ids = ids


class BatchError(ClientError):
    """Some items of ``Publisher.publish_many()`` were refused; the
    others were published. ``ids`` holds their ids, None for the refused; ``errors`` is
    keyed by the refused items' indexes."""

    def __init__(self, message, ids, errors, code):
        super().__init__(message, errors=errors, code=code)
        self.ids = ids


class _Lost(Exception):
    """The connection ended or could not be made; worth another attempt."""

    def __init__(self, message, code=None):
        super().__init__(message)
        #: The server's close code, if it sent one.
        self.code = code


def _base(url, prefix):
    prefix = "/" + prefix.strip("/") if prefix and prefix.strip("/") else ""
    return url.rstrip("/") + prefix


def _post(url, api_key, body, timeout):
    try:
        r = requests.post(url, json=body, timeout=timeout,
                          headers={"Authorization": "Bearer %s" % api_key})
    except requests.RequestException as exc:
        raise ClientError("POST %s failed: %s" % (url, exc), errors={"_": [str(exc)]}) from exc
    if 200 <= r.status_code < 300:
        return r.json()
    try:
        errors = r.json()["errors"]
    except (ValueError, KeyError, TypeError):
        # Not rulecast's JSON: a proxy's error page, say; keep its start for the message.
        errors = {"_": [" ".join(r.text.split())[:200] or r.reason]}
    if not isinstance(errors, dict):
        errors = {"_": [errors]}
    text = "; ".join("%s: %s" % (field, " ".join(map(str, problems))
                                 if isinstance(problems, list) else problems)
                     for field, problems in errors.items())
    raise ClientError("POST %s answered %d: %s" % (url, r.status_code, text),
                      status=r.status_code, errors=errors)


def publish(url, channel, data, api_key, timeout=10, prefix="/rulecast"):
    """Send ``data`` to ``channel``; the new message's id."""
    answer = _post(_base(url, prefix) + "/api/publish", api_key,
                   {"channel": channel, "data": data}, timeout)
    return answer["id"]


def _items(items):
    """``items`` as publish bodies: ``(channel, data)`` pairs or ``{"channel","data"}``
    dicts, sent as given (the server names any key it does not know)."""
    bodies = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and "channel" in item and "data" in item:
            bodies.append(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            bodies.append({"channel": item[0], "data": item[1]})
        else:
            raise TypeError("item %d is %r; give (channel, data) or "
                            "{'channel': …, 'data': …}" % (index, item))
    return bodies


def publish_many(url, items, api_key, timeout=10, prefix="/rulecast"):
    """Send ``items``, each ``(channel, data)`` or ``{"channel","data"}``, in one request;
    their ids, in order. The server takes all or none: a bad item fails the batch."""
    answer = _post(_base(url, prefix) + "/api/publish", api_key, _items(items), timeout)
    return answer["ids"]


def _event(type, actor, object, data, id, time):
    event = {"type": type}
    for key, value in (("id", id), ("time", time), ("actor", actor), ("object", object),
                       ("data", data)):
        if value is not None:
            event[key] = value
    return event


def emit(url, type, api_key, actor=None, object=None, data=None, id=None, time=None,
         timeout=10, prefix="/rulecast"):
    """Report an event to the rules; the server's answer (``matched``, ``messages``)."""
    return _post(_base(url, prefix) + "/api/events", api_key,
                 _event(type, actor, object, data, id, time), timeout)


def _ws_url(url, prefix):
    base = _base(url, prefix)
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(http):
            return ws + base[len(http):] + "/ws"
    return base + "/ws"


def _text_frames(frames):
    """The wire bytes of JSON ``frames``, to be sent with one write."""
    return b"".join(websocket.ABNF.create_frame(json.dumps(f), websocket.ABNF.OPCODE_TEXT)
                    .format() for f in frames)


def _connect(url, token, frames):
    header = ["Authorization: Bearer " + token] if token else []
    try:
        # No Origin: this is not a browser, and the server's Origin check is for browsers.
        ws = websocket.create_connection(url, timeout=CONNECT_TIMEOUT, header=header,
                                         suppress_origin=True)
    except websocket.WebSocketBadStatusException as exc:
        if 400 <= exc.status_code < 500 and exc.status_code not in (408, 429):
            raise ClientError("%s refused the WebSocket handshake: %d %s" % (
                url, exc.status_code, exc.status_message or ""), status=exc.status_code) from exc
        raise _Lost("handshake answered %d" % exc.status_code) from exc
    except (websocket.WebSocketException, OSError) as exc:
        raise _Lost(str(exc) or type(exc).__name__) from exc
    try:
        # One write for all of them: the server then reads them back to back.
        ws.sock.sendall(_text_frames(frames))
    except (websocket.WebSocketException, OSError) as exc:
        ws.shutdown()
        raise _Lost(str(exc)) from exc
    return ws


def _next_frame(ws, timeout):
    """The next JSON frame of ``ws`` within ``timeout`` seconds, None if none came;
    raises _Lost or AuthError when the connection ends."""
    ws.settimeout(timeout)
    while True:
        try:
            opcode, frame = ws.recv_data_frame(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError) as exc:
            raise _Lost(str(exc) or "connection lost") from exc
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else None
            reason = frame.data[2:].decode("utf-8", "replace")
            if code == 1008:
                raise AuthError("the server refused the token: %s" % reason, code=code)
            raise _Lost("closed by the server: %s %s" % (code, reason), code)
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return json.loads(frame.data)


def _frames(ws):
    """The JSON frames of ``ws``; pings when silent, raises _Lost or AuthError at the end."""
    heard, pinged = time.monotonic(), False
    while True:
        silent = time.monotonic() - heard
        limit = PING_AFTER + DEAD_AFTER if pinged else PING_AFTER
        if silent >= limit and pinged:
            raise _Lost("no answer for %.0f s" % silent)
        if silent >= limit:
            try:
                ws.send('{"type":"ping"}')
            except (websocket.WebSocketException, OSError) as exc:
                raise _Lost(str(exc) or "connection lost") from exc
            pinged = True
            continue
        frame = _next_frame(ws, limit - silent)
        if frame is not None:
            heard, pinged = time.monotonic(), False
            yield frame


#: The frames that answer a publish or an emit, one each, in the order sent.
_REPLIES = frozenset(("published", "emitted", "error"))


def _refused(frame):
    """The ClientError an error frame stands for."""
    message = "%s: %s" % (frame.get("code"), frame.get("message"))
    return ClientError(message, errors=frame.get("errors") or {"_": [message]},
                       code=frame.get("code"))


class Publisher:
    """One WebSocket authenticated with an API key, for a service that publishes often:
    no request and no handshake per message, and :meth:`publish_many` sends all its
    frames before reading the first reply.

    The socket opens on first use (or on ``with``) and again after it dropped. A frame
    whose reply never came raises :class:`Unconfirmed`; with ``retry=True`` it is sent
    again on a new connection instead, up to ``retries`` times, and a message the server
    had stored before the drop is then published twice. Not thread-safe: one per thread.
    """

    #: Attempts at a frame whose reply was lost, with ``retry=True``.
    retries = 3
    #: Most frames sent and not yet answered. Under the server's ``limits.send_queue``
    #: (1,000 by default): a client that sent everything before reading would have
    #: more replies waiting than that, and be closed as too slow.
    window = 200

    def __init__(self, url, api_key, retry=False, timeout=10.0, give_up=30.0, max_delay=5.0,
                 prefix="/rulecast"):
        self.url = _ws_url(url, prefix)
        self.api_key = api_key
        self.retry = retry
        #: Seconds to wait for each reply before counting the connection as lost.
        self.timeout = timeout
        #: Seconds of failed connection attempts after which a call raises ClientError.
        self.give_up = give_up
        self.max_delay = max_delay
        self.ws = None

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the socket; the next call opens a new one."""
        ws, self.ws = self.ws, None
        if ws is not None:
            ws.close(timeout=1)

    def connect(self):
        """Open the socket unless it is open; raises AuthError when the key is refused,
        ClientError when the server could not be reached for ``give_up`` seconds."""
        if self.ws is not None and not self._dropped():
            return
        self.close()
        deadline, delay = time.monotonic() + self.give_up, FIRST_DELAY
        while True:
            try:
                self.ws = self._open()
                return
            except _Lost as exc:
                wait = min(delay, self.max_delay) * random.uniform(0.5, 1.0)
                if time.monotonic() + wait > deadline:
                    raise ClientError("could not connect to %s within %g s: %s"
                                      % (self.url, self.give_up, exc)) from None
                time.sleep(wait)
                delay *= 2

    def _open(self):
        ws = _connect(self.url, self.api_key, [])
        try:
            welcome = _next_frame(ws, self.timeout)
        except AuthError as exc:
            ws.shutdown()
            raise AuthError("%s refused the API key; is it one of the server's api_keys? (%s)"
                            % (self.url, exc), code=exc.code) from None
        except _Lost:
            ws.shutdown()
            raise
        if welcome is None or welcome.get("type") != "welcome":
            ws.shutdown()
            raise _Lost("no welcome within %g s" % self.timeout)
        return ws

    def _dropped(self):
        # Nothing comes unasked on a publisher's socket but a close or the end of the
        # stream (a restart, an idle proxy): readable means gone.
        try:
            return bool(select.select([self.ws.sock], [], [], 0)[0])
        except (OSError, ValueError, AttributeError):
            return True

    def publish(self, channel, data, retry=None):
        """Send ``data`` to ``channel`` (any channel); the new message's id, once stored."""
        reply = self._exchange([{"type": "publish", "channel": channel, "data": data}],
                               retry)[0]
        if reply["type"] == "error":
            raise _refused(reply)
        return reply["id"]

    def publish_many(self, items, retry=None):
        """Send ``items``, each ``(channel, data)`` or ``{"channel","data"}``, pipelined;
        their ids in order. A refused item raises BatchError after the others went."""
        frames = [{"type": "publish", "channel": i["channel"], "data": i["data"]}
                  for i in _items(items)]
        replies = self._exchange(frames, retry) if frames else []
        ids = [r.get("id") if r["type"] == "published" else None for r in replies]
        errors = {str(n): [str(_refused(r))] for n, r in enumerate(replies)
                  if r["type"] == "error"}
        if errors:
            first = replies[int(next(iter(errors)))]
            raise BatchError("%d of %d items refused: %s" % (
                len(errors), len(replies), "; ".join("%s: %s" % (n, e[0])
                                                     for n, e in errors.items())),
                ids, errors, first.get("code"))
        return ids

    def emit(self, type, actor=None, object=None, data=None, id=None, time=None, retry=None):
        """Report an event to the rules; ``{"matched": [rule names], "messages": [ids]}``."""
        frame = {"type": "emit", "event": _event(type, actor, object, data, id, time)}
        reply = self._exchange([frame], retry)[0]
        if reply["type"] == "error":
            raise _refused(reply)
        return {"matched": reply["matched"], "messages": reply["messages"]}

    def _exchange(self, frames, retry):
        """The replies to ``frames``, in order; sends again what a drop left unanswered
        when retrying."""
        retry = self.retry if retry is None else retry
        replies, attempts = [], 0
        while True:
            attempts += 1
            self.connect()
            sent = len(replies)
            try:
                while len(replies) < len(frames):
                    if sent < len(frames) and sent - len(replies) <= self.window // 2:
                        # Topped up in one write at half a window: the server always
                        # has frames to read while the client reads replies.
                        chunk = frames[sent:len(replies) + self.window]
                        self.ws.sock.sendall(_text_frames(chunk))
                        sent += len(chunk)
                        continue
                    frame = _next_frame(self.ws, self.timeout)
                    if frame is None:
                        raise _Lost("no reply within %g s" % self.timeout)
                    if frame.get("type") in _REPLIES:
                        replies.append(frame)
                return replies
            except (_Lost, websocket.WebSocketException, OSError) as exc:
                self.close()
                code = getattr(exc, "code", None)
                if code == 1009:
                    raise ClientError("frame %d is larger than the server's "
                                      "limits.max_message_bytes: %s" % (len(replies), exc),
                                      code=code) from None
                if not retry or attempts >= self.retries:
                    ids = [r.get("id") for r in replies] + [None] * (len(frames) - len(replies))
                    raise Unconfirmed("%s: connection lost (%s) before %d of %d frames were "
                                      "answered; they may or may not have been published"
                                      % (self.url, exc, len(frames) - len(replies),
                                         len(frames)), ids) from None


def subscribe(url, token=None, channels=(), since=None, prefix="/rulecast", max_delay=30.0,
              on_status=None):
    """Yield every message frame for ``token`` and ``channels`` forever, reconnecting and
    resuming after the last id seen so that nothing is lost and nothing repeats."""
    notify = on_status or (lambda state, detail: None)
    channels, base, last, delay = list(channels), _ws_url(url, prefix), since, FIRST_DELAY
    while True:
        # Channels and resume point in the URL: the server subscribes every channel
        # before it replays, so the replay is one stream in id order.
        query = [("channel", c) for c in channels]
        if last is not None:
            query.append(("since", last))
        target = base + ("?" + urlencode(query) if query else "")
        # An anonymous server waits a second for an auth frame; any frame ends that.
        frames = [] if token else [{"type": "ping"}]
        welcome, connected, pending = None, False, collections.deque(channels)
        try:
            ws = _connect(target, token, frames)
            try:
                for frame in _frames(ws):
                    kind = frame.get("type")
                    if kind == "message":
                        if last is None or frame["id"] > last:
                            last = frame["id"]
                            yield frame
                    elif kind == "welcome":
                        welcome, delay = frame, FIRST_DELAY
                        if last is None:
                            last = frame.get("last_id", 0)
                    elif kind == "subscribed" and pending:
                        pending.popleft()
                    elif kind == "error" and pending:
                        # Answers come in the order of the frames: this one is the oldest
                        # subscription still waiting.
                        channel = pending.popleft()
                        message = "subscribe %s: %s: %s" % (
                            channel, frame.get("code"), frame.get("message"))
                        if frame.get("code") in ("forbidden", "bad_request"):
                            raise ClientError(message, errors={"channel": [message]},
                                              code=frame.get("code"))
                        raise _Lost(message)
                    if welcome and not pending and not connected:
                        # Only now is every channel subscribed: what is published from
                        # here on reaches this client live.
                        connected = True
                        notify("connected", "%s as %s, channels %s, last id %s" % (
                            base, welcome.get("user") or "anonymous", " ".join(
                                sorted(set(welcome.get("channels", ())) | set(channels))), last))
            finally:
                ws.close(timeout=1)
        except _Lost as exc:
            reason = str(exc)
        if connected:
            notify("disconnected", reason)
        wait = min(delay, max_delay) * random.uniform(0.5, 1.0)
        notify("reconnecting", "in %.1f s (%s)" % (wait, reason))
        time.sleep(wait)
        delay = min(delay * 2, max_delay)


def listen_command(args):
    """``rulecast listen``: message frames as JSON lines on stdout, status on stderr."""
    def status(state, detail):
        print("rulecast listen: %s: %s" % (state, detail), file=sys.stderr, flush=True)

    messages = subscribe(args.url, token=args.token, channels=args.channel, since=args.since,
                         prefix=args.prefix, on_status=status)
    try:
        for frame in messages:
            sys.stdout.write(json.dumps(frame, separators=(",", ":")) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
    except AuthError as exc:
        print("rulecast listen: %s" % exc, file=sys.stderr)
        return 2
    except ClientError as exc:
        print("rulecast listen: %s" % exc, file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (``| head``): point stdout at devnull so the exit's own
        # flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        messages.close()
