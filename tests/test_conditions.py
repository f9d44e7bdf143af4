"""The built-in conditions, compiled through a real registry and compiler."""
import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from rulecast import conditions
from rulecast.events import Event
from rulecast.registry import Compiler, Registry, RuleError
from rulecast.templates import Templates


@pytest.fixture(scope="module")
def comp():
    reg = Registry("condition")
    conditions.rulecast_add_conditions(reg)
    return Compiler(reg, Registry("action"), Templates())


def event(event_type="comment.added", actor=None, data=None, **obj):
    return Event(event_type, actor=actor, object=obj, data=data)


def error(comp, config):
    with pytest.raises(RuleError) as info:
        comp.condition(config)
    return info.value


# -- type ----------------------------------------------------------------------------

def test_type_glob_matches(comp):
    """A type glob matches event types by fnmatch."""
    check = comp.condition({"type": "comment.*"})
    assert check(event("comment.added")) is True
    assert check(event("document.added")) is False


def test_type_list_matches_any(comp):
    """A list of type globs matches when any one does."""
    check = comp.condition({"type": ["comment.added", "workflow.*"]})
    assert check(event("workflow.transition")) and check(event("comment.added"))
    assert not check(event("comment.deleted"))


def test_type_explain(comp):
    """type's explain names the event type."""
    check = comp.condition({"type": "x"})
    assert check.explain(event("comment.added")) == "type is 'comment.added'"


def test_type_bad_option_names_problem(comp):
    """A non-string type option is refused, naming the value and the shape wanted."""
    exc = error(comp, {"type": 5})
    assert "condition type" in exc.what and "got 5" in exc.what and "glob" in exc.what


def test_empty_list_refused(comp):
    """An empty list (which would never match) is refused."""
    assert "at least one" in error(comp, {"type": []}).what


# -- path ----------------------------------------------------------------------------

def test_path_double_star_any_depth(comp):
    """`**` matches paths at any depth below."""
    check = comp.condition({"path": "/intranet/**"})
    assert check(event(path="/intranet/a")) and check(event(path="/intranet/a/b/c"))


def test_path_double_star_matches_folder_itself(comp):
    """`/intranet/**` matches `/intranet` itself but not `/intranetx`."""
    check = comp.condition({"path": "/intranet/**"})
    assert check(event(path="/intranet")) is True
    assert check(event(path="/intranetx")) is False


def test_path_single_star_one_segment(comp):
    """`*` matches within one segment only."""
    check = comp.condition({"path": "/intranet/*"})
    assert check(event(path="/intranet/a")) is True
    assert check(event(path="/intranet/a/b")) is False
    assert check(event(path="/intranet")) is False


def test_path_inner_double_star_may_be_empty(comp):
    """`/a/**/b` matches `/a/b` and deeper, not `/a/xb`."""
    check = comp.condition({"path": "/a/**/b"})
    assert check(event(path="/a/b")) and check(event(path="/a/x/y/b"))
    assert not check(event(path="/a/xb"))


def test_path_question_mark_one_char(comp):
    """`?` matches one character, never a slash."""
    check = comp.condition({"path": "/news/?"})
    assert check(event(path="/news/a")) is True
    assert check(event(path="/news/ab")) is False
    assert comp.condition({"path": "/a?b"})(event(path="/a/b")) is False


def test_path_regex_characters_are_literal(comp):
    """Regex characters in a glob match only themselves."""
    check = comp.condition({"path": "/a.b/(x)+"})
    assert check(event(path="/a.b/(x)+")) is True
    assert check(event(path="/aXb/(x)+")) is False


def test_path_list(comp):
    """A list of path globs matches when any one does."""
    check = comp.condition({"path": ["/news/*", "/intranet/**"]})
    assert check(event(path="/news/a")) and check(event(path="/intranet/x/y"))
    assert not check(event(path="/public/x"))


def test_path_missing_is_false(comp):
    """An event without an object path does not match."""
    check = comp.condition({"path": "/**"})
    assert check(event()) is False
    assert check(event(path=7)) is False


def test_path_explain(comp):
    """path's explain names the path tested, or says it is missing."""
    check = comp.condition({"path": "/intranet/**"})
    assert check.explain(event(path="/public/x")) == "object.path is '/public/x'"
    assert check.explain(event()) == "object.path is missing"


def test_path_null_option_refused(comp):
    """An empty `path:` (null) is refused with the shape wanted."""
    assert "path glob" in error(comp, {"path": None}).what


# -- object_type ---------------------------------------------------------------------

def test_object_type_string_and_list(comp):
    """object_type takes one type or a list of them."""
    assert comp.condition({"object_type": "News Item"})(event(type="News Item"))
    check = comp.condition({"object_type": ["Document", "News Item"]})
    assert check(event(type="Document")) and not check(event(type="Event"))


def test_object_type_missing_or_unhashable_is_false(comp):
    """A missing or list-valued object type is False, not an error."""
    check = comp.condition({"object_type": "Document"})
    assert check(event()) is False
    assert check(event(type=["Document"])) is False


def test_object_type_explain(comp):
    """object_type's explain names the object type."""
    assert (comp.condition({"object_type": "Document"}).explain(event(type="Event"))
            == "object.type is 'Event'")


# -- field ---------------------------------------------------------------------------

def test_field_equals(comp):
    """field equals compares the value at the dotted name."""
    check = comp.condition({"field": {"name": "object.state", "equals": "published"}})
    assert check(event(state="published")) and not check(event(state="draft"))


def test_field_in(comp):
    """field in holds when the value is one of the list."""
    check = comp.condition({"field": {"name": "object.state", "in": ["published", "pending"]}})
    assert check(event(state="pending")) and not check(event(state="draft"))


def test_field_not_in(comp):
    """field not_in holds when the value is none of the list."""
    check = comp.condition({"field": {"name": "object.state", "not_in": ["private"]}})
    assert check(event(state="published")) and not check(event(state="private"))


def test_field_exists(comp):
    """field exists checks presence, even of a null value."""
    yes = comp.condition({"field": {"name": "data.comment.id", "exists": True}})
    no = comp.condition({"field": {"name": "data.comment.id", "exists": False}})
    null_id = event(data={"comment": {"id": None}})
    assert yes(null_id) and not no(null_id)
    assert not yes(event(data={"comment": {}})) and no(event())


def test_field_missing_value(comp):
    """A missing value: equals and in are False, not_in is True."""
    equals = comp.condition({"field": {"name": "object.state", "equals": None}})
    within = comp.condition({"field": {"name": "object.state", "in": [None]}})
    outside = comp.condition({"field": {"name": "object.state", "not_in": ["private"]}})
    assert equals(event()) is False and within(event()) is False
    assert outside(event()) is True


def test_field_top_level_and_list_index(comp):
    """field names reach top-level keys and list items by index."""
    assert comp.condition({"field": {"name": "type", "equals": "a.b"}})(event("a.b"))
    check = comp.condition({"field": {"name": "data.tags.0", "equals": "x"}})
    assert check(event(data={"tags": ["x", "y"]})) and not check(event(data={"tags": []}))


def test_field_needs_exactly_one_operator(comp):
    """No operator or two operators are refused, naming the operators."""
    for options in ({"name": "object.state"},
                    {"name": "object.state", "equals": 1, "in": [1]}):
        what = error(comp, {"field": options}).what
        assert "exactly one operator" in what and "equals, in, not_in, exists" in what


def test_field_unknown_operator(comp):
    """An unknown operator is refused by name."""
    assert "'is'" in error(comp, {"field": {"name": "object.state", "is": 1}}).what


def test_field_name_outside_context(comp):
    """A name that cannot be in the event context is refused at load."""
    what = error(comp, {"field": {"name": "state", "equals": 1}}).what
    assert "'state'" in what and "object.state" in what


def test_field_in_needs_list(comp):
    """in with a scalar is refused, pointing at equals."""
    assert "use equals" in error(comp, {"field": {"name": "object.state", "in": "x"}}).what


def test_field_exists_needs_bool(comp):
    """exists with a non-boolean is refused."""
    assert "true or false" in error(comp, {"field": {"name": "object.a", "exists": "yes"}}).what


def test_field_not_a_mapping(comp):
    """A field option that is not a mapping is refused with an example."""
    assert "mapping like" in error(comp, {"field": "object.state"}).what


def test_field_explain(comp):
    """field's explain names the dotted name and its value, or says it is missing."""
    check = comp.condition({"field": {"name": "object.state", "equals": "published"}})
    assert check.explain(event(state="draft")) == "object.state is 'draft'"
    assert check.explain(event()) == "object.state is missing"


# -- actor_in_group, actor_is_owner ---------------------------------------------------

def test_actor_in_group(comp):
    """actor_in_group holds when the actor shares any listed group."""
    check = comp.condition({"actor_in_group": ["editors", "reviewers"]})
    assert check(event(actor={"groups": ["staff", "reviewers"]}))
    assert not check(event(actor={"groups": ["staff"]}))
    assert comp.condition({"actor_in_group": "staff"})(event(actor={"groups": ["staff"]}))


def test_actor_in_group_missing_or_malformed(comp):
    """Missing, non-list or unhashable groups are False, not an error."""
    check = comp.condition({"actor_in_group": "staff"})
    assert check(event()) is False
    assert check(event(actor={"groups": "staff"})) is False
    assert check(event(actor={"groups": [["staff"]]})) is False


def test_actor_in_group_explain(comp):
    """actor_in_group's explain names the actor's groups."""
    check = comp.condition({"actor_in_group": "staff"})
    assert check.explain(event(actor={"groups": ["a"]})) == "actor.groups is ['a']"


def test_actor_is_owner(comp):
    """actor_is_owner compares actor.id with object.owner."""
    owner = comp.condition({"actor_is_owner": True})
    other = comp.condition({"actor_is_owner": False})
    mine = event(actor={"id": "ann"}, owner="ann")
    theirs = event(actor={"id": "bob"}, owner="ann")
    assert owner(mine) and not owner(theirs)
    assert other(theirs) and not other(mine)


def test_actor_is_owner_missing_ids(comp):
    """Missing ids never make the actor the owner."""
    owner = comp.condition({"actor_is_owner": True})
    other = comp.condition({"actor_is_owner": False})
    assert owner(event()) is False and other(event()) is True
    assert owner(event(actor={"id": "ann"})) is False


def test_actor_is_owner_needs_bool(comp):
    """actor_is_owner with a string is refused, naming it."""
    assert "got 'false'" in error(comp, {"actor_is_owner": "false"}).what


def test_actor_is_owner_explain(comp):
    """actor_is_owner's explain names both ids."""
    check = comp.condition({"actor_is_owner": True})
    assert (check.explain(event(actor={"id": "bob"}, owner="ann"))
            == "actor.id is 'bob', object.owner is 'ann'")


# -- expr ----------------------------------------------------------------------------

def test_expr_true_and_false(comp):
    """expr holds when the expression is truthy."""
    check = comp.condition({"expr": "data.text | length > 2"})
    assert check(event(data={"text": "hello"})) is True
    assert check(event(data={"text": "hi"})) is False


def test_expr_undefined_raises(comp):
    """An undefined name raises instead of reading as false."""
    check = comp.condition({"expr": "data.missing"})
    with pytest.raises(UndefinedError):
        check(event())


def test_expr_sandboxed(comp):
    """expr cannot reach __class__."""
    check = comp.condition({"expr": "data.__class__"})
    with pytest.raises(SecurityError):
        check(event())


def test_expr_syntax_error_at_load(comp):
    """A syntax error is a RuleError at load."""
    assert "syntax error" in error(comp, {"expr": "1 +"}).what


def test_expr_needs_string(comp):
    """A non-string expression is refused, naming it."""
    assert "got 5" in error(comp, {"expr": 5}).what


# -- all, any, not -------------------------------------------------------------------

def test_all(comp):
    """all holds when every nested condition does."""
    check = comp.condition({"all": [{"type": "comment.*"}, {"path": "/a/**"}]})
    assert check(event(path="/a/b")) and not check(event(path="/b"))


def test_any(comp):
    """any holds when one nested condition does."""
    check = comp.condition({"any": [{"path": "/a/**"}, {"object_type": "Document"}]})
    assert check(event(type="Document")) and check(event(path="/a"))
    assert not check(event(path="/b"))


def test_not_single(comp):
    """not with one mapping negates it."""
    check = comp.condition({"not": {"actor_is_owner": True}})
    assert check(event(actor={"id": "bob"}, owner="ann"))
    assert not check(event(actor={"id": "ann"}, owner="ann"))


def test_not_list_holds_when_none_holds(comp):
    """not with a list holds only when none of them holds."""
    check = comp.condition({"not": [{"path": "/private/**"}, {"object_type": "Secret"}]})
    assert check(event(path="/public"))
    assert not check(event(path="/private/x")) and not check(event(type="Secret"))


def test_nested_unknown_name_lists_known(comp):
    """An unknown nested condition raises RuleError listing the known names, and where."""
    exc = error(comp, {"all": [{"path": "/a"}, {"pth": "/a"}]})
    assert "unknown condition 'pth'" in exc.what and "actor_in_group" in exc.what
    assert exc.where == "all[1]"


def test_nested_where_composes(comp):
    """An error deep inside says its whole nested place."""
    assert error(comp, {"any": [{"not": {"path": 5}}]}).where == "any[0].not"


def test_nested_needs_list(comp):
    """all given a mapping, or an empty list, is refused."""
    assert "list of conditions" in error(comp, {"all": {"path": "/a"}}).what
    assert "at least one" in error(comp, {"any": []}).what


def test_nested_item_must_be_mapping(comp):
    """A nested item that is not a one-key mapping is refused."""
    assert "one key" in error(comp, {"all": ["path"]}).what


def test_path_regex_source():
    """path_regex turns a glob into one regex source: segment stars, optional /**."""
    assert conditions.path_regex("/a/*/b/**") == r"/a/[^/]*/b(?:/.*)?"
