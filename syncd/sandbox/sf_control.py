"""The control API of the Salesforce emulator: ``/__sandbox/...``, JSON, no authentication.

Each route is one small handler calling the emulator's Python method of the
same purpose, so a test can drive the org over HTTP (another process, the
CLI) exactly as it would in-process. :data:`ROUTES` maps ``(method, action)``
to its handler; ``GET records/{type}/{id}`` is the one route with parameters
in its path. A missing key in the body is a 400 naming it; so is a value the
emulator refuses (:class:`RecordError`, ``ValueError``, ``TypeError``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syncd.sandbox.sf_reply import Reply, json_reply
from syncd.sandbox.sf_store import RecordError

if TYPE_CHECKING:
    from syncd.sandbox.salesforce import SalesforceEmulator

ControlHandler = Callable[["SalesforceEmulator", Any], Reply]
CONTROL_PREFIX = "/__sandbox/"


def _publish(data: Any) -> bool:
    """``"publish": false`` writes without a change event (default true)."""
    value = data.get("publish", True)
    if not isinstance(value, bool):
        raise ValueError("publish must be true or false")
    return value


def _records(org: SalesforceEmulator, data: Any) -> Reply:
    ids = org.add_records(data.get("records", []), publish=_publish(data))
    return json_reply(200, {"ids": ids})


def _update(org: SalesforceEmulator, data: Any) -> Reply:
    record = org.update_record(
        data["sobject"],
        data["id"],
        data.get("fields", {}),
        data.get("SystemModstamp"),
        publish=_publish(data),
    )
    return json_reply(200, record)


def _delete(org: SalesforceEmulator, data: Any) -> Reply:
    return json_reply(200, org.delete_record(data["sobject"], data["id"]))


def _undelete(org: SalesforceEmulator, data: Any) -> Reply:
    return json_reply(200, org.undelete_record(data["sobject"], data["id"]))


def _pubsub_fault(org: SalesforceEmulator, data: Any) -> Reply:
    params = {k: v for k, v in data.items() if k != "kind"}
    return json_reply(200, {"affected": org.pubsub_fault(str(data["kind"]), **params)})


def _pubsub_gap(org: SalesforceEmulator, data: Any) -> Reply:
    ids = [str(i) for i in data["ids"]]
    org.publish_gap(data["sobject"], ids, str(data.get("change_type", "GAP_UPDATE")))
    return json_reply(200, {"published": len(ids)})


def _pubsub_publish(org: SalesforceEmulator, data: Any) -> Reply:
    org.publish_platform_event(str(data["topic"]), data.get("fields", {}))
    return json_reply(200, {"published": 1})


def _pubsub_status(org: SalesforceEmulator, data: Any) -> Reply:
    return json_reply(200, org.pubsub_status())


def _expire_sessions(org: SalesforceEmulator, data: Any) -> Reply:
    org.expire_sessions()
    return json_reply(200, {"expired": True})


def _inject(org: SalesforceEmulator, data: Any) -> Reply:
    params = {k: v for k, v in data.items() if k not in ("kind", "count")}
    org.inject(str(data["kind"]), int(data.get("count", 1)), **params)
    return json_reply(200, {"injected": data["kind"]})


def _api_usage(org: SalesforceEmulator, data: Any) -> Reply:
    org.set_api_usage(int(data["used"]), data.get("max"))
    used, most = org.api_usage()
    return json_reply(200, {"used": used, "max": most})


def _api_usage_read(org: SalesforceEmulator, data: Any) -> Reply:
    used, most = org.api_usage()
    return json_reply(200, {"used": used, "max": most})


def _login_attempts(org: SalesforceEmulator, data: Any) -> Reply:
    return json_reply(200, {"attempts": org.login_attempts()})


def _query_log(org: SalesforceEmulator, data: Any) -> Reply:
    return json_reply(200, {"queries": org.query_log()})


def _write_log(org: SalesforceEmulator, data: Any) -> Reply:
    return json_reply(200, {"writes": org.write_log()})


def _fields(org: SalesforceEmulator, data: Any) -> Reply:
    specs = data.get("fields", [])
    declared = [org.declare_field(str(spec)) for spec in specs]
    return json_reply(200, {"declared": [f"{f.sobject}.{f.name}" for f in declared]})


def _lock_rows(org: SalesforceEmulator, data: Any) -> Reply:
    org.lock_rows(data.get("ids", []), int(data.get("count", 0)))
    return json_reply(200, {"locked": True})


def _fail_creates(org: SalesforceEmulator, data: Any) -> Reply:
    org.fail_creates(
        int(data.get("count", 1)),
        str(data.get("code", "UNABLE_TO_LOCK_ROW")),
        str(data.get("message", "")),
    )
    return json_reply(200, {"injected": True})


def _lose_create_answers(org: SalesforceEmulator, data: Any) -> Reply:
    org.lose_create_answers(int(data.get("count", 1)))
    return json_reply(200, {"injected": True})


def _tasks(org: SalesforceEmulator, data: Any) -> Reply:
    return json_reply(200, {"tasks": org.tasks()})


def _org(org: SalesforceEmulator, data: Any) -> Reply:
    """``POST org {"id": "00D...", "is_sandbox": true}``: answer as another org (a refresh)."""
    sandbox = data.get("is_sandbox")
    return json_reply(200, org.set_org(data.get("id"), None if sandbox is None else bool(sandbox)))


def _record(org: SalesforceEmulator, action: str) -> Reply:
    """``GET records/{type}/{id}``: one record as the control API shows it."""
    _, sobject, record_id = ([*action.split("/"), "", ""])[:3]
    found = org.get_record(sobject, record_id)
    return json_reply(200, found) if found else json_reply(404, {"error": "no such record"})


ROUTES: dict[tuple[str, str], ControlHandler] = {
    ("POST", "records"): _records,
    ("POST", "update"): _update,
    ("POST", "delete"): _delete,
    ("POST", "undelete"): _undelete,
    ("POST", "pubsub/fault"): _pubsub_fault,
    ("POST", "pubsub/gap"): _pubsub_gap,
    ("POST", "pubsub/publish"): _pubsub_publish,
    ("GET", "pubsub/status"): _pubsub_status,
    ("POST", "expire-sessions"): _expire_sessions,
    ("POST", "inject"): _inject,
    ("POST", "api-usage"): _api_usage,
    ("GET", "api-usage"): _api_usage_read,
    ("GET", "login-attempts"): _login_attempts,
    ("GET", "query-log"): _query_log,
    ("GET", "write-log"): _write_log,
    ("POST", "fields"): _fields,
    ("POST", "lock-rows"): _lock_rows,
    ("POST", "fail-creates"): _fail_creates,
    ("POST", "lose-create-answers"): _lose_create_answers,
    ("GET", "tasks"): _tasks,
    ("POST", "org"): _org,
}


def control(org: SalesforceEmulator, method: str, path: str, body: bytes) -> Reply:
    """The answer to one control call on ``org``; 404 for an action it does not know."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return json_reply(400, {"error": "the body is not JSON"})
    action = path.removeprefix(CONTROL_PREFIX).strip("/")
    try:
        handler = ROUTES.get((method, action))
        if handler is not None:
            return handler(org, data)
        if method == "GET" and action.startswith("records/"):
            return _record(org, action)
    except KeyError as exc:
        return json_reply(400, {"error": f"missing or unknown {exc}"})
    except (RecordError, ValueError, TypeError) as exc:
        return json_reply(400, {"error": str(exc)})
    return json_reply(404, {"error": f"no control action {method} {action}"})
