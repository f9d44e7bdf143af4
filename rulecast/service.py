"""Service connections: the frames of a WebSocket opened with an API key, pipelined."""
import logging

import gevent
from gevent.event import Event

from rulecast.bus import BusUnavailable
from rulecast.session import FrameError
from rulecast.websocket import Close

__all__ = ["Pipeline"]

log = logging.getLogger("rulecast.service")


class Pipeline:
    """A service connection's frames, answered in the order received, one reply each.

    A reader greenlet takes frames off the socket while the session's greenlet answers
    them: whatever arrived while the last answer was being stored is answered next,
    and a run of consecutive ``publish`` frames in it is stored with one
    ``bus.publish_many``. Frames waiting to be answered are bounded in bytes: past
    ``limit`` the reader stops reading, so a fast service waits on TCP instead of
    filling the server's memory. At most ``most`` frames are answered at once, and
    their replies leave before the next ones are answered: a service reading its
    replies as they come never has ``limits.send_queue`` of them waiting.
    """

    def __init__(self, session, limit, most):
        self.session = session
        self.limit = limit
        self.most = most
        #: Texts read and not yet answered; then None (the end) or a Close.
        self.waiting = []
        self.size = 0
        self.ready = Event()
        self.room = Event()
        self.room.set()

    def run(self):
        """Answer frames until the client closes; raises Close as the reader met it."""
        reader = gevent.spawn(self._read)
        try:
            while True:
                if not self.waiting:
                    self.ready.clear()
                    self.ready.wait()
                batch, self.waiting = self.waiting[:self.most], self.waiting[self.most:]
                self.size = sum(len(t) for t in self.waiting if isinstance(t, str))
                if self.size < self.limit:
                    self.room.set()
                if not self._answer(batch):
                    return
                gevent.sleep(0)  # the hub sends the replies; the reader reads on
        finally:
            reader.kill(block=False)

    def _read(self):
        receive = self.session.ws.receive
        try:
            while True:
                self.room.wait()
                text = receive()
                self.waiting.append(text)
                self.ready.set()
                if text is None:
                    return
                self.size += len(text)
                if self.size >= self.limit:
                    self.room.clear()
        except Close as close:
            self.waiting.append(close)
        except Exception:
            log.exception("reading a service connection failed")
            self.waiting.append(Close(1011, "internal error"))
        self.ready.set()

    def _answer(self, batch):
        """Answer ``batch``; False once it holds the end of the connection."""
        session, run = self.session, []
        for text in batch:
            if text is None or isinstance(text, Close) or session.conn.closed:
                self._publish(run)
                if isinstance(text, Close):
                    raise text
                return False
            try:
                frame = session._parse(text)
                if frame["type"] == "publish":
                    run.append((frame, session._publishable(frame)))
                    continue
            except FrameError as exc:
                # Into the run, not sent now: the answers to earlier frames go first.
                run.append((exc.frame, exc))
                continue
            self._publish(run)
            session._answer_frame(frame)
        self._publish(run)
        return True

    def _publish(self, run):
        """Store the valid publishes of ``run`` together, then answer each in order."""
        if not run:
            return
        session = self.session
        items = [item for _, item in run if not isinstance(item, FrameError)]
        ids, failed = iter(()), None
        if items:
            try:
                ids = iter([m.id for m in session.server.bus.publish_many(items)])
            except BusUnavailable as exc:
                failed = "not published: %s; try again" % exc
        for frame, item in run:
            if isinstance(item, FrameError):
                session._error(item)
            elif failed is not None:
                session._error(FrameError("unavailable", failed, frame))
            else:
                session._reply(frame, {"type": "published", "id": next(ids)})
        run.clear()
