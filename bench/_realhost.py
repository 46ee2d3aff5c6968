"""What the real-host benchmarks share: the tests' real-host support module, and a re-run of a
benchmark module inside a network namespace with only loopback (``unshare -n``) when the real
host may not start outside one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .run import BenchSkip

REPO_ROOT = Path(__file__).resolve().parents[1]


def support() -> Any:
    """``tests/support/realhost.py`` (the cached real ComfyUI environments)."""
    if str(REPO_ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(REPO_ROOT / "tests"))
    from support import realhost

    return realhost


def run_namespaced(module: str, args: list[str], out: Path) -> dict[str, Any]:
    """Run ``python -m module *args`` in a loopback-only network namespace; it writes its figures
    to ``out`` (JSON), which is returned. A failed run is a skip naming its last stderr line."""
    argv = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, "-m", module]
    done = subprocess.run([*argv, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not out.exists():
        raise BenchSkip(
            "could not run the real host in a network namespace (needs root): "
            + (done.stderr.strip().splitlines() or ["no output"])[-1]
        )
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded
