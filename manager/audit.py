"""The audit log: one JSON line per state-changing request and per operation result.

``<manager dir>/logs/audit.jsonl`` (``audit_logging = true``, the default). Each line is written
with a single ``os.write`` on a file descriptor opened with ``O_APPEND``, so writers in several
threads and processes (the ComfyUI server, ``cm-cli.py serve``, the CLI) never interleave
lines: the kernel appends each write whole. Rotation by size renames ``audit.jsonl`` to
``audit.jsonl.1`` (and so on, ``keep`` files) under the fsops file lock, so two processes never
rotate at once. A line a writer appends to a file just rotated lands, whole, in ``.1``.

Writing the audit log never fails a request or a task: an unwritable log is reported in the
server log once and the operation goes on.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import LockBusy
from .fsops import file_lock

log = logging.getLogger("offline_manager.audit")

FILE_NAME = "audit.jsonl"
MAX_BYTES = 5 * 1024 * 1024
KEEP = 5
MAX_FIELD = 300  # long targets and user agents are cut: a line stays small and whole
_TASK_END = {"done": "ok", "cancelled": "cancelled"}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD:
        return value[:MAX_FIELD] + "…"
    return value


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log.

    ``kind`` is ``request`` (an HTTP request that may change state) or ``task`` (an operation's
    result). ``decision`` is ``allowed``/``denied`` when the security policy was asked, else
    ``none``; ``code`` is ``ok``, ``cancelled`` or the error code.
    """

    kind: str
    operation: str
    target: str = ""
    decision: str = "none"
    code: str = "ok"
    duration_ms: float = 0.0
    time: str = ""
    remote: str | None = None
    user_agent: str | None = None
    route: str | None = None
    method: str | None = None
    status: int | None = None
    door: str | None = None
    task_id: str | None = None
    task_ids: tuple[str, ...] = ()
    reason: str | None = None
    pid: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Fields that are set (None and empty lists left out); long texts cut to ``MAX_FIELD``."""
        out = {k: _cut(v) for k, v in asdict(self).items() if v is not None and v != ()}
        if self.task_ids:
            out["task_ids"] = [_cut(t) for t in self.task_ids[:20]]
        return out

    def line(self) -> bytes:
        """The JSON line (ASCII, newline-terminated), ready for one ``os.write``."""
        doc = self.to_dict()
        doc["time"] = doc.get("time") or utc_now()
        doc["pid"] = doc.get("pid") or os.getpid()
        return (json.dumps(doc, separators=(",", ":"), ensure_ascii=True, default=str) + "\n").encode("ascii")


def task_entry(
    task: Mapping[str, Any], *, remote: str | None = None, user_agent: str | None = None, door: str | None = None
) -> AuditEntry:
    """The audit entry of a finished task (``Task.to_dict()``, as the queue's end events carry it)."""
    params = task.get("params") or {}
    policy = params.get("policy") if isinstance(params, Mapping) else None
    decision = "none"
    if isinstance(policy, Mapping) and "allowed" in policy:
        decision = "allowed" if policy.get("allowed") is True else "denied"
    state = str(task.get("state") or "")
    error = task.get("error") or {}
    code = _TASK_END.get(state) or (
        str(error.get("code")) if isinstance(error, Mapping) and error.get("code") else state or "unknown"
    )
    started, finished = task.get("started_at"), task.get("finished_at")
    duration = (float(finished) - float(started)) * 1000.0 if started and finished else 0.0
    reason = error.get("message") if isinstance(error, Mapping) and error.get("message") else None
    return AuditEntry(
        "task",
        str(task.get("kind") or ""),
        str(task.get("target") or ""),
        decision,
        code,
        round(duration, 1),
        remote=remote,
        user_agent=user_agent,
        door=door,
        task_id=str(task.get("id") or "") or None,
        reason=reason,
    )


def cli_entry(
    command: str,
    targets: list[str] | tuple[str, ...] = (),
    *,
    code: str = "ok",
    seconds: float = 0.0,
    exit_code: int = 0,
    task_ids: tuple[str, ...] = (),
    decision: str = "none",
) -> AuditEntry:
    """The audit line of one state-changing ``cm-cli.py`` command: the CLI's equivalent of the HTTP
    door's request line (``kind`` ``request``, ``door`` ``cli``, ``method`` ``CLI``, ``route``
    ``cm-cli.py <command>``, ``status`` the exit code)."""
    names = list(dict.fromkeys(str(t) for t in targets if str(t)))
    target = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
    return AuditEntry(
        "request",
        command,
        target,
        decision,
        code,
        round(seconds * 1000.0, 1),
        route=f"cm-cli.py {command}",
        method="CLI",
        status=exit_code,
        door="cli",
        task_ids=tuple(task_ids),
    )


class AuditLog:
    """Append-only JSON lines with size rotation; safe across threads and processes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_path: str | os.PathLike[str] | None = None,
        lock_anchor: str | os.PathLike[str] | None = None,
        max_bytes: int = MAX_BYTES,
        keep: int = KEEP,
    ) -> None:
        self.path = Path(path)
        self.lock_path = Path(lock_path) if lock_path is not None else self.path.with_name(f".{FILE_NAME}.lock")
        self.lock_anchor = lock_anchor
        self.max_bytes = max(1024, int(max_bytes))
        self.keep = max(1, int(keep))
        self._warned = False

    @classmethod
    def for_layout(cls, layout: Any, **kw: Any) -> AuditLog:
        """The Manager's audit log: ``<manager dir>/logs/audit.jsonl``, rotation lock in ``locks/``."""
        return cls(
            layout.logs_dir / FILE_NAME,
            lock_path=layout.locks_dir / "audit.lock",
            lock_anchor=layout.manager_dir.parent,
            **kw,
        )

    def files(self) -> list[Path]:
        """The current file and the rotated ones that exist, newest first."""
        out = [self.path] if self.path.exists() else []
        out += [p for i in range(1, self.keep + 1) if (p := self._rotated(i)).exists()]
        return out

    def _rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def write(self, entry: AuditEntry | Mapping[str, Any]) -> bool:
        """Append one line; False (and one warning in the log) when the file cannot be written."""
        data = (
            entry.line()
            if isinstance(entry, AuditEntry)
            else (json.dumps(dict(entry), separators=(",", ":"), ensure_ascii=True, default=str) + "\n").encode("ascii")
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and size + len(data) > self.max_bytes:
                    os.close(fd)
                    fd = -1
                    self._rotate(len(data))
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                written = os.write(fd, data)  # one write: the kernel appends it whole
            finally:
                if fd >= 0:
                    os.close(fd)
        except OSError as exc:
            self._warn(f"cannot write the audit log {self.path}: {exc}")
            return False
        if written != len(data):
            self._warn(f"short write to the audit log {self.path} ({written} of {len(data)} bytes; disk full?)")
            return False
        return True

    def _rotate(self, incoming: int) -> None:
        """Shift ``.N`` files up by one and start a new file, once, under the rotation lock."""
        try:
            with file_lock(self.lock_path, timeout=2.0, anchor=self.lock_anchor):
                try:
                    if os.stat(self.path).st_size + incoming <= self.max_bytes:
                        return  # another writer rotated while we waited for the lock
                except FileNotFoundError:
                    return
                oldest = self._rotated(self.keep)
                if oldest.exists():
                    oldest.unlink()
                for n in range(self.keep - 1, 0, -1):
                    src = self._rotated(n)
                    if src.exists():
                        os.replace(src, self._rotated(n + 1))
                os.replace(self.path, self._rotated(1))
        except LockBusy:
            # a writer stuck holding the lock must not stop the log: append to the big file
            self._warn(f"audit log rotation skipped: {self.lock_path} is busy")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("[offline-manager] %s (further audit write problems are not repeated)", message)

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every parsed line, oldest file first (for tests, the CLI and support)."""
        for path in reversed(self.files()):
            with path.open("r", encoding="ascii", errors="replace") as fh:
                for raw in fh:
                    if raw.strip():
                        yield json.loads(raw)


def audit_enabled(config: Any) -> bool:
    """``audit_logging`` from the config (a missing key counts as on: the shipped default)."""
    try:
        return bool(config["audit_logging"])
    except KeyError:
        return True
