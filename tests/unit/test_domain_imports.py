"""The domain imports no infrastructure: no database, scheduler, HTTP or vendor client library.

Each ``syncd.domain`` module is imported in a fresh interpreter, so what an
earlier test loaded cannot hide what the domain pulls in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import syncd.domain

INFRASTRUCTURE = (
    "sqlalchemy",
    "apscheduler",
    "httpx",
    "simple_salesforce",
    "psycopg",
    "requests",
    "grpc",
)

DOMAIN_MODULES = sorted(
    f"syncd.domain.{info.name}" for info in pkgutil.iter_modules(syncd.domain.__path__)
)

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_packages(module: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after importing ``module``."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


def test_every_domain_module_is_checked() -> None:
    assert "syncd.domain.mapping" in DOMAIN_MODULES
    assert "syncd.domain.soql" in DOMAIN_MODULES


def test_the_probe_sees_infrastructure() -> None:
    assert "sqlalchemy" in loaded_packages("syncd.adapters.orm")


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_domain_module_loads_no_infrastructure(module: str) -> None:
    loaded = loaded_packages(module)
    assert "syncd" in loaded
    assert sorted(loaded.intersection(INFRASTRUCTURE)) == []
