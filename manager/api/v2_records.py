"""The records of the /v2 family, in the shapes ComfyUI-Manager 4.x uses (frozen dataclasses).

``TaskStatus``/``HistoryItem`` (4.x ``TaskExecutionStatus``/``TaskHistoryItem``), ``BatchOperation``
and ``BatchRecord`` (``BatchExecutionRecord``), the ``ComfyUISystemState`` of a batch, and the
batch files under ``<manager dir>/batch_history/`` (the folder 4.x writes).
"""

from __future__ import annotations

import collections
import platform
import re
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidName, NotFound

if TYPE_CHECKING:
    from ..context import Manager
    from ..inventory import Inventory
    from ..layout import Layout

V2_PARAM = "v2"  # the task param holding the 4.x identity of a /v2 task
BATCH_DIR = "batch_history"
BATCH_RETENTION_DAYS = 16  # what 4.x actually deletes after (its comment says 90)
_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def iso(ts: float | None = None) -> str:
    """Local time with its offset (4.x sends naive local times; the offset makes them unambiguous)."""
    return datetime.fromtimestamp(time.time() if ts is None else ts).astimezone().isoformat()


def new_batch_id() -> str:
    """``batch_<YYYYmmdd_HHMMSS>_<8 hex>``, the 4.x form."""
    return f"batch_{datetime.now():%Y%m%d_%H%M%S}_{secrets.token_hex(4)}"


# --- records -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskStatus:
    """4.x ``TaskExecutionStatus``."""

    status_str: str  # success | error | skipped
    completed: bool = True
    messages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"status_str": self.status_str, "completed": self.completed, "messages": list(self.messages)}


@dataclass(frozen=True)
class HistoryItem:
    """4.x ``TaskHistoryItem`` of one finished /v2 task."""

    ui_id: str
    client_id: str
    kind: str
    timestamp: str
    result: str
    status: TaskStatus
    batch_id: str | None
    end_time: str
    params: Mapping[str, Any]
    finished_at: float = 0.0  # the queue's time stamp: recording the same end twice is a no-op

    def to_dict(self) -> dict[str, Any]:
        return {
            "ui_id": self.ui_id,
            "client_id": self.client_id,
            "kind": self.kind,
            "timestamp": self.timestamp,
            "result": self.result,
            "status": self.status.to_dict(),
            "batch_id": self.batch_id,
            "end_time": self.end_time,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class BatchOperation:
    """4.x ``BatchOperation``: one task of a batch (``target`` is the pack or model it acted on)."""

    operation_id: str
    operation_type: str
    target: str
    result: str  # success | failed | skipped
    start_time: str
    end_time: str
    client_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation_id": self.operation_id,
            "operation_type": self.operation_type,
            "target": self.target,
            "result": self.result,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "client_id": self.client_id,
        }


@dataclass(frozen=True)
class BatchRecord:
    """4.x ``BatchExecutionRecord``: what one batch did, with the system state around it."""

    batch_id: str
    start_time: str
    end_time: str
    state_before: Mapping[str, Any]
    state_after: Mapping[str, Any]
    operations: tuple[BatchOperation, ...]

    def to_dict(self) -> dict[str, Any]:
        counts = collections.Counter(op.result for op in self.operations)
        return {
            "batch_id": self.batch_id,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "state_before": dict(self.state_before),
            "state_after": dict(self.state_after),
            "operations": [op.to_dict() for op in self.operations],
            "total_operations": len(self.operations),
            "successful_operations": counts["success"],
            "failed_operations": counts["failed"],
            "skipped_operations": counts["skipped"],
        }


def v2_meta(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The 4.x identity of a task dict (``Task.to_dict()``), or None for a task of another door."""
    params = task.get("params")
    meta = params.get(V2_PARAM) if isinstance(params, Mapping) else None
    return meta if isinstance(meta, Mapping) and isinstance(meta.get("ui_id"), str) else None


def queue_item(task: Mapping[str, Any]) -> dict[str, Any] | None:
    """4.x ``QueueTaskItem`` of a queued or running /v2 task."""
    meta = v2_meta(task)
    if meta is None:
        return None
    return {
        "ui_id": meta["ui_id"],
        "client_id": meta.get("client_id"),
        "kind": meta.get("kind"),
        "params": dict(meta.get("params") or {}),
    }


def outcome(task: Mapping[str, Any]) -> tuple[str, TaskStatus, str]:
    """(result, status, batch result) of a finished task in 4.x terms."""
    state = task.get("state")
    if state == "done":
        return "success", TaskStatus("success"), "success"
    if state == "cancelled":
        return "cancelled", TaskStatus("skipped", True, ("cancelled",)), "skipped"
    err = task.get("error") or {}
    message = str(err.get("message") or "failed")
    hint = str(err.get("hint") or "")
    return message, TaskStatus("error", True, (message, hint) if hint else (message,)), "failed"


# --- system state and batch files ------------------------------------------------------------------
def system_state(manager: Manager, inv: Inventory) -> dict[str, Any]:
    """4.x ``ComfyUISystemState``, the parts that cost no subprocess (no pip freeze, no git)."""
    from .. import __version__

    nodes = {}
    for pack in inv.packs:
        method = "cnr" if pack.cnr_version and pack.kind != "git" else pack.kind
        nodes[pack.name] = {
            "name": pack.pack_id,
            "version": pack.cnr_version or pack.version or pack.commit,
            "repository_url": pack.remote_url or pack.repository or None,
            "install_method": method,
            "enabled": pack.enabled,
        }
    cfg = manager.config
    return {
        "snapshot_time": iso(),
        "comfyui_version": {"version": manager.host.comfyui_version()},
        "python_version": platform.python_version(),
        "platform_info": {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
        "installed_nodes": nodes,
        "custom_nodes_count": len(nodes),
        "comfyui_root_path": str(manager.layout.comfyui_root),
        "manager_version": __version__,
        "security_level": cfg["security_level"],
        "network_mode": cfg["network_mode"],
        "embedded_python": "python_embeded" in sys.executable,
    }


def batch_dir(layout: Layout) -> Path:
    return layout.manager_dir / BATCH_DIR


def list_batches(layout: Layout) -> list[str]:
    """Batch ids on disk, newest file first (by mtime, as 4.x)."""
    folder = batch_dir(layout)
    try:
        files = [(p.stat().st_mtime, p.stem) for p in folder.iterdir() if p.suffix == ".json" and p.is_file()]
    except OSError:
        return []
    return [name for _mtime, name in sorted(files, reverse=True)]


def read_batch(layout: Layout, batch_id: str) -> bytes:
    """The stored record's bytes; ``invalid_name`` for an id that could name a path, ``not_found``."""
    if not _BATCH_ID.match(batch_id or "") or ".." in batch_id:
        raise InvalidName(
            f"invalid history id {batch_id!r}",
            details={"id": batch_id},
            hint="Use an id from GET /v2/manager/queue/history_list (batch_<date>_<time>_<hex>).",
        )
    path = batch_dir(layout) / f"{batch_id}.json"
    try:
        return path.read_bytes()
    except OSError:
        raise NotFound(
            f"no batch record {batch_id!r}",
            details={"id": batch_id},
            hint="GET /v2/manager/queue/history_list lists the recorded batches.",
        ) from None


def prune_batches(layout: Layout, *, days: float = BATCH_RETENTION_DAYS, now: float | None = None) -> int:
    cutoff = (time.time() if now is None else now) - days * 86400
    removed = 0
    for path in batch_dir(layout).glob("*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
