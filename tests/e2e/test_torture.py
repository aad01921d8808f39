"""Crash torture in ``make test``: a short run of :mod:`tests.torture`.

``make torture`` runs the same engine with at least 50 kills and thousands of
records (``TORTURE_KILLS``, ``TORTURE_RECORDS``, ``TORTURE_SEED`` override it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.torture import TortureSettings, run_torture


@pytest.mark.slow
@pytest.mark.timeout(3600)
class TestCrashTorture:
    def test_guarantees_hold_across_random_kills(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        """After random SIGKILLs under random faults and a drain: nothing twice, lost or hidden."""
        settings = TortureSettings.from_env(kills=5, records=400)
        report = run_torture(tmp_path, simz_emulator, settings)
        print("\n" + report.summary())
        assert report.kills == settings.kills
        assert report.records == settings.records
        assert report.duplicates == 0
        assert report.problems == [], report.summary()
        assert sum(report.leads_by_state.values()) == settings.records

    def test_stream_mode_guarantees_hold(self, tmp_path: Path, simz_emulator: SimzEmulator) -> None:
        """The same checks with the sync in stream mode, under Pub/Sub faults too."""
        settings = TortureSettings.from_env(kills=3, records=200)
        settings.stream = True
        report = run_torture(tmp_path, simz_emulator, settings)
        print("\n" + report.summary())
        assert report.kills == settings.kills
        assert report.duplicates == 0
        assert report.problems == [], report.summary()
        assert sum(report.leads_by_state.values()) == settings.records
