"""The Drive double's small interpreters: the `q` search language and `fields` masks.

Only the subset the backend (and reasonable clients) use is understood; anything
else is rejected with ValueError so the double answers 400 like Drive does for
an invalid query, instead of silently matching everything.

    q      := or ; or := and ('or' and)* ; and := unary ('and' unary)*
    unary  := 'not' unary | '(' or ')' | STRING 'in' 'parents'
            | FIELD ('='|'!=') VALUE          FIELD: name mimeType trashed
    STRING := '…' with \\' and \\\\ escapes   VALUE: STRING | true | false
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<op>!=|=|\(|\))|(?P<word>[A-Za-z_][A-Za-z0-9_]*))")
_FIELDS = {"name", "mimeType", "trashed"}


def _tokenize(q: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    q = q.rstrip()
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if not m or m.end() == pos:
            raise ValueError(f"Invalid Value: cannot parse query at {q[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            raw = m.group("str")[1:-1]
            tokens.append(("str", re.sub(r"\\(.)", r"\1", raw)))
        elif m.group("op") is not None:
            tokens.append(("op", m.group("op")))
        else:
            tokens.append(("word", m.group("word")))
    return tokens


class _Parser:
    def __init__(self, q: str) -> None:
        self.tokens = _tokenize(q)
        self.pos = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise ValueError("Invalid Value: query ends early")
        self.pos += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "word" and tok[1].lower() == word:
            self.pos += 1
            return True
        return False

    def parse(self) -> Predicate:
        pred = self.or_()
        extra = self.peek()
        if extra is not None:
            raise ValueError(f"Invalid Value: unexpected {extra[1]!r}")
        return pred

    def or_(self) -> Predicate:
        preds = [self.and_()]
        while self.keyword("or"):
            preds.append(self.and_())
        if len(preds) == 1:
            return preds[0]
        return lambda f: any(p(f) for p in preds)

    def and_(self) -> Predicate:
        preds = [self.unary()]
        while self.keyword("and"):
            preds.append(self.unary())
        if len(preds) == 1:
            return preds[0]
        return lambda f: all(p(f) for p in preds)

    def unary(self) -> Predicate:
        if self.keyword("not"):
            inner = self.unary()
            return lambda f: not inner(f)
        kind, value = self.take()
        if (kind, value) == ("op", "("):
            inner = self.or_()
            if self.take() != ("op", ")"):
                raise ValueError("Invalid Value: missing ')'")
            return inner
        if kind == "str":
            if not (self.keyword("in") and self.keyword("parents")):
                raise ValueError("Invalid Value: only '<id>' in parents is supported")
            return _in_parents(value)
        if kind == "word" and value in _FIELDS:
            op = self.take()
            if op not in (("op", "="), ("op", "!=")):
                raise ValueError(f"Invalid Value: unsupported operator {op[1]!r}")
            vkind, v = self.take()
            if value == "trashed":
                if vkind != "word" or v not in ("true", "false"):
                    raise ValueError("Invalid Value: trashed takes true or false")
                v = v == "true"
            elif vkind != "str":
                raise ValueError(f"Invalid Value: {value} takes a quoted string")
            equal = op[1] == "="
            return _compare(value, v, equal)
        raise ValueError(f"Invalid Value: unexpected {value!r}")


def _in_parents(parent_id: str) -> Predicate:
    return lambda f: parent_id in f.get("parents", ())


def _compare(field: str, value: Any, equal: bool) -> Predicate:
    return lambda f: (f.get(field) == value) == equal


def parse_query(q: str) -> Predicate:
    """Compile a Drive `q` string into a predicate over file resources."""
    return _Parser(q).parse()


def parse_fields(fields: str) -> dict[str, Any]:
    """`nextPageToken,files(id,name)` → {'nextPageToken': {}, 'files': {'id': {}, 'name': {}}}."""
    tree: dict[str, Any] = {}
    stack = [tree]
    name = ""
    for ch in fields + ",":
        if ch in ",()":
            name = name.strip()
            if name:
                node = stack[-1]
                for part in name.split("/"):
                    node = node.setdefault(part, {})
                if ch == "(":
                    stack.append(node)
            elif ch == "(":
                raise ValueError("Invalid field selection")
            if ch == ")":
                if len(stack) == 1:
                    raise ValueError("Invalid field selection: unbalanced ')'")
                stack.pop()
            name = ""
        else:
            name += ch
    if len(stack) != 1:
        raise ValueError("Invalid field selection: unbalanced '('")
    return tree


def apply_fields(value: Any, tree: dict[str, Any]) -> Any:
    """Keep only the selected fields ({} or '*' keeps everything below)."""
    if not tree or "*" in tree:
        return value
    if isinstance(value, list):
        return [apply_fields(v, tree) for v in value]
    if isinstance(value, dict):
        return {k: apply_fields(value[k], sub) for k, sub in tree.items() if k in value}
    return value
