"""The `rulecast` command line: version, start-up errors, python -m."""
import subprocess
import sys

from rulecast import __version__


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
