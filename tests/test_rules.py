"""Loading rules: YAML with lines, the rule schema, problems as file:line, skip bad rules."""
import textwrap

import pytest

from rulecast.engine import compiler_for
from rulecast.plugins import manager
from rulecast.rules import load, read_yaml


@pytest.fixture(scope="module")
def compiler():
    return compiler_for(manager().hook)


def write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def problems(tmp_path, compiler, text):
    """The problems, with paths shown relative to tmp_path."""
    return [str(p).replace(str(tmp_path) + "/", "")
            for p in load([write(tmp_path, text)], compiler).problems]


def test_on_key_stays_a_string():
    """YAML 1.1 reads `on:` as True; rule files keep it as the key 'on'."""
    doc = read_yaml("- name: a\n  on: x\n")
    assert "on" in doc[0] and True not in doc[0]


def test_lines_recorded():
    """Mappings know their line and their keys' lines; lists their items' lines."""
    doc = read_yaml("- name: a\n  on: x\n  if:\n    - path: /a\n    - type: b\n")
    assert doc[0].line == 1 and doc[0].lines["if"] == 3 and doc[0]["if"].lines == [4, 5]


def test_valid_rules_load(tmp_path, compiler):
    """A well-formed file loads every rule with its file and line."""
    ruleset = load([write(tmp_path, """
        - name: one
          on: comment.*
          then: [{log: {message: hi}}]
        - name: two
          on: [a, b]
          if: [{type: a}]
          then: [{log: {message: "{{ type }}"}}]
    """)], compiler)
    assert ruleset.problems == []
    assert [(r.name, r.line) for r in ruleset.rules] == [("one", 2), ("two", 5)]
    assert ruleset.for_type("comment.added")[0].name == "one"


def test_unknown_condition_reported_with_line_and_known_names(tmp_path, compiler):
    """An unknown condition names file:line, the rule, the place and the known names."""
    found = problems(tmp_path, compiler, """
        - name: typo
          on: x
          if:
            - pth: /intranet/**
          then: [{log: {message: hi}}]
    """)
    assert len(found) == 1
    assert found[0].startswith("r.yaml:5: rule typo: if[0] pth: unknown condition 'pth'; known:")
    assert "path" in found[0]


def test_bad_option_type_reported(tmp_path, compiler):
    """A bad option value is reported with the rule and its line."""
    found = problems(tmp_path, compiler, """
        - name: bad-option
          on: x
          if:
            - actor_is_owner: maybe
          then: [{log: {message: hi}}]
    """)
    assert found and found[0].startswith("r.yaml:5: rule bad-option: if[0] actor_is_owner:")


def test_bad_channel_kind_reported(tmp_path, compiler):
    """notify to an unknown channel kind is caught at load time."""
    found = problems(tmp_path, compiler, """
        - name: bad-channel
          on: x
          then:
            - notify: {to: "room:{{ object.id }}", title: t}
    """)
    assert found and "r.yaml:5: rule bad-channel: then[0] notify" in found[0]
    assert "room" in found[0]


def test_yaml_syntax_error_has_line(tmp_path, compiler):
    """A YAML syntax error is reported with its file and line."""
    found = problems(tmp_path, compiler, "- name: a\n  on: [x\n  then: y\n")
    assert found and found[0].startswith("r.yaml:") and "YAML syntax error" in found[0]


def test_bad_rule_skipped_others_load(tmp_path, compiler):
    """One bad rule is reported and skipped; the rest load."""
    ruleset = load([write(tmp_path, """
        - name: good
          on: x
          then: [{log: {message: hi}}]
        - name: bad
          on: x
          then: [{nope: {}}]
    """)], compiler)
    assert [r.name for r in ruleset.rules] == ["good"] and len(ruleset.problems) == 1


def test_duplicate_names_are_an_error(tmp_path, compiler):
    """Two rules with one name: the second is reported, pointing at the first."""
    found = problems(tmp_path, compiler, """
        - name: twin
          on: x
          then: [{log: {message: a}}]
        - name: twin
          on: x
          then: [{log: {message: b}}]
    """)
    assert found == ["r.yaml:5: rule twin: name: duplicate rule name; first at r.yaml:2"]


def test_unknown_rule_key_suggests(tmp_path, compiler):
    """A misspelt rule key is reported with a suggestion."""
    found = problems(tmp_path, compiler, """
        - name: a
          on: x
          thne: [{log: {message: hi}}]
          then: [{log: {message: hi}}]
    """)
    assert found == ["r.yaml:4: rule a: thne: unknown key; did you mean 'then'? "
                     "known: description, if, name, on, stop, then"]


def test_missing_required_keys(tmp_path, compiler):
    """A rule without on and then says so, per key."""
    found = problems(tmp_path, compiler, "- name: a\n")
    assert any("on: Missing data" in p for p in found)
    assert any("then: Missing data" in p for p in found)


def test_template_syntax_error(tmp_path, compiler):
    """A broken template is a load problem, not a runtime surprise."""
    found = problems(tmp_path, compiler, """
        - name: a
          on: x
          then: [{log: {message: "{{ oops"}}]
    """)
    assert found and "template syntax error" in found[0]


def test_folder_loads_yaml_files_in_order(tmp_path, compiler):
    """A folder loads its .yaml/.yml files in name order, ignoring others."""
    write(tmp_path, "- {name: b, on: x, then: [{log: {message: b}}]}\n", "b.yaml")
    write(tmp_path, "- {name: a, on: x, then: [{log: {message: a}}]}\n", "a.yml")
    write(tmp_path, "not yaml", "notes.txt")
    assert [r.name for r in load([str(tmp_path)], compiler).rules] == ["a", "b"]


def test_missing_path_reported(tmp_path, compiler):
    """A rules path that does not exist is a problem."""
    ruleset = load([str(tmp_path / "nope")], compiler)
    assert "no such rules file or folder" in str(ruleset.problems[0])


def test_null_field_options_reported_not_crashing(tmp_path, compiler):
    """`- field: null` is a problem naming the shape wanted, not a crash."""
    found = problems(tmp_path, compiler, """
        - name: a
          on: x
          if: [{field: null}]
          then: [{log: {message: hi}}]
    """)
    assert found and "must be a mapping like {name: object.state" in found[0]
