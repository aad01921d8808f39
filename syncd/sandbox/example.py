"""The example sync: web leads of the ``Lead`` object, mapped to SimZ leads.

One definition for the demo, the benchmarks and the tests, so that they all
exercise the same mapping, rules and options. It reads the fields the
emulator's demo data carries (:mod:`syncd.sandbox.demo_data`).
"""

from __future__ import annotations

import copy
from typing import Any

_EXAMPLE_SYNC: dict[str, Any] = {
    "object": "Lead",
    "where": "LeadSource = 'Web' AND IsConverted = false",
    "mapping": {
        "phoneNumber": "Phone",
        "firstName": "FirstName",
        "lastName": "LastName",
        "email": "Email",
        "campaignType": {"const": "web-inbound"},
        "customData": {"company": "Company", "owner": "Owner.Email"},
    },
    "phone": {"default_region": "US"},
    "rules": {"respect_do_not_call": True, "duplicate_phone_window": "24h"},
    "options": {"priority": "normal", "enableAMD": True},
}


def example_sync(name: str, **settings: Any) -> dict[str, Any]:
    """The example sync named ``name``, as a config's ``syncs`` entry (a fresh dict).

    ``settings`` add keys or replace whole ones (``agent`` or ``route``,
    ``schedule``, ``start_at``, ``lag``, ...); a key given as ``None`` is left out.
    """
    sync: dict[str, Any] = {"name": name, **copy.deepcopy(_EXAMPLE_SYNC)}
    for key, value in settings.items():
        sync.pop(key, None)
        if value is not None:
            sync[key] = value
    return sync
