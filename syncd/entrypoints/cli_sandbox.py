"""``syncd sandbox``: run one of the built-in emulators on its own.

Each emulator is one command of the ``sandbox`` group and keeps its options
to itself, so the group can grow (``simz``, ``salesforce``) without the
commands knowing about each other.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
from types import FrameType

import click

from syncd.entrypoints.cli_text import echo

# No module-level import of syncd.entrypoints.cli: it imports this module at its
# bottom, and this module must also import on its own (tests, tools). The
# subcommands inherit the help options from this group's context.
_HELP = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=_HELP)
def sandbox() -> None:
    """Run an emulator of an external API on its own, for local testing and benchmarks.

    The emulators need no credentials and keep everything in memory. Each
    serves until Ctrl-C or SIGTERM, then exits 0. Point a syncd config at the
    URL it prints (simz.base_url, or salesforce.login_url).
    """


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    while not stop.wait(0.5):
        pass


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@sandbox.command("simz")
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
    from syncd.entrypoints.cli import fail
    from syncd.sandbox.simz import SimzEmulator

    if not _is_loopback(host):
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
        _wait_for_signal()
    finally:
        emulator.stop()


from syncd.entrypoints.cli_sandbox_salesforce import salesforce  # noqa: E402

sandbox.add_command(salesforce)
