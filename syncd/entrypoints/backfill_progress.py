"""The progress of ``syncd backfill`` and ``syncd reconcile``: one updating line on a
terminal, else a log line a page.

On a terminal, log lines (a Bulk job created, the guard holding the backfill)
would land in the middle of the progress line; while it shows, each log line
clears it first and draws it again below, so each stays on a line of its own.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING

import click

from syncd.logs import get_logger
from syncd.text import printable

if TYPE_CHECKING:
    from syncd.services.poll import PollResult
    from syncd.services.reconcile import ReconcileResult

log = get_logger("syncd.backfill")
sweep_log = get_logger("syncd.reconcile")


class Progress:
    """One updating line on a terminal; otherwise one log line per page."""

    def __init__(
        self, sync: str, total: int | None, terminal: bool, word: str = "backfill"
    ) -> None:
        self.sync = sync
        self.word = word
        self.total = total
        self.terminal = terminal
        self.started = time.monotonic()
        self._shown = ""
        self._handlers: list[logging.Handler] = []

    def start(self) -> None:
        """On a terminal: wrap the log handlers so that log lines never cut the line."""
        if not self.terminal:
            return
        root = logging.getLogger()
        self._handlers = list(root.handlers)
        for handler in self._handlers:
            root.removeHandler(handler)
            root.addHandler(_AroundLine(handler, self))

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def redraw(self) -> None:
        if self._shown:
            sys.stderr.write("\r" + self._shown + "\033[K")
            sys.stderr.flush()

    def eta(self, fetched: int) -> float | None:
        if not self.total or not fetched or fetched >= self.total:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / fetched * (self.total - fetched)

    def line(self, result: PollResult) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        eta = self.eta(result.fetched)
        return (
            f"{self.word} {self.sync}: {result.pages} page(s), {result.fetched}{of} records, "
            f"new {result.new}, known {result.unchanged}, updated {result.updated}, "
            f"skipped {result.skipped}, invalid {result.invalid}"
            + (f", ETA {eta:.0f}s" if eta is not None else "")
        )

    def show(self, text: str) -> None:
        """Draw ``text`` as the progress line (terminal only)."""
        self._shown = printable(text)
        click.echo("\r" + self._shown + "\033[K", nl=False, err=True)

    def __call__(self, result: PollResult) -> None:
        if self.terminal:
            self.show(self.line(result))
            return
        log.info(
            f"{self.word} page",
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
        """End the line and give the log handlers back."""
        if not self.terminal:
            return
        if self._shown:
            click.echo("", err=True)
            self._shown = ""
        root = logging.getLogger()
        for wrapper in [h for h in root.handlers if isinstance(h, _AroundLine)]:
            root.removeHandler(wrapper)
        for handler in self._handlers:
            root.addHandler(handler)
        self._handlers = []


class SweepProgress:
    """The progress of a reconciliation sweep: Ids compared, missed so far, and an ETA."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.missed = 0
        self.taking_in = False

    def line(self, result: ReconcileResult) -> str:
        total = self.progress.total
        of = f"/{total}" if total is not None else ""
        eta = self.progress.eta(result.fetched)
        return (
            f"reconcile {result.sync}: {result.pages} page(s), {result.fetched}{of} records "
            f"compared, missed {len(result.missed)}"
            + (f", ETA {eta:.0f}s" if eta is not None else "")
        )

    def intake(self, result: PollResult) -> None:
        """A page of the intake: the backfill's line, out of the missed records."""
        if not self.taking_in:
            self.taking_in = True
            self.progress.total = self.missed
            self.progress.started = time.monotonic()
        self.progress(result)

    def __call__(self, result: ReconcileResult) -> None:
        self.missed = len(result.missed)
        if self.progress.terminal:
            self.progress.show(self.line(result))
            return
        eta = self.progress.eta(result.fetched)
        sweep_log.info(
            "reconcile page",
            sync=result.sync,
            pages=result.pages,
            fetched=result.fetched,
            total=self.progress.total,
            missed=len(result.missed),
            eta_seconds=round(eta, 1) if eta is not None else None,
        )


class _AroundLine(logging.Handler):
    """A log handler that clears the progress line, lets ``inner`` write, then redraws it."""

    def __init__(self, inner: logging.Handler, progress: Progress) -> None:
        super().__init__(inner.level)
        self.inner = inner
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.clear()
        try:
            self.inner.handle(record)
            self.inner.flush()
        finally:
            self.progress.redraw()
