"""nanomsg sockets that never block the gevent hub: wait on RCVFD/SNDFD, then try."""
import os

from gevent.lock import Semaphore
from gevent.socket import wait_read

try:
    import nanomsg
except ImportError as exc:  # the C library or the binding is missing
    raise ImportError("rulecast --workers N needs nanomsg: apt-get install libnanomsg-dev "
                      "&& pip install nanomsg (%s)" % exc) from None

__all__ = ["Socket", "endpoint", "clean_run_dir"]


def endpoint(run_dir, name):
    """The ipc:// address of ``name`` in ``run_dir``."""
    return "ipc://" + os.path.join(run_dir, name + ".ipc")


def clean_run_dir(run_dir):
    """Create ``run_dir`` and remove IPC socket files a crashed run left behind."""
    os.makedirs(run_dir, exist_ok=True)
    for name in os.listdir(run_dir):
        if name.endswith(".ipc"):
            os.unlink(os.path.join(run_dir, name))


class Socket:
    """A nanomsg socket whose recv and send yield to other greenlets instead of
    blocking: the calls are DONTWAIT, and on EAGAIN the greenlet waits until the
    socket's RCVFD or SNDFD (both signalled as *readable*) says to try again."""

    def __init__(self, kind, recv_buffer=None):
        self.sock = nanomsg.Socket(kind)
        if recv_buffer:
            self.sock.recv_buffer_size = recv_buffer
        self._recv_fd = self._send_fd = None
        # One greenlet at a time may wait on a descriptor.
        self._sending = Semaphore()
        self._receiving = Semaphore()

    def bind(self, address):
        self.sock.bind(address)
        return self

    def connect(self, address):
        self.sock.connect(address)
        return self

    def subscribe(self, prefix=b""):
        self.sock.set_string_option(nanomsg.SUB, nanomsg.SUB_SUBSCRIBE, prefix)
        return self

    def recv(self):
        """The next message, waiting cooperatively."""
        with self._receiving:
            while True:
                try:
                    return self.sock.recv(flags=nanomsg.DONTWAIT)
                except nanomsg.NanoMsgAPIError as exc:
                    if exc.errno != nanomsg.EAGAIN:
                        raise
                if self._recv_fd is None:
                    self._recv_fd = self.sock.recv_fd
                wait_read(self._recv_fd)

    def send(self, data, timeout=None):
        """Send ``data``, waiting cooperatively while the peer's buffer is full;
        TimeoutError after ``timeout`` seconds."""
        with self._sending:
            while True:
                try:
                    return self.sock.send(data, flags=nanomsg.DONTWAIT)
                except nanomsg.NanoMsgAPIError as exc:
                    if exc.errno != nanomsg.EAGAIN:
                        raise
                if self._send_fd is None:
                    self._send_fd = self.sock.send_fd
                wait_read(self._send_fd, timeout=timeout)

    def try_send(self, data):
        """Send ``data`` if it goes without waiting; False when it would have to wait
        (or another greenlet is waiting to send)."""
        if self._sending.locked():
            return False
        try:
            self.sock.send(data, flags=nanomsg.DONTWAIT)
        except nanomsg.NanoMsgAPIError as exc:
            if exc.errno != nanomsg.EAGAIN:
                raise
            return False
        return True

    def close(self):
        self.sock.close()
