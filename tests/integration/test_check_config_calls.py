"""``syncd check-config`` names the webhook receiver and each sync's call write-back."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from syncd.entrypoints.cli import main
from tests.integration.operator_rows import config_dict
from tests.integration.test_call_metrics import WEBHOOK


def test_check_config_prints_the_receiver_and_each_call_writeback(tmp_path: Path) -> None:
    data = config_dict(f"sqlite:///{tmp_path}/syncd.db")
    data["simz"]["webhook"] = WEBHOOK
    data["syncs"][0]["call_writeback"] = {"mode": "tasks"}
    data["syncs"][1]["call_writeback"] = {
        "mode": "fields",
        "fields": {"disposition": "Last_Disposition__c", "called_at": "Last_Call_At__c"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), "utf-8")
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    web, partner = (
        next(i for i, line in enumerate(lines) if line.startswith(f"  {name}: "))
        for name in ("web", "partner")
    )
    assert lines[web + 1] == (
        "    call write-back: tasks (a completed call Task per call, Subject 'Call: {disposition}')"
    )
    assert lines[partner + 1] == (
        "    call write-back: fields (disposition -> Last_Disposition__c, "
        "called_at -> Last_Call_At__c)"
    )
    assert (
        "  webhook receiver: listen 0.0.0.0:8081 on every replica; SimZ posts to "
        "https://hooks.example.com/hooks/simz/***"
    ) in lines
    assert WEBHOOK["token"] not in result.output
