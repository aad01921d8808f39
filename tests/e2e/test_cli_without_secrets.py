"""Database-only commands run without the Salesforce and SimZ secrets; the others still need them.

The real CLI in a subprocess, with ``SF_PASSWORD``, ``SF_SECURITY_TOKEN`` and
``SIMZ_API_KEY`` unset, on a real SQLite file.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.orm import utcnow
from syncd.adapters.outbox import SCOPE_API_KEY
from tests.e2e.harness import clean_env, run_syncd
from tests.integration.operator_rows import add_lead, add_pause, config_dict, sf_id


def _config(db_url: str) -> dict[str, Any]:
    config = config_dict(db_url)
    config["salesforce"] = {
        "auth": {
            "method": "password",
            "username": "integration@example.com",
            "password": "${SF_PASSWORD}",
            "security_token": "${file:/run/secrets/no-such-token}",
        },
    }
    config["simz"] = {"api_key": "${SIMZ_API_KEY}"}
    return config


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A config whose secrets are all unset, and its migrated database with a few leads."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_config("sqlite:///./syncd.db")), encoding="utf-8")
    migrated = run_syncd("migrate", "-c", str(path), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    engine = make_engine(f"sqlite:///{tmp_path}/syncd.db")
    with make_session_factory(engine).begin() as session:
        add_lead(session, "web", sf_id(1), "failed", attempts=10, error_code="HTTP_503")
        add_lead(session, "web", sf_id(2), "queued")
        add_pause(session, SCOPE_API_KEY, "0123456789ab", until=utcnow() + timedelta(hours=1))
    engine.dispose()
    return tmp_path


class TestDatabaseOnlyCommands:
    def test_status_runs_without_secrets(self, folder: Path) -> None:
        """status reads the database; a pause of the (unloaded) key shows as paused."""
        result = run_syncd("status", "--json", "-c", "config.yaml", cwd=folder, env=clean_env())
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        [web] = [sync for sync in report["syncs"] if sync["name"] == "web"]
        assert web["states"]["failed"] == 1 and web["states"]["queued"] == 1
        assert web["agents"][0]["paused"] is True

    def test_leads_runs_without_secrets(self, folder: Path) -> None:
        """leads --json lists the leads."""
        result = run_syncd("leads", "--json", "-c", "config.yaml", cwd=folder, env=clean_env())
        assert result.returncode == 0, result.stderr
        ids = {lead["salesforce_id"] for lead in json.loads(result.stdout)["leads"]}
        assert ids == {sf_id(1), sf_id(2)}

    def test_requeue_dry_run_runs_without_secrets(self, folder: Path) -> None:
        """requeue --dry-run previews from the database alone."""
        result = run_syncd(
            "requeue", "--sync", "web", "--state", "failed", "--dry-run", "-c", "config.yaml",
            cwd=folder,
            env=clean_env(),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "would requeue 1 lead(s)" in result.stdout

    def test_explain_and_audit_export_run_without_secrets(self, folder: Path) -> None:
        """explain and audit export read the database alone."""
        explained = run_syncd(
            "explain", "--id", sf_id(1), "--json", "-c", "config.yaml", cwd=folder, env=clean_env()
        )
        assert explained.returncode == 0, explained.stderr
        assert json.loads(explained.stdout)["leads"][0]["state"] == "failed"
        exported = run_syncd(
            "audit", "export", "--phone", "+15551234567", "-c", "config.yaml",
            cwd=folder,
            env=clean_env(),
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        assert json.loads(exported.stdout)["phone_e164"] == "+15551234567"

    def test_database_section_is_still_checked(self, tmp_path: Path) -> None:
        """A broken database URL is still a configuration error for status."""
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(_config("mysql://x@y/z")), encoding="utf-8")
        result = run_syncd("status", "-c", str(path), cwd=tmp_path, env=clean_env())
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert line.startswith(f"{path}: database.url: unsupported database URL scheme")


class TestCommandsThatNeedSecrets:
    @pytest.mark.parametrize(
        "command",
        [
            ["check-config"],
            ["once"],
            ["run"],
            ["requeue", "--sync", "web", "--state", "failed", "--yes"],
        ],
        ids=["check-config", "once", "run", "requeue"],
    )
    def test_still_fail_clearly(self, folder: Path, command: list[str]) -> None:
        """Commands that talk to Salesforce or SimZ name each missing secret, exit 2."""
        result = run_syncd(*command, "-c", "config.yaml", cwd=folder, env=clean_env())
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 3
        assert any(line.endswith("environment variable SF_PASSWORD is not set") for line in lines)
        assert any(line.endswith("environment variable SIMZ_API_KEY is not set") for line in lines)
        assert any("cannot read secret file '/run/secrets/no-such-token'" in line for line in lines)
