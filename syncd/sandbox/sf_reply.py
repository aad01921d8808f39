"""What the Salesforce emulator answers: a status, a body, headers.

Every route builds one of these instead of writing to the socket, so the
REST, login and control code can be called (and read) without HTTP around it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    #: Close the connection without answering: the work was done, its answer is lost.
    lost: bool = False


def json_reply(status: int, payload: Any, **headers: str) -> Reply:
    """A compact JSON body, as Salesforce sends it."""
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode(), headers=headers)


def error_reply(status: int, code: str, message: str) -> Reply:
    """Salesforce's REST error shape: a list of ``{"message", "errorCode"}``."""
    return json_reply(status, [{"message": message, "errorCode": code}])


def not_found() -> Reply:
    return error_reply(404, "NOT_FOUND", "The requested resource does not exist")


def method_not_allowed(method: str) -> Reply:
    return error_reply(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")
