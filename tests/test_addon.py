"""The example add-on in contrib/, installed with pip and found through its entry point."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADDON = os.path.join(ROOT, "contrib", "example-addon")

RULES = """\
- name: saturday-digest
  on: comment.*
  if:
    - weekday: sat
  then:
    - notify_digest: {to: "user:{{ object.owner }}", title: "comment on {{ object.title }}"}
- name: early-week
  on: comment.*
  if:
    - weekday: [mon, Tuesday]
  then:
    - notify_digest: {to: "user:{{ object.owner }}", title: "never on a saturday"}
"""

# 2026-11-21 is a Saturday.
COMMENT = {"type": "comment.added", "time": "2026-11-21T05:51:15.123Z",
           "actor": {"id": "bob"}, "object": {"owner": "ann", "title": "Q3 plan"}}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A directory the add-on was pip-installed into, as a user would install it."""
    base = tmp_path_factory.mktemp("addon")
    # Build from a copy: setuptools writes build/ and *.egg-info next to setup.py.
    source = shutil.copytree(ADDON, base / "src", ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    target = base / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return str(target)


def run_python(site, *args, cwd=None):
    """Run ``python *args`` seeing the installed add-on and this checkout."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([site, ROOT])))


def test_entry_point_registers_condition_and_action(site):
    """The plugin manager loads the installed add-on and its steps reach the compiler."""
    code = textwrap.dedent("""
        import json
        from rulecast.engine import compiler_for
        from rulecast.plugins import manager
        pm = manager()
        compiler = compiler_for(pm.hook)
        print(json.dumps({
            "file": pm.get_plugin("example").__file__,
            "weekday": compiler.conditions.get("weekday").plugin,
            "notify_digest": compiler.actions.get("notify_digest").plugin}))
    """)
    done = run_python(site, "-c", code)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["file"].startswith(site)
    assert found["weekday"] == found["notify_digest"] == "rulecast_example_addon"


def test_rule_with_addon_reaches_websocket(site, make_server, tmp_path):
    """A rule using weekday and notify_digest turns a posted event into a message."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    s = make_server(rules=[str(rules)], extra_path=[site])
    c = s.connect(token=s.token("ann"))
    c.recv_type("welcome")
    r = requests.post(s.url + "/rulecast/api/events", json=COMMENT, timeout=5,
                      headers={"Authorization": "Bearer " + s.api_key})
    assert r.status_code == 202, r.text
    assert r.json()["matched"] == ["saturday-digest"]
    message = c.recv_type("message")
    assert message["channel"] == "user:ann"
    assert message["data"] == {"title": "COMMENT ON Q3 PLAN", "event": "comment.added",
                               "rule": "saturday-digest"}


def test_check_reports_bad_weekday_at_its_line(site, tmp_path):
    """`rulecast check` prints file:line and the bad day name, and exits 1."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("[mon, Tuesday]", "[mon, tuseday]"))
    done = run_python(site, "-m", "rulecast", "check", str(rules), cwd=str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("rules.yaml:10: rule early-week: if[0] weekday: "), done.stdout
    assert "unknown weekday 'tuseday'; use one of mon, tue" in done.stdout
