"""docs/sandbox.md's walkthrough with config.example.yaml: the real CLI against both emulators.

The records are the JSON lines docs/sandbox.md gives for ``leads.jsonl``; the
configuration is config.example.yaml with only the keys the page says to
change; the commands are the page's, each ``python -m syncd`` in a subprocess.
The example's ``where`` (``IsConverted = false``) must match records created
without that field, as it does in an org, and its calling hours must let a
lead through in daytime (a shifted clock: the test must not depend on the hour).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml

from syncd.sandbox.salesforce import SalesforceEmulator
from tests.e2e.harness import clean_env, run_syncd
from tests.simz_fixtures import SimzFactory

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"
WALKTHROUGH = REPO / "docs" / "sandbox.md"

#: The environment docs/sandbox.md exports for the example (the emulators' defaults).
SANDBOX_ENV = {
    "SF_USERNAME": "sandbox@example.com",
    "SF_PASSWORD": "sandbox-password",
    "SF_SECURITY_TOKEN": "sandbox-token",
    "SIMZ_API_KEY": "sandbox-key",
}


def walkthrough_records() -> list[dict[str, Any]]:
    """The records of the page's ``leads.jsonl`` (its first JSON block)."""
    block = WALKTHROUGH.read_text("utf-8").split("```json\n", 1)[1].split("```", 1)[0]
    return [json.loads(line) for line in block.splitlines() if line.strip()]


def example_pointed_at(folder: Path, salesforce: SalesforceEmulator, simz_url: str) -> Path:
    """config.example.yaml with the keys docs/sandbox.md changes, written to ``folder``."""
    config = yaml.safe_load(EXAMPLE.read_text("utf-8"))
    config["salesforce"]["login_url"] = salesforce.url
    config["salesforce"]["ca_bundle"] = str(salesforce.ca_file)
    config["simz"]["base_url"] = simz_url
    [sync] = config["syncs"]
    sync.update(start_at="2020-01-01T00:00:00Z", lag="1s")
    path = folder / "example.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    return path


def us_daytime() -> str:
    """Tomorrow 20:00 UTC: midday in California, afternoon in New York, any season."""
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    return datetime.combine(tomorrow, time(20), tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_example_config_sends_the_walkthrough_leads(
    tmp_path: Path, simz_emulator_factory: SimzFactory
) -> None:
    """check-config --connect, migrate, once --dry-run and once: Ada reaches SimZ, once."""
    records = walkthrough_records()
    assert all("IsConverted" not in record for record in records)  # left to the org's default
    simz = simz_emulator_factory(api_key="sandbox-key", agents=["agt_123"])
    salesforce = SalesforceEmulator(records, cert_dir=tmp_path / "sandbox-ca")
    salesforce.start()
    try:
        config = example_pointed_at(tmp_path, salesforce, simz.url)
        env = clean_env(**SANDBOX_ENV)
        daytime = clean_env(**SANDBOX_ENV, SYNCD_TEST_NOW=us_daytime())

        checked = run_syncd("check-config", "--connect", config=config, cwd=tmp_path, env=env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "warning:" not in checked.stderr  # the example sets calling hours
        migrated = run_syncd("migrate", config=config, cwd=tmp_path, env=env)
        assert migrated.returncode == 0, migrated.stderr

        preview = run_syncd("once", "--dry-run", config=config, cwd=tmp_path, env=daytime)
        assert preview.returncode == 0, preview.stderr
        assert "fetched 3," in preview.stdout
        assert "would queue 1, skip 1, mark invalid 1" in preview.stdout

        sent = run_syncd("once", config=config, cwd=tmp_path, env=daytime)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        [received] = simz.received()
        assert (received["agentId"], received["accepted"]) == ("agt_123", True)
        lead = received["lead"]
        assert (lead["phoneNumber"], lead["firstName"]) == ("+14155550101", "Ada")
    finally:
        salesforce.stop()
