"""Label selectors against upstream's cases (k8s.io/apimachinery pkg/labels/selector_test.go and
pkg/apis/meta/v1/helpers_test.go), plus property tests of the canonical string form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.api import (
    EVERYTHING,
    NOTHING,
    Selector,
    SelectorError,
    label_selector_as_selector,
    parse_selector,
    selector_from_set,
)
from control.api.labels import Requirement, requirement


@pytest.mark.parametrize("text", ["x=a,y=b,z=c", "", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x",
                                  "x>1", "x>1,z<5"])
def test_good_strings_restring_without_spaces(text: str) -> None:
    assert str(parse_selector(text)) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["x=a||y=b", "x==a==b", "!x=a", "x<a", "x,,y", ",x,y", "x nott in (y)",
                                  "a in (xyz),", "a in (xyz)b notin ()", "a in (xyz abc)", "a notin(", "a (",
                                  "(", "x>1.1", "x in", "x in (a"])
def test_bad_strings(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


def test_parse_is_deterministic() -> None:
    assert str(parse_selector("x=a,a=x")) == str(parse_selector("a=x,x=a")) == "a=x,x=a"


def r(key: str, op: str, *values: str) -> Requirement:
    return requirement(key, op, sorted(values))


@pytest.mark.parametrize(("text", "expected"), [
    ("", ()),
    ("\rx", (r("x", "exists"),)),
    ("this-is-a-dns.domain.com/key-with-dash", (r("this-is-a-dns.domain.com/key-with-dash", "exists"),)),
    ("this-is-another-dns.domain.com/key-with-dash in (so,what)",
     (r("this-is-another-dns.domain.com/key-with-dash", "in", "so", "what"),)),
    ("0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
     (r("0.1.2.domain/99", "notin", "10.10.100.1", "tick.tack.clock"),)),
    ("foo  in\t (abc)", (r("foo", "in", "abc"),)),
    ("x notin\n (abc)", (r("x", "notin", "abc"),)),
    ("x  notin\t\t\t(abc,def)", (r("x", "notin", "abc", "def"),)),
    ("x in (abc,)", (r("x", "in", "abc", ""),)),
    ("x in (abc,abc)", (r("x", "in", "abc"),)),
    ("x in ()", (r("x", "in", ""),)),
    ("x in (a,,)", (r("x", "in", "a", ""),)),
    ("x in (a,,,,,,)", (r("x", "in", "a", ""),)),
    ("x in (a,,a,,a,,a,,)", (r("x", "in", "a", ""),)),
    ("x notin (abc,,def),bar,z in (),w",
     (r("bar", "exists"), r("w", "exists"), r("x", "notin", "abc", "", "def"), r("z", "in", ""))),
    ("x,y in (a)", (r("x", "exists"), r("y", "in", "a"))),
    ("x=a", (r("x", "=", "a"),)),
    ("x>1", (r("x", "gt", "1"),)),
    ("x<7", (r("x", "lt", "7"),)),
    ("x=a,y!=b,z in (h,i,j)", (r("x", "=", "a"), r("y", "!=", "b"), r("z", "in", "h", "i", "j"))),
    ("x notin ( )", (r("x", "notin", ""),)),
    ("x notin (, a)", (r("x", "notin", "", "a"),)),
    ("a ", (r("a", "exists"),)),
    ("a in (x,y,notin, z,in)", (r("a", "in", "in", "notin", "x", "y", "z"),)),
    ("notin=in", (r("notin", "=", "in"),)),
])
def test_set_selector_parser(text: str, expected: tuple[Requirement, ...]) -> None:
    assert parse_selector(text).requirements == expected


@pytest.mark.parametrize(("text", "labels", "match"), [
    ("", {"x": "y"}, True),
    ("x=y", {"x": "y"}, True),
    ("x=y,z=w", {"x": "y", "z": "w"}, True),
    ("x!=y,z!=w", {"x": "z", "z": "a"}, True),
    ("notin=in", {"notin": "in"}, True),
    ("x", {"x": "z"}, True),
    ("!x", {"y": "z"}, True),
    ("x>1", {"x": "2"}, True),
    ("x<1", {"x": "0"}, True),
    ("x=z", {}, False),
    ("x=y", {"x": "z"}, False),
    ("x=y,z=w", {"x": "w", "z": "w"}, False),
    ("x!=y,z!=w", {"x": "z", "z": "w"}, False),
    ("x", {"y": "z"}, False),
    ("!x", {"x": "z"}, False),
    ("x>1", {"x": "0"}, False),
    ("x<1", {"x": "2"}, False),
    ("x>1", {"x": "v2"}, False),
    ("x>1", {}, False),
    ("foo=bar,baz=blah", {"foo": "bar", "baz": "blah"}, True),
    ("foo=bar,foobar=bar,baz=blah", {"foo": "bar", "baz": "blah"}, False),
    ("x notin (),y", {"y": ""}, True),
    ("!x,y", {"y": ""}, True),
    ("x notin (),!y", {"y": ""}, False),
    ("x in ()", {"y": "baz"}, False),
    ("x,y in (a)", {"y": "a"}, False),
])
def test_selector_matches(text: str, labels: dict[str, str], match: bool) -> None:
    assert parse_selector(text).matches(labels) is match


@pytest.mark.parametrize(("selector", "text"), [
    (Selector((r("x", "in", "abc", "def"), r("y", "notin", "jkl"), r("z", "exists"))),
     "x in (abc,def),y notin (jkl),z"),
    (Selector((r("x", "notin", "abc", "def"), r("y", "!=", "jkl"), r("z", "!"))), "x notin (abc,def),y!=jkl,!z"),
    (Selector((r("x", "notin", "abc"), r("y", "in", "jkl", "mno"), r("z", "notin", ""))),
     "x notin (abc),y in (jkl,mno),z notin ()"),
    (Selector((r("x", "=", "abc"), r("y", "==", "jkl"), r("z", "!=", "a"), r("z", "exists"))),
     "x=abc,y==jkl,z!=a,z"),
    (Selector((r("x", "gt", "2"), r("y", "lt", "8"), r("z", "exists"))), "x>2,y<8,z"),
    # values print sorted without the requirement itself being reordered (upstream's safeSort)
    (Selector((Requirement("x", "in", ("b", "a")),)), "x in (a,b)"),
])
def test_to_string(selector: Selector, text: str) -> None:
    assert str(selector) == text


@pytest.mark.parametrize(("key", "op", "values", "names"), [
    ("x1", "in", (), "for 'in', 'notin' operators, values set can't be empty"),
    ("x2", "notin", (), "values set can't be empty"),
    ("x5", "=", ("foo", "bar"), "exact-match compatibility requires one single value"),
    ("x6", "exists", ("foo",), "values set must be empty for exists and does not exist"),
    ("x7", "!", ("foo",), "values set must be empty"),
    ("x8", "gt", ("1", "2"), "exactly one value is required"),
    ("x9", "lt", ("a",), "'a': for 'Gt', 'Lt' operators, the value must be an integer"),
    ("x" * 64, "exists", (), "'" + "x" * 64 + "': name part must be no more than 63 characters"),
    ("abcd/" + "x" * 63, "exists", (), None),
    ("x10", "in", ("x" * 64,), "must be no more than 63 characters"),
    ("x11", "in", ("-bad",), "'-bad': a valid label must be an empty string"),
    ("", "exists", (), "name part must be non-empty"),
    ("/x", "exists", (), "prefix part must be non-empty"),
    ("x12", "like", ("a",), "'like'"),
])
def test_requirement_constructor(key: str, op: str, values: tuple[str, ...], names: str | None) -> None:
    if names is None:
        assert requirement(key, op, values).key == key
        return
    with pytest.raises(SelectorError) as caught:
        requirement(key, op, values)
    assert names in str(caught.value)


def test_everything_and_nothing() -> None:
    assert EVERYTHING.matches({"x": "y"}) and EVERYTHING.empty() and str(EVERYTHING) == ""
    assert not NOTHING.matches({}) and not NOTHING.matches({"x": "y"})
    assert not NOTHING.empty()  # upstream: Nothing() is not Empty()
    assert NOTHING.add(r("x", "exists")) == NOTHING
    assert parse_selector("").empty()


@pytest.mark.parametrize("labels", [{}, {"foo": "bar"}, {"baz": "blah"}, {"foo": "bar", "baz": "blah"}])
def test_set_matches(labels: dict[str, str]) -> None:
    assert selector_from_set(labels).matches({"foo": "bar", "baz": "blah"})


def test_selector_from_set() -> None:
    assert selector_from_set({}) is EVERYTHING
    assert str(selector_from_set({"x": "a", "a": "x"})) == "a=x,x=a"
    assert not selector_from_set({"foo": "bar"}).matches({"foo": "baz"})
    assert not selector_from_set({"foo": "bar"}).matches({})


MATCH_EXPRESSIONS = [{"key": "baz", "operator": "In", "values": ["qux", "norf"]}]


@pytest.mark.parametrize(("ls", "text"), [
    ({"matchLabels": {"foo": "bar"}}, "foo=bar"),
    ({"matchExpressions": MATCH_EXPRESSIONS}, "baz in (norf,qux)"),
    ({"matchLabels": {"foo": "bar"}, "matchExpressions": MATCH_EXPRESSIONS}, "baz in (norf,qux),foo=bar"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "DoesNotExist"},
                           {"key": "c", "operator": "NotIn", "values": ["x"]}]}, "a,!b,c notin (x)"),
])
def test_label_selector_as_selector(ls: dict[str, object], text: str) -> None:
    before = repr(ls)
    selector = label_selector_as_selector(ls)
    assert repr(ls) == before  # the input is not modified
    assert str(selector) == text == str(parse_selector(text))


def test_label_selector_nil_versus_empty() -> None:
    assert label_selector_as_selector(None) is NOTHING
    assert label_selector_as_selector({}) is EVERYTHING
    assert label_selector_as_selector({"matchLabels": {}, "matchExpressions": []}) is EVERYTHING


@pytest.mark.parametrize(("ls", "names"), [
    ({"matchExpressions": [{"key": "baz", "operator": "Exists", "values": ["qux", "norf"]}]},
     "values set must be empty for exists"),
    ({"matchExpressions": [{"key": "baz", "operator": "DoesNotExist", "values": ["qux"]}]}, "values set must be empty"),
    ({"matchExpressions": [{"key": "baz", "operator": "In"}]}, "values set can't be empty"),
    ({"matchExpressions": [{"key": "baz", "operator": "NotIn", "values": []}]}, "values set can't be empty"),
    ({"matchExpressions": [{"key": "baz", "operator": "Gt", "values": ["1"]}]},
     "'Gt' is not a valid label selector operator"),
    ({"matchExpressions": [{"key": "baz", "operator": "in", "values": ["1"]}]}, "'in' is not a valid"),
    ({"matchLabels": {"-bad": "x"}}, "'-bad'"),
    ({"matchLabels": {"good": "-bad"}}, "'-bad'"),
])
def test_label_selector_errors(ls: dict[str, object], names: str) -> None:
    with pytest.raises(SelectorError) as caught:
        label_selector_as_selector(ls)
    assert names in str(caught.value)


def test_selector_is_immutable() -> None:
    selector = parse_selector("x=a")
    with pytest.raises(AttributeError):
        selector.requirements = ()  # type: ignore[misc]
    assert isinstance(SelectorError("x"), ValueError)


# --- properties --------------------------------------------------------------------------------------

_NAME = st.from_regex(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?\Z")
_PREFIX = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}\Z")
_KEY = st.one_of(_NAME, st.builds(lambda p, n: f"{p}/{n}", _PREFIX, _NAME))
_VALUE = st.one_of(st.just(""), _NAME)
_INT = st.integers(0, 10**6).map(str)  # label values, so never negative: "-1" is not one


@st.composite
def _requirements(draw: st.DrawFn) -> Requirement:
    key = draw(_KEY)
    op = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"]))
    if op in ("in", "notin"):
        values: list[str] = sorted(draw(st.sets(_VALUE, min_size=1, max_size=4)))
    elif op in ("exists", "!"):
        values = []
    elif op in ("gt", "lt"):
        values = [draw(_INT)]
    else:
        values = [draw(_VALUE)]
    return requirement(key, op, values)


_SELECTORS = st.lists(_requirements(), max_size=5).map(lambda reqs: EVERYTHING.add(*reqs))
_LABELS = st.dictionaries(_KEY, st.one_of(_VALUE, _INT), max_size=5)


@given(_SELECTORS)
def test_string_form_round_trips(selector: Selector) -> None:
    again = parse_selector(str(selector))
    assert str(again) == str(selector)
    assert again == selector


@given(_SELECTORS, _LABELS)
def test_reparsed_selector_matches_the_same_labels(selector: Selector, labels: dict[str, str]) -> None:
    assert parse_selector(str(selector)).matches(labels) is selector.matches(labels)


@given(_LABELS)
def test_a_set_selects_exactly_its_superset(labels: dict[str, str]) -> None:
    selector = selector_from_set(labels)
    assert selector.matches(labels)
    assert parse_selector(str(selector)) == selector
    for key in labels:
        assert not selector.matches({k: v for k, v in labels.items() if k != key})
