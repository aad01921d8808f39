"""The CLI group imports its commands lazily: the list it shows must match the commands.

``syncd --help`` is answered from :data:`syncd.entrypoints.cli.COMMANDS` without
importing a command module; this proves the table says what each command says
and that nothing heavy is imported for ``--help``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from syncd.entrypoints.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_table_matches_the_command(name: str) -> None:
    module, attribute, short = COMMANDS[name]
    command = getattr(importlib.import_module(f"syncd.entrypoints.{module}"), attribute)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert command.get_short_help_str(10_000) == short


def test_help_lists_every_command_and_each_runs_its_own_help() -> None:
    runner = CliRunner()
    listing = runner.invoke(main, ["--help"])
    assert listing.exit_code == 0, listing.output
    for name in COMMANDS:
        assert f"  {name} " in listing.output
        own = runner.invoke(main, [name, "--help"])
        assert own.exit_code == 0, own.output
        assert f"Usage: main {name}" in own.output or f"Usage: syncd {name}" in own.output


def test_help_loads_no_command_module() -> None:
    """In a fresh interpreter: ``--help`` imports neither the commands nor their libraries."""
    probe = (
        "import sys\n"
        "from syncd.entrypoints.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('syncd.entrypoints.cli_', "
        "'sqlalchemy', 'pydantic', 'simple_salesforce', 'syncd.config')))\n"
        "print('LOADED', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "LOADED []" in out, out
