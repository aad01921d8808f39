"""The alert rules and the dashboard's queries, checked by Prometheus' own tool.

``promtool check rules`` parses every rule with Prometheus' parser;
``promtool test rules`` runs the unit tests of deploy/prometheus/tests/ (series
in, alerts out at given times). The dashboard's queries are parsed the same way,
each made a recording rule of a generated rules file. promtool comes with
Debian's ``prometheus`` package (``.ci/run`` installs it); where it is missing
these tests are skipped, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from syncd.metrics import REGISTRY
from syncd.services.known_series import export_known_series
from tests.integration.deploy_files import DEPLOY, RULES, dashboard_expressions, yaml_documents
from tests.integration.operator_rows import make_config

RULE_TESTS = DEPLOY / "prometheus" / "tests"
#: The alerts whose firing (and not firing) the unit tests must show.
MUST_BE_TESTED = {
    "SyncdFailedLeads",
    "SyncdWritebackFailures",
    "SyncdHeldLeads",
    "SyncdPollStale",
    "SyncdStreamStalled",
    "SyncdUncertainLeads",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not installed (Debian: apt-get install prometheus; .ci/run does it)"
        )
    return found


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, input=stdin
    )


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS.glob("*.yaml"))


def as_promql(expression: str) -> str:
    """A dashboard query with Grafana's variables replaced by values PromQL accepts."""
    text = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", expression)
    return re.sub(r"\$\{?[A-Za-z_]\w*\}?", "x", text)


def test_the_unit_tests_cover_the_alerts_operators_rely_on() -> None:
    """Each alert in MUST_BE_TESTED is evaluated, firing at one time and silent at another."""
    evaluated: dict[str, list[bool]] = {}
    for path in rule_test_files():
        document = yaml_documents(path)[0]
        assert document["rule_files"] == ["../rules.yaml"], path
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                fires = bool(check.get("exp_alerts"))
                evaluated.setdefault(check["alertname"], []).append(fires)
    for name in MUST_BE_TESTED:
        assert set(evaluated.get(name, [])) == {True, False}, name


def test_grafana_variables_become_promql() -> None:
    assert as_promql('rate(a{sync=~"$sync"}[$__rate_interval])') == 'rate(a{sync=~"x"}[5m])'
    assert as_promql('label_replace(a, "s", "$1", "n", "(.*)")') == (
        'label_replace(a, "s", "$1", "n", "(.*)")'
    )


class TestPromtool:
    def test_rules_pass_promtool_check(self) -> None:
        result = run_promtool("check", "rules", str(RULES))
        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
    def test_rule_unit_tests_pass(self, path: Path) -> None:
        """Series in, alerts out: the first failure, held leads, stalls, uncertain leads."""
        result = run_promtool("test", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_every_dashboard_query_parses(self, tmp_path: Path) -> None:
        """Each panel's query (and the variable's series), as a recording rule: parsed."""
        expressions = dashboard_expressions()
        rules = [
            {"record": f"syncd_dashboard:query_{i}", "expr": as_promql(expression)}
            for i, expression in enumerate(expressions)
        ]
        path = tmp_path / "dashboard_rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        result = run_promtool("check", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(rules)} rules found" in result.stdout

    def test_a_broken_query_is_refused(self, tmp_path: Path) -> None:
        """The check above would catch a bad query: promtool refuses this one."""
        path = tmp_path / "bad.yaml"
        bad = {"record": "x:y", "expr": "sum by (sync (rate(syncd_polls_total[5m]))"}
        path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [bad]}]}))
        assert run_promtool("check", "rules", str(path)).returncode != 0

    def test_the_metrics_text_passes_promtool_lint(self) -> None:
        """/metrics of a started daemon (every known series exported) lints clean."""
        export_known_series(make_config())
        text = generate_latest(REGISTRY).decode()
        result = run_promtool("check", "metrics", stdin=text)
        assert result.returncode == 0, result.stdout + result.stderr
