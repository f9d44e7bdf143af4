"""A co-hosted Flask app for the tests: what `--app tests.apps:app` serves beside rulecast."""
import socket

from flask import Flask, jsonify, request

import rulecast

app = Flask(__name__)


@app.get("/nodelay")
def nodelay():
    sock = request.environ["rulecast.socket"]
    return jsonify(nodelay=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@app.get("/whoami")
def whoami():
    return jsonify(session=request.cookies.get("session"), method=request.method)


@app.post("/echo")
def echo():
    return jsonify(got=request.get_json(), content_type=request.content_type)


@app.get("/text")
def text():
    return "plain words", 200, {"Content-Type": "text/plain"}


@app.get("/boom")
def boom():
    raise RuntimeError("the app failed")


@app.post("/announce")
def announce():
    """Publishes in-process, as a co-hosted app does."""
    return jsonify(id=rulecast.publish("topic:public-app", {"title": request.json["title"]}))


@app.post("/announce-many")
def announce_many():
    """Publishes a batch in-process; a bad one answers 400 with the error."""
    try:
        ids = rulecast.publish_many([("topic:public-app", {"title": t})
                                     if t is not None else ("bogus", {})
                                     for t in request.json["titles"]])
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(ids=ids)


@app.post("/emit")
def emit_view():
    """Emits an event, then answers as asked: a status, or an exception."""
    body = request.json
    try:
        rulecast.emit(body["type"], actor={"id": "tester"})
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    if body.get("raise"):
        raise RuntimeError("the view failed after emitting")
    return jsonify(ok=True), body.get("status", 200)
