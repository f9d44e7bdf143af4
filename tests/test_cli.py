"""The `rulecast` command line: version, start-up errors, python -m."""
import json
import os
import resource
import subprocess
import sys
import time

from rulecast import __version__
from tests.conftest import RunningServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rulecast", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def test_version():
    """--version prints the version."""
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == "rulecast " + __version__


def test_bad_config_stops_with_one_line_per_problem(tmp_path):
    """serve with a bad config exits 1, naming file:line and key for each problem."""
    (tmp_path / "rulecast.yaml").write_text("listen: 127.0.0.1:8080\nlsiten: x\n"
                                            "limits:\n  send_queue: lots\n")
    r = run("serve", cwd=tmp_path)
    assert r.returncode == 1
    assert "rulecast.yaml:2: lsiten: unknown key; did you mean 'listen'?" in r.stderr
    assert "rulecast.yaml:4: limits.send_queue:" in r.stderr


def test_unknown_plugin_stops_start_up(tmp_path):
    """serve with an unimportable plugin exits 1 with one clear line."""
    (tmp_path / "rulecast.yaml").write_text("plugins: [no_such_addon]\n")
    r = run("serve", "--listen", "127.0.0.1:0", cwd=tmp_path)
    assert r.returncode == 1
    assert "plugins: cannot import 'no_such_addon'" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_app_stops_start_up(tmp_path):
    """serve --app naming a missing module exits with the module's name."""
    r = run("serve", "--listen", "127.0.0.1:0", "--app", "nowhere:app", cwd=tmp_path)
    assert r.returncode == 1 and "app: cannot import 'nowhere'" in r.stderr


BAD_RULES = """\
- name: fine
  on: x
  then: [{log: {message: ok}}]
- name: typo
  on: x
  if:
    - pth: /a
  then: [{log: {message: ok}}]
- name: bad-kind
  on: x
  then:
    - notify: {to: "room:1", title: t}
- name: bad-option
  on: x
  if:
    - actor_is_owner: perhaps
  then: [{log: {message: ok}}]
"""


def test_check_reports_every_problem_with_file_line(tmp_path):
    """check prints file:line: rule NAME: where: what for each problem and exits 1."""
    (tmp_path / "r.yaml").write_text(BAD_RULES)
    r = run("check", "r.yaml", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith("r.yaml:7: rule typo: if[0] pth: unknown condition 'pth'")
    assert lines[1].startswith("r.yaml:12: rule bad-kind: then[0] notify:")
    assert lines[2].startswith("r.yaml:16: rule bad-option: if[0] actor_is_owner:")
    assert "3 problems; 1 rules are fine" in r.stderr


def test_check_yaml_syntax_error(tmp_path):
    """check reports a YAML syntax error with its line."""
    (tmp_path / "r.yaml").write_text("- name: a\n  on: [x\n")
    r = run("check", "r.yaml", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout.startswith("r.yaml:") and "YAML syntax" in r.stdout


def test_check_ok_counts_rules(tmp_path):
    """check on good rules exits 0 with the count."""
    r = run("check", os.path.join(ROOT, "rules"), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("4 rules OK")


def test_explain_shows_failed_condition_and_messages(tmp_path):
    """explain prints per rule what held, what failed and why, and what it would send."""
    event = {"type": "comment.added", "actor": {"id": "ann", "name": "Ann"},
             "object": {"type": "Document", "path": "/intranet/a", "title": "A",
                        "owner": "ann", "url": "http://x/a"}, "data": {"text": "hi"}}
    (tmp_path / "event.json").write_text(json.dumps(event))
    r = run("explain", "event.json", "--rules", os.path.join(ROOT, "rules"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "rule comment-to-owner" in out and "no match" in out
    assert "FAILED if[1] not" in out
    assert "rule comment-to-reviewers" in out and "MATCHED" in out
    assert 'would send to role:Reviewer: {"title": "New comment on A"' in out
    assert "pending-to-reviewers" in out and "not for this event type" in out


def test_explain_bad_event(tmp_path):
    """explain with an invalid event says what is wrong."""
    (tmp_path / "event.json").write_text('{"actor": 1}')
    r = run("explain", "event.json", cwd=tmp_path)
    assert r.returncode == 1 and "not an event" in r.stderr and "type" in r.stderr


def test_reload_without_server(tmp_path):
    """reload with no running server says where it looked."""
    r = run("reload", cwd=tmp_path)
    assert r.returncode == 1 and "rulecast.pid" in r.stderr


def _serve_with_files(tmp_path, soft, hard, max_connections):
    """A `rulecast serve` started with RLIMIT_NOFILE (soft, hard); (its limits, its log)."""
    server = RunningServer(tmp_path, limits={"max_connections": max_connections})
    limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))  # noqa: E731
    with open(server.log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rulecast", "serve", "--config", server.path, "--listen",
             "127.0.0.1:%d" % server.port, "--workers", "1"], cwd=server.dir, stdout=log,
            stderr=subprocess.STDOUT, preexec_fn=limit, env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        deadline = time.time() + 15
        while "listening on" not in server.output() and time.time() < deadline:
            time.sleep(0.05)
        return resource.prlimit(proc.pid, resource.RLIMIT_NOFILE), server.output()
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_raises_open_files_to_the_hard_limit(tmp_path):
    """The server lifts its soft open-file limit to the hard one before it listens."""
    limits, output = _serve_with_files(tmp_path, 256, 4096, 1000)
    assert limits == (4096, 4096), output
    assert "max_connections" not in output


def test_serve_warns_when_max_connections_cannot_fit(tmp_path):
    """max_connections beyond the open-file limit is said, with the fix."""
    limits, output = _serve_with_files(tmp_path, 512, 512, 5000)
    assert limits == (512, 512)
    assert "limits.max_connections is 5000, but a worker may open only 512 files" in output
    assert "ulimit -n 5064" in output
