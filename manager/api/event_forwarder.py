"""Forward task-queue events to a sink: ComfyUI's ``send_sync`` or the standalone ``/ws``.

Every queue event goes out as ``offline-manager.event`` (``Event.to_dict()``: the panel's feed).
For scripts and panels written for the classic manager the same events are also translated to
``cm-queue-status`` messages: ``in_progress`` after each task ends (with the batch counts) and
``done`` when the queue goes idle, with ``nodepack_result``/``model_result`` keyed by task id
(the classic ``ui_id``): ``"success"``, or the error message. The 4.x events of the /v2 family
(``v2_history.py``) go out through the same sink.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..events import Event
    from ..tasks import TaskQueue

# manager.events names (a test checks they match): imported lazily with the queue itself
QUEUED, DONE, FAILED, CANCELLED, QUEUE_IDLE = "queued", "done", "failed", "cancelled", "queue-idle"

log = logging.getLogger("offline_manager.api")

EVENT_NAME = "offline-manager.event"
CLASSIC_EVENT = "cm-queue-status"

# sink(event name, JSON data, client sid or None for everyone)
Sink = Callable[[str, dict[str, Any], "str | None"], None]


def ui_target(kind: str) -> str:
    if kind == "install_model":
        return "model_manager"
    if kind in ("update_all", "update_comfyui"):
        return "main"
    return "nodepack_manager"


class EventForwarder:
    """Subscribes to one queue and pushes every event to ``sink``; quick and thread-agnostic."""

    def __init__(self, sink: Sink, *, classic: bool = True) -> None:
        self._sink = sink
        self._classic = classic
        self._lock = threading.Lock()
        self._nodepack: dict[str, Any] = {}
        self._model: dict[str, Any] = {}
        self._total = 0
        self._done = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._v2_disconnect: Callable[[], None] | None = None

    def attach(self, queue: TaskQueue) -> EventForwarder:
        if self._unsubscribe is None:
            self._unsubscribe = queue.subscribe(self)
            # the /v2 family's events (cm-task-*, all-done) leave through this same sink
            from .v2_history import connect_sink

            self._v2_disconnect = connect_sink(queue, self._send)
        return self

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._v2_disconnect is not None:
            self._v2_disconnect()
            self._v2_disconnect = None

    def _send(self, name: str, data: dict[str, Any], sid: str | None) -> None:
        try:
            self._sink(name, data, sid)
        except Exception:  # a closed socket must not stop the other messages
            log.exception("event sink failed for %s", name)

    def __call__(self, event: Event) -> None:
        self._send(EVENT_NAME, event.to_dict(), None)
        if self._classic:
            for data in self.classic(event):
                self._send(CLASSIC_EVENT, data, None)

    def classic(self, event: Event) -> list[dict[str, Any]]:
        """The ``cm-queue-status`` payloads this event maps to (often none)."""
        with self._lock:
            if event.name == QUEUED:
                self._total += 1
                return []
            if event.name in (DONE, FAILED, CANCELLED):
                task = event.data.get("task") or {}
                kind = str(task.get("kind", ""))
                if event.name == DONE:
                    result: Any = "success"
                elif event.name == FAILED:
                    err = event.data.get("error") or task.get("error") or {}
                    result = err.get("message") or "failed"
                else:
                    result = "cancelled"
                (self._model if kind == "install_model" else self._nodepack)[str(event.task_id)] = result
                self._done += 1
                self._total = max(self._total, self._done)
                return [
                    {
                        "status": "in_progress",
                        "target": event.task_id,
                        "ui_target": ui_target(kind),
                        "total_count": self._total,
                        "done_count": self._done,
                    }
                ]
            if event.name == QUEUE_IDLE:
                out = {
                    "status": "done",
                    "nodepack_result": dict(self._nodepack),
                    "model_result": dict(self._model),
                    "total_count": int(event.data.get("total_count", self._total)),
                    "done_count": int(event.data.get("done_count", self._done)),
                }
                self._nodepack, self._model, self._total, self._done = {}, {}, 0, 0
                return [out]
        return []
