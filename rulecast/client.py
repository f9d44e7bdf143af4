"""A client for other processes: publish and emit over HTTP, subscribe over WebSocket."""
import collections
import json
import os
import random
import struct
import sys
import time
from urllib.parse import urlencode

import requests
import websocket

__all__ = ["ClientError", "AuthError", "publish", "emit", "subscribe", "listen_command"]

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


class _Lost(Exception):
    """The connection ended or could not be made; worth another attempt."""


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


def emit(url, type, api_key, actor=None, object=None, data=None, id=None, time=None,
         timeout=10, prefix="/rulecast"):
    """Report an event to the rules; the server's answer (``matched``, ``messages``)."""
    event = {"type": type}
    for key, value in (("id", id), ("time", time), ("actor", actor), ("object", object),
                       ("data", data)):
        if value is not None:
            event[key] = value
    return _post(_base(url, prefix) + "/api/events", api_key, event, timeout)


def _ws_url(url, prefix):
    base = _base(url, prefix)
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(http):
            return ws + base[len(http):] + "/ws"
    return base + "/ws"


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
        ws.sock.sendall(b"".join(websocket.ABNF.create_frame(
            json.dumps(f), websocket.ABNF.OPCODE_TEXT).format() for f in frames))
    except (websocket.WebSocketException, OSError) as exc:
        ws.shutdown()
        raise _Lost(str(exc)) from exc
    return ws


def _frames(ws):
    """The JSON frames of ``ws``; pings when silent, raises _Lost or AuthError at the end."""
    heard, pinged = time.monotonic(), False
    while True:
        silent = time.monotonic() - heard
        limit = PING_AFTER + DEAD_AFTER if pinged else PING_AFTER
        if silent >= limit and pinged:
            raise _Lost("no answer for %.0f s" % silent)
        try:
            if silent >= limit:
                ws.send('{"type":"ping"}')
                pinged = True
                continue
            ws.settimeout(limit - silent)
            opcode, frame = ws.recv_data_frame(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketException, OSError) as exc:
            raise _Lost(str(exc) or "connection lost") from exc
        heard, pinged = time.monotonic(), False
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else None
            reason = frame.data[2:].decode("utf-8", "replace")
            if code == 1008:
                raise AuthError("the server refused the token: %s" % reason, code=code)
            raise _Lost("closed by the server: %s %s" % (code, reason))
        if opcode == websocket.ABNF.OPCODE_TEXT:
            yield json.loads(frame.data)


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
