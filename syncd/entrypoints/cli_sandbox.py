"""``syncd sandbox``: run one of the built-in emulators on its own.

Each emulator is one command of the ``sandbox`` group, in its own
``cli_sandbox_*`` module, and keeps its options to itself, so the group can
grow (``simz``, ``salesforce``) without the commands knowing about each other.
What they share lives in ``cli_sandbox_common``.
"""

from __future__ import annotations

import click

from syncd.entrypoints.cli_common import CONTEXT_SETTINGS
from syncd.entrypoints.cli_sandbox_salesforce import salesforce
from syncd.entrypoints.cli_sandbox_simz import simz


@click.group(context_settings=CONTEXT_SETTINGS)
def sandbox() -> None:
    """Run an emulator of an external API on its own, for local testing and benchmarks.

    The emulators need no credentials and keep everything in memory. Each
    serves until Ctrl-C or SIGTERM, then exits 0. Point a syncd config at the
    URL it prints (simz.base_url, or salesforce.login_url).
    """


sandbox.add_command(simz)
sandbox.add_command(salesforce)
