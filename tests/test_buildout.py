"""buildout.cfg builds a working bin/rulecast from a copy of the checkout, every
distribution pinned. Slow (about half a minute) and needs PyPI, like a real deployment."""
import configparser
import os
import shutil
import subprocess
import sys
import time

import pytest

from rulecast import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: What zc.buildout itself runs on, installed into the fresh venv at the pinned versions.
TOOLCHAIN = ("zc.buildout", "setuptools", "pip", "wheel", "packaging", "platformdirs")
BUDGET = 570  # seconds for all the steps, inside the test's timeout of 600


def read_buildout_cfg():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.optionxform = str  # keep the pins' spelling
    cfg.read(os.path.join(ROOT, "buildout.cfg"), encoding="utf-8")
    return cfg


def checkout_files():
    """The checkout's files as git knows them: tracked and not ignored new ones (so an
    uncommitted buildout.cfg counts), without those deleted from the working tree."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, capture_output=True,
                             check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip("not a git checkout: %s" % exc)
    names = [name for name in out.decode().split("\0") if name]
    return [name for name in names if os.path.isfile(os.path.join(ROOT, name))]


class Steps:
    """Runs commands one after the other within one deadline; a failure shows every
    command so far with its output."""

    def __init__(self, cwd, env):
        self.cwd, self.env = cwd, env
        self.deadline = time.monotonic() + BUDGET
        self.log = []

    def __call__(self, *args, expect=0):
        command = " ".join(map(str, args))
        left = self.deadline - time.monotonic()
        try:
            r = subprocess.run([str(a) for a in args], cwd=self.cwd, env=self.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=max(left, 1))
        except subprocess.TimeoutExpired as exc:
            output = exc.stdout.decode("utf-8", "replace") if isinstance(exc.stdout, bytes) \
                else (exc.stdout or "")
            self.log.append("$ %s\n%s\n(killed after %.0fs)" % (command, output, left))
            pytest.fail(self.report("timed out: " + command))
        self.log.append("$ %s\n%s(exit %d)" % (command, r.stdout, r.returncode))
        if r.returncode != expect:
            pytest.fail(self.report("exit %d, not %d: %s" % (r.returncode, expect, command)))
        return r.stdout

    def report(self, headline):
        return "%s\nin %s\n\n%s" % (headline, self.cwd, "\n\n".join(self.log))


def test_buildout_cfg_pins_everything():
    """Unpinned distributions are refused, and buildout's own tools are pinned."""
    cfg = read_buildout_cfg()
    assert cfg.get("buildout", "allow-picked-versions") == "false"
    assert cfg.get("buildout", "versions") == "versions"
    pins = {name.lower() for name in cfg["versions"]}
    assert {name.lower() for name in TOOLCHAIN + ("zc.recipe.egg", "gevent")} <= pins
    assert cfg.get("rulecast", "recipe") == "zc.recipe.egg"


@pytest.mark.timeout(600)
def test_buildout_makes_a_working_bin_rulecast(tmp_path):
    """Copy the checkout, install the pinned zc.buildout into a fresh venv, bootstrap
    bin/buildout, run it: bin/rulecast runs from the copy and checks the example rules."""
    checkout = tmp_path / "checkout"
    for name in checkout_files():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), checkout / name)
    pins = read_buildout_cfg()["versions"]
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
           and not key.startswith("RULECAST_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    run = Steps(checkout, env)
    venv = tmp_path / "venv"

    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q",
        *["%s==%s" % (name, pins[name]) for name in TOOLCHAIN])
    run(venv / "bin" / "buildout", "bootstrap")
    assert (checkout / "bin" / "buildout").exists(), run.report("no bin/buildout")
    run("bin/buildout", "-c", "buildout.cfg")

    script = (checkout / "bin" / "rulecast").read_text()
    assert os.path.realpath(ROOT) not in script, run.report("bin/rulecast uses the original")
    assert os.path.realpath(checkout) in script, run.report("bin/rulecast ignores the copy")
    version = run("bin/rulecast", "--version").strip()
    assert version == "rulecast " + __version__, run.report(version)
    out = run("bin/rulecast", "check", "rules/")
    assert "rules OK" in out, run.report("bin/rulecast check did not say rules OK")
