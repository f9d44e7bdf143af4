"""The message: what an action sends to a channel, encoded once for every subscriber."""
import json
import struct
from datetime import datetime, timezone

__all__ = ["Message", "RawJSON", "now_iso", "ws_frame", "dumps"]


def dumps(obj):
    """Compact JSON as UTF-8 bytes; the one encoder used for every frame."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class RawJSON(bytes):
    """A message's data already encoded by :func:`dumps`, stored and sent as it is."""

    __slots__ = ()


def now_iso():
    """The current UTC time as ISO 8601 with milliseconds and a `Z`."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ws_frame(payload, opcode=0x1):
    """A complete unmasked server-to-client WebSocket frame (FIN set) around `payload`."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class Message:
    """A sequenced message. Its wire forms are computed on first use and then shared,
    so a fan-out to ten thousand connections serialises it once. One that a worker
    took from the sequencer's stream holds only its id, channel and wire form
    (``time`` and ``data`` None): delivering needs nothing else."""

    __slots__ = ("id", "channel", "time", "data", "_json", "_ws", "_sse")

    def __init__(self, id, channel, time, data):
        self.id = id
        self.channel = channel
        self.time = time
        self.data = data
        self._json = self._ws = self._sse = None

    @classmethod
    def encoded(cls, id, channel, time, data):
        """A message whose ``data`` is :class:`RawJSON`: its frame is made from those
        bytes, never decoded (``data`` stays None)."""
        message = cls(id, channel, time, None)
        message._json = b'{"type":"message","id":%d,"channel":%s,"time":%s,"data":%s}' % (
            id, dumps(channel), dumps(time), data)
        return message

    def frame(self):
        """The protocol frame as a dict."""
        return {"type": "message", "id": self.id, "channel": self.channel,
                "time": self.time, "data": self.data}

    @property
    def json(self):
        """The frame as JSON bytes."""
        if self._json is None:
            self._json = dumps(self.frame())
        return self._json

    @property
    def ws(self):
        """The frame as a ready-to-write WebSocket text frame."""
        if self._ws is None:
            self._ws = ws_frame(self.json)
        return self._ws

    @property
    def sse(self):
        """The frame as a ready-to-write server-sent event."""
        if self._sse is None:
            self._sse = b"id: %d\nevent: message\ndata: %s\n\n" % (self.id, self.json)
        return self._sse

    def __repr__(self):
        return "<Message %d %s>" % (self.id, self.channel)

    def __eq__(self, other):
        return isinstance(other, Message) and other.id == self.id

    def __hash__(self):
        return hash(self.id)
