"""``syncd once`` for one sync: a poll, and the delivery of what it queued, overlapped.

The poll runs on its own thread and commits page by page. Meanwhile delivery
passes run on the calling thread, each claiming what is queued by then, so the
poll's mapping and database work fills the time delivery waits for SimZ. Once
the poll has finished, one last pass delivers the rest: everything the poll
queued (and was due) has had a delivery pass after it was committed.

A pass that finds SimZ paused or failing does not make the next one sooner:
delivery then waits for the poll to finish and tries once more, which is what
``syncd once`` did before the two overlapped.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import fields

from syncd.services.deliver import DeliveryResult
from syncd.services.poll import PollResult

#: How long delivery waits for the poll's next page when a pass found nothing to send.
IDLE_WAIT_SECONDS = 0.05


def _add(total: DeliveryResult, more: DeliveryResult) -> None:
    for item in fields(DeliveryResult):
        value = getattr(more, item.name)
        if isinstance(value, bool):
            setattr(total, item.name, getattr(total, item.name) or value)
        elif isinstance(value, int):
            setattr(total, item.name, getattr(total, item.name) + value)
    total.errors.extend(error for error in more.errors if error not in total.errors)


def poll_and_deliver(
    sync: str,
    poll: Callable[[], PollResult],
    deliver: Callable[[], DeliveryResult],
    *,
    idle_wait: float = IDLE_WAIT_SECONDS,
) -> tuple[PollResult, DeliveryResult]:
    """Run ``poll`` on a thread and ``deliver`` passes here until the poll is done, then
    one more. Returns the poll's result and the passes' sum. If either raises, the
    other is still finished first (the poll's open page is committed or rolled back)."""
    outcome: list[PollResult] = []
    failure: list[BaseException] = []
    finished = threading.Event()

    def polling() -> None:
        try:
            outcome.append(poll())
        except BaseException as exc:  # handed to the calling thread
            failure.append(exc)
        finally:
            finished.set()

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(polling,), name=f"poll-{sync}")
    thread.start()
    total = DeliveryResult(sync=sync)
    try:
        while True:
            last = finished.is_set()
            delivered = deliver()
            _add(total, delivered)
            if last:
                break
            if delivered.paused or delivered.errors:
                finished.wait()
            elif delivered.batches == 0:
                finished.wait(idle_wait)
    finally:
        thread.join()
    if failure:
        raise failure[0]
    return outcome[0], total
