"""Human and ``--json`` output; ``--json`` writes the envelope every door shares (``manager/envelope.py``)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ..envelope import envelope_error
from ..errors import ManagerError

COLUMN_GAP = "  "
ELLIPSIS = "..."
MIN_CUT_WIDTH = 12  # a cut column keeps at least this many characters (and its header)


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


def _isatty(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


def terminal_width(out: TextIO | None = None) -> int:
    """Columns of the terminal ``out`` writes to ($COLUMNS first, as ``shutil`` reads it)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size((out or sys.stdout).fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size((100, 24)).columns


def _cell(value: object) -> str:
    """One line per row: line breaks and tabs inside a cell become spaces."""
    return " ".join(str(value).split("\n")).replace("\r", " ").replace("\t", " ")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - len(ELLIPSIS))] + ELLIPSIS


def table(
    rows: Sequence[Sequence[object]],
    headers: Sequence[str],
    out: TextIO | None = None,
    *,
    free: Sequence[int] | None = None,
    empty: str | None = None,
    tty: bool | None = None,
    width: int | None = None,
) -> None:
    """Columns aligned to their widest cell; the last column is never padded.

    Not on a terminal (a pipe, a file, cron mail) every cell is printed in full: nothing is lost.
    On a terminal narrower than the rows, only the widest free-text column (``free``: the indexes
    of the columns that may be cut; default every column) is cut, with ``...``, to fit ``width``
    (default: the terminal's). ``empty``: printed instead of a lone header when there are no rows.
    """
    out = out or sys.stdout
    if not rows and empty is not None:
        out.write(empty + "\n")
        return
    n = len(headers)
    head = [_cell(h) for h in headers]
    body = [[_cell(c) for c in row][:n] + [""] * (n - len(row)) for row in rows]
    widths = [max([len(head[i])] + [len(r[i]) for r in body]) for i in range(n)]
    cut_col = -1
    if (_isatty(out) if tty is None else tty) and n:
        room = width or terminal_width(out)
        total = sum(widths) + len(COLUMN_GAP) * (n - 1)
        if total > room:
            cut_col = max(free if free else range(n), key=lambda i: widths[i])
            floor = max(len(head[cut_col]), MIN_CUT_WIDTH)
            widths[cut_col] = max(floor, widths[cut_col] - (total - room))

    def line(cells: list[str]) -> str:
        parts = []
        for i, text in enumerate(cells):
            text = _cut(text, widths[i]) if i == cut_col else text
            parts.append(text if i == n - 1 else text.ljust(widths[i]))
        return COLUMN_GAP.join(parts).rstrip()

    out.write(line(head) + "\n")
    for row in body:
        out.write(line(row) + "\n")


def human_age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
