"""The benchmark's peer: Flask-SocketIO under gevent + gevent-websocket, one process.

The setup Flask-SocketIO's docs recommend for gevent: monkey-patched, ``socketio.run(app)``,
which serves with gevent's pywsgi and gevent-websocket's handler. Messages come in over
HTTP (``POST /publish`` with JSON ``{"data": ...}``) and go out with
``socketio.emit("message", data, to="bench")``. Every client joins room "bench" in its
connect handler, the simplest equivalent of a rulecast topic subscription: python-socketio
runs the handler before it answers the namespace connect, so a client that got ``40{...}``
is subscribed. ``GET /healthz`` tells the bench it is up.

For the targeted bench, one room per client like rulecast's ``user:<id>``: a client that
connects with ``&room=u7`` in its URL joins room ``u7`` instead, and ``{"room": "u7",
"data": ...}`` goes to that room only; a JSON list of such objects is a batch, emitted in
order and answered 202 once.

One change to the stock setup, on by default: TCP_NODELAY on every accepted socket, as
rulecast sets it. gevent's pywsgi writes a response's head and body in two sends, so
without it a keep-alive publisher with delayed ACK waits ~40 ms per publish, and
throughput mode would measure that wait, not the server. ``--nagle`` keeps the stock
behaviour.

    .venv/bin/python bench/peer_socketio.py --port 8000 [--nagle]

Needs ``flask-socketio`` (not a rulecast dependency; see bench/README.md).
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402  (after monkey-patching, as gevent requires)
import socket  # noqa: E402

import geventwebsocket.handler  # noqa: E402

from flask import Flask, jsonify, request  # noqa: E402
from flask_socketio import SocketIO, join_room  # noqa: E402

ROOM = "bench"

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")


@socketio.on("connect")
def on_connect(auth=None):
    join_room(request.args.get("room", ROOM))


@app.route("/publish", methods=["POST"])
def publish():
    body = request.get_json(force=True, silent=True)
    batch = body if isinstance(body, list) else [body]
    if not batch or not all(isinstance(b, dict) and "data" in b for b in batch):
        return jsonify(error='expected JSON {"data": ...} or a list of them'), 400
    for item in batch:
        socketio.emit("message", item["data"], to=item.get("room", ROOM))
    return jsonify(ok=True), 202


@app.route("/healthz")
def healthz():
    return jsonify(ok=True)


def nodelay():
    """TCP_NODELAY on every connection (HTTP and WebSocket) gevent-websocket's handler
    serves. The method is wrapped in place: the module calls ``super(WebSocketHandler,
    self)`` by its global name, so a subclass put in its place would recurse."""
    handler = geventwebsocket.handler.WebSocketHandler
    stock = handler.handle

    def handle(self):
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return stock(self)

    handler.handle = handle


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--nagle", action="store_true",
                   help="leave Nagle's algorithm on (the stock setup; ~40 ms per keep-alive "
                        "publish from delayed ACK)")
    args = p.parse_args(argv)
    if not args.nagle:
        nodelay()
    socketio.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
