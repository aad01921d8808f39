"""Pytest fixtures around the Salesforce emulator, and how to reach it with simple-salesforce.

simple-salesforce builds login URLs as ``https://{domain}.salesforce.com/...``,
so ``domain`` can never point at a loopback emulator. What works, without
patching the library:

* SOAP password login: ``SalesforceLogin(username=, password=, security_token=,
  sf_version=, session=, scratch_url=<login_url>)`` posts to
  ``{scratch_url}/services/Soap/u/{version}`` and returns ``(session_id, instance)``.
* OAuth2 grants (password, client_credentials, JWT bearer):
  ``simple_salesforce.login.token_login(f"{login_url}/services/oauth2/token",
  form, domain, consumer_key, headers, None, session)`` returns
  ``(access_token, instance)``; the JWT assertion is built with ``jwt.encode``
  as simple-salesforce does (``iss``, ``sub``, ``aud``, ``exp``).
* Then ``Salesforce(session_id=..., instance=..., session=..., version=...)``.
  That client cannot log in again by itself, so the caller re-logs-in on
  ``SalesforceExpiredSession`` (INVALID_SESSION_ID) and retries once.

The machine's ``REQUESTS_CA_BUNDLE`` overrides ``Session.verify`` unless
``trust_env`` is off, hence :func:`salesforce_session`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.config.models import SalesforceConfig
from syncd.sandbox.salesforce import SalesforceEmulator

SF_API_VERSION = "61.0"


def salesforce_session(emulator: SalesforceEmulator) -> requests.Session:
    """A requests session that trusts exactly the emulator's CA (not the environment's)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulator.ca_file)
    return session


def salesforce_config(emulator: SalesforceEmulator, **overrides: Any) -> SalesforceConfig:
    """A ``SalesforceConfig`` for the emulator: password login, its URL and its CA.

    ``overrides`` replace top-level keys (e.g. ``page_size=200`` or a whole
    ``auth={...}`` mapping).
    """
    data: dict[str, Any] = {
        "auth": {
            "method": "password",
            "username": emulator.username,
            "password": emulator.password,
            "security_token": emulator.security_token,
        },
        "login_url": emulator.url,
        "ca_bundle": str(emulator.ca_file),
        "api_version": SF_API_VERSION,
    }
    data.update(overrides)
    return SalesforceConfig.model_validate(data)


@pytest.fixture
def salesforce_emulator(tmp_path: Path) -> Iterator[SalesforceEmulator]:
    """A started, empty emulator (default credentials) with its certificates under tmp_path.

    Add records with ``salesforce_emulator.add_records([{"sobject": "Lead", ...}])``.
    """
    emulator = SalesforceEmulator(cert_dir=tmp_path / "sf-certs")
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
