"""The SimZ request contract, read from the vendor's OpenAPI document.

``simz-openapi.yaml`` beside this module is a verbatim copy of the vendor
spec. Both the emulator (to answer 400 and to record spec violations) and the
contract tests validate request bodies against its ``LeadSubmissionRequest``
schema, so the rules live in one place: the spec, not our reading of it.

Formats are asserted. JSON Schema 2020-12 treats ``format`` as an annotation
unless a format checker is supplied; we supply one for the two formats the
spec uses, on purpose stricter than the permissive default of ``jsonschema``
(which accepts any string containing ``@`` as an email and skips ``uri``
without an optional package):

* ``email``: an RFC 5321 mailbox in ASCII, dot-atom local part (no quoted
  strings), at most 64 characters before ``@`` and 254 in all, and a domain
  of at least two hostname labels (``a@b`` is refused).
* ``uri``: an absolute RFC 3986 URI: a scheme, then only URI characters with
  valid percent-escapes, no spaces.

Holding our client to the stricter reading means a request it builds is valid
under any reasonable server-side interpretation of those formats.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker

SPEC_PATH = Path(__file__).with_name("simz-openapi.yaml")
REQUEST_SCHEMA = "LeadSubmissionRequest"
LEAD_PATH_PREFIX = "/api/lead-receive-service/agent/receiveLead/"
API_KEY_HEADER = "X-Company-API-Key"
#: What SimZ accepts as a phone number; the spec "recommends" E.164 and the
#: emulator rejects anything else per lead (``INVALID_PHONE_NUMBER``).
E164 = re.compile(r"^\+[1-9]\d{1,14}$")

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>{_LABEL}(?:\.{_LABEL})+)$")
_URI = re.compile(
    r"^[A-Za-z][A-Za-z0-9+.-]*:"  # scheme
    r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$"  # the rest, RFC 3986 chars
)


def is_email(value: object) -> bool:
    """True for a string that is an email address under the strict reading above."""
    if not isinstance(value, str):
        return True  # type checks are the schema's job, not the format's
    match = _EMAIL.match(value)
    return match is not None and len(match["local"]) <= 64 and len(value) <= 254


def is_uri(value: object) -> bool:
    """True for a string that is an absolute RFC 3986 URI (scheme required)."""
    if not isinstance(value, str):
        return True
    return bool(_URI.match(value)) and value.count("#") <= 1


def format_checker() -> FormatChecker:
    """A checker for exactly the formats the SimZ spec uses, strictly."""
    checker = FormatChecker(formats=())
    checker.checks("email")(is_email)
    checker.checks("uri")(is_uri)
    return checker


@cache
def load_spec() -> dict[str, Any]:
    """The parsed OpenAPI document (read once per process)."""
    with SPEC_PATH.open(encoding="utf-8") as handle:
        spec: dict[str, Any] = yaml.safe_load(handle)
    return spec


@cache
def schema_validator(name: str) -> Draft202012Validator:
    """A compiled validator for ``components.schemas[name]`` with its ``$ref``s resolved.

    OpenAPI 3.1 schemas are JSON Schema 2020-12; the component refs
    (``#/components/schemas/...``) resolve against a root that carries the
    spec's ``components``, so the spec is used as written.
    """
    components = load_spec()["components"]
    if name not in components["schemas"]:
        raise KeyError(f"no schema {name!r} in {SPEC_PATH.name}")
    root = {"$ref": f"#/components/schemas/{name}", "components": components}
    Draft202012Validator.check_schema(root)
    return Draft202012Validator(root, format_checker=format_checker())


def _where(path: Any) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return text.lstrip(".") or "(body)"


def validate_schema(name: str, body: object) -> list[str]:
    """Problems of ``body`` against the spec's schema ``name``, one readable line each."""
    errors = schema_validator(name).iter_errors(body)
    return sorted(f"{_where(e.absolute_path)}: {e.message}" for e in errors)


def validate_request(body: object) -> list[str]:
    """Problems of a lead submission body against ``LeadSubmissionRequest``; [] when valid.

    ``body`` is the decoded JSON; each problem reads ``<where>: <what>``,
    e.g. ``leads[3]: 'phoneNumber' is a required property``.
    """
    return validate_schema(REQUEST_SCHEMA, body)
