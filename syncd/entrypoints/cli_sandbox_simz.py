"""``syncd sandbox simz``: run the SimZ emulator on its own."""

from __future__ import annotations

import click

from syncd.config.models import is_loopback_host
from syncd.entrypoints.cli_common import CONTEXT_SETTINGS, fail
from syncd.entrypoints.cli_sandbox_common import wait_for_signal
from syncd.entrypoints.cli_text import echo


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
def simz(host: str, port: int, api_key: str, credits: int | None, agents: tuple[str, ...]) -> None:
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

    The control API has no authentication: keep the default loopback address.
    """
    from syncd.sandbox.simz import SimzEmulator

    if not is_loopback_host(host):
        echo(
            f"syncd: warning: listening on {host}; the control API has no authentication",
            err=True,
        )
    emulator = SimzEmulator(api_key=api_key, credits=credits, agents=agents or ("agt_1",))
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
