"""The progress of ``syncd backfill``: one updating line on a terminal, else a log line a page."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from syncd.logs import get_logger
from syncd.text import printable

if TYPE_CHECKING:
    from syncd.services.poll import PollResult

log = get_logger("syncd.backfill")


class Progress:
    """One updating line on a terminal; otherwise one log line per page."""

    def __init__(self, sync: str, total: int | None, terminal: bool) -> None:
        self.sync = sync
        self.total = total
        self.terminal = terminal
        self.started = time.monotonic()

    def eta(self, fetched: int) -> float | None:
        if not self.total or not fetched or fetched >= self.total:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / fetched * (self.total - fetched)

    def line(self, result: PollResult) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        eta = self.eta(result.fetched)
        return (
            f"backfill {self.sync}: {result.pages} page(s), {result.fetched}{of} records, "
            f"new {result.new}, known {result.unchanged}, updated {result.updated}, "
            f"skipped {result.skipped}, invalid {result.invalid}"
            + (f", ETA {eta:.0f}s" if eta is not None else "")
        )

    def __call__(self, result: PollResult) -> None:
        if self.terminal:
            click.echo("\r" + printable(self.line(result)) + "\033[K", nl=False, err=True)
            return
        log.info(
            "backfill page",
            sync=self.sync,
            pages=result.pages,
            fetched=result.fetched,
            total=self.total,
            new=result.new,
            known=result.unchanged,
            updated=result.updated,
            skipped=result.skipped,
            invalid=result.invalid,
            eta_seconds=round(eta, 1) if (eta := self.eta(result.fetched)) is not None else None,
        )

    def done(self) -> None:
        if self.terminal:
            click.echo("", err=True)
