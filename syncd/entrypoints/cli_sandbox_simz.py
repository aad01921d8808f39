"""``syncd sandbox simz``: run the SimZ emulator on its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from syncd.config.models import is_loopback_host
from syncd.entrypoints.cli_common import CONTEXT_SETTINGS, fail
from syncd.entrypoints.cli_sandbox_common import wait_for_signal
from syncd.entrypoints.cli_text import echo

if TYPE_CHECKING:
    from syncd.sandbox.simz_calls import CallSettings


@click.command("simz", context_settings=CONTEXT_SETTINGS)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8081, show_default=True, help="0: any free."
)
@click.option(
    "--api-key",
    default="sandbox-key",
    show_default=True,
    envvar="SIMZ_API_KEY",
    help="The company API key clients must send in X-Company-API-Key.",
)
@click.option(
    "--credits",
    type=int,
    default=None,
    help="Company credit balance (one per accepted lead; 402 at zero). Default: unlimited.",
)
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="ID",
    help="An agent id that exists (repeatable). Others answer 404. Default: agt_1.",
)
@click.option(
    "--callback-delay",
    type=click.FloatRange(0, 3600),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds from a lead's acceptance to its call-outcome hook.",
)
@click.option(
    "--outcomes",
    metavar="WEIGHTS",
    help="Outcome mix, e.g. answered=6,voicemail=2,no_answer=1.5,busy=0.5 (the default).",
)
@click.option(
    "--dispositions",
    metavar="WEIGHTS",
    help="Dispositions of answered calls, e.g. interested=3,callback=2,"
    "not_interested=3,do_not_call=1,wrong_number=1 (the default).",
)
@click.option(
    "--hook-fault",
    "hook_faults",
    multiple=True,
    metavar="KIND=RATE",
    help="Give this share of calls a hook fault (repeatable): duplicate, out_of_order, "
    "unknown_lead, oversized, slow; e.g. duplicate=0.1.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed the draws: the same leads get the same calls."
)
@click.option(
    "--callbacks/--no-callbacks",
    default=True,
    show_default=True,
    help="Post call-outcome hooks to each request's options.webhookUrl.",
)
@click.option(
    "--callback-allow-http",
    is_flag=True,
    help="Post hooks over plain http to hosts off this machine too (loopback always may).",
)
def simz(
    host: str,
    port: int,
    api_key: str,
    credits: int | None,
    agents: tuple[str, ...],
    **calls: Any,
) -> None:
    """Serve the SimZ lead endpoint (simz-openapi.yaml) with fault injection.

    Prints two lines at start, the base URL and the control API address:

    \b
      SimZ emulator on http://127.0.0.1:8081
      control API on http://127.0.0.1:8081/__sandbox/

    Every request is validated against the spec: a bad body answers 400 and
    its problems are listed by the control API. The control API (JSON in and
    out, no key) lives under /__sandbox/:

    \b
      GET    state                  agents, credits, pending faults
      POST   agents                 {"agentId": "agt_9"}
      DELETE agents/ID              remove an agent
      PUT    credits                {"credits": 10}  (null: unlimited)
      POST   faults                 {"kind": "429", "count": 2, "retry_after": 5}
                                    kinds: 429 503 500 400 413 delay
                                    lost_response garbage_200 custom_200 reset
      DELETE faults                 drop every pending fault
      GET    received               every lead received
      GET    received/counts        times received per salesforceId
      GET    requests               every API request and its status
      GET    violations             requests that broke the spec
      POST   reset                  forget everything received

    \b
      GET    calls                  call settings, pending hook faults, hooks posted
      PUT    calls/settings         {"delay": 0.2, "seed": 7, "outcomes": {...}}
      POST   calls/faults           {"kind": "duplicate", "count": 1}
                                    kinds: duplicate out_of_order unknown_lead
                                    oversized slow
      POST   calls/force            {"disposition": "do_not_call", "count": 1}

    Calls back: for each lead accepted in a request whose options.webhookUrl
    is set, it POSTs a call outcome to that URL after --callback-delay, once,
    with no retry. The SimZ spec defines no webhook payload: the shape posted
    (docs/call-outcomes.md) is an EXAMPLE, not SimZ's contract. customData
    comes back as received.

    The control API has no authentication: keep the default loopback address.
    """
    from syncd.sandbox.simz import SimzEmulator

    if not is_loopback_host(host):
        echo(
            f"syncd: warning: listening on {host}; the control API has no authentication",
            err=True,
        )
    settings = _call_settings(calls)
    emulator = SimzEmulator(
        api_key=api_key, credits=credits, agents=agents or ("agt_1",), calls=settings
    )
    try:
        url = emulator.start(host=host, port=port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    try:
        echo(f"SimZ emulator on {url}")
        echo(f"control API on {emulator.control_url}")
        wait_for_signal()
    finally:
        emulator.stop()


def _call_settings(options: dict[str, Any]) -> CallSettings:
    """The call-back settings of the command line; a bad value ends with a clear error."""
    from syncd.sandbox.simz_calls import (
        DISPOSITIONS,
        HOOK_FAULTS,
        OUTCOMES,
        CallSettings,
        parse_weights,
    )

    changes: dict[str, Any] = {
        "enabled": options["callbacks"],
        "delay": options["callback_delay"],
        "seed": options["seed"],
        "allow_http": options["callback_allow_http"],
    }
    try:
        if options["outcomes"]:
            changes["outcomes"] = parse_weights(options["outcomes"], OUTCOMES)
        if options["dispositions"]:
            changes["dispositions"] = parse_weights(options["dispositions"], DISPOSITIONS)
        rates: dict[str, float] = {}
        for text in options["hook_faults"]:
            kind, sep, rate = text.partition("=")
            if not sep or kind not in HOOK_FAULTS:
                raise ValueError(f"--hook-fault {text!r}: KIND=RATE, KIND one of {HOOK_FAULTS}")
            rates[kind] = float(rate)
        changes["fault_rates"] = rates
        return CallSettings().updated(changes)
    except ValueError as exc:
        fail(f"bad call-back option: {exc}")
