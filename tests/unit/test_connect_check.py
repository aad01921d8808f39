"""How check-config --connect words a refused query."""

from __future__ import annotations

import pytest

from syncd.services.connect_check import describe_query_error

SOQL = "SELECT Phonee, Id FROM Lead WHERE SystemModstamp >= 2024-01-01T00:00:00Z LIMIT 1"
REASON = "No such column 'Phonee' on entity 'Lead'."


@pytest.mark.parametrize(
    "error",
    [
        "INVALID_FIELD: \nSELECT Phonee, Id FROM Lead\n       ^\nERROR at Row:1:Column:8\n"
        + REASON,
        "INVALID_FIELD: \\nSELECT Phonee, Id FROM Lead\\n       ^\\nERROR at Row:1:Column:8\\n"
        + REASON,
    ],
    ids=["raw", "escaped"],
)
def test_position_is_marked_in_the_whole_query(error: str) -> None:
    """Salesforce's caret snippet becomes the whole query with >>> at Row/Column, one line."""
    assert describe_query_error(SOQL, error) == (
        f"INVALID_FIELD: {REASON} (row 1, column 8): SELECT >>>Phonee, Id FROM Lead WHERE "
        "SystemModstamp >= 2024-01-01T00:00:00Z LIMIT 1"
    )


def test_without_a_position_the_query_is_shown() -> None:
    """An answer without Row/Column still names the query, on one line."""
    assert describe_query_error("SELECT Id FROM Lead", "INVALID_TYPE: no\nsuch") == (
        "INVALID_TYPE: no such; query: SELECT Id FROM Lead"
    )
