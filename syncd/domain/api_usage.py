"""The org's API-usage guard: when a reading says to stop calling Salesforce.

Pure code. Readings come from ``Sforce-Limit-Info: api-usage=used/max`` (the
adapters keep the last one); polling, stream reads and write-back all ask this
one rule, so a change of the threshold applies to every caller.
"""

from __future__ import annotations


def usage_over_limit(usage: tuple[int, int] | None, percent: int) -> str | None:
    """Why ``usage`` (used, max) is above ``percent`` of the daily limit, or None."""
    if usage is None or usage[1] <= 0:
        return None
    used, limit = usage
    if used * 100 > limit * percent:
        return f"Salesforce API usage {used}/{limit} is above {percent}% of the daily limit"
    return None
