"""Label selectors as k8s.io/apimachinery/pkg/labels and metav1.LabelSelectorAsSelector define them.

    parse_selector("app=web,tier!=db,env in (a,b),!canary,track")   # the string syntax (labels.Parse)
    label_selector_as_selector({"matchLabels": {"app": "web"}})      # a metav1.LabelSelector object
    selector_from_set({"app": "web"})                                # a Service's map selector

Nil versus empty follows upstream exactly: a missing LabelSelector (None) selects nothing, an empty
one ({}) selects everything, and an empty set selects everything too. Callers that must not select
everything on an empty map (a Service without a selector has no endpoints) check that themselves,
as upstream's callers do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from control.api.validators import is_label_value, is_qualified_name

__all__ = [
    "EVERYTHING",
    "NOTHING",
    "Requirement",
    "Selector",
    "SelectorError",
    "label_selector_as_selector",
    "parse_selector",
    "selector_from_set",
]


class SelectorError(ValueError):
    """A selector that cannot be parsed or built; the message names the offending key, operator or value."""


# Operators, spelled as upstream's selection.Operator values.
IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN = "exists", "!", "gt", "lt"
_OPERATORS = (DOES_NOT_EXIST, EQUALS, DOUBLE_EQUALS, IN, NOT_EQUALS, NOT_IN, EXISTS, GREATER_THAN, LESS_THAN)


def _is_int64(text: str) -> bool:
    # strconv.ParseInt(text, 10, 64): optional sign, decimal digits only, within int64.
    body = text[1:] if text[:1] in "+-" else text
    return body.isascii() and body.isdigit() and -(2**63) <= int(text) < 2**63


@dataclass(frozen=True)
class Requirement:
    """One `key op values` term (labels.Requirement). Build with `requirement()` to validate it."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator in (IN, EQUALS, DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if self.operator in (NOT_IN, NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if self.operator == EXISTS:
            return present
        if self.operator == DOES_NOT_EXIST:
            return not present
        # Gt / Lt: a label that is absent or not an integer never matches.
        if not present or not _is_int64(labels[self.key]) or len(self.values) != 1:
            return False
        have, want = int(labels[self.key]), int(self.values[0])
        return have > want if self.operator == GREATER_THAN else have < want

    def __str__(self) -> str:
        prefix = "!" if self.operator == DOES_NOT_EXIST else ""
        if self.operator in (EXISTS, DOES_NOT_EXIST):
            return prefix + self.key
        shown = ",".join(sorted(self.values))  # upstream sorts values on output only
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({shown})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{shown}"


def requirement(key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
    """labels.NewRequirement: the key must be a qualified name, each value a label value, and the number
    of values must fit the operator. All problems are reported together, as upstream aggregates them."""
    values = tuple(values)
    problems = [f"key: Invalid value: {key!r}: {msg}" for msg in is_qualified_name(key)]
    if operator in (IN, NOT_IN):
        if not values:
            problems.append(f"values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
                            f" (key {key!r})")
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(values) != 1:
            problems.append(f"values: Invalid value: {list(values)!r}: exact-match compatibility requires one"
                            f" single value (key {key!r})")
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if values:
            problems.append(f"values: Invalid value: {list(values)!r}: values set must be empty for exists and"
                            f" does not exist (key {key!r})")
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(values) != 1:
            problems.append(f"values: Invalid value: {list(values)!r}: for 'Gt', 'Lt' operators, exactly one"
                            f" value is required (key {key!r})")
        problems += [f"values[{i}]: Invalid value: {v!r}: for 'Gt', 'Lt' operators, the value must be an integer"
                     for i, v in enumerate(values) if not _is_int64(v)]
    else:
        problems.append(f"operator: Unsupported value: {operator!r}: supported values: "
                        + ", ".join(repr(op) for op in _OPERATORS))
    for i, value in enumerate(values):
        if not isinstance(value, str):
            problems.append(f"values[{i}][{key}]: Invalid value: {value!r}: must be a string")
            continue
        problems += [f"values[{i}][{key}]: Invalid value: {value!r}: {msg}" for msg in is_label_value(value)]
    if problems:
        raise SelectorError("; ".join(problems))
    return Requirement(key, operator, values)


@dataclass(frozen=True)
class Selector:
    """An immutable conjunction of requirements, sorted by key (upstream's internalSelector), or the
    selector that matches nothing at all (labels.Nothing())."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.nothing:
            return False
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        """True for the selector that matches everything (upstream: Nothing() is not Empty())."""
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def add(self, *reqs: Requirement) -> Selector:
        if self.nothing:
            return self
        return Selector(tuple(sorted(self.requirements + reqs, key=lambda r: r.key)))


EVERYTHING = Selector()
NOTHING = Selector(nothing=True)


def selector_from_set(labels: Mapping[str, str]) -> Selector:
    """labels.SelectorFromSet: key=value for each pair; an empty (or missing) set selects everything.
    Like upstream, the pairs are not validated."""
    if not labels:
        return EVERYTHING
    return EVERYTHING.add(*(Requirement(str(k), EQUALS, (str(v),)) for k, v in labels.items()))


_OPERATOR_OF_EXPRESSION = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_as_selector(ls: Mapping[str, Any] | None) -> Selector:
    """metav1.LabelSelectorAsSelector: None selects nothing, a selector with neither matchLabels nor
    matchExpressions selects everything; otherwise every requirement is validated."""
    if ls is None:
        return NOTHING
    match_labels = ls.get("matchLabels") or {}
    expressions = ls.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping):
        raise SelectorError(f"matchLabels: must be a map of strings, not {match_labels!r}")
    if not isinstance(expressions, list):
        raise SelectorError(f"matchExpressions: must be a list, not {expressions!r}")
    if not match_labels and not expressions:
        return EVERYTHING
    reqs = [requirement(str(k), EQUALS, (v,)) for k, v in match_labels.items()]
    for expr in expressions:
        if not isinstance(expr, Mapping):
            raise SelectorError(f"matchExpressions: each expression must be an object, not {expr!r}")
        operator = _OPERATOR_OF_EXPRESSION.get(expr.get("operator"))  # type: ignore[arg-type]
        if operator is None:
            raise SelectorError(f"{expr.get('operator')!r} is not a valid label selector operator"
                                f" (key {expr.get('key')!r})")
        reqs.append(requirement(str(expr.get("key") or ""), operator, expr.get("values") or ()))
    return EVERYTHING.add(*reqs)


# --- the string syntax (labels.Parse) --------------------------------------------------------------

_SPECIAL = "=!(),><"
_SYMBOLS = {")": ")", ",": ",", "!": "!", "==": "==", "=": "=", ">": ">", "<": "<", "!=": "!=", "(": "("}
_IDENTIFIER, _END = "identifier", "end"


def _tokens(text: str) -> list[tuple[str, str]]:
    """Upstream's lexer: whitespace separates; runs of the special characters form the longest operator
    they spell; anything else up to whitespace or a special character is an identifier, except the
    keywords `in` and `notin`."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _SPECIAL:
            j, found = i, ""
            while j < len(text) and text[j] in _SPECIAL:
                if text[i:j + 1] in _SYMBOLS:
                    found = text[i:j + 1]
                elif found:
                    break
                j += 1
            if not found:
                raise SelectorError(f"unable to parse requirement: error expected: keyword found {text[i:j]!r}")
            tokens.append((found, found))
            i += len(found)
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            word = text[i:j]
            tokens.append((word, word) if word in (IN, NOT_IN) else (_IDENTIFIER, word))
            i = j
    tokens.append((_END, ""))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self, as_values: bool = True) -> tuple[str, str]:
        return self._kind(self.tokens[self.pos], as_values)

    def take(self, as_values: bool = True) -> tuple[str, str]:
        token = self.peek(as_values)
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return token

    @staticmethod
    def _kind(token: tuple[str, str], as_values: bool) -> tuple[str, str]:
        # Where a value is expected, `in` and `notin` are plain identifiers (upstream's Values mode).
        if as_values and token[0] in (IN, NOT_IN):
            return _IDENTIFIER, token[1]
        return token

    def selector(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            kind, literal = self.peek()
            if kind == _END:
                return reqs
            if kind not in (_IDENTIFIER, "!"):
                raise SelectorError(f"found {literal!r}, expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except SelectorError as err:
                raise SelectorError(f"unable to parse requirement: {err}") from None
            kind, literal = self.take()
            if kind == _END:
                return reqs
            if kind != ",":
                raise SelectorError(f"found {literal!r}, expected: ',' or 'end of string'")
            kind, literal = self.peek()
            if kind not in (_IDENTIFIER, "!"):
                raise SelectorError(f"found {literal!r}, expected: identifier after ','")

    def requirement(self) -> Requirement:
        negated = False
        kind, key = self.take()
        if kind == "!":
            negated = True
            kind, key = self.take()
        if kind != _IDENTIFIER:
            raise SelectorError(f"found {key!r}, expected: identifier")
        if errors := is_qualified_name(key):
            raise SelectorError(f"key: Invalid value: {key!r}: {'; '.join(errors)}")
        if self.peek()[0] in (_END, ","):
            return requirement(key, DOES_NOT_EXIST if negated else EXISTS)
        kind, literal = self.take(as_values=False)
        operators = {IN: IN, NOT_IN: NOT_IN, "=": EQUALS, "==": DOUBLE_EQUALS, "!=": NOT_EQUALS,
                     ">": GREATER_THAN, "<": LESS_THAN}
        if negated or kind not in operators:
            raise SelectorError(f"found {literal!r}, expected: in, notin, =, ==, !=, gt, lt (key {key!r})")
        operator = operators[kind]
        values = self.set_values() if operator in (IN, NOT_IN) else self.exact_value()
        return requirement(key, operator, sorted(values))

    def exact_value(self) -> set[str]:
        kind, literal = self.peek()
        if kind in (_END, ","):
            return {""}
        self.take()
        if kind != _IDENTIFIER:
            raise SelectorError(f"found {literal!r}, expected: identifier")
        return {literal}

    def set_values(self) -> set[str]:
        kind, literal = self.take()
        if kind != "(":
            raise SelectorError(f"found {literal!r} expected: '('")
        kind, literal = self.peek()
        if kind == ")":  # "()" is the set holding only the empty value
            self.take()
            return {""}
        if kind not in (_IDENTIFIER, ","):
            raise SelectorError(f"found {literal!r}, expected: ',', ')' or identifier")
        values = self.identifiers()
        kind, closing = self.take()
        if kind != ")":
            raise SelectorError(f"found {closing!r}, expected: ')'")
        return values

    def identifiers(self) -> set[str]:
        """A comma-separated list in which an empty slot (`(,a)`, `(a,,b)`, `(a,)`) is the empty value."""
        values: set[str] = set()
        while True:
            kind, literal = self.take()
            if kind == _IDENTIFIER:
                values.add(literal)
                after, shown = self.peek()
                if after == ")":
                    return values
                if after != ",":
                    raise SelectorError(f"found {shown!r}, expected: ',' or ')'")
            elif kind == ",":
                if not values:
                    values.add("")
                after, _ = self.peek()
                if after in (")", ","):
                    values.add("")
                if after == ")":
                    return values
            else:
                raise SelectorError(f"found {literal!r}, expected: ',', or identifier")


def parse_selector(text: str) -> Selector:
    """labels.Parse: the string form of a selector; the empty string selects everything."""
    return EVERYTHING.add(*_Parser(text).selector())
