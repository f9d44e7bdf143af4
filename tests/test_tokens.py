"""Signed tokens: issue, verify, expiry, the CLI."""
import subprocess
import sys

import pytest

from rulecast import tokens

SECRET = "s" * 32


def test_roundtrip_carries_user_groups_roles():
    """A token proves its user, groups and roles."""
    t = tokens.issue("ann", ["b", "a"], ["R"], secret=SECRET)
    assert tokens.verify(t, SECRET) == ("ann", ("a", "b"), ("R",))


def test_other_secret_rejected():
    """A token signed with another secret is invalid."""
    t = tokens.issue("ann", secret=SECRET)
    with pytest.raises(tokens.InvalidToken, match="signature"):
        tokens.verify(t, "x" * 32)


def test_expired_rejected():
    """A token past its ttl is invalid."""
    t = tokens.issue("ann", ttl=-1, secret=SECRET)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.verify(t, SECRET)


def test_empty_user_refused():
    """A token needs a user."""
    with pytest.raises(ValueError, match="user"):
        tokens.issue("", secret=SECRET)


def test_cli_token_verifies_with_config_secret(tmp_path):
    """`rulecast token` prints a token signed with the config's secret."""
    (tmp_path / "rulecast.yaml").write_text("secret: %s\n" % SECRET)
    out = subprocess.run([sys.executable, "-m", "rulecast", "token", "bob", "--group", "g",
                          "--role", "r", "--ttl", "1h"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert tokens.verify(out, SECRET) == ("bob", ("g",), ("r",))


def test_cli_token_bad_ttl(tmp_path):
    """A ttl that is not a duration is refused with the reason."""
    r = subprocess.run([sys.executable, "-m", "rulecast", "token", "bob", "--ttl", "soon"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "ttl" in r.stderr
