"""Messages are encoded once, for both WebSocket and SSE."""
import json
import struct

from rulecast.message import Message, now_iso, ws_frame


def test_encodings_are_cached():
    """Every access returns the same bytes object: serialised once per message."""
    m = Message(7, "topic:a", now_iso(), {"t": "é"})
    assert m.ws is m.ws and m.sse is m.sse and m.json is m.json


def test_ws_frame_is_a_complete_text_frame():
    """The WebSocket form is FIN+text with the JSON frame as payload."""
    m = Message(7, "topic:a", "2026-01-01T00:00:00.000Z", {"t": "x" * 300})
    first, second, length = struct.unpack("!BBH", m.ws[:4])
    assert first == 0x81 and second == 126 and length == len(m.json)
    assert json.loads(m.ws[4:]) == {"type": "message", "id": 7, "channel": "topic:a",
                                     "time": "2026-01-01T00:00:00.000Z", "data": {"t": "x" * 300}}


def test_sse_form_has_id_event_and_data():
    """The SSE form is id:, event: message, data: JSON, blank line."""
    m = Message(9, "user:u", "t", {})
    assert m.sse == b"id: 9\nevent: message\ndata: " + m.json + b"\n\n"


def test_frame_length_encodings():
    """Short, 16-bit and 64-bit payload lengths are encoded per RFC 6455."""
    assert ws_frame(b"a" * 125)[1] == 125
    assert ws_frame(b"a" * 126)[1] == 126
    big = ws_frame(b"a" * 70000)
    assert big[1] == 127 and struct.unpack("!Q", big[2:10])[0] == 70000
