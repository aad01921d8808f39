"""CSV cells a spreadsheet would run as formulas are shown as text; numbers are kept."""

import pytest

from syncd.text import spreadsheet_safe


@pytest.mark.parametrize(
    "value",
    [
        '=HYPERLINK("http://evil.example","click")',
        "@SUM(A1:A2)",
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_formulas_get_a_leading_quote(value: str) -> None:
    assert spreadsheet_safe(value) == "'" + value


@pytest.mark.parametrize(
    "value", ["+14155550123", "-3.5", "+1 (415) 555-0123", "opted out on a call", "", "0"]
)
def test_numbers_and_plain_text_are_kept(value: str) -> None:
    assert spreadsheet_safe(value) == value


def test_the_suppression_export_guards_its_cells() -> None:
    """An operator's reason that reads as a formula is exported as text; the number is kept."""
    import csv
    import io
    from datetime import UTC, datetime

    from syncd.adapters.suppression_store import SuppressionEntry
    from syncd.entrypoints.cli_suppress import _write_export

    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    entry = SuppressionEntry(
        "+14155550123", "operator", '=HYPERLINK("x")', "ops", None, None, at, at
    )
    out = io.StringIO()
    _write_export(iter([entry]), "csv", out)
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["phone"] == "+14155550123"
    assert row["reason"] == '\'=HYPERLINK("x")'
