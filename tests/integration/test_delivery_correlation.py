"""With simz.webhook, each POST carries the correlation value and the webhook URL.

Over real HTTP against the SimZ emulator (which validates every request against
the spec), on SQLite and PostgreSQL; the value SimZ received reads back to its lead.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.simz import SimzClient
from syncd.domain.call_ref import read_ref
from syncd.sandbox.simz import SimzEmulator
from syncd.services.deliver import deliver_sync
from tests.clock import Clock
from tests.integration.delivery_rows import T0, insert_leads, lead, make_sync
from tests.simz_fixtures import simz_config_for

SECRET = "c" * 40
TOKEN = "Tok-en_" + "t" * 33
WEBHOOK = {
    "public_url": "https://hooks.example.com/in/",
    "token": TOKEN,
    "correlation_secret": SECRET,
    "correlation_key": "acmeRef",
}


def deliver(
    sessions: sessionmaker[Session], emulator: SimzEmulator, **simz: Any
) -> list[dict[str, Any]]:
    """One delivery pass of sync ``web``; the bodies the client POSTed."""
    config = simz_config_for(emulator, batch_size=10, **simz)
    client = SimzClient(config)
    bodies: list[dict[str, Any]] = []
    submit = client.submit

    def watched(agent: str, body: dict[str, Any], **kwargs: Any) -> Any:
        bodies.append(body)
        return submit(agent, body, **kwargs)

    client.submit = watched  # type: ignore[method-assign]
    try:
        result = deliver_sync(
            sessions,
            client,
            make_sync(options={"priority": "high"}),
            config,
            now=Clock(T0 + timedelta(minutes=1)),
            worker="test",
        )
    finally:
        client.close()
    assert result.accepted == sum(len(b["leads"]) for b in bodies)
    return bodies


def test_each_lead_carries_its_ref_and_the_request_the_webhook_url(
    sessions: sessionmaker[Session], simz_emulator: SimzEmulator
) -> None:
    ids = insert_leads(sessions, range(12))
    bodies = deliver(sessions, simz_emulator, webhook=WEBHOOK)
    assert len(bodies) == 2
    url = "https://hooks.example.com/in/hooks/simz/" + TOKEN
    assert all(b["options"] == {"priority": "high", "webhookUrl": url} for b in bodies)
    received = simz_emulator.received()
    assert sorted(r["salesforceId"] for r in received) == sorted(ids)
    for entry in received:
        custom = entry["lead"]["customData"]
        stored = lead(sessions, entry["salesforceId"])
        # The mapped customData is kept; the one key is added; it reads back to the lead.
        assert set(custom) == {"n", "acmeRef"}
        assert read_ref(SECRET.encode(), custom["acmeRef"]) == (stored.salesforce_id, stored.id)
        # The stored payload stays as mapped.
        assert stored.payload["customData"] == {"n": custom["n"]}


def test_without_a_webhook_the_body_is_as_mapped(
    sessions: sessionmaker[Session], simz_emulator: SimzEmulator
) -> None:
    insert_leads(sessions, range(3))
    [body] = deliver(sessions, simz_emulator)
    assert body["options"] == {"priority": "high"}
    assert [lead["customData"] for lead in body["leads"]] == [{"n": 0}, {"n": 1}, {"n": 2}]
