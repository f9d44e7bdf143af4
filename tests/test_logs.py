"""Log lines: key=value or JSON, one per happening, with request ids and no tokens."""
import json
import logging

import requests

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


def test_given_request_id_kept_or_replaced():
    """A sane X-Request-ID is kept; a long or odd one is replaced by a fresh id."""
    assert logs.new_request_id("abc-123") == "abc-123"
    assert logs.new_request_id("x" * 200) != "x" * 200
    assert logs.new_request_id("two words") != "two words"


def test_server_logs_message_connection_lines(make_server, tmp_path):
    """A real server logs an event's message, and the connection's open and close, all
    under the request id the client sent; tokens never appear."""
    rules = tmp_path / "r.yaml"
    rules.write_text("- {name: r, on: x, then: [{publish: {channel: 'user:ann', data: {}}}]}\n")
    s = make_server(rules=[str(rules)])
    token = s.token("ann")
    c = s.connect(query="token=" + token)
    c.recv_type("welcome")
    requests.post(s.url + "/rulecast/api/events", json={"type": "x"},
                  headers={"Authorization": "Bearer " + s.api_key, "X-Request-ID": "trace-42"})
    c.recv_type("message")
    c.close()
    s.stop()
    out = s.output()
    assert any(" message id=1 channel=user:ann" in line and "request=trace-42" in line
               for line in out.splitlines())
    assert "connection open transport=websocket user=ann" in out
    assert "connection closed transport=websocket user=ann" in out
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
