"""Fitness test: only syncd/adapters/ledger/ writes a lead's state or its audit trail.

Five paths change one lead; when each wrote ``leads.state`` and
``lead_transitions`` on its own they drifted apart (docs/design.md#one-ledger).
This test reads every module under syncd/ (the emulators aside) and fails on:

* an ``update(Lead)``/``update(_LEADS)`` statement whose ``.values(...)`` sets ``state``;
* an ``insert(...)`` into the leads or transitions table, in any spelling;
* raw SQL that inserts into ``leads``/``lead_transitions`` or sets ``state`` on ``leads``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "syncd"
LEDGER = PACKAGE / "adapters" / "ledger"
#: Names a module may give the leads and transitions tables (the ORM classes and Core tables).
LEAD_TABLES = {"Lead", "_LEADS", "LEADS", "LeadTransition", "_TRANSITIONS", "TRANSITIONS"}
RAW_SQL = re.compile(
    r"insert\s+into\s+(leads|lead_transitions)\b|update\s+leads\s+set\b[^;]*\bstate\s*=",
    re.IGNORECASE | re.DOTALL,
)


def modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if LEDGER not in path.parents and "sandbox" not in path.relative_to(PACKAGE).parts
    )


def _table_name(node: ast.expr) -> str | None:
    """``Lead``, ``_LEADS`` or ``LeadTransition.__table__`` -> the name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and node.attr == "__table__":
        return _table_name(node.value)
    return None


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _base_call(node: ast.expr) -> ast.Call | None:
    """The innermost call of a chain: ``update(Lead)`` of ``update(Lead).where().values()``."""
    while True:
        if isinstance(node, ast.Call):
            inner = node.func
            if isinstance(inner, ast.Attribute) and isinstance(
                inner.value, ast.Call | ast.Attribute
            ):
                node = inner.value
                continue
            return node
        if isinstance(node, ast.Attribute):
            node = node.value
            continue
        return None


def _sets_state(call: ast.Call) -> bool:
    if any(keyword.arg == "state" for keyword in call.keywords):
        return True
    for arg in call.args:
        if isinstance(arg, ast.Dict) and any(
            isinstance(key, ast.Constant) and key.value == "state" for key in arg.keys
        ):
            return True
    return False


def violations(source: str) -> list[str]:
    """What in ``source`` writes a lead's state or an audit row outside the ledger."""
    found: list[str] = []
    tree = ast.parse(source)
    updates_leads = False
    state_dicts: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "update" and node.args:
            updates_leads = updates_leads or _table_name(node.args[0]) in LEAD_TABLES
        if isinstance(node, ast.Dict) and any(
            isinstance(key, ast.Constant) and key.value == "state" for key in node.keys
        ):
            state_dicts.append(node.lineno)
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name == "insert" and node.args and _table_name(node.args[0]) in LEAD_TABLES:
                found.append(f"line {node.lineno}: insert into {_table_name(node.args[0])}")
            if name == "values" and _sets_state(node) and isinstance(node.func, ast.Attribute):
                base = _base_call(node.func.value)
                if (
                    base is not None
                    and _call_name(base) == "update"
                    and base.args
                    and _table_name(base.args[0]) in LEAD_TABLES
                ):
                    found.append(f"line {node.lineno}: update of a lead's state")
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and RAW_SQL.search(node.value)
        ):
            found.append(f"line {node.lineno}: raw SQL writing leads or transitions")
    if updates_leads:
        # Values built in a variable: ``values = {"state": ...}; update(Lead).values(values)``.
        found += [f"line {line}: a state value beside an update of leads" for line in state_dicts]
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_ledger_writes_lead_states(path: Path) -> None:
    assert violations(path.read_text()) == [], (
        f"{path.relative_to(PACKAGE)} writes a lead's state or audit trail: "
        "go through syncd.adapters.ledger"
    )


class TestTheCheckCanFail:
    """The detector itself, on code that does what the ledger alone may do."""

    @pytest.mark.parametrize(
        "code",
        [
            "session.execute(update(Lead).where(Lead.id == 1).values(state='queued'))",
            "update(_LEADS).where(x).values({'state': 'skipped', 'note': n})",
            "session.execute(insert(LeadTransition), rows)",
            "insert(_TRANSITIONS).from_select(cols, query)",
            "insert(LeadTransition.__table__)",
            "update(LEADS).where(c).values(state=s)",
            "insert(TRANSITIONS).from_select(cols, query)",
            "session.execute(insert(Lead).returning(Lead.id), rows)",
            "conn.exec_driver_sql('INSERT INTO leads (state) VALUES (?)', rows)",
            "text('UPDATE leads SET note = :n, state = :s WHERE id = :i')",
            "values = {'state': t}\nsession.execute(update(Lead).where(c).values(values))",
        ],
    )
    def test_a_state_write_is_found(self, code: str) -> None:
        assert violations(code) != []

    @pytest.mark.parametrize(
        "code",
        [
            "update(Lead).where(Lead.id == 1).values(next_attempt_at=None)",
            "update(Batch).values(state='x')",
            "select(Lead.state).where(Lead.state == 'queued')",
            "insert(Batch).returning(Batch.id)",
        ],
    )
    def test_other_writes_pass(self, code: str) -> None:
        assert violations(code) == []

    def test_the_ledger_itself_writes_states(self) -> None:
        """Guards against a detector that finds nothing anywhere: each writing part of the
        ledger (new leads, reads, moves) is found writing states or audit rows."""
        for name in ("new_leads.py", "reads.py", "moves.py"):
            assert violations((LEDGER / name).read_text()) != [], name
