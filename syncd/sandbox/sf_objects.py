"""The Salesforce emulator's built-in objects: key prefixes, standard fields, their defaults.

Lead, Contact, Account, User, Opportunity, Task and Organization come with a short list of common
standard fields (so that a query on an empty org is not refused) and with what
an org puts in those fields when a new record leaves them out: ``IsDeleted`` is
false everywhere; a Lead is not converted, has the default ``Status`` and is
not opted out; a Contact is not opted out. Checkboxes are never null in an org.
"""

from __future__ import annotations

from typing import Any

from syncd.sandbox.sf_soql import FieldInfo, FieldType

KEY_PREFIXES = {
    "Account": "001",
    "Contact": "003",
    "User": "005",
    "Opportunity": "006",
    "Lead": "00Q",
    "Organization": "00D",
    "Task": "00T",
}
_STANDARD: dict[str, FieldType] = {
    "Id": "id",
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
    "IsDeleted": "boolean",
}
_S: FieldType = "string"
_B: FieldType = "boolean"
_PEOPLE = {"OwnerId": "User", "CreatedById": "User", "LastModifiedById": "User"}
_BUILT_IN: dict[str, dict[str, FieldType | str]] = {
    "Lead": {
        **dict.fromkeys(
            [
                "FirstName",
                "LastName",
                "Name",
                "Company",
                "Email",
                "Phone",
                "MobilePhone",
                "Status",
                "LeadSource",
                "Title",
                "Street",
                "City",
                "State",
                "PostalCode",
                "Country",
            ],
            _S,
        ),
        **dict.fromkeys(["IsConverted", "DoNotCall", "HasOptedOutOfEmail"], _B),
        **_PEOPLE,
    },
    "Contact": {
        **dict.fromkeys(
            [
                "FirstName",
                "LastName",
                "Name",
                "Email",
                "Phone",
                "MobilePhone",
                "Title",
                "LeadSource",
                "MailingCountry",
            ],
            _S,
        ),
        **dict.fromkeys(["DoNotCall", "HasOptedOutOfEmail"], _B),
        "AccountId": "Account",
        **_PEOPLE,
    },
    "Account": {
        **dict.fromkeys(["Name", "Phone", "Industry", "Type", "Website", "BillingCountry"], _S),
        **_PEOPLE,
    },
    "User": {
        **dict.fromkeys(["Username", "Email", "FirstName", "LastName", "Name"], _S),
        "IsActive": _B,
    },
    "Organization": {**dict.fromkeys(["Name", "OrganizationType"], _S), "IsSandbox": _B},
    # A logged call: WhoId names a Lead or Contact, WhatId any other record.
    "Task": {
        **dict.fromkeys(
            [
                "Subject",
                "Status",
                "Priority",
                "Type",
                "TaskSubtype",
                "CallDisposition",
                "CallObject",
                "CallType",
                "Description",
            ],
            _S,
        ),
        "WhoId": "Lead",
        "WhatId": "Account",
        "CallDurationInSeconds": "number",
        "ActivityDate": "date",
        **_PEOPLE,
    },
    "Opportunity": {
        **dict.fromkeys(["Name", "StageName"], _S),
        "Amount": "number",
        "CloseDate": "date",
        **dict.fromkeys(["IsClosed", "IsWon"], _B),
        "AccountId": "Account",
        **_PEOPLE,
    },
}
#: What an org puts in a standard field that a new record leaves out; checkboxes are never
#: null, so a null given for one is its default too.
DEFAULTS: dict[str, dict[str, Any]] = {
    "Lead": {
        "IsConverted": False,
        "Status": "Open - Not Contacted",
        "HasOptedOutOfEmail": False,
        "DoNotCall": False,
    },
    "Contact": {"HasOptedOutOfEmail": False, "DoNotCall": False},
    "Task": {"Status": "Not Started", "Priority": "Normal"},
}
#: The standard Lead statuses of a new org, the default first (describe lists them).
LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
)
PICKLISTS: dict[tuple[str, str], tuple[str, ...]] = {("Lead", "status"): LEAD_STATUSES}
_FIELD_TYPES = frozenset(("id", "reference", "string", "boolean", "number", "datetime", "date"))
#: Standard fields nobody may write (lower case): the org maintains them.
READ_ONLY = frozenset(name.lower() for name in _STANDARD)


def default_of(sobject: str, name: str) -> Any:
    """The value an org gives a new ``sobject`` record's standard field ``name``, or None."""
    return False if name == "IsDeleted" else DEFAULTS.get(sobject, {}).get(name)


def built_in_fields(sobject: str) -> dict[str, FieldInfo]:
    """The fields every ``sobject`` has before a record names any, by lower-case name."""
    fields: dict[str, FieldInfo] = {}
    for name, kind in {**_STANDARD, **_BUILT_IN.get(sobject, {})}.items():
        if kind in _FIELD_TYPES:
            fields[name.lower()] = FieldInfo(name, kind)  # type: ignore[arg-type]
        else:
            fields[name.lower()] = FieldInfo(name, "reference", kind)
    return fields
