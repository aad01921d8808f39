"""Pytest fixtures around the SimZ emulator.

Every request our client sends in the test suite goes through an emulator
from these fixtures, and the emulator validates each one against the vendor
spec. At teardown a fixture FAILS the test if any request broke the spec,
unless the test is marked ``@pytest.mark.allow_invalid_requests`` (for tests
that send bad requests on purpose). That is how the promise "every request
the client builds is validated against simz-openapi.yaml" is enforced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from syncd.config.models import SimzConfig
from syncd.sandbox.simz import SimzEmulator

SIMZ_TEST_KEY = "test-key"
SIMZ_TEST_AGENTS = ("agt_1", "agt_2")
ALLOW_INVALID = "allow_invalid_requests"

SimzFactory = Callable[..., SimzEmulator]


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so the fixtures also work where pyproject is not the config."""
    config.addinivalue_line(
        "markers", f"{ALLOW_INVALID}: the test sends requests that break the SimZ spec on purpose"
    )


def assert_no_violations(emulators: Iterable[SimzEmulator]) -> None:
    """Fail the current test with every spec problem the emulators recorded."""
    lines = []
    for emulator in emulators:
        for violation in emulator.schema_violations():
            problems = "; ".join(violation["problems"])
            lines.append(f"  {violation['method']} {violation['path']}: {problems}")
    if lines:
        pytest.fail(
            "requests to the SimZ emulator broke simz-openapi.yaml "
            f"(mark the test {ALLOW_INVALID} if that is intended):\n" + "\n".join(lines),
            pytrace=False,
        )


@pytest.fixture
def simz_emulator_factory(request: pytest.FixtureRequest) -> Iterator[SimzFactory]:
    """Start emulators with any settings; all are stopped and checked for spec violations."""
    started: list[SimzEmulator] = []

    def start(
        api_key: str = SIMZ_TEST_KEY,
        credits: int | None = None,
        agents: Iterable[str] = SIMZ_TEST_AGENTS,
    ) -> SimzEmulator:
        emulator = SimzEmulator(api_key=api_key, credits=credits, agents=agents)
        emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
    if request.node.get_closest_marker(ALLOW_INVALID) is None:
        assert_no_violations(started)


@pytest.fixture
def simz_emulator(simz_emulator_factory: SimzFactory) -> SimzEmulator:
    """A started emulator: key "test-key", agents "agt_1" and "agt_2", unlimited credits."""
    return simz_emulator_factory()


def simz_config_for(emulator: SimzEmulator, **overrides: Any) -> SimzConfig:
    """A SimzConfig pointing at the emulator with its key; ``overrides`` replace any field."""
    values: dict[str, Any] = {
        "base_url": emulator.url,
        "api_key": emulator.api_key,
        "requests_per_second": 1000,
        **overrides,
    }
    return SimzConfig.model_validate(values)
