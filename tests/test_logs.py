"""Log lines: key=value or JSON, one per happening, with request ids and no tokens."""
import json
import logging

import pytest
import requests

from tests.conftest import RunningServer
from rulecast import logs


def record(msg, **values):
    r = logging.LogRecord("rulecast.x", logging.INFO, __file__, 1, msg, (), None)
    r.fields = values
    return r


def test_key_value_line_quotes_what_needs_it():
    """Values with spaces, quotes or '=' are quoted so a line splits back into pairs."""
    line = logs.KeyValueFormatter().format(record("event", type="a.b", text='say "hi" a=b',
                                                  matched=["r1", "r2"]))
    assert line.endswith('INFO rulecast.x event type=a.b text="say \\"hi\\" a=b" '
                         'matched="[\\"r1\\",\\"r2\\"]"')


def test_json_line_has_fields_and_request_id():
    """JSON lines carry the fields and the current request id."""
    logs.request_id.set("req-1")
    try:
        doc = json.loads(logs.JsonFormatter().format(record("message", id=7, channel="user:a")))
    finally:
        logs.request_id.set(None)
    assert doc["message"] == "message" and doc["id"] == 7 and doc["request"] == "req-1"


@pytest.fixture
def logged(tmp_path):
    """Logging set up as the server does, to a file; yields a reader of its lines."""
    root, saved = logging.getLogger(), logging.getLogger().handlers[:]
    path = tmp_path / "err.log"
    with open(path, "w") as stream:
        def setup(as_json=False):
            logs.setup(as_json=as_json)
            root.handlers[0].setStream(stream)
        yield setup, lambda: path.read_text().splitlines()
    root.handlers[:] = saved


@pytest.mark.parametrize("as_json", [False, True])
def test_access_line_as_the_formatter_makes_it(logged, as_json):
    """logs.access() writes the line the formatter makes of the same record."""
    setup, lines = logged
    setup(as_json)
    logs.request_id.set("req-9")
    try:
        logs.access(client="10.0.0.1", request_line="GET / HTTP/1.1", status=200, bytes=5,
                    seconds=0.0012)
        want = logging.getLogger().handlers[0].format(logging.makeLogRecord({
            "name": "rulecast.access", "levelname": "INFO", "msg": "request",
            "fields": {"client": "10.0.0.1", "request_line": "GET / HTTP/1.1",
                       "status": 200, "bytes": 5, "seconds": 0.0012}}))
    finally:
        logs.request_id.set(None)
    got, = lines()
    if as_json:
        got, want = json.loads(got), json.loads(want)
        del got["time"], want["time"]
        assert got == want
    else:
        assert got.split(" ", 2)[2] == want.split(" ", 2)[2]  # all but the time


def test_access_line_through_logging_when_reconfigured(logged):
    """With a handler of someone else's on rulecast.access, the line takes the logging
    module's path, so that handler sees it."""
    setup, lines = logged
    setup()
    seen = []
    other = logging.Handler()
    other.emit = seen.append
    logging.getLogger("rulecast.access").addHandler(other)
    try:
        logs.access(client="10.0.0.1", request_line="GET / HTTP/1.1", status=200, bytes=5,
                    seconds=0.1)
    finally:
        logging.getLogger("rulecast.access").removeHandler(other)
    assert [r.fields["status"] for r in seen] == [200]
    assert len(lines()) == 1 and "status=200" in lines()[0]


def test_given_request_id_kept_or_replaced():
    """A sane X-Request-ID is kept; a long or odd one is replaced by a fresh id."""
    assert logs.new_request_id("abc-123") == "abc-123"
    assert logs.new_request_id("x" * 200) != "x" * 200
    assert logs.new_request_id("two words") != "two words"


def _event_and_message_logged(tmp_path, *args):
    """A server started with ``args``, after an event whose rule sent one message to a
    connected user, stopped; its log."""
    rules = tmp_path / "r.yaml"
    rules.write_text("- {name: r, on: x, then: [{publish: {channel: 'user:ann', data: {}}}]}\n")
    s = RunningServer(tmp_path / "s", rules=[str(rules)]).start(*args)
    try:
        token = s.token("ann")
        c = s.connect(query="token=" + token)
        c.recv_type("welcome")
        requests.post(s.url + "/rulecast/api/events", json={"type": "x"}, headers={
            "Authorization": "Bearer " + s.api_key, "X-Request-ID": "trace-42"})
        c.recv_type("message")
        c.close()
    finally:
        s.stop()
    return s.output(), token


def test_server_logs_event_message_connection_lines(tmp_path):
    """With --log-level debug, a real server logs the event, its message, and the
    connection's open and close, all under the request id the client sent; tokens
    never appear."""
    out, token = _event_and_message_logged(tmp_path, "--log-level", "debug")
    assert any(line.startswith(tuple("0123456789")) and " event type=x " in line
               and "request=trace-42" in line for line in out.splitlines())
    assert any(" message id=1 channel=user:ann" in line and "request=trace-42" in line
               for line in out.splitlines())
    assert "connection open transport=websocket user=ann" in out
    assert "connection closed transport=websocket user=ann" in out
    assert token not in out


def test_server_logs_one_line_per_request_at_info(tmp_path):
    """At the default level an event costs one access line, no line per message."""
    out, token = _event_and_message_logged(tmp_path)
    lines = [line for line in out.splitlines() if "request=trace-42" in line]
    assert len(lines) == 1 and "POST /rulecast/api/events" in lines[0], lines
    assert token not in out


def test_log_json_flag_makes_every_line_json(tmp_path):
    """serve --log-json writes one JSON object per line."""
    import os
    import subprocess
    import sys
    import time
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rulecast", "serve", "--listen", "127.0.0.1:0", "--workers", "1",
         "--log-json"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=root))
    lines = []
    deadline = time.time() + 15
    while time.time() < deadline and not any("listening" in line for line in lines):
        lines.append(proc.stderr.readline())
    proc.terminate()
    proc.wait(10)
    docs = [json.loads(line) for line in lines if line.strip()]
    assert any(d["message"].startswith("listening on") for d in docs)
    assert all({"time", "level", "logger", "message"} <= set(d) for d in docs)
