"""Request headers read without the email package: the parser, then a real server."""
import io
import socket

import requests

from rulecast.headers import MAX_HEADERS, MAX_LINE, Headers


def parse(text):
    return Headers(io.BytesIO(text.encode("iso-8859-1")))


def raw_request(server, head):
    """The status line a raw request ``head`` (without the blank line) is answered with."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode("iso-8859-1") + b"\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n")[0].decode()


def test_get_ignores_case_and_takes_the_first():
    """Names match in any case; of repeated headers the first value is taken."""
    headers = parse("Host: a\r\nX-Thing:  one \r\nx-thing: two\r\n\r\nbody")
    assert headers.status == ""
    assert headers.get("x-THING") == "one" and headers.getheader("HOST") == "a"
    assert headers.get("missing", "d") == "d" and "missing" not in headers


def test_lines_keep_their_order_for_the_environ():
    """The lines pywsgi turns into HTTP_* keys come back as sent, names unchanged."""
    headers = parse("Host: a\r\nContent-Type: text/plain\r\nX-B: 2\r\n\r\n")
    assert headers.headers == ["Host: a\r\n", "Content-Type: text/plain\r\n", "X-B: 2\r\n"]
    assert headers.typeheader == "text/plain"


def test_folded_line_continues_the_value():
    """An obsolete folded line joins the header before it."""
    assert parse("X-Long: one\r\n  two\r\n\r\n").get("x-long") == "one two"


def test_delete_removes_every_occurrence():
    """del drops a header however often and in whatever case it came."""
    headers = parse("Content-Length: 3\r\ncontent-length: 4\r\nHost: a\r\n\r\n")
    del headers["CONTENT-LENGTH"]
    assert headers.get("content-length") is None and headers.get("host") == "a"


def test_bad_headers_set_status():
    """A line without a colon, too long a line or too many lines is a status, not a raise."""
    assert "malformed" in parse("Host a\r\n\r\n").status
    assert "longer than" in parse("X: " + "a" * MAX_LINE + "\r\n\r\n").status
    assert "more than" in parse("".join("X%d: v\r\n" % i for i in range(MAX_HEADERS + 1))).status


def test_server_reads_headers_into_the_environ(server):
    """A request's headers reach the API: the Authorization header is honoured."""
    r = requests.post(server.url + "/rulecast/api/publish", json={"channel": "topic:x",
                      "data": {}}, headers={"authorization": "Bearer " + server.api_key})
    assert r.status_code == 202, r.text


def test_server_answers_malformed_headers_400(server):
    """A malformed header line gets 400 and the server keeps serving."""
    assert raw_request(server, "GET /rulecast/healthz HTTP/1.1\r\nHost a").startswith(
        "HTTP/1.1 400")
    assert requests.get(server.url + "/rulecast/healthz").status_code == 200
