"""`rulecast genconfig`: every key with its default and a comment; it loads back to the
defaults, and a key without a description fails here before it ships undocumented."""
import subprocess
import sys

import pytest
import yaml
from marshmallow import Schema, fields

from rulecast import config, genconfig
from rulecast.config_schema import DEFAULTS, ConfigSchema


def run_genconfig(cwd):
    r = subprocess.run([sys.executable, "-m", "rulecast", "genconfig"], cwd=cwd,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout


def schema_keys(schema, at=()):
    """Every dotted key of a schema, walked here independently of genconfig.keys()."""
    for name, field in schema.load_fields.items():
        path = at + (field.data_key or name,)
        yield path
        if isinstance(field, fields.Nested):
            yield from schema_keys(field.schema, path)


def test_every_key_has_a_description_and_a_default():
    """The real schema, DEFAULTS and DESCRIPTIONS agree: nothing missing, nothing stale."""
    assert genconfig.problems() == []


def test_every_schema_key_appears_with_a_comment(tmp_path):
    """Each key of ConfigSchema, section keys included, is set in the output at its
    default, under a comment that begins its description."""
    text = run_genconfig(tmp_path)
    lines = text.splitlines()
    data = yaml.safe_load(text)
    paths = list(schema_keys(ConfigSchema(base="")))
    assert ("limits", "send_queue") in paths and ("history", "max_age") in paths
    for path in paths:
        value, default = data, DEFAULTS
        for part in path:
            assert isinstance(value, dict) and part in value, ".".join(path)
            value, default = value[part], default[part]
        assert value == default, ".".join(path)
        indent = "  " * (len(path) - 1)
        [at] = [i for i, line in enumerate(lines) if line.startswith(indent + path[-1] + ":")]
        above = []
        for line in reversed(lines[:at]):
            if not line.startswith(indent + "# "):
                break
            above.insert(0, line[len(indent) + 2:])
        assert " ".join(above) == " ".join(genconfig.DESCRIPTIONS[".".join(path)].split())


def test_output_is_exactly_the_defaults(tmp_path):
    """Read as YAML, the file is DEFAULTS: no key more, none less, no value changed."""
    assert yaml.safe_load(run_genconfig(tmp_path)) == DEFAULTS


def test_output_loads_back_to_the_defaults(tmp_path, monkeypatch):
    """config.load() of the generated file gives what load() gives with no file at all."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "generated.yaml").write_text(run_genconfig(tmp_path))
    from_file = config.load("generated.yaml", environ={})
    without = config.load(environ={})
    assert from_file.source == str(tmp_path / "generated.yaml") and without.source is None
    assert from_file.as_dict() == without.as_dict()
    assert from_file.var_dir == str(tmp_path / "var")


class FakeLimits(Schema):
    max_message_bytes = fields.Integer()
    brand_new = fields.Integer()


class FakeSchema(Schema):
    listen = fields.String()
    limits = fields.Nested(FakeLimits)
    shiny = fields.String(data_key="shiny_key")


FAKE_DEFAULTS = {"listen": "x:1", "limits": {"max_message_bytes": 1, "brand_new": 2},
                 "shiny_key": "s"}


def test_a_field_without_description_is_a_problem():
    """A new field, top-level or in a section, without a description is reported by its
    dotted key (its data_key when it has one)."""
    descriptions = {"listen": "L", "limits": "Lim", "limits.max_message_bytes": "M"}
    assert genconfig.problems(FakeSchema(), descriptions, FAKE_DEFAULTS) == [
        "limits.brand_new: no description in rulecast.genconfig.DESCRIPTIONS",
        "shiny_key: no description in rulecast.genconfig.DESCRIPTIONS"]
    complete = dict(descriptions, **{"limits.brand_new": "B", "shiny_key": "S"})
    assert genconfig.problems(FakeSchema(), complete, FAKE_DEFAULTS) == []
    blank = dict(complete, shiny_key="  ")
    assert genconfig.problems(FakeSchema(), blank, FAKE_DEFAULTS) == [
        "shiny_key: no description in rulecast.genconfig.DESCRIPTIONS"]


def test_a_missing_default_and_a_stale_description_are_problems():
    descriptions = {"listen": "L", "limits": "Lim", "limits.max_message_bytes": "M",
                    "limits.brand_new": "B", "shiny_key": "S", "gone": "G"}
    defaults = {"listen": "x:1", "limits": {"max_message_bytes": 1}}
    assert genconfig.problems(FakeSchema(), descriptions, defaults) == [
        "limits.brand_new: no default in rulecast.config_schema.DEFAULTS",
        "shiny_key: no default in rulecast.config_schema.DEFAULTS",
        "gone: described in DESCRIPTIONS but not a configuration key"]


def test_a_field_added_to_the_real_schema_is_caught():
    """What happens when someone adds a key to ConfigSchema and forgets this module."""
    class Grown(ConfigSchema):
        shiny = fields.String()

    assert "shiny: no description in rulecast.genconfig.DESCRIPTIONS" in \
        genconfig.problems(Grown(base=""))


def test_generate_refuses_to_print_an_incomplete_file(monkeypatch):
    monkeypatch.delitem(genconfig.DESCRIPTIONS, "limits.send_queue")
    with pytest.raises(RuntimeError, match="limits.send_queue: no description"):
        genconfig.generate()
