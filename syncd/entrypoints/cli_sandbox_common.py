"""What the ``syncd sandbox`` commands share: waiting for a stop signal, spotting loopback."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    while not stop.wait(0.5):
        pass
