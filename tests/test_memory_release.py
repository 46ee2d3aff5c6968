"""Freed memory goes back to the system (issue 21 item 1, ``manager/memory.py``): after a large
build, ``release_free_memory`` returns the heap's free pages (glibc ``malloc_trim``), also with
the heaps limited as ``cm-cli.py serve`` limits them (their effect on a 59k-pack server is the
bench's ``lists.rss_59k_catalog``). Each case runs in a fresh python process and reads its VmRSS."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from manager.memory import limit_malloc_arenas, release_free_memory

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

limited = limit_malloc_arenas() if sys.argv[2] == "limit" else None
kept = []

def work():  # 200 MB in 2 KB blocks (malloc, not pymalloc), one in 64 kept: the heap cannot shrink from its top
    blocks = [bytes(2048) for _ in range(100_000)]
    kept.extend(blocks[::64])

for _ in range(3):  # three worker threads one after another, as asyncio.to_thread runs builds
    t = threading.Thread(target=work)
    t.start()
    t.join()
before = rss()
release_free_memory()
print(json.dumps({"limited": limited, "before": before, "after": rss()}))
"""


def _run(mode: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPO), mode], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)


def test_free_pages_go_back_to_the_system():
    plain = _run("plain")
    if platform.libc_ver()[0] != "glibc":  # elsewhere both are no-ops that say so
        assert _run("limit")["limited"] is False
        return
    assert plain["before"] > 150  # the blocks freed by the threads are still counted
    assert plain["after"] < plain["before"] / 2, plain
    limited = _run("limit")  # one heap shared by the threads: the same release
    assert limited["limited"] is True
    assert limited["after"] < limited["before"] / 2, limited
