"""``syncd demo``: SimZ calls back and the calls appear on the records as Tasks.

The demo's config turns on ``simz.webhook`` (a receiver on a free loopback
port, a token and a correlation secret made for the run) and
``call_writeback: {mode: tasks}``. The SimZ emulator then posts the example
call-outcome payload for every accepted lead (``simz_calls``); the daemon
stores each hook, reads it into a call outcome and writes a Task on the
record. At the end the demo reads the Tasks back from Salesforce with SOQL.

Kept apart from :mod:`.demo_runner` so that the run and the calls can each be
read in one place.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from syncd.bootstrap import Runtime
    from syncd.config import Config
    from syncd.sandbox.simz import SimzEmulator

log = structlog.get_logger(__name__)

#: Seconds from a lead's acceptance to its call's hook (short: the demo stays fast).
CALL_DELAY = 0.5
#: Seconds the demo waits at most, once the outbox is idle, for the last Tasks.
TASK_WAIT = 10.0
#: The demo's call write-back.
CALL_WRITEBACK = {"mode": "tasks"}
TASK_SOQL = "SELECT Id, WhoId, Subject, CallDisposition FROM Task"
#: How many Tasks the summary shows.
TASK_EXAMPLES = 4


def free_loopback_port() -> int:
    """A port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def webhook_section(port: int) -> dict[str, Any]:
    """``simz.webhook`` of the demo's config: loopback, with secrets made for the run."""
    return {
        "listen": f"127.0.0.1:{port}",
        "public_url": f"http://127.0.0.1:{port}",
        "token": secrets.token_urlsafe(32),
        "correlation_secret": secrets.token_urlsafe(32),
    }


@dataclass
class CallsSummary:
    """What came back from the calls: hooks SimZ posted, Tasks on the records."""

    hooks: int = 0
    hooks_ok: int = 0
    receiver: str | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)
    #: Why the Tasks could not be read (None when they were).
    task_error: str | None = None


def start_receiver(config: Config, runtime: Runtime, stack: ExitStack) -> str | None:
    """Start the daemon's webhook receiver as ``syncd run`` does; a reason if it cannot."""
    from syncd.entrypoints.webhook_http import serve_webhooks

    webhook = config.simz.webhook
    if webhook is None:
        return "simz.webhook is not set"
    try:
        server = serve_webhooks(
            webhook,
            runtime.session_factory,
            receiver=runtime.worker,
            on_stored=runtime.wake_calls,
        )
    except OSError as exc:
        return f"cannot listen on {webhook.listen}: {exc}"
    stack.callback(server.close)
    return None


def read_tasks(config: Config) -> tuple[list[dict[str, Any]], str | None]:
    """The org's Tasks (Id, WhoId, Subject, CallDisposition), or why they cannot be read."""
    from syncd.adapters.salesforce import SalesforceSource

    source = SalesforceSource(config.salesforce)
    try:
        rows = [row for page in source.query_pages(TASK_SOQL) for row in page]
    except Exception as exc:  # the org may have no Task object: say so, never a traceback
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.info("demo.tasks_unreadable", error=reason)
        return [], reason
    finally:
        with contextlib.suppress(Exception):
            source.close()
    return [{k: v for k, v in row.items() if k != "attributes"} for row in rows], None


def wait_for_calls(simz: SimzEmulator, config: Config, receiver: str | None) -> CallsSummary:
    """Once SimZ has posted every hook, wait (a little) for their Tasks; read them back."""
    deadline = time.monotonic() + CALL_DELAY + TASK_WAIT
    while simz.state.calls.pending()["queued"] and time.monotonic() < deadline:
        time.sleep(0.05)
    summary = CallsSummary(receiver=receiver)
    while True:
        hooks = simz.hooks()
        calls = {h["callId"] for h in hooks if h["status"] is not None and h["status"] < 300}
        summary.hooks, summary.hooks_ok = len(hooks), len(calls)
        summary.tasks, summary.task_error = read_tasks(config)
        done = summary.task_error is not None or len(summary.tasks) >= len(calls)
        if done or receiver is not None or time.monotonic() >= deadline:
            return summary
        time.sleep(0.25)


def render_calls(calls: CallsSummary | None) -> list[str]:
    """The summary's lines about the calls and their Tasks."""
    if calls is None:
        return []
    out = [
        "",
        f"calls reported back by SimZ: {calls.hooks} hooks posted, "
        f"{calls.hooks_ok} calls taken by syncd's receiver (an example payload: the SimZ "
        "spec defines none)",
    ]
    if calls.receiver is not None:
        out.append(f"  the receiver did not run: {calls.receiver}")
    if calls.task_error is not None:
        out.append(f"Tasks on the records: could not be read ({calls.task_error})")
        return out
    out.append(f"Tasks on the records: {len(calls.tasks)}" + (", e.g.:" if calls.tasks else ""))
    for task in calls.tasks[:TASK_EXAMPLES]:
        out.append(
            f"  {task.get('WhoId')}  Task {task.get('Id')}  Subject={task.get('Subject')!r}  "
            f"CallDisposition={task.get('CallDisposition')}"
        )
    return out
