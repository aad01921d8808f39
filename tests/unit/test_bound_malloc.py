"""``bound_malloc``: at most two glibc malloc arenas, big blocks handed back when freed.

Each probe runs in a fresh interpreter (the settings are process-wide and only
act before threads allocate) and reads glibc's own account, ``malloc_info``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from syncd.entrypoints.cli_common import MALLOC_ARENAS

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
    reason="glibc's malloc only",
)

#: Optionally bound malloc; six threads allocate at once; then an 8 MB block is freed
#: (glibc's default raises its mmap threshold to 8 MB) and 2 MB allocated (the order
#: of a Salesforce page's body). Prints whether the bound applied, the arenas (glibc's
#: malloc_info) and whether the 2 MB block got pages of its own (IS_MMAPPED, bit 1 of
#: the size word before the block), which go back to the system when it is freed.
PROBE = """
import ctypes, json, sys, tempfile, threading
import xml.etree.ElementTree as ET
from syncd.entrypoints.cli_common import bound_malloc
applied = bound_malloc() if sys.argv[1] == "bound" else False
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
libc.fopen.restype = ctypes.c_void_p
libc.fclose.argtypes = (ctypes.c_void_p,)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
barrier = threading.Barrier(6)
held = []
def allocate():
    barrier.wait()
    held.append(libc.malloc(4096))
    barrier.wait()
threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc.free(libc.malloc(8 << 20))
block = libc.malloc(2 << 20)
mmapped = bool(ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & 2)
with tempfile.NamedTemporaryFile(suffix=".xml") as file:
    out = libc.fopen(file.name.encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
    arenas = len(ET.parse(file.name).getroot().findall("heap"))
print(json.dumps([applied, arenas, mmapped]))
"""


def probe(mode: str, **environment: str) -> tuple[bool, int, bool]:
    """(applied, arenas, whether the 2 MB block is mmapped) in a fresh interpreter."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **environment},
    )
    assert done.returncode == 0, done.stderr
    applied, arenas, mmapped = json.loads(done.stdout)
    return bool(applied), int(arenas), bool(mmapped)


@glibc
def test_bounded_arenas_and_big_blocks_mapped() -> None:
    applied, arenas, mmapped = probe("bound")
    assert applied
    assert arenas <= MALLOC_ARENAS
    assert mmapped  # though an 8 MB block was freed before


@glibc
def test_without_the_bound_glibc_keeps_more() -> None:
    """The control: the probe can tell the difference."""
    applied, arenas, mmapped = probe("plain")
    assert not applied
    assert arenas > MALLOC_ARENAS
    assert not mmapped  # the threshold rose to 8 MB: the 2 MB block came from an arena


@glibc
@pytest.mark.parametrize(
    "setting",
    [
        {"MALLOC_ARENA_MAX": "4"},
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"},
    ],
)
def test_the_environment_wins(setting: dict[str, str]) -> None:
    """An operator's own malloc setting is left alone: nothing is applied."""
    applied, _arenas, _mmapped = probe("bound", **setting)
    assert not applied
