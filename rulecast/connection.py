"""A subscriber connection: identity, channels, and a bounded queue of frames to send."""
import logging
import socket

import gevent
from gevent.event import Event
from gevent.socket import wait_read

from rulecast.logs import fields
from rulecast.message import dumps, ws_frame
from rulecast.websocket import close_frame

log = logging.getLogger("rulecast.connection")

#: How many stored messages a resume sends before waiting for the writer to drain.
REPLAY_PAGE = 200


class Connection:
    """What the hub delivers to. Subclasses say how bytes reach the client.

    Every frame goes through :meth:`_enqueue`; when more than ``limit`` frames wait,
    the client is too slow: it is closed with 1013 (its queue dropped, so memory
    stays bounded) and resumes later with ``since``.
    """

    #: Seconds a closing connection may take to flush before its socket is cut.
    close_timeout = 5.0

    def __init__(self, hub, identity, limit):
        self.hub = hub
        self.identity = identity
        self.limit = limit
        self.channels = set()
        self.queue = []  # taken whole, never from the front: a list is the smallest
        self.closed = False
        self.close_code = None
        #: The largest live message id queued: a repeat from the bus is skipped.
        self.last_id = 0
        #: Where the client said it stopped (``since``): channels it subscribes to later
        #: get their backlog from here too.
        self.cursor = None
        #: Per channel, the largest id that may not have been sent here: the last id
        #: before the channel went live, lowered as resumes send what lies below.
        self.unsent = {}
        # While a resume replays history, live messages wait here.
        self._held = None

    # -- what the hub and the session call ------------------------------------------

    def push(self, message):
        """Queue a live message unless it was already sent."""
        if self._held is not None:
            self._held.append(message)
        elif message.id > self.last_id and not self.closed:
            self.last_id = message.id
            self._enqueue(self.encode(message))

    def send(self, frame):
        """Queue a protocol frame (a dict with a ``type``) for this client."""
        self._enqueue(self.encode_frame(frame))

    def live_after(self, channel, last_id):
        """Note that ``channel`` went live here after message ``last_id``."""
        self.unsent[channel] = last_id

    def resume(self, store, since, channels=None):
        """Send the stored messages after ``since`` on ``channels`` (default: all of this
        connection's) that it has not sent, in id order, then go on live: whatever
        the hub delivers meanwhile waits, so nothing is missed and nothing comes twice."""
        unsent = self.unsent
        channels = [c for c in (self.channels if channels is None else channels)
                    if unsent.get(c, 0) > since]
        if not channels:
            return
        upto = max(unsent[c] for c in channels)
        self._held = []
        try:
            after = since
            while not self.closed:
                page = store.since(after, channels, REPLAY_PAGE)
                for message in page:
                    if message.id <= unsent[message.channel]:
                        self.queue.append(self.encode(message))
                self._wake()
                if len(page) < REPLAY_PAGE or page[-1].id >= upto:
                    break
                after = page[-1].id
                self._wait_drained()
            for channel in channels:  # (since, unsent] is sent now
                unsent[channel] = since
        finally:
            held, self._held = self._held, None
        for message in held:
            self.push(message)

    def close(self, code=1000, reason=""):
        """Leave the hub, drop what is queued if too slow, and say goodbye with ``code``."""
        if self.closed:
            return
        self.closed = True
        #: The close code this connection ended with (the first one given).
        self.close_code = code
        self.hub.remove(self)
        if code == 1013:
            self.queue.clear()
        final = self.encode_close(code, reason)
        if final:
            self.queue.append(final)
        self._wake()
        gevent.spawn_later(self.close_timeout, self.abort)

    # -- for subclasses --------------------------------------------------------------

    def encode(self, message):
        """The bytes of ``message`` for this kind of connection."""
        raise NotImplementedError

    def encode_frame(self, frame):
        """The bytes of a protocol frame for this kind of connection."""
        raise NotImplementedError

    def encode_close(self, code, reason):
        """The bytes that end the stream, or None."""
        return None

    def abort(self):
        """Cut the transport: a client that does not read cannot block a close."""

    def _wake(self):
        """Start sending what is queued."""
        raise NotImplementedError

    # -- internals -------------------------------------------------------------------

    def _enqueue(self, data):
        if self.closed:
            return
        if len(self.queue) >= self.limit:
            self.hub.slow_consumer(self)
            self.close(1013, "too slow: %d frames waiting" % len(self.queue))
            return
        self.queue.append(data)
        self._wake()

    def _take(self):
        """Everything queued, as one bytes object (b'' if nothing is)."""
        queue = self.queue
        if len(queue) == 1:
            return queue.pop()
        data = b"".join(queue)
        queue.clear()
        return data

    def _wait_drained(self):
        while self.queue and not self.closed:
            gevent.sleep(0.005)


class WebSocketConnection(Connection):
    """Sends its queue with one non-blocking send() when the hub flushes, that is
    once the delivering greenlet yields, so that the messages delivered meanwhile
    leave together. Only when the socket's buffer is full does a writer greenlet
    take over the rest, until the queue is empty again.

    A greenlet per connection waiting for frames would cost a switch per delivery
    and a saved stack per idle client; here an idle connection costs neither."""

    def __init__(self, hub, identity, limit, sock):
        super().__init__(hub, identity, limit)
        self.sock = sock
        # The socket under gevent's wrapper: non-blocking, so it raises instead of
        # waiting, and the delivering greenlet never blocks on a client.
        self._send = sock._sock.send
        #: The greenlet draining the queue while the socket is full, or None.
        self.writer = None
        #: Whether the hub is to flush this connection.
        self.due = False

    def encode(self, message):
        return message.ws

    def encode_frame(self, frame):
        return ws_frame(dumps(frame))

    def encode_close(self, code, reason):
        return close_frame(code, reason)

    def send_bytes(self, data):
        """Queue ready-made frame bytes (pongs, close echoes)."""
        self._enqueue(data)

    def _wake(self):
        if self.writer is None and not self.due:
            self.due = True
            self.hub.flush_later(self)

    def flush(self):
        """Send what is queued without waiting; a writer takes over what does not fit."""
        self.due = False
        if self.writer is not None or not self.queue:
            return
        data = self._take()
        try:
            sent = self._send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return self._gone()
        if sent < len(data):
            # The rest of a frame is the writer's, not the queue's: a 1013 drops the
            # queue, and a cut frame before the close frame would garble the stream.
            self.writer = gevent.spawn(self._write_loop, data[sent:])

    def _write_loop(self, rest):
        sendall = self.sock.sendall  # gevent's: waits for the socket, not the hub
        try:
            sendall(rest)
            while self.queue:
                sendall(self._take())
        except OSError:
            self._gone()
        finally:
            self.writer = None

    def _gone(self):
        # The client went away; its reader sees it too and ends the session.
        self.queue.clear()
        self.closed = True
        self.hub.remove(self)

    def abort(self):
        if self.writer is not None or self.queue:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join(self, timeout):
        """Wait up to ``timeout`` seconds for what is queued to be sent."""
        self.flush()
        if self.writer is not None:
            self.writer.join(timeout)


class StreamConnection(Connection):
    """Server-sent events: the response iterator itself is the writer."""

    #: Seconds between heartbeat comments, so proxies keep the stream open.
    heartbeat = 15.0

    def __init__(self, hub, identity, limit, environ):
        super().__init__(hub, identity, limit)
        self.environ = environ
        self.wakeup = Event()

    def encode(self, message):
        return message.sse

    def encode_frame(self, frame):
        return b"event: %s\ndata: %s\n\n" % (frame["type"].encode("ascii"), dumps(frame))

    def stream(self):
        """The response body: queued events as they come, heartbeats in between."""
        watcher = gevent.spawn(self._watch_hangup)
        try:
            yield b"retry: 2000\n\n"
            while not (self.closed and not self.queue):
                if not self.queue:
                    self.wakeup.clear()
                    self.wakeup.wait(self.heartbeat)
                yield self._take() or b": heartbeat\n\n"
        finally:
            watcher.kill()
            self.close()
            log.info("connection closed", extra=fields(
                transport="sse", user=self.identity.user, code=self.close_code))

    def _wake(self):
        self.wakeup.set()

    def _watch_hangup(self):
        # An event stream's client sends nothing: its socket turning readable means it
        # hung up. Without this, a gone client would hold its place until a heartbeat
        # write failed, half a minute later.
        sock = self.environ.get("rulecast.socket")
        if sock is None:
            return
        try:
            wait_read(sock.fileno())
            gone = not sock.recv(1, socket.MSG_PEEK)
        except OSError:
            gone = True
        if gone:
            self.close()

    def abort(self):
        try:
            self.environ["rulecast.socket"].shutdown(socket.SHUT_RDWR)
        except (KeyError, OSError):
            pass
