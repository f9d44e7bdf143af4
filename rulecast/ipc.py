"""What workers and the sequencer say to each other: requests, replies and the stream, as lines.

Nothing here is JSON the sequencer must decode: a message's data leaves the worker
encoded once, is stored and broadcast as those bytes, and a line names its id and
channel up front. Channels hold no whitespace (:func:`rulecast.channels.parse`), and
compact JSON holds no newline, so a space and a newline are safe separators.
"""
from rulecast.channels import parse as parse_channel
from rulecast.message import Message, RawJSON, dumps

__all__ = ["encode_request", "decode_request", "encode_reply", "decode_reply",
           "reply_messages", "encode_stream", "decode_stream", "encode_tick"]


def encode_request(request, token, items):
    """A worker's request: ``REQUEST TOKEN``, then ``CHANNEL DATA`` per message.
    Raises TypeError or ValueError (data not JSON, a channel with whitespace) before
    anything is sent."""
    lines = [b"%d %s" % (request, token.encode("ascii"))]
    for channel, data in items:
        parse_channel(channel)  # a valid channel holds no space or newline to break a line
        lines.append(b"%s %s" % (channel.encode("utf-8"), dumps(data)))
    return b"\n".join(lines)


def decode_request(raw):
    """``(request, token, [(channel, RawJSON data), …])``; ValueError when malformed."""
    head, *lines = raw.split(b"\n")
    request, token = head.split(b" ")
    items = []
    for line in lines:
        channel, space, data = line.partition(b" ")
        if not space or not data:
            raise ValueError("a message line without data: %r" % line[:100])
        items.append((channel.decode("utf-8"), RawJSON(data)))
    return int(request), token.decode("ascii"), items


def encode_reply(request, messages=None, error=None):
    """``REQUEST FIRST_ID TIME`` (the messages got consecutive ids and one time), or
    ``REQUEST ! ERROR``."""
    if messages is None:
        return b"%d ! %s" % (request, error.encode("utf-8", "replace"))
    if not messages:  # a request of no messages: nothing to number
        return b"%d 0 -" % request
    return b"%d %d %s" % (request, messages[0].id, messages[0].time.encode("ascii"))


def decode_reply(raw):
    """``(request, rest)``: what :func:`reply_messages` takes."""
    request, _, rest = raw.partition(b" ")
    return int(request), rest


def reply_messages(rest, items):
    """The messages of ``items`` as a reply's ``rest`` numbered them; raises
    LookupError with the sequencer's error text when it refused them."""
    if rest[:1] == b"!":
        raise LookupError(rest[2:].decode("utf-8", "replace"))
    first, time = rest.split(b" ")
    first, time = int(first), time.decode("ascii")
    return [Message(first + i, channel, time, data) for i, (channel, data) in enumerate(items)]


def encode_stream(messages, most_bytes):
    """The stream's sends for ``messages``: lines ``ID CHANNEL FRAME``, at most about
    ``most_bytes`` to a send (each nanomsg send costs as much as storing a message)."""
    lines, size = [], 0
    for message in messages:
        line = b"%d %s %s" % (message.id, message.channel.encode("utf-8"), message.json)
        lines.append(line)
        size += len(line)
        if size >= most_bytes:
            yield b"\n".join(lines)
            lines, size = [], 0
    if lines:
        yield b"\n".join(lines)


def encode_tick(last_id):
    """The tick: ``tick LAST_ID``, so a worker that lost the newest messages learns it."""
    return b"tick %d" % last_id


def decode_stream(data):
    """The lines of one stream send, each ``(id, channel, frame JSON)``, or ``(None,
    "tick", last_id)`` for a tick: a worker learns where a message goes without
    decoding it, and most go to no one it serves."""
    for line in data.split(b"\n"):
        head, _, rest = line.partition(b" ")
        if head == b"tick":
            yield None, "tick", int(rest)
        else:
            channel, _, frame = rest.partition(b" ")
            yield int(head), channel.decode("utf-8"), frame
