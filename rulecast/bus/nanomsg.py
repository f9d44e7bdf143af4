"""The nanomsg bus: workers of one host, joined to the sequencer over IPC sockets."""
import logging
import os
import time

import gevent
import nanomsg
from gevent.event import AsyncResult

from rulecast.bus.base import Bus, BusUnavailable
from rulecast.ipc import (decode_reply, decode_stream, encode_request,
                          reply_messages)
from rulecast.message import Message
from rulecast.nanomsg_io import Socket, endpoint
from rulecast.sequencer import PUB, TICK_EVERY, pair_name

log = logging.getLogger("rulecast.bus")


def new_token(request):
    """A request's token, unique across workers and restarts. It starts with the time,
    so the store's index of tokens grows at its end: random tokens would land all over
    it, each one a page read and a page written per commit."""
    return "%x.%d.%d" % (time.time_ns(), os.getpid(), request)


class NanomsgBus(Bus):
    """Hands new messages to the sequencer on this worker's PAIR socket and takes the
    sequenced stream from its PUB; gaps the PUB leaves are refilled by :class:`Bus`."""

    #: Seconds to wait for the sequencer to store a message before refusing it.
    timeout = 5.0
    #: Bytes a subscriber may buffer; past that nanomsg drops (and we refill).
    recv_buffer = 8 * 1024 * 1024

    def __init__(self, store, hub, hook, metrics, run_dir, worker):
        super().__init__(store, hub, hook, metrics)
        self.run_dir = run_dir
        self.worker = worker
        self.pending = {}
        self.next_request = 0
        self.last_tick = 0.0
        self.greenlets = []

    @property
    def healthy(self):
        """True while the sequencer's ticks arrive."""
        return time.monotonic() - self.last_tick < 6 * TICK_EVERY

    def start(self):
        # Sockets are made here, in the worker, after the fork: never before.
        self.pair = Socket(nanomsg.PAIR).connect(endpoint(self.run_dir, pair_name(self.worker)))
        self.sub = Socket(nanomsg.SUB, self.recv_buffer).connect(
            endpoint(self.run_dir, PUB)).subscribe()
        self.greenlets = [gevent.spawn(self._answers), gevent.spawn(self._stream)]

    def stop(self):
        super().stop()
        gevent.killall(self.greenlets)
        for sock in (self.pair, self.sub):
            sock.close()

    def _sequence(self, items):
        self.next_request += 1
        request, answer = self.next_request, AsyncResult()
        token = new_token(request)
        data = encode_request(request, token, items)  # not JSON: raises here
        self.pending[request] = answer
        try:
            self.pair.send(data, timeout=self.timeout)
            reply = answer.get(timeout=self.timeout)
        except (TimeoutError, gevent.Timeout):
            return self._resolve(token, items)
        finally:
            self.pending.pop(request, None)
        try:
            return reply_messages(reply, items)
        except LookupError as exc:
            raise BusUnavailable(str(exc)) from None

    def _resolve(self, token, items):
        """No answer: the sequencer may be stuck, dead, or have stored the messages and
        died before answering. The store knows, and after this the sequencer will not
        store them any more: a 503 never hides a stored message."""
        try:
            messages = self.store.resolve(token, items)
        except Exception as exc:
            raise BusUnavailable("the sequencer did not answer within %gs, and the store "
                                 "could not say what became of the message: %s"
                                 % (self.timeout, exc)) from None
        if messages is None:
            raise BusUnavailable("the sequencer did not answer within %gs" % self.timeout)
        log.warning("bus: the sequencer stored %d messages but its answer was lost",
                    len(messages))
        return messages

    def _answers(self):
        while True:
            request, reply = decode_reply(self.pair.recv())
            answer = self.pending.get(request)
            if answer is not None:
                answer.set(reply)

    #: Messages handled before the stream lets the connection writers run: recv never
    #: waits while the SUB socket has data, so without this a burst starves them.
    yield_every = 32

    def _stream(self):
        handled = 0
        while True:
            raw = self.sub.recv()
            for id, channel, frame in decode_stream(raw):
                if id is None:
                    self.last_tick = time.monotonic()
                    if frame > self.last_id:
                        self.catch_up(frame)
                    continue
                # The hub needs the id, the channel and the wire form, not the data:
                # decoding every message in every worker would cost more than storing it.
                message = Message(id, channel, None, None)
                message._json = frame
                self._dispatch(message)
                handled += 1
                if handled % self.yield_every == 0:
                    gevent.sleep(0)
