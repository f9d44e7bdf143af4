"""The Sphinx site in docs/ builds with warnings as errors, and its generated reference
tables list every configuration key, built-in condition and action, and metric."""
import html
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("myst_parser", reason="the docs extra is not installed: "
                                          "pip install -e '.[docs]'")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def sphinx_build(source, out, *extra):
    """Run sphinx-build as `make docs` does: warnings (a broken link, an unknown
    reference, a reference table that drifted from the code) are errors."""
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", *extra,
         source, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=280)


def text_of(out, page):
    """The visible text of a built page, tags dropped."""
    with open(os.path.join(str(out), page + ".html"), encoding="utf-8") as f:
        return html.unescape(re.sub(r"<[^>]+>", " ", f.read()))


class _Collect(HTMLParser):
    """The text inside every element whose class list has ``css_class``."""

    VOID = {"br", "img", "hr", "meta", "link", "input", "col", "wbr"}

    def __init__(self, css_class):
        super().__init__()
        self.css_class, self.depth, self.parts = css_class, 0, []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        if self.depth:
            self.depth += 1
        elif self.css_class in (dict(attrs).get("class") or "").split():
            self.depth = 1

    def handle_endtag(self, tag):
        if self.depth and tag not in self.VOID:
            self.depth -= 1
            self.parts.append(" ")

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)


def block(out, page, css_class):
    """The text of the elements of ``page`` whose class list has ``css_class``."""
    with open(os.path.join(str(out), page + ".html"), encoding="utf-8") as f:
        collect = _Collect(css_class)
        collect.feed(f.read())
    text = " ".join("".join(collect.parts).split())
    assert text, "nothing with class %s on %s.html" % (css_class, page)
    return text


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    r = sphinx_build(DOCS, out)
    assert r.returncode == 0, "sphinx-build failed:\n%s\n%s" % (r.stdout[-3000:], r.stderr)
    return out


@pytest.mark.timeout(300)
def test_site_builds_without_warnings(site):
    """Every page of the toctree is built, the theme's index included."""
    for page in ("index", "concepts", "quickstart", "configuration", "rules", "protocol",
                 "client", "widget", "addons", "deployment", "operations", "architecture"):
        assert os.path.exists(os.path.join(str(site), page + ".html")), page


@pytest.mark.timeout(300)
def test_config_table_lists_every_key(site):
    """The configuration table is generated: every key of the schema, nested ones dotted,
    with its default and environment variable."""
    from marshmallow import fields

    from rulecast.config_schema import DEFAULTS, ConfigSchema
    table = block(site, "configuration", "rulecast-config")
    assert "max_message_bytes" in table
    assert "limits.max_message_bytes" in table and "RULECAST_LIMITS_MAX_MESSAGE_BYTES" in table
    assert "history.max_age" in table and "7d" in table
    for name, field in ConfigSchema(base="").load_fields.items():
        subkeys = (["%s.%s" % (name, sub) for sub in field.schema.load_fields]
                   if isinstance(field, fields.Nested) else [name])
        for key in subkeys:
            assert key in table, key
    assert set(DEFAULTS) == set(ConfigSchema(base="").load_fields)
    # A validator's own message, with the probed value cut out of it.
    assert "must be a whole number of bytes above 0" in table
    assert "\u2026" not in table


@pytest.mark.timeout(300)
def test_rules_reference_lists_every_builtin_step(site):
    """The rules page keeps its hand-written text and gains the generated reference of
    every condition and action the built-in plugins register, with their options."""
    from rulecast import engine, plugins
    compiler = engine.compiler_for(plugins.manager().hook)
    page = text_of(site, "rules")
    assert "Loading and reloading" in page  # the hand-written part is still there
    conditions = block(site, "rules", "rule-condition")
    actions = block(site, "rules", "rule-action")
    assert "actor_is_owner" in conditions and "must be true or false" in conditions
    assert "webhook" in actions
    for name, step in compiler.conditions.steps.items():
        if step.plugin in plugins.BUILTINS:
            assert name in page, name
    for name, step in compiler.actions.steps.items():
        if step.plugin in plugins.BUILTINS:
            assert name in page, name
    # The webhook's options with their required flags and defaults.
    assert re.search(r"\bretries\s+no\s+3\b", actions), actions[:2000]
    assert re.search(r"\burl\s+yes\b", actions)


@pytest.mark.timeout(300)
def test_operations_lists_metrics(site):
    """The metrics table is read from the source: every metric of rulecast.metrics,
    counters with their _total suffix."""
    from rulecast.metrics import Metrics
    table = block(site, "operations", "rulecast-metrics")
    for family in Metrics().registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        assert name in table, name
    assert "rulecast_webhook_failures_total" in table


@pytest.mark.timeout(300)
def test_hooks_and_client_documented_from_docstrings(site):
    """autodoc pulls the hook specifications and the client's functions."""
    addons = text_of(site, "addons")
    for hook in ("rulecast_add_conditions", "rulecast_add_actions", "rulecast_identify",
                 "rulecast_authorize", "rulecast_event_received", "rulecast_message_published",
                 "rulecast_configure"):
        assert hook in addons, hook
    assert "contrib/example-addon" in addons
    client = text_of(site, "client")
    assert "resuming after the last id seen" in client


@pytest.mark.timeout(300)
def test_broken_reference_fails_the_build(tmp_path):
    """With the project's conf.py, a link to a page that does not exist is an error."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.md").write_text("# Broken\n\nSee [the missing page](missing.md) and "
                                  "{confval}`limits.no_such_key`.\n\n"
                                  "```{rulecast-config}\n```\n")
    r = sphinx_build(str(src), tmp_path / "out", "-c", DOCS)
    assert r.returncode != 0
    assert "missing.md" in r.stderr and "limits.no_such_key" in r.stderr
