"""Org identity's decision: the trusted org, a changed org, a sandbox (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from syncd.domain.org import Org, TrustedOrg, judge_org

PROD = Org("00D8d000000SyNcEAK", False, "Acme")
OTHER = Org("00D8d000000RfshEAC", False, "Acme")
SANDBOX = Org("00D8d000000RfshEAC", True, "Acme QA")
TRUSTED = TrustedOrg(PROD.org_id, datetime(2026, 1, 1, tzinfo=UTC), "first sync")


class TestJudgeOrg:
    def test_the_trusted_org_delivers(self) -> None:
        assert judge_org(PROD, TRUSTED, sandbox_allowed=False) is None

    def test_another_org_names_both_and_the_command(self) -> None:
        problem = judge_org(OTHER, TRUSTED, sandbox_allowed=False)
        assert problem is not None
        assert PROD.org_id in problem and OTHER.org_id in problem
        assert "syncd trust-org" in problem and "first sync" in problem

    def test_a_sandbox_is_refused_without_the_setting_even_when_trusted(self) -> None:
        trusted = TrustedOrg(SANDBOX.org_id, None, "alice")
        problem = judge_org(SANDBOX, trusted, sandbox_allowed=False)
        assert problem is not None and "salesforce.sandbox: allow" in problem
        assert judge_org(SANDBOX, trusted, sandbox_allowed=True) is None

    def test_no_trusted_org_is_a_problem(self) -> None:
        problem = judge_org(PROD, None, sandbox_allowed=False)
        assert problem is not None and "no Salesforce org is trusted" in problem

    def test_describe_says_sandbox_or_production(self) -> None:
        assert SANDBOX.describe() == "sandbox 'Acme QA' 00D8d000000RfshEAC"
        assert PROD.describe() == "production org 'Acme' 00D8d000000SyNcEAK"
