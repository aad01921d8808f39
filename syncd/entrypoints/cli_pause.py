"""``syncd pause`` and ``syncd resume``: stop and restart delivery at runtime.

Both change only the database; every running replica picks the change up at
its next claim, with no restart. Polling is never paused by these.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from syncd.adapters.operator_pauses import OPERATOR_AGENT, OPERATOR_SYNC, Pause
from syncd.config import Config
from syncd.config.loader import DATABASE_ONLY
from syncd.entrypoints.cli_common import EXIT_CONFIG, config_option, fail, load_or_exit
from syncd.entrypoints.cli_operator_common import current_user, database, query, setup_logging, when
from syncd.entrypoints.cli_text import echo
from syncd.services import pausing

DEFAULT_RESUME_REASON = "operator resume"

_sync_option = click.option(
    "--sync", "sync", default=None, metavar="NAME", help="A sync (all its agents)."
)
_agent_option = click.option(
    "--agent", "agent", default=None, metavar="ID", help="A SimZ agent (in every sync)."
)
_by_option = click.option(
    "--by",
    "actor",
    default=None,
    metavar="NAME",
    help="Who does it, for the audit trail. Default: your OS user name.",
)


def _target(sync: str | None, agent: str | None) -> tuple[str, str]:
    if (sync is None) == (agent is None):
        fail("give exactly one of --sync NAME or --agent ID", EXIT_CONFIG)
    return (OPERATOR_SYNC, str(sync)) if sync is not None else (OPERATOR_AGENT, str(agent))


def _known(config: Config, scope: str, name: str) -> None:
    """Refuse to pause a sync or agent the configuration does not have (a typo pauses nothing)."""
    if scope == OPERATOR_SYNC:
        known = [sync.name for sync in config.syncs]
    else:
        known = sorted({agent for sync in config.syncs for agent in sync.agents})
    if name not in known:
        fail(
            f"no {scope} {name!r} in the configuration (known: {', '.join(known) or 'none'}); "
            "nothing was paused",
            EXIT_CONFIG,
        )


def _describe(pause: Pause) -> str:
    """Who paused what, when and why, in one line for the terminal and the audit."""
    return (
        f"{pause.scope} {pause.name} paused by {pause.paused_by} since {when(pause.paused_at)}, "
        f"reason: {pause.reason}"
    )


@click.command()
@config_option
@_sync_option
@_agent_option
@click.option(
    "--reason",
    required=True,
    help="Why (required): written to the audit trail and shown by `syncd status`.",
)
@_by_option
@click.pass_context
def pause(
    ctx: click.Context,
    config_path: Path,
    sync: str | None,
    agent: str | None,
    reason: str,
    actor: str | None,
) -> None:
    """Stop sending the leads of a sync or of an agent until `syncd resume`.

    Polling goes on: new leads are recorded and wait in the queue. Every
    running replica stops sending at its next batch, with no restart (a batch
    already claimed at that moment is still sent). A SimZ answer never lifts
    the pause. The pause, who set it (your OS user, or --by) and --reason are
    stored in the database and shown by `syncd status`, /readyz and the
    syncd_paused metric. Pausing what is already paused changes nothing.

    \b
    Examples:
      syncd pause --sync web --reason "SimZ campaign change, ticket 123"
      syncd pause --agent agt_7 --reason "agent on holiday"
    """
    scope, name = _target(sync, agent)
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    _known(config, scope, name)
    if not reason.strip():
        fail("--reason must say why", EXIT_CONFIG)
    who = (actor or current_user()).strip() or "unknown"
    with database(config) as session_factory:
        outcome = query(
            lambda: pausing.pause(session_factory, scope=scope, name=name, reason=reason, actor=who)
        )
    if outcome.created:
        echo(f"paused: {_describe(outcome.pause)}")
    else:
        echo(f"already paused, left as it was: {_describe(outcome.pause)}")
    echo(f"to resume: syncd resume --{scope} {name}")


@click.command()
@config_option
@_sync_option
@_agent_option
@click.option(
    "--reason",
    default=DEFAULT_RESUME_REASON,
    show_default=True,
    help="Why; written to the audit trail.",
)
@_by_option
@click.pass_context
def resume(
    ctx: click.Context,
    config_path: Path,
    sync: str | None,
    agent: str | None,
    reason: str,
    actor: str | None,
) -> None:
    """Lift a pause set by `syncd pause`: the waiting leads are sent, each once.

    Every running replica resumes at its next delivery cycle. Resuming what is
    not paused changes nothing (exit 0). A sync or agent no longer in the
    configuration can still be resumed, to clear a leftover pause.
    """
    scope, name = _target(sync, agent)
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    who = (actor or current_user()).strip() or "unknown"
    with database(config) as session_factory:
        lifted = query(
            lambda: pausing.resume(
                session_factory,
                scope=scope,
                name=name,
                reason=reason.strip() or DEFAULT_RESUME_REASON,
                actor=who,
            )
        )
    if lifted is None:
        echo(f"{scope} {name} is not paused; nothing to do")
        sys.exit(0)
    echo(f"resumed {scope} {name} (by {who}); it was {_describe(lifted)}")
