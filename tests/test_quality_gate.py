"""The lint and type gate (issue 16): ruff and mypy run with the suite, from the repository root.

Their configuration lives in pyproject.toml (``[tool.ruff]``, ``[tool.mypy]``); the tools come
from the test extra, pinned, into the same interpreter that runs the tests. A missing tool FAILS
with the install command, never skips: a gate that can vanish in silence is no gate.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ".venv/bin/pip install -e '.[test]'   (scripts/test.sh does it)"


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` from the repository root, with this interpreter."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed next to {sys.executable}; install it with: {INSTALL}", pytrace=False)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _passes(proc: subprocess.CompletedProcess[str], what: str) -> None:
    """Fail with the tool's own output (not a traceback) unless it exited 0."""
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        pytest.fail(f"{what} (exit {proc.returncode}):\n{output}", pytrace=False)


def test_ruff_check_is_clean() -> None:
    proc = _run("ruff", "check", "--no-fix", "--output-format", "concise", ".")
    _passes(proc, "ruff check . found problems; fix the code (an ignore needs a reason next to it)")


def test_ruff_format_is_clean() -> None:
    proc = _run("ruff", "format", "--check", "--output-format", "concise", ".")
    _passes(
        proc,
        "ruff format --check . would reformat files; run `.venv/bin/python -m ruff format .` and commit "
        "the result on its own (until the one formatting commit over the whole tree lands, this fails)",
    )


def test_mypy_is_clean() -> None:
    proc = _run("mypy")  # the files and the strictness come from [tool.mypy] in pyproject.toml
    _passes(proc, "mypy found type errors in manager/")
