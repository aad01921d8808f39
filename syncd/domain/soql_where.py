"""The fields a sync's own ``where`` condition reads (pure, no I/O).

The configuration refuses a ``where`` that reads a field write-back writes:
syncd's own write would then decide whether the record still matches (a lead
it sent would look "no longer matched" to ``requeue``). This reads the field
names out of the condition without a full SOQL parser, conservatively: string,
number, date and currency literals, keywords, date literals (``TODAY``,
``LAST_N_DAYS:5``), bind variables and function names are not fields, and a
semi-join's sub-query (``Id IN (SELECT ... FROM OtherObject ...)``) reads
another object's fields, so it is left out. What remains are the identifiers
and relationship paths (``Owner.Email``) the condition compares.
"""

from __future__ import annotations

import re

#: One token: a quoted string (SOQL escapes), a word or dotted path, a literal that starts
#: with a digit (number, date, datetime), or one character of punctuation.
_TOKEN = re.compile(
    r"""
    (?P<string>'(?:\\.|[^'\\])*'?)
    | (?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<literal>[0-9][0-9A-Za-z.:+\-]*)
    | (?P<other>\S)
    """,
    re.VERBOSE,
)
_OPERATORS = frozenset({"and", "or", "not", "in", "like", "includes", "excludes"})
#: Words of the condition that are no field: operators, literals, a sub-query's clauses.
_KEYWORDS = _OPERATORS | {"null", "true", "false", "select", "from", "where"}
_UNITS = r"(?:DAYS|WEEKS|MONTHS|QUARTERS|YEARS|FISCAL_QUARTERS|FISCAL_YEARS)"
#: SOQL's date literals: TODAY, LAST_WEEK, LAST_N_DAYS (followed by :n), N_DAYS_AGO ...
_DATE_LITERAL = re.compile(
    rf"""^(?:YESTERDAY|TODAY|TOMORROW
    |(?:LAST|THIS|NEXT)_(?:WEEK|MONTH|QUARTER|YEAR|FISCAL_QUARTER|FISCAL_YEAR)
    |(?:LAST|NEXT)_90_DAYS|(?:LAST|NEXT)_N_{_UNITS}|N_{_UNITS}_AGO)$""",
    re.IGNORECASE | re.VERBOSE,
)
#: A currency literal of a multi-currency org: an ISO code and an amount, e.g. USD5000.
_CURRENCY = re.compile(r"^[A-Z]{3}[0-9]+(?:\.[0-9]+)?$")


def _tokens(where: str) -> list[tuple[str, str]]:
    return [(match.lastgroup or "other", match.group()) for match in _TOKEN.finditer(where)]


def _skip_subquery(tokens: list[tuple[str, str]], start: int) -> int:
    """The index after the ``)`` that closes the ``(`` at ``start``."""
    depth = 0
    for index in range(start, len(tokens)):
        text = tokens[index][1]
        depth += (text == "(") - (text == ")")
        if depth == 0:
            return index + 1
    return len(tokens)


def _is_field(tokens: list[tuple[str, str]], index: int) -> bool:
    kind, text = tokens[index]
    if kind != "path" or text.lower() in _KEYWORDS:
        return False
    if _DATE_LITERAL.match(text) or _CURRENCY.match(text):
        return False
    before = tokens[index - 1][1] if index > 0 else ""
    after = tokens[index + 1][1] if index + 1 < len(tokens) else ""
    return before != ":" and after != "("  # a bind variable; a function's name


def where_fields(where: str | None) -> list[str]:
    """The field paths ``where`` reads, in order, each once (first spelling kept)."""
    tokens = _tokens(where or "")
    found: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        text = tokens[index][1]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if text == "(" and following.lower() == "select":
            index = _skip_subquery(tokens, index)
            continue
        if _is_field(tokens, index):
            found.setdefault(text.lower(), text)
        index += 1
    return list(found.values())
