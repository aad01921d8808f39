"""Vendor text with terminal control characters reaches the CLI escaped, never raw."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import SyncState
from syncd.entrypoints.cli_text import printable
from tests.e2e.test_cli_operator import run_syncd
from tests.integration.operator_rows import T0, add_lead, config_dict, sf_id

#: A title-setting OSC sequence, a CSI introducer (C1), a carriage return, a forged
#: line, a right-to-left override and a bell.
HOSTILE = "bad\x1b]0;pwned\x07 \x9b31m \rstate: accepted\nsent \u202eevil\u202c end\x7f"
#: Raw controls that must never be printed (newline is checked per line).
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    config = config_dict(f"sqlite:///{tmp_path}/syncd.db")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    engine = make_engine(f"sqlite:///{tmp_path}/syncd.db")
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        add_lead(
            session,
            "web",
            sf_id(1),
            "rejected",
            error_code="BAD\x1b[2J",
            error_message=HOSTILE,
            history=((None, "queued", "new"), ("queued", "rejected", HOSTILE)),
        )
        session.add(SyncState(sync_name="web", start_at=T0, updated_at=T0))
    with sessions.begin() as session:
        session.execute(
            update(SyncState).where(SyncState.sync_name == "web").values(last_error=HOSTILE)
        )
    engine.dispose()
    return tmp_path


def strings(value: object) -> list[str]:
    """Every string in a parsed JSON document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


class TestPrintable:
    def test_escapes(self) -> None:
        """C0, C1, DEL and bidi controls become visible escapes; other text is kept."""
        assert printable("a\x1b]0;t\x07b") == "a\\x1b]0;t\\x07b"
        assert printable("x\ry\nz\t") == "x\\ry\\nz\\t"
        assert printable("\x9b\x85\x7f") == "\\x9b\\x85\\x7f"
        assert printable("\u202eabc\u2066\u2028") == "\\u202eabc\\u2066\\u2028"
        assert printable("Zoë 東京 +1 (555)") == "Zoë 東京 +1 (555)"
        assert printable(printable(HOSTILE)) == printable(HOSTILE)  # idempotent


class TestCommands:
    @pytest.mark.parametrize(
        "args",
        [
            ("leads",),
            ("leads", "--history"),
            ("status",),
        ],
    )
    def test_no_raw_controls(self, workdir: Path, args: tuple[str, ...]) -> None:
        """Tables escape the vendor text: no raw control, no forged line."""
        result = run_syncd(*args, cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert not RAW.search(result.stdout), repr(result.stdout)
        assert not RAW.search(result.stderr), repr(result.stderr)
        assert not any(line.startswith("sent ") for line in result.stdout.splitlines())
        assert "\\x1b]0;pwned\\x07" in result.stdout

    @pytest.mark.parametrize("command", ["leads", "status"])
    def test_json_stays_json(self, workdir: Path, command: str) -> None:
        """--json output is valid JSON, round-trips the text exactly, and prints no raw control."""
        result = (
            run_syncd(command, "--json", "--history", cwd=workdir)
            if command == "leads"
            else (run_syncd(command, "--json", cwd=workdir))
        )
        assert result.returncode == 0, result.stderr
        assert not RAW.search(result.stdout), repr(result.stdout)
        assert HOSTILE in strings(json.loads(result.stdout))
