"""The correlation value syncd adds to a lead's customData when webhooks are on.

``<Salesforce Id>.<lead id>.<mac>``: ``mac`` is the HMAC-SHA-256 of the first
two parts under the configured secret, as 16 hex digits (64 bits). The lead id
names the one attempt the hook reports on; the MAC proves syncd made the value,
so a forged or altered payload matches no lead. Pure code.
"""

from __future__ import annotations

import hashlib
import hmac
import re

#: Hex digits of the MAC kept in the value.
MAC_LENGTH = 16
_VALUE = re.compile(rf"^([A-Za-z0-9]{{15,18}})\.([1-9][0-9]{{0,18}})\.([0-9a-f]{{{MAC_LENGTH}}})$")


def _mac(secret: bytes, salesforce_id: str, lead_id: int) -> str:
    message = f"{salesforce_id}.{lead_id}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:MAC_LENGTH]


def make_ref(secret: bytes, salesforce_id: str, lead_id: int) -> str:
    """The value for ``customData[correlation_key]`` of one lead."""
    return f"{salesforce_id}.{lead_id}.{_mac(secret, salesforce_id, lead_id)}"


def well_formed(value: object) -> bool:
    """True when ``value`` has the shape of a ref (whether or not its MAC is genuine)."""
    return isinstance(value, str) and _VALUE.match(value.strip()) is not None


def read_ref(secret: bytes, value: object) -> tuple[str, int] | None:
    """(Salesforce Id, lead id) when ``value`` is a genuine ref under ``secret``, else None."""
    if not isinstance(value, str):
        return None
    found = _VALUE.match(value.strip())
    if found is None:
        return None
    salesforce_id, lead_text, mac = found.groups()
    lead_id = int(lead_text)
    if not hmac.compare_digest(mac, _mac(secret, salesforce_id, lead_id)):
        return None
    return salesforce_id, lead_id
