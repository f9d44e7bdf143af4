"""What workers and the sequencer say to each other: every form read back as written."""
import pytest

from rulecast import ipc
from rulecast.message import Message, RawJSON


def test_request_read_back_with_data_untouched():
    """A request's channels come back as text and its data as the JSON bytes sent."""
    raw = ipc.encode_request(7, "tok.1", [("user:ann", {"t": "a b\nc"}), ("topic:x", {})])
    request, token, items = ipc.decode_request(raw)
    assert (request, token) == (7, "tok.1")
    assert items == [("user:ann", b'{"t":"a b\\nc"}'), ("topic:x", b"{}")]
    assert all(type(data) is RawJSON for _, data in items)


@pytest.mark.parametrize("channel", ["user:a b", "user:a\nuser:b", ""])
def test_request_refuses_a_channel_that_would_break_the_lines(channel):
    """A channel with whitespace, or none, is refused before anything is sent."""
    with pytest.raises(ValueError):
        ipc.encode_request(1, "tok", [(channel, {})])


def test_reply_numbers_the_items_in_order():
    """A reply's first id and time number the request's items consecutively."""
    stored = [Message(41, "user:a", "2026-12-06T00:00:00.000Z", None)]
    request, rest = ipc.decode_reply(ipc.encode_reply(3, stored))
    got = ipc.reply_messages(rest, [("user:a", {"n": 1}), ("user:b", {"n": 2})])
    assert request == 3
    assert [(m.id, m.channel, m.time, m.data) for m in got] == [
        (41, "user:a", "2026-12-06T00:00:00.000Z", {"n": 1}),
        (42, "user:b", "2026-12-06T00:00:00.000Z", {"n": 2})]


def test_reply_with_an_error_raises_it():
    """An error reply raises LookupError with the sequencer's text."""
    _, rest = ipc.decode_reply(ipc.encode_reply(3, error="given up by its worker"))
    with pytest.raises(LookupError, match="given up"):
        ipc.reply_messages(rest, [("user:a", {})])


def test_stream_lines_name_id_and_channel_and_carry_the_frame():
    """The stream's lines give each message's id, channel and wire frame, and ticks."""
    messages = [Message.encoded(5, "user:a", "T", RawJSON(b'{"k":"v w"}')),
                Message(6, "topic:b", "T", {"n": 1})]
    sends = list(ipc.encode_stream(messages, 1 << 20)) + [ipc.encode_tick(6)]
    lines = [line for data in sends for line in ipc.decode_stream(data)]
    assert lines == [(5, "user:a", messages[0].json), (6, "topic:b", messages[1].json),
                     (None, "tick", 6)]
    assert messages[0].json == Message(5, "user:a", "T", {"k": "v w"}).json


def test_stream_splits_past_the_size_given():
    """Messages past ``most_bytes`` go in another send."""
    messages = [Message(i, "user:a", "T", {"pad": "x" * 100}) for i in range(1, 11)]
    sends = list(ipc.encode_stream(messages, 300))
    assert len(sends) > 1
    assert [i for data in sends for i, _, _ in ipc.decode_stream(data)] == list(range(1, 11))
