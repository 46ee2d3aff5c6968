"""Which packs ComfyUI failed to import: read once loading is over, from what ComfyUI leaves behind.

ComfyUI keeps no registry of failed imports (reference: comfyui-host.md 1.3-1.4). What is
knowable, used together:

1. ``nodes.LOADED_MODULE_DIRS``: every entry whose import ran to the end. An entry of a
   ``custom_nodes`` folder that ComfyUI would import (same skip rules) but that is missing there
   raised while importing.
2. The log lines ComfyUI writes for a failure: the traceback, then "Cannot import <path> module
   for custom nodes: <error>" (and "Skip <path> module for custom nodes due to the lack of
   NODE_CLASS_MAPPINGS ..." for a pack that exports nothing). A logging handler installed when
   our extension is imported sees the packs imported after us; ComfyUI's in-memory log
   (``app.logger.get_logs()``) still holds the lines of the packs imported before us.

``collect()`` runs on first use (the first request: the server only starts once every pack was
imported), detaches the handler, and keeps the report.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the records are imported on first use: ComfyUI's start pays for the handler only
    from ..manager.import_failures import ImportFailureReport

log = logging.getLogger("offline_manager")

_CANNOT = re.compile(r"Cannot import (?P<path>.+?) module for custom nodes:\s*(?P<msg>[^\n]*)")
_SKIP = re.compile(r"Skip (?P<path>.+?) module for custom nodes due to the lack of NODE_CLASS_MAPPINGS")
_TRACEBACK = "Traceback (most recent call last):"
MAX_LINES = 400


class _Capture(logging.Handler):
    """Keeps ComfyUI's import-failure log lines (and the traceback logged just before each)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []
        self._previous: str = ""
        self._lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a foreign record with bad args: not ours to report
            return
        with self._lock_lines:
            if ("module for custom nodes" in text) and len(self.lines) < MAX_LINES:
                if self._previous.startswith(_TRACEBACK):
                    self.lines.append(self._previous)
                self.lines.append(text)
            self._previous = text if text.startswith(_TRACEBACK) else ""


def _args() -> Any:
    cli_args = sys.modules.get("comfy.cli_args")
    return getattr(cli_args, "args", None)


def _would_import(name: str, path: str, args: Any) -> bool:
    """ComfyUI's discovery rules (nodes.init_external_custom_nodes)."""
    if name == "__pycache__" or name.startswith("."):  # dot-entries: our own working folders
        return False
    if os.path.isfile(path) and os.path.splitext(path)[1] != ".py":
        return False
    if path.endswith(".disabled"):
        return False
    if args is not None:
        if getattr(args, "disable_all_custom_nodes", False) and name not in (
            getattr(args, "whitelist_custom_nodes", None) or ()
        ):
            return False
        if getattr(args, "enable_manager", False) and "comfyui-manager" in name.lower():
            return False
    return True


def parse_log_text(text: str) -> dict[str, tuple[str, str, str]]:
    """``{path: (kind, message, traceback)}`` from ComfyUI's log output."""
    out: dict[str, tuple[str, str, str]] = {}
    for m in _CANNOT.finditer(text):
        before = text[: m.start()]
        tb_at = before.rfind(_TRACEBACK)
        # the traceback belongs to this failure only if no other failure line sits in between
        traceback = before[tb_at:].strip() if tb_at >= 0 and "module for custom nodes" not in before[tb_at:] else ""
        out[m.group("path").strip()] = ("import_error", m.group("msg").strip(), traceback)
    for m in _SKIP.finditer(text):
        out.setdefault(m.group("path").strip(), ("no_nodes", m.group(0).strip(), ""))
    return out


def _comfy_log_text() -> str:
    """ComfyUI's in-memory log (``app.logger.get_logs()``: entries with ``m``), if it keeps one."""
    logger_mod = sys.modules.get("app.logger")
    get_logs = getattr(logger_mod, "get_logs", None)
    if not callable(get_logs):
        return ""
    try:
        entries = list(get_logs() or ())
    except Exception:  # another ComfyUI version: this source is optional
        log.debug("app.logger.get_logs() unusable", exc_info=True)
        return ""
    return "".join(str(e.get("m", "")) if isinstance(e, dict) else str(e) for e in entries)


class ImportFailureTracker:
    """Installed at our import; ``collect()`` once ComfyUI finished loading custom nodes."""

    def __init__(
        self,
        folders: Callable[[], Iterable[str]],
        *,
        nodes_module: Callable[[], Any] | None = None,
        own_folder: str = "",
        on_report: Callable[[ImportFailureReport], None] | None = None,
    ) -> None:
        self._folders = folders
        self._nodes = nodes_module or (lambda: sys.modules.get("nodes"))
        self._own = os.path.normcase(os.path.abspath(own_folder)) if own_folder else ""
        self._on_report = on_report
        self._capture = _Capture()
        self._report: ImportFailureReport | None = None
        self._lock = threading.Lock()

    def install(self) -> None:
        """Start listening to ComfyUI's log (root logger) for the packs imported after us."""
        logging.getLogger().addHandler(self._capture)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self._capture)

    def collect(self) -> ImportFailureReport:
        """The report (computed once; never raises: a broken source becomes a note)."""
        with self._lock:
            if self._report is None:
                try:
                    self._report = self._build()
                except Exception as exc:  # an unknown ComfyUI shape must not break the route
                    from ..manager.import_failures import ImportFailureReport

                    log.exception("[offline-manager] could not read the import failures")
                    self._report = ImportFailureReport(
                        available=False, live=True, notes=(f"import failures unknown: {exc}",)
                    )
                self.uninstall()
                if self._on_report is not None:
                    try:
                        self._on_report(self._report)
                    except Exception:  # keeping a copy on disk is a convenience
                        log.warning("[offline-manager] could not store the import failures", exc_info=True)
            return self._report

    def _build(self) -> ImportFailureReport:
        from ..manager.audit import utc_now
        from ..manager.import_failures import ImportFailure, ImportFailureReport

        notes: list[str] = []
        nodes = self._nodes()
        loaded = getattr(nodes, "LOADED_MODULE_DIRS", None) if nodes is not None else None
        logged = parse_log_text(_comfy_log_text() + "\n" + "\n".join(self._capture.lines))
        logged_norm = {os.path.normcase(os.path.abspath(p)): v for p, v in logged.items()}
        if loaded is None:
            notes.append("nodes.LOADED_MODULE_DIRS is not available: only logged failures are listed")
        loaded_dirs = {os.path.normcase(os.path.abspath(str(v))) for v in (loaded or {}).values()}
        loaded_keys = {os.path.normcase(str(k)) for k in (loaded or {})}
        args = _args()
        failures: list[ImportFailure] = []
        for folder in self._folders():
            try:
                names = sorted(os.listdir(os.path.realpath(folder)))
            except OSError as exc:
                notes.append(f"{folder}: cannot be listed ({exc.strerror or exc})")
                continue
            for name in names:
                path = os.path.join(folder, name)
                norm = os.path.normcase(os.path.abspath(path))
                if norm == self._own or not _would_import(name, path, args):
                    continue
                hit = logged_norm.get(norm)
                if hit is None and norm.endswith(".py"):
                    hit = logged_norm.get(norm[:-3])
                if os.path.isdir(path):
                    missing = loaded is not None and norm not in loaded_dirs
                else:
                    stem = os.path.normcase(os.path.splitext(path)[0])
                    missing = (
                        loaded is not None
                        and stem not in loaded_keys
                        and os.path.normcase(os.path.splitext(name)[0]) not in loaded_keys
                    )
                if hit is not None:
                    kind, message, tb = hit
                    failures.append(ImportFailure(name, path, message, tb, kind, "log"))
                elif missing:
                    failures.append(
                        ImportFailure(
                            name,
                            path,
                            "not loaded by ComfyUI (its log has the reason)",
                            "",
                            "import_error",
                            "not_loaded",
                        )
                    )
        return ImportFailureReport(tuple(failures), utc_now(), available=True, live=True, notes=tuple(notes))
