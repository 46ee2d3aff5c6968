"""Human and ``--json`` output; ``--json`` writes the envelope every door shares (``manager/envelope.py``)."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from ..envelope import envelope_error
from ..errors import ManagerError


def print_json(obj: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def print_error(err: ManagerError, *, as_json: bool) -> None:
    if as_json:
        print_json(envelope_error(err))
        return
    sys.stderr.write(f"error [{err.code}]: {err.message}\n")
    if err.hint:
        sys.stderr.write(f"  hint: {err.hint}\n")


def table(rows: list[list[str]], headers: list[str], out: TextIO | None = None) -> None:
    """Plain aligned columns; the last column is never padded."""
    out = out or sys.stdout
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = min(max(widths[i], len(cell)), 48)

    def line(cells: list[str]) -> str:
        parts = [c[:48].ljust(widths[i]) for i, c in enumerate(cells[:-1])]
        return "  ".join(parts + [cells[-1]])

    out.write(line(headers) + "\n")
    for row in rows:
        out.write(line(row) + "\n")


def human_age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
