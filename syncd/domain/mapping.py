"""Turn one Salesforce record into one SimZ lead (docs/design.md#mapping-and-safety-rules).

Pure code: a :class:`Mapper` is built once per sync from its :class:`MappingSpec` and
maps plain record dicts (as Salesforce's REST API returns them) to
:class:`MappedLead` values. It decides everything that depends on the record
alone: the request body, the agent, whether the lead is ``invalid``, the
DoNotCall flag, and a digest used to tell a real change from a re-read.
Rules that need other leads (the duplicate-phone window) live in
:mod:`syncd.domain.rules`.

Salesforce field names are case-insensitive, so paths are resolved
case-insensitively; a relationship that is null (``Owner`` with no owner)
gives None for every field behind it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import phonenumbers

from syncd.domain.consent import consent_text
from syncd.domain.fields import FieldRef
from syncd.domain.soql import CREATED_FIELD, STAMP_FIELD, parse_datetime
from syncd.domain.states import LeadState

# LeadInput's ``email`` has ``format: email``: an ASCII RFC 5321 mailbox (dot-atom
# local part of at most 64 characters, a domain of two or more hostname labels, 254
# in all). Non-ASCII addresses are ``idn-email``, not ``email``: sending one makes
# SimZ refuse the whole batch with a 400, so such a value is left out instead.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(
    rf"^(?=.{{1,254}}$)(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+$"
)

_MISSING = object()
_ID = ("Id",)
_CREATED = (CREATED_FIELD,)


def resolve(record: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted field path such as ``Owner.Email``, or None.

    Each step tries the exact key first and then a case-insensitive match; a
    null or absent relationship object gives None.
    """
    return _resolve(record, path.split("."))


def _resolve(record: Mapping[str, Any], parts: Sequence[str]) -> Any:
    """:func:`resolve` for a path already split at its dots."""
    node: Any = record
    for part in parts:
        # A dict is a Mapping; testing its type first skips the slower ABC check.
        if type(node) is not dict and not isinstance(node, Mapping):
            return None
        value = node.get(part, _MISSING)
        if value is _MISSING:
            folded = part.lower()
            value = next(
                (v for k, v in node.items() if isinstance(k, str) and k.lower() == folded),
                None,
            )
        node = value
        if node is None:
            return None
    return node


def json_safe(value: Any) -> Any:
    """A value JSON can carry: dates as ISO text, decimals as numbers, nested values too.

    A relationship object's ``attributes`` (Salesforce's type and URL) is dropped.
    Non-finite floats have no JSON form and become text.
    """
    if type(value) is str or value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items() if k != "attributes"}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _text(value: Any) -> str | None:
    """A string field's value, or None for null and empty (sent as absent, not "")."""
    if type(value) is str:  # the usual case, first
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value.strip()
    else:
        safe = json_safe(value)
        text = safe if isinstance(safe, str) else json.dumps(safe)
    return text or None


def _custom_value(value: Any) -> Any:
    """A customData value as sent: JSON-safe, text stripped."""
    value = json_safe(value)
    return value.strip() if isinstance(value, str) else value


#: Text values that plainly mean "do not call" (any other non-callable value also
#: does, but is reported as unrecognised).
_DO_NOT_CALL_VALUES = frozenset({"true", "1", "yes"})


def read_do_not_call(value: Any, callable_values: frozenset[str]) -> tuple[bool, str | None]:
    """Whether a DoNotCall value forbids the call, failing closed.

    A boolean (a checkbox) is read as it is; null and empty text are callable;
    other values are callable only when listed in ``callable_values`` (folded to
    lower case, trimmed). Returns the flag and, for a value that is neither
    listed nor a plain "true"/"1"/"yes", that value as text (for the note).
    """
    if isinstance(value, bool):
        return value, None
    text = _text(value)
    if text is None:
        return False, None
    folded = text.lower()
    if folded in callable_values:
        return False, None
    if folded in _DO_NOT_CALL_VALUES:
        return True, None
    return True, text[:100]


# A plain North American number: "+1" and ten digits, or (default region US only) the
# ten digits alone, at most one space, dot or hyphen between the groups, the area code
# optionally in parentheses; ASCII digits only ([0-9]: \d would take other scripts).
# For these phonenumbers.parse returns exactly PhoneNumber(1, <the ten digits>):
# nothing in them is an extension, an RFC 3966 part or letters; with "+" the country
# code is 1 whatever the region; without it, region US gives country code 1 and, as
# the area code starts with 2-9, neither US's international prefix (011) nor its
# national prefix (1) can match, so no digit is stripped. Tests compare this with
# phonenumbers.parse over every area code and many spellings.
_PLAIN_NANP = re.compile(r"(\+1[ .-]?)?\(?([2-9][0-9]{2})\)?[ .-]?([0-9]{3})[ .-]?([0-9]{4})")


def _us_prefixes_as_assumed() -> bool:
    """True while phonenumbers' US metadata has the prefixes _PLAIN_NANP relies on."""
    us = phonenumbers.PhoneMetadata.metadata_for_region("US")
    return (
        us is not None
        and us.country_code == 1
        and us.international_prefix == "011"
        and us.national_prefix_for_parsing == "1"
        and not us.national_prefix_transform_rule
    )


_PLAIN_NANP_ON = _us_prefixes_as_assumed()


def plain_nanp(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    """What ``phonenumbers.parse(text, region)`` returns for a plain NANP number, else None.

    A shortcut for the common case: parse is most of the cost of
    :func:`normalise_phone`, and these spellings need none of its work.
    """
    if not _PLAIN_NANP_ON:
        return None
    match = _PLAIN_NANP.fullmatch(text)
    if match is None or (match.group(1) is None and region != "US"):
        return None
    area, exchange, line = match.group(2, 3, 4)
    return phonenumbers.PhoneNumber(country_code=1, national_number=int(area + exchange + line))


def normalise_phone(value: Any, region: str) -> str | None:
    """The number in E.164, or None when it is not a valid phone number."""
    text = _text(value)
    if text is None:
        return None
    number = plain_nanp(text, region)
    if number is None:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return None
    # Valid for the default region implies valid (is_valid_number checks the region
    # it finds for the number); trying it first skips that region search, which
    # for +1 numbers walks the NANP countries and is most of the validation's cost.
    if not phonenumbers.is_valid_number_for_region(
        number, region
    ) and not phonenumbers.is_valid_number(number):
        return None
    formatted: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return formatted


@dataclass(frozen=True)
class MappedLead:
    """What one record becomes before rules that look at other leads."""

    salesforce_id: str
    cursor: datetime | None
    state: LeadState  # QUEUED or INVALID; the rules may still make it SKIPPED
    agent_id: str | None
    payload: dict[str, Any]
    phone_e164: str | None
    note: str | None
    do_not_call: bool
    digest: str
    #: A DoNotCall value that was not recognised (so ``do_not_call`` is True), else None.
    do_not_call_unrecognised: str | None = None
    time_zone: str | None = None  # the record's zone field (calling hours), when configured
    region: str | None = None  # the record's state field (calling hours' us profile), when set
    #: The record's SystemModstamp: which of two reads of it is newer (None: not read).
    stamp: datetime | None = None
    #: The record's consent field as text (:func:`consent_text`), when the sync reads one.
    consent: str | None = None
    #: The record's CreatedDate (speed to lead); never part of the digest.
    created: datetime | None = None


@dataclass(frozen=True)
class Route:
    """Pick the agent by a field's value; ``default`` takes the values not listed."""

    field: FieldRef
    values: Mapping[str, str]
    default: str | None = None


@dataclass(frozen=True)
class MappingSpec:
    """What the :class:`Mapper` of one sync reads, and where each SimZ lead field comes from.

    Exactly one of ``agent`` and ``route`` is set. ``do_not_call_field`` is None
    when the sync does not respect DoNotCall; ``zone_field`` names the record
    field with the lead's time zone (calling hours), if any, and ``state_field``
    the one with its address state (``calling_hours.state_field``).
    """

    phone: FieldRef
    cursor_field: str
    region: str = "US"
    first_name: FieldRef | None = None
    last_name: FieldRef | None = None
    email: FieldRef | None = None
    campaign_type: FieldRef | None = None
    custom: tuple[tuple[str, FieldRef], ...] = ()
    agent: str | None = None
    route: Route | None = None
    do_not_call_field: str | None = None
    callable_values: frozenset[str] = frozenset()
    zone_field: str | None = None
    state_field: str | None = None
    #: The record field holding consent (``rules.consent``), if the sync reads one.
    consent_field: str | None = None


class Mapper:
    """Maps records of one sync; build it once and call :meth:`map` per record."""

    def __init__(self, spec: MappingSpec) -> None:
        self.spec = spec
        self._region = spec.region
        self._texts: list[tuple[str, FieldRef]] = [
            (name, ref)
            for name, ref in (
                ("firstName", spec.first_name),
                ("lastName", spec.last_name),
                ("campaignType", spec.campaign_type),
            )
            if ref is not None
        ]
        self._dnc_field = spec.do_not_call_field
        self._callable = spec.callable_values
        self._cursor_parts = spec.cursor_field.split(".")
        self._stamp_is_cursor = spec.cursor_field.lower() == STAMP_FIELD.lower()
        self._dnc_parts = self._dnc_field.split(".") if self._dnc_field is not None else None
        zone_field = spec.zone_field
        self._zone_parts = zone_field.split(".") if zone_field is not None else None
        state_field = spec.state_field
        self._state_parts = state_field.split(".") if state_field is not None else None
        consent = spec.consent_field
        self._consent_parts = consent.split(".") if consent is not None else None
        # Every path the mapping and routing read, split once instead of per record.
        refs = [spec.phone, spec.email, *(ref for _key, ref in spec.custom)]
        refs += [ref for _name, ref in self._texts]
        if spec.route is not None:
            refs.append(spec.route.field)
        self._parts: dict[str, list[str]] = {
            ref.path: ref.path.split(".")
            for ref in refs
            if ref is not None and ref.path is not None
        }
        # (name, split path or None for a constant, the constant's value as sent)
        self._text_fields = [
            (name, self._split(ref), _text(ref.const) if ref.path is None else None)
            for name, ref in self._texts
        ]
        self._custom_fields = [
            (key, self._split(ref), _custom_value(ref.const) if ref.path is None else None)
            for key, ref in spec.custom
        ]

    def _split(self, ref: FieldRef) -> list[str] | None:
        return None if ref.path is None else self._parts[ref.path]

    def _value(self, record: Mapping[str, Any], ref: FieldRef) -> Any:
        return ref.const if ref.path is None else _resolve(record, self._parts[ref.path])

    def _route(self, record: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """The agent id, or None and the note that says why there is none."""
        if self.spec.agent is not None:
            return self.spec.agent, None
        route = self.spec.route
        assert route is not None
        raw = self._value(record, route.field)
        key = _text(raw)
        if key is not None and key in route.values:
            return route.values[key], None
        if route.default is not None:
            return route.default, None
        label = route.field.path if route.field.path is not None else "const"
        return None, f"no route for {label}={key if key is not None else 'null'}"

    def _phone(self, record: Mapping[str, Any], problems: list[str]) -> str | None:
        """The record's number in E.164; why there is none goes to ``problems``."""
        raw_phone = self._value(record, self.spec.phone)
        phone = normalise_phone(raw_phone, self._region)
        if phone is None:
            where = self.spec.phone.path or "const"
            if _text(raw_phone) is None:
                problems.append(f"no phone number in {where}")
            else:
                problems.append(f"phone number in {where} is not a valid number")
        return phone

    def _payload(
        self, record: Mapping[str, Any], phone: str | None, sf_id: str, notes: list[str]
    ) -> dict[str, Any]:
        """The SimZ lead's fields, in the order they are sent; notes on values left out."""
        payload: dict[str, Any] = {"phoneNumber": phone, "salesforceId": sf_id}
        for name, parts, const_text in self._text_fields:
            text = const_text if parts is None else _text(_resolve(record, parts))
            if text is not None:
                payload[name] = text
        if self.spec.email is not None:
            email = _text(self._value(record, self.spec.email))
            if email is not None:
                if _EMAIL.match(email):
                    payload["email"] = email
                else:
                    notes.append("email left out: not an email address")
        custom: dict[str, Any] = {}
        for key, parts, const_value in self._custom_fields:
            value = const_value if parts is None else _custom_value(_resolve(record, parts))
            if value is None or value == "":
                continue
            custom[key] = value
        if custom:
            payload["customData"] = custom
        return payload

    def _time_zone(self, record: Mapping[str, Any]) -> str | None:
        """The record's zone field (calling hours), cut to 64 characters, or None."""
        time_zone = _text(_resolve(record, self._zone_parts)) if self._zone_parts else None
        return time_zone[:64] if time_zone is not None else None

    def _address_state(self, record: Mapping[str, Any]) -> str | None:
        """The record's state field (calling hours), cut to 64 characters, or None."""
        region = _text(_resolve(record, self._state_parts)) if self._state_parts else None
        return region[:64] if region is not None else None

    def map(self, record: Mapping[str, Any]) -> MappedLead:
        """Map one record; never raises on bad values (they become notes)."""
        spec = self.spec
        sf_id = str(_resolve(record, _ID) or "")
        cursor = read_datetime(_resolve(record, self._cursor_parts))
        stamp = cursor if self._stamp_is_cursor else read_datetime(record.get(STAMP_FIELD))

        problems: list[str] = []
        notes: list[str] = []
        phone = self._phone(record, problems)
        payload = self._payload(record, phone, sf_id, notes)

        agent, route_problem = self._route(record)
        if route_problem:
            problems.append(route_problem)
        if not sf_id:
            problems.append("record has no Id")
        if cursor is None:
            problems.append(f"record has no readable {spec.cursor_field}")

        do_not_call, unrecognised = (
            read_do_not_call(_resolve(record, self._dnc_parts), self._callable)
            if self._dnc_parts is not None
            else (False, None)
        )
        note = "; ".join(problems + notes) or None
        state = LeadState.INVALID if problems else LeadState.QUEUED
        if phone is None:
            del payload["phoneNumber"]
        time_zone = self._time_zone(record)
        region = self._address_state(record)
        consent = (
            consent_text(_resolve(record, self._consent_parts)) if self._consent_parts else None
        )
        digest = lead_digest(agent, payload, state, note, do_not_call, time_zone, region)
        if self._consent_parts is not None:
            digest = with_consent(digest, consent)
        return MappedLead(
            salesforce_id=sf_id,
            cursor=cursor,
            state=state,
            agent_id=agent,
            payload=payload,
            phone_e164=phone,
            note=note,
            do_not_call=do_not_call,
            digest=digest,
            do_not_call_unrecognised=unrecognised,
            time_zone=time_zone,
            region=region,
            stamp=stamp,
            consent=consent,
            created=read_datetime(_resolve(record, _CREATED)),
        )


def read_datetime(value: Any) -> datetime | None:
    """A datetime field's value as read (REST text, or already parsed), else None."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return parse_datetime(value)
        except ValueError:
            return None
    return None


def lead_digest(
    agent: str | None,
    payload: Mapping[str, Any],
    state: LeadState,
    note: str | None,
    do_not_call: bool,
    time_zone: str | None = None,
    region: str | None = None,
) -> str:
    """A stable SHA-256 of everything that decides the lead: equal means nothing changed.

    ``time_zone`` (a record's zone field) and ``region`` (its state field) are
    part of it only when there is one, so leads of syncs without those settings
    keep the digests they had.
    """
    values: list[Any] = [agent, payload, state.value, note, do_not_call]
    if time_zone is not None:
        values.append(time_zone)
    if region is not None:
        values.append({"region": region})
    canonical = _CANONICAL.encode(values)
    return hashlib.sha256(canonical.encode()).hexdigest()


def with_consent(digest: str, consent: str | None) -> str:
    """The digest of a sync that reads a consent field: the consent value is part of it.

    A change of consent (given, withdrawn, renewed) is a change of the record, so
    its lead is evaluated again; syncs without the rule keep the digests they had.
    """
    canonical = _CANONICAL.encode([digest, "consent", consent])
    return hashlib.sha256(canonical.encode()).hexdigest()


# What json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=True) builds
# on every call, built once: the same encoder, so byte for byte the same text.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
