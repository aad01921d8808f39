"""How long the stream collects change events before it reads their records (pure).

Each batch of events costs one Salesforce query (up to 200 Ids), so the batch
window trades latency for API calls. A fixed 100 ms window answers a lone event
at once but spends one call per 100 ms under a steady flow: about 36,000 calls
an hour, a fair share of an org's daily allowance. :class:`Linger` adapts:

* while events keep arriving (a batch took in more than its first event), the
  window doubles, up to ``ceiling`` (``source.max_linger``, 1 s by default):
  at most one query per window however fast events come;
* when they thin out (a batch held only its first event), it halves, back
  down to ``base`` (``delivery.linger``);
* after a quiet spell longer than ``ceiling`` it starts again at ``base``, so
  an event that comes alone waits only ``base``, even just after a burst.

The worst added latency is ``ceiling``: one window's wait for the first event
of a busy batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Linger:
    """The current batch window, grown under a flow of events and shrunk when they thin out."""

    base: float
    ceiling: float
    current: float = field(init=False)

    def __post_init__(self) -> None:
        if self.base < 0:
            raise ValueError("base must not be negative")
        self.ceiling = max(self.ceiling, self.base)
        self.current = self.base

    def start(self, quiet: float) -> float:
        """The window of a batch whose first event came ``quiet`` seconds after the last batch."""
        if quiet > self.ceiling:
            self.current = self.base
        return self.current

    def observe(self, items: int) -> float:
        """After a batch of ``items`` arrivals (its first included): the next window."""
        if items > 1:
            grown = self.current * 2 if self.current > 0 else self.ceiling
            self.current = min(self.ceiling, grown)
        else:
            self.current = max(self.base, self.current / 2)
        return self.current
