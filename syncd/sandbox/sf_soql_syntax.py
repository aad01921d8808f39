"""SOQL text to a syntax tree, for the Salesforce emulator: tokenizer and parser.

Only the grammar of the subset :mod:`.sf_soql` supports; whether a field,
object or literal makes sense for the org is checked afterwards, when the
tree is bound to the catalog. What the parser does not know is
``MALFORMED_QUERY`` with the position it stopped at, so the answer can point
at it as Salesforce does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal


class SoqlError(Exception):
    """A query Salesforce would refuse: ``code`` is its errorCode.

    ``pos`` is the 0-based offset in the query where the problem starts, when known.
    """

    def __init__(self, code: str, message: str, pos: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.pos = pos

    def at(self, pos: int) -> SoqlError:
        """This error with ``pos`` filled in, if it had none."""
        return self if self.pos is not None else SoqlError(self.code, self.message, pos)

    def answer_message(self, soql: str) -> str:
        """The message as Salesforce words it: the query's line, a caret, then Row and Column.

        As in Salesforce's answer ``"\\nSELECT Id, Phonee FROM Lead\\n           ^\\n
        ERROR at Row:1:Column:12\\nNo such column 'Phonee' on entity 'Lead'. ..."``.
        """
        if self.pos is None:
            return self.message
        before = soql[: self.pos]
        row = before.count("\n") + 1
        column = self.pos - (before.rfind("\n") + 1) + 1
        lines = soql.split("\n")
        caret = " " * (column - 1) + "^"
        return f"\n{lines[row - 1]}\n{caret}\nERROR at Row:{row}:Column:{column}\n{self.message}"


# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>[+-]?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS = {
    "select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc",
    "desc", "nulls", "first", "last", "limit", "offset", "true", "false", "null",
}  # fmt: skip
ESCAPES = {
    "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\",
}  # fmt: skip


@dataclass(frozen=True)
class Token:
    kind: str  # ws-less: string, datetime, date, number, name, keyword, op, punct, eof
    text: str
    pos: int


def tokenize(soql: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(soql):
        match = _TOKEN.match(soql, pos)
        if match is None:
            raise SoqlError(
                "MALFORMED_QUERY", f"unexpected character {soql[pos]!r} at {pos + 1}", pos
            )
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "name" and "." not in text and text.lower() in _KEYWORDS:
            kind = "keyword"
            text = text.lower()
        if kind != "ws":
            tokens.append(Token(kind, text, pos))
        pos = match.end()
    tokens.append(Token("eof", "", len(soql)))
    return tokens


def decode_string(raw: str) -> str:
    """The value of a quoted SOQL literal; ``\\%`` and ``\\_`` stay escaped (LIKE only)."""
    body = raw[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            nxt = body[i + 1]
            if nxt.lower() in ESCAPES:
                out.append(ESCAPES[nxt.lower()])
            elif nxt in "%_":
                out.append("\\" + nxt)
            else:
                raise SoqlError("MALFORMED_QUERY", f"invalid escape sequence \\{nxt} in {raw}")
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class Literal_:
    kind: Literal["string", "number", "boolean", "null", "date", "datetime"]
    value: Any
    text: str


@dataclass(frozen=True)
class Comparison:
    path: str
    op: str  # = != < <= > >= in notin like
    values: tuple[Literal_, ...]
    pos: int = 0  # where the field path starts in the query


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BoolOp:
    op: Literal["and", "or"]
    operands: tuple[Node, ...]


Node = Comparison | Not | BoolOp


@dataclass(frozen=True)
class OrderItem:
    path: str
    descending: bool
    nulls_last: bool
    pos: int = 0


@dataclass(frozen=True)
class ParsedQuery:
    count: bool
    fields: tuple[str, ...]
    sobject: str
    where: Node | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None
    field_pos: tuple[int, ...] = ()
    sobject_pos: int = 0


class _Parser:
    def __init__(self, soql: str) -> None:
        self.tokens = tokenize(soql)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def at(self, kind: str, text: str | None = None) -> bool:
        token = self.peek()
        return token.kind == kind and (text is None or token.text == text)

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        return self.next() if self.at(kind, text) else None

    def expect(self, kind: str, text: str | None = None) -> Token:
        if not self.at(kind, text):
            token = self.peek()
            wanted = text.upper() if text and kind == "keyword" else (text or kind)
            found = token.text or "end of query"
            raise SoqlError(
                "MALFORMED_QUERY",
                f"unexpected token: '{found}' at {token.pos + 1}, expected {wanted}",
                token.pos,
            )
        return self.next()

    def parse(self) -> ParsedQuery:
        self.expect("keyword", "select")
        count = False
        fields: list[Token] = []
        if self.at("name") and self.peek().text.lower() == "count":
            self.next()
            self.expect("punct", "(")
            self.expect("punct", ")")
            count = True
        else:
            fields.append(self.expect("name"))
            while self.accept("punct", ","):
                fields.append(self.expect("name"))
        self.expect("keyword", "from")
        sobject_token = self.expect("name")
        sobject = sobject_token.text
        if "." in sobject:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{sobject}'", sobject_token.pos)
        where = None
        if self.accept("keyword", "where"):
            where = self.condition()
        order: list[OrderItem] = []
        if self.accept("keyword", "order"):
            self.expect("keyword", "by")
            order.append(self.order_item())
            while self.accept("punct", ","):
                order.append(self.order_item())
        limit = self.integer() if self.accept("keyword", "limit") else None
        offset = self.integer() if self.accept("keyword", "offset") else None
        self.expect("eof")
        return ParsedQuery(
            count,
            tuple(f.text for f in fields),
            sobject,
            where,
            tuple(order),
            limit,
            offset,
            field_pos=tuple(f.pos for f in fields),
            sobject_pos=sobject_token.pos,
        )

    def integer(self) -> int:
        token = self.expect("number")
        if not token.text.isdigit():
            raise SoqlError(
                "MALFORMED_QUERY", f"expected a non-negative integer, got {token.text}", token.pos
            )
        return int(token.text)

    def order_item(self) -> OrderItem:
        start = self.expect("name")
        path = start.text
        descending = False
        if self.accept("keyword", "desc"):
            descending = True
        else:
            self.accept("keyword", "asc")
        nulls_last = descending
        if self.accept("keyword", "nulls"):
            if self.accept("keyword", "last"):
                nulls_last = True
            else:
                self.expect("keyword", "first")
                nulls_last = False
        return OrderItem(path, descending, nulls_last, start.pos)

    def condition(self) -> Node:
        operands = [self.unary()]
        op: str | None = None
        while self.at("keyword", "and") or self.at("keyword", "or"):
            token = self.next()
            if op is not None and token.text != op:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"unexpected token: '{token.text.upper()}' at {token.pos + 1}: "
                    "use parentheses when mixing AND and OR",
                    token.pos,
                )
            op = token.text
            operands.append(self.unary())
        if op is None:
            return operands[0]
        return BoolOp("and" if op == "and" else "or", tuple(operands))

    def unary(self) -> Node:
        if self.accept("keyword", "not"):
            return Not(self.unary())
        if self.accept("punct", "("):
            node = self.condition()
            self.expect("punct", ")")
            return node
        return self.comparison()

    def comparison(self) -> Node:
        start = self.expect("name")
        path, pos = start.text, start.pos
        if self.accept("keyword", "not"):
            self.expect("keyword", "in")
            return Comparison(path, "notin", self.value_list(), pos)
        if self.accept("keyword", "in"):
            return Comparison(path, "in", self.value_list(), pos)
        if self.accept("keyword", "like"):
            token = self.expect("string")
            return Comparison(path, "like", (Literal_("string", token.text, token.text),), pos)
        op = self.expect("op").text
        return Comparison(path, "!=" if op == "<>" else op, (self.value(),), pos)

    def value_list(self) -> tuple[Literal_, ...]:
        self.expect("punct", "(")
        values = [self.value()]
        while self.accept("punct", ","):
            values.append(self.value())
        self.expect("punct", ")")
        return tuple(values)

    def value(self) -> Literal_:
        token = self.next()
        text = token.text
        if token.kind == "string":
            return Literal_("string", decode_string(text), text)
        if token.kind == "number":
            number = float(text) if "." in text else int(text)
            return Literal_("number", number, text)
        if token.kind == "keyword" and text in ("true", "false"):
            return Literal_("boolean", text == "true", text)
        if token.kind == "keyword" and text == "null":
            return Literal_("null", None, text)
        if token.kind == "date":
            try:
                return Literal_("date", date.fromisoformat(text), text)
            except ValueError:
                raise SoqlError("MALFORMED_QUERY", f"Invalid date: {text}", token.pos) from None
        if token.kind == "datetime":
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise SoqlError("MALFORMED_QUERY", f"Invalid datetime: {text}", token.pos) from None
            return Literal_("datetime", truncate_ms(parsed.astimezone(UTC)), text)
        found = text or "end of query"
        raise SoqlError(
            "MALFORMED_QUERY", f"unexpected token: '{found}' at {token.pos + 1}", token.pos
        )


def truncate_ms(value: datetime) -> datetime:
    """Salesforce keeps milliseconds; so does the emulator."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def parse(soql: str) -> ParsedQuery:
    """Parse ``soql`` into a syntax tree, or raise :class:`SoqlError` MALFORMED_QUERY."""
    if not soql.strip():
        raise SoqlError("MALFORMED_QUERY", "empty query")
    return _Parser(soql).parse()
