"""Which custom-node packs ComfyUI failed to import at its last start.

ComfyUI only logs a failed import ("Cannot import ... module for custom nodes: ...") and keeps
no registry. The ComfyUI glue (``glob/import_failures.py``) reads what is knowable once loading
is over and hands a ``ImportFailureReport`` to the API, which also keeps it in
``<manager dir>/startup/import-failures.json`` so the standalone server and the CLI can show the
failures of the last ComfyUI start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fsops import atomic_write_json

FILE_NAME = "import-failures.json"
KINDS = ("import_error", "no_nodes")  # raised while importing | imported but exports no nodes


@dataclass(frozen=True)
class ImportFailure:
    """One entry of ``custom_nodes/`` that did not load: its folder (or file) name, the path,
    ComfyUI's one-line message and, when it was captured, the traceback."""

    name: str
    path: str
    message: str = ""
    traceback: str = ""
    kind: str = "import_error"
    source: str = ""  # log | not_loaded: how we know

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "message": self.message,
            "traceback": self.traceback,
            "kind": self.kind,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ImportFailure:
        return cls(
            str(raw.get("name") or ""),
            str(raw.get("path") or ""),
            str(raw.get("message") or ""),
            str(raw.get("traceback") or ""),
            str(raw.get("kind") or "import_error"),
            str(raw.get("source") or ""),
        )


@dataclass(frozen=True)
class ImportFailureReport:
    """The failures of one ComfyUI start. ``available`` is False when nothing is known (no
    ComfyUI start recorded yet); ``live`` is True when this process is that ComfyUI."""

    failures: tuple[ImportFailure, ...] = ()
    recorded_at: str = ""
    available: bool = False
    live: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def names(self) -> frozenset[str]:
        """Folder names that failed, with and without a ``.py`` suffix (single-file packs)."""
        out: set[str] = set()
        for f in self.failures:
            out.add(f.name)
            if f.name.endswith(".py"):
                out.add(f.name[:-3])
        return frozenset(out)

    def find(self, names: Iterable[str]) -> ImportFailure | None:
        """The failure recorded for any of ``names`` (entry names of one pack), or None."""
        wanted = {n for n in names if n}
        for f in self.failures:
            if f.name in wanted or (f.name.endswith(".py") and f.name[:-3] in wanted):
                return f
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "live": self.live,
            "recorded_at": self.recorded_at,
            "count": len(self.failures),
            "failures": [f.to_dict() for f in self.failures],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ImportFailureReport:
        raw_items = raw.get("failures")
        items = raw_items if isinstance(raw_items, list) else []
        return cls(
            tuple(ImportFailure.from_dict(i) for i in items if isinstance(i, Mapping)),
            str(raw.get("recorded_at") or ""),
            bool(raw.get("available", True)),
            False,
            tuple(str(n) for n in raw.get("notes") or () if isinstance(n, str)),
        )


def report_path(layout: Any) -> Path:
    return Path(layout.manager_dir) / "startup" / FILE_NAME


def save_report(layout: Any, report: ImportFailureReport) -> Path:
    """Keep the report for other doors (atomic write)."""
    doc = dict(report.to_dict(), live=False)
    return atomic_write_json(report_path(layout), doc)


def load_report(layout: Any) -> ImportFailureReport:
    """The report of the last ComfyUI start, or an empty one (``available`` False) when there is
    none or it cannot be read."""
    path = report_path(layout)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ImportFailureReport(notes=("no ComfyUI start with the Offline Manager has been recorded yet",))
    except (OSError, ValueError) as exc:
        return ImportFailureReport(notes=(f"{path} cannot be read: {exc}",))
    if not isinstance(raw, Mapping):
        return ImportFailureReport(notes=(f"{path} is not a JSON object",))
    return ImportFailureReport.from_dict(raw)


def report_mtime(layout: Any) -> int:
    """Cheap change check for the stored report (0 when absent)."""
    try:
        return os.stat(report_path(layout)).st_mtime_ns
    except OSError:
        return 0
