"""The sequencer alone, fed by simulated workers: its ceiling in messages/s and its CPU per message."""
import argparse
import os
import signal
import sys
import tempfile
import time
from types import SimpleNamespace

from procs import ROOT, _cpu_ns, pin

sys.path.insert(0, ROOT)  # this tree's rulecast

import nanomsg  # noqa: E402

from rulecast.bus.nanomsg import new_token  # noqa: E402
from rulecast.nanomsg_io import endpoint  # noqa: E402
from rulecast.ipc import decode_reply, decode_stream, encode_request  # noqa: E402
from rulecast.sequencer import PUB, pair_name  # noqa: E402

SERVER_CPU, CLIENT_CPU = 0, 1


def start_sequencer(tmp, workers):
    """Fork a sequencer for ``workers`` slots storing in ``tmp``, pinned to SERVER_CPU."""
    pid = os.fork()
    if pid:
        return pid
    try:
        pin(SERVER_CPU)
        from gevent import monkey
        monkey.patch_all()
        from rulecast.sequencer import Sequencer
        config = SimpleNamespace(
            store="sqlite:///" + os.path.join(tmp, "rulecast.db"),
            history=SimpleNamespace(max_per_channel=10 ** 9, max_age=None))
        Sequencer(config, tmp, workers).run()
    finally:
        os._exit(0)


def request(n, batch, subscribers):
    """Worker request ``n``: ``batch`` messages, each for one of ``subscribers`` users."""
    items = [("user:u%d" % ((n * batch + i) % subscribers), {"n": n * batch + i, "t": 0.0})
             for i in range(batch)]
    return encode_request(n, new_token(n), items)


def measure(workers, batch, seconds, window, subscribers=1000):
    """Messages/s and the sequencer's CPU while ``workers`` PAIR sockets each keep
    ``window`` requests of ``batch`` messages in flight for ``seconds``."""
    tmp = tempfile.mkdtemp(prefix="rulecast-seq-")
    pid = start_sequencer(tmp, workers)
    pairs, sub = [], None
    try:
        deadline = time.time() + 10
        while not os.path.exists(os.path.join(tmp, PUB + ".ipc")):
            if time.time() > deadline:
                raise SystemExit("the sequencer did not start")
            time.sleep(0.05)
        for slot in range(workers):
            pair = nanomsg.Socket(nanomsg.PAIR)
            pair.connect(endpoint(tmp, pair_name(slot)))
            pairs.append(pair)
        # One subscriber, as a worker is: what the sequencer broadcasts costs it too.
        sub = nanomsg.Socket(nanomsg.SUB)
        sub.set_string_option(nanomsg.SUB, nanomsg.SUB_SUBSCRIBE, b"")
        sub.connect(endpoint(tmp, PUB))
        time.sleep(0.3)
        sent = answered = received = 0
        for pair in pairs:
            for _ in range(window):
                pair.send(request(sent, batch, subscribers))
                sent += 1
        cpu0, t0 = _cpu_ns(pid), time.time()
        while time.time() - t0 < seconds:
            for pair in pairs:
                _, reply = decode_reply(pair.recv())
                if reply.startswith(b"!"):
                    raise SystemExit("the sequencer refused: %s" % reply.decode())
                answered += batch
                pair.send(request(sent, batch, subscribers))
                sent += 1
            while True:  # drain the broadcast without waiting, so it never backs up
                try:
                    data = sub.recv(flags=nanomsg.DONTWAIT)
                except nanomsg.NanoMsgAPIError:
                    break
                received += sum(1 for id_, _, _ in decode_stream(data) if id_ is not None)
        elapsed, cpu = time.time() - t0, (_cpu_ns(pid) - cpu0) / 1e9
    finally:
        for sock in pairs + [sub]:
            if sock is not None:
                sock.close()
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    return dict(workers=workers, batch=batch, messages=answered, per_s=answered / elapsed,
                us_per_message=cpu / answered * 1e6, busy=cpu / elapsed,
                broadcast=received)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", default="1,2,16",
                        help="simulated workers, comma-separated (default 1,2,16)")
    parser.add_argument("--batch", default="1,10",
                        help="messages per worker request, comma-separated (default 1,10)")
    parser.add_argument("--window", type=int, default=4,
                        help="requests each worker keeps in flight (default 4, as a worker's "
                             "bus allows)")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    pin(CLIENT_CPU)
    print("$ bench/sequencer.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print("the sequencer pinned to CPU %d; the simulated workers, one process, to CPU %d; "
          "%d requests in flight per worker, %g s each" % (
              SERVER_CPU, CLIENT_CPU, args.window, args.seconds))
    print("%-8s %-6s %12s %16s %8s" % ("workers", "batch", "messages/s", "seq CPU us/msg",
                                       "seq busy"))
    for workers in [int(w) for w in args.workers.split(",")]:
        for batch in [int(b) for b in args.batch.split(",")]:
            r = measure(workers, batch, args.seconds, args.window)
            print("%-8d %-6d %12.0f %16.1f %7.0f%%" % (
                workers, batch, r["per_s"], r["us_per_message"], 100 * r["busy"]))


if __name__ == "__main__":
    main()
