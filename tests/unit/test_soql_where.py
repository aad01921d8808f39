"""The field names read out of a sync's ``where`` condition: identifiers that are not SOQL's own."""

from __future__ import annotations

import pytest

from syncd.domain.soql_where import where_fields


@pytest.mark.parametrize(
    ("where", "fields"),
    [
        (None, []),
        ("", []),
        ("LeadSource = 'Web' AND IsConverted = false", ["LeadSource", "IsConverted"]),
        ("SimZ_Status__c = null", ["SimZ_Status__c"]),
        ("NOT (Rating IN ('Hot', 'Warm')) OR Score__c >= 1.5", ["Rating", "Score__c"]),
        ("Owner.Email LIKE '%@example.com'", ["Owner.Email"]),
        ("Industry INCLUDES ('a;b') AND Tags__c EXCLUDES ('c')", ["Industry", "Tags__c"]),
        # A keyword inside a string literal is not a field, nor is an escaped quote's text.
        ("Name = 'it\\'s AND Phone = 1' AND Email != null", ["Name", "Email"]),
        # Date and datetime literals, with and without :n.
        ("CreatedDate > LAST_N_DAYS:30 AND CloseDate < TODAY", ["CreatedDate", "CloseDate"]),
        (
            "SystemModstamp >= 2024-01-01T00:00:00+02:00 AND D__c = 2024-01-31",
            ["SystemModstamp", "D__c"],
        ),
        ("CreatedDate = N_WEEKS_AGO:2 OR CreatedDate = THIS_FISCAL_QUARTER", ["CreatedDate"]),
        # A function's name is not a field; its argument is.
        ("CALENDAR_YEAR(CreatedDate) = 2024", ["CreatedDate"]),
        # A currency literal and an Apex bind variable.
        ("Amount > USD5000 AND Region__c = :region", ["Amount", "Region__c"]),
        # A semi-join reads another object's fields.
        (
            "Id IN (SELECT LeadId FROM CampaignMember WHERE Status = 'Sent') AND Phone != null",
            ["Id", "Phone"],
        ),
        # Each field once, first spelling kept; a custom field named like a date literal counts.
        ("phone != null AND Phone != '' AND Last_N_Days__c = 1", ["phone", "Last_N_Days__c"]),
    ],
)
def test_fields(where: str | None, fields: list[str]) -> None:
    assert where_fields(where) == fields


def test_malformed_text_never_raises() -> None:
    """The query itself is Salesforce's to refuse; this only reads what it can."""
    assert where_fields("(((Phone = 'unterminated") == ["Phone"]
    assert where_fields("Id IN (SELECT LeadId FROM") == ["Id"]
