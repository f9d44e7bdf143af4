"""The sequencer: the one process that numbers messages, stores them and broadcasts them."""
import logging
import signal

import gevent
import nanomsg
from gevent.event import Event
from gevent.queue import Queue

from rulecast.ipc import decode_request, encode_reply, encode_stream, encode_tick
from rulecast.nanomsg_io import Socket, endpoint
from rulecast.store import open_store

log = logging.getLogger("rulecast.sequencer")

__all__ = ["Sequencer", "PUB", "pair_name", "TICK_EVERY"]

#: The broadcast of sequenced messages every worker subscribes to.
PUB = "messages"
#: Seconds between ticks carrying the last id: a worker that lost the newest
#: messages learns of the gap even when nothing follows them.
TICK_EVERY = 0.5


def pair_name(worker):
    """The request socket of worker slot ``worker``."""
    return "worker-%d" % worker


class Sequencer:
    """Receives requests (:mod:`rulecast.ipc`) from each worker on its own PAIR socket
    (reliable: PAIR never drops), stores everything that waits in one transaction,
    answers each request with its first id, and publishes the messages on PUB, where a
    lagging worker may lose some; ids let it notice and refill. The store keeps each
    request's token: a worker that got no answer asks the store what became of it
    (:meth:`Store.resolve`), and a request it gave up is refused when it arrives late."""

    def __init__(self, config, run_dir, workers):
        self.store = open_store(config.store, max_per_channel=config.history.max_per_channel,
                                max_age=config.history.max_age)
        self.pub = Socket(nanomsg.PUB).bind(endpoint(run_dir, PUB))
        self.pairs = [Socket(nanomsg.PAIR).bind(endpoint(run_dir, pair_name(i)))
                      for i in range(workers)]
        self.requests = Queue()
        self.stopped = Event()

    def run(self):
        gevent.signal_handler(signal.SIGTERM, self.stopped.set)
        gevent.signal_handler(signal.SIGINT, lambda: None)  # the supervisor decides
        greenlets = [gevent.spawn(self._receive, pair) for pair in self.pairs]
        greenlets += [gevent.spawn(self._write), gevent.spawn(self._tick)]
        log.info("sequencer ready for %d workers, last id %d", len(self.pairs),
                 self.store.last_id())
        self.stopped.wait()
        gevent.killall(greenlets)
        self.store.close()

    def _receive(self, pair):
        while True:
            raw = pair.recv()
            try:
                request, token, items = decode_request(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                log.error("malformed request from a worker: %s", exc)
                continue
            self.requests.put((pair, request, token, items))

    def _write(self):
        while True:
            batch = [self.requests.get()]
            while not self.requests.empty():
                batch.append(self.requests.get_nowait())
            try:
                stored = self.store.append_requests([(token, items)
                                                     for _, _, token, items in batch])
            except Exception as exc:
                log.exception("store failed; %d messages refused",
                              sum(len(items) for _, _, _, items in batch))
                for pair, request, _, _ in batch:
                    self._reply(pair, encode_reply(request, error=str(exc)))
                continue
            for (pair, request, _, _), messages in zip(batch, stored):
                self._reply(pair, encode_reply(request, messages, "given up by its worker"))
            for data in encode_stream([m for ms in stored if ms for m in ms],
                                      self.broadcast_bytes):
                self.pub.send(data)

    #: Bytes of messages put in one PUB send, well under what a worker buffers.
    broadcast_bytes = 256 * 1024

    #: Seconds a worker may take to take its answer before it is given up.
    reply_timeout = 2.0

    def _reply(self, pair, data):
        if pair.try_send(data):
            return

        # A dead or stuck worker must not hold up the others: wait in a greenlet.
        def send():
            try:
                pair.send(data, timeout=self.reply_timeout)
            except TimeoutError:
                log.error("a worker did not take its answer within %gs", self.reply_timeout)
        gevent.spawn(send)

    def _tick(self):
        while True:
            gevent.sleep(TICK_EVERY)
            self.pub.send(encode_tick(self.store.last_id()))
