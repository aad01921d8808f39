"""A sync may not read a field that write-back writes: not in ``where``, nor as a zone or state
field.

Such a field changes with every write syncd makes: a ``where`` on it makes a sent
lead stop matching (``requeue`` then skips it as "no longer matched"), and a zone
field syncd writes would be dropped from the query without a word.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from syncd.config import SyncConfig

WRITEBACK = {"fields": {"status": "SimZ_Status__c", "batch_id": "SimZ_Batch_Id__c"}}


def sync(**settings: Any) -> dict[str, Any]:
    return {"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}, **settings}


def refusal(**settings: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        SyncConfig.model_validate(sync(writeback=WRITEBACK, **settings))
    [error] = caught.value.errors()
    return str(error["msg"])


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("SimZ_Status__c = null", "SimZ_Status__c"),
        (
            "LeadSource = 'Web' AND (simz_batch_id__c = null OR IsConverted = false)",
            "simz_batch_id__c",
        ),
    ],
)
def test_where_reading_a_written_field_is_refused(where: str, field: str) -> None:
    message = refusal(where=where)
    assert f"where reads {field}, which write-back writes" in message
    assert "cannot also decide the lead" in message


def test_zone_field_that_is_written_is_refused() -> None:
    message = refusal(
        calling_hours={"window": "08:00-21:00", "timezone": {"field": "SimZ_Status__c"}}
    )
    assert "calling_hours.timezone.field reads SimZ_Status__c, which write-back writes" in message


def test_state_field_that_is_written_is_refused() -> None:
    message = refusal(calling_hours={"profile": "us", "state_field": "SimZ_Status__c"})
    assert "calling_hours.state_field reads SimZ_Status__c, which write-back writes" in message


def test_state_field_is_queried_and_mapped() -> None:
    hours = {"profile": "us", "state_field": "State"}
    config = SyncConfig.model_validate(sync(calling_hours=hours))
    assert "State" in config.query_spec.read_fields
    assert config.mapping_spec.state_field == "State"


@pytest.mark.parametrize(
    "settings",
    [
        {"where": "LeadSource = 'Web' AND IsConverted = false"},
        # A written field's name inside a literal or a sub-query is no read of it.
        {"where": "Description != 'SimZ_Status__c'"},
        {"where": "Id IN (SELECT LeadId FROM CampaignMember WHERE SimZ_Status__c = null)"},
        {"calling_hours": {"window": "08:00-21:00", "timezone": {"field": "Timezone__c"}}},
        {"calling_hours": {"profile": "us", "state_field": "State"}},
    ],
)
def test_fields_write_back_does_not_write_are_fine(settings: dict[str, Any]) -> None:
    SyncConfig.model_validate(sync(writeback=WRITEBACK, **settings))


def test_without_writeback_where_may_read_anything() -> None:
    SyncConfig.model_validate(sync(where="SimZ_Status__c = null"))
