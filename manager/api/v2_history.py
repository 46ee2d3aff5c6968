"""The /v2 family's memory: the session's task history, batch records on disk, the 4.x events.

One ``V2Journal`` per task queue follows the queue's events. Tasks queued through a /v2 route
carry their 4.x identity in ``params["v2"]`` (``ui_id``, ``client_id``, ``kind``, the client's
``params``), so the history, the batch record and the events describe them in 4.x terms while
the queue and the operations stay the ones every other door uses.

- **History**: ``{ui_id: TaskHistoryItem}`` of /v2 tasks, this process only, a reused ``ui_id``
  replaces its entry (as 4.x does), capped at ``HISTORY_LIMIT``.
- **Batch records**: tasks from the first ``queued`` after an idle queue to the next idle are
  one batch; its ``BatchRecord`` (every task of the batch, whichever door queued it) is written
  atomically to ``<manager dir>/batch_history/<batch_id>.json``, the folder and format 4.x uses.
- **Events**: ``cm-task-started`` / ``cm-task-completed`` to the task's ``client_id`` (the
  browser's socket id), and ``cm-queue-status {"status": "all-done"}`` to everyone when a batch
  with /v2 tasks ends. They leave through the door's ``EventForwarder`` sink (ComfyUI's
  ``send_sync``, or the standalone ``/ws``), registered here by ``connect_sink``.

Work that scans the tree (``installed_packs``, the system states) or writes files runs on a
short-lived journal thread, in event order, never on whichever thread delivered the event (that
may be the web server's loop).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .v2_records import (
    BatchOperation,
    BatchRecord,
    HistoryItem,
    batch_dir,
    iso,
    new_batch_id,
    outcome,
    prune_batches,
    queue_item,
    system_state,
    v2_meta,
)

if TYPE_CHECKING:
    from ..context import Manager
    from ..events import Event
    from ..tasks import TaskQueue
    from .door import HttpDoor

log = logging.getLogger("offline_manager.api")

HISTORY_LIMIT = 10000  # as 4.x: the session history keeps this many items
TASK_STARTED, TASK_COMPLETED, QUEUE_STATUS = "cm-task-started", "cm-task-completed", "cm-queue-status"

Sink = Callable[[str, dict[str, Any], "str | None"], None]


@dataclass
class _OpenBatch:
    """The batch in progress (mutable, only touched under the journal's lock)."""

    batch_id: str
    start_time: str
    state_before: dict[str, Any] | None = None
    started: dict[str, str] = field(default_factory=dict)  # task id -> start time
    operations: dict[str, BatchOperation] = field(default_factory=dict)
    has_v2: bool = False


# --- the wiring: sinks per queue, one journal per queue --------------------------------------------
@dataclass
class _Link:
    sinks: list[Sink] = field(default_factory=list)
    journal: V2Journal | None = None


_LINKS: weakref.WeakKeyDictionary[TaskQueue, _Link] = weakref.WeakKeyDictionary()
_LINKS_LOCK = threading.Lock()


def connect_sink(queue: TaskQueue, sink: Sink) -> Callable[[], None]:
    """Let the /v2 events of ``queue`` leave through ``sink`` (the door's forwarder); returns the undo."""
    with _LINKS_LOCK:
        link = _LINKS.setdefault(queue, _Link())
        link.sinks.append(sink)

    def disconnect() -> None:
        with _LINKS_LOCK:
            if sink in link.sinks:
                link.sinks.remove(sink)

    return disconnect


def existing_journal(queue: TaskQueue) -> V2Journal | None:
    """The queue's journal if a /v2 route made one (reads never make it)."""
    with _LINKS_LOCK:
        link = _LINKS.get(queue)
        return link.journal if link is not None else None


def journal_of(api: HttpDoor) -> V2Journal:
    """The journal of the HttpDoor's queue, created (and subscribed) by the first /v2 request."""
    queue = api.queue  # builds the queue: the door's hooks attach its forwarder first
    with _LINKS_LOCK:
        link = _LINKS.setdefault(queue, _Link())
        if link.journal is None:
            link.journal = V2Journal(api.manager, queue, link.sinks)
        return link.journal


class V2Journal:
    """History, batches and events of one queue. Holds the Manager weakly (the queue, which the
    Manager owns, holds this journal through its subscription)."""

    def __init__(self, manager: Manager, queue: TaskQueue, sinks: list[Sink]) -> None:
        self._manager = weakref.ref(manager)
        self._sinks = sinks
        self._lock = threading.Lock()
        self._history: collections.OrderedDict[str, HistoryItem] = collections.OrderedDict()
        self._batch: _OpenBatch | None = None
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._jobs_cond = threading.Condition()
        self._runner: threading.Thread | None = None
        self._pruned = False
        self._unsubscribe = queue.subscribe(self._on_event)

    # --- reading ---------------------------------------------------------------------------------
    def history(self, client_id: str | None = None) -> list[HistoryItem]:
        """Finished /v2 tasks, oldest first, of one client or all."""
        with self._lock:
            items = list(self._history.values())
        return [i for i in items if client_id is None or i.client_id == client_id]

    def reconcile(self) -> None:
        """Record finished /v2 tasks whose end event is still on its way (a poller may see the queue
        idle a moment before the event is delivered)."""
        manager = self._manager()
        if manager is None:
            return
        for task in manager.queue.history():
            data = task.to_dict()
            if v2_meta(data) is not None:
                self._record(data)

    def open_batch(self, state: Callable[[], dict[str, Any]]) -> None:
        """Start a batch now, with its state before, if none is open (a /v2 handler calls this
        before queueing, so the state is the tree before any of the batch's tasks ran)."""
        with self._lock:
            if self._batch is None:
                self._batch = _OpenBatch(new_batch_id(), iso(), state())

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until the journal thread has done its work (files written, events sent)."""
        deadline = time.monotonic() + timeout
        with self._jobs_cond:
            while self._jobs or self._runner is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._jobs_cond.wait(left)
        return True

    # --- events ------------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        from .. import events as ev

        task = event.data.get("task") if isinstance(event.data.get("task"), Mapping) else None
        if event.name == ev.QUEUED:
            with self._lock:
                if self._batch is None:  # opened by another door: its state is taken a moment later
                    batch = self._batch = _OpenBatch(new_batch_id(), iso())
                    self._schedule(lambda: self._capture_before(batch))
                if task is not None and v2_meta(task) is not None:
                    self._batch.has_v2 = True
        elif event.name == ev.STARTED and task is not None:
            with self._lock:
                if self._batch is not None:
                    self._batch.started[str(task["id"])] = iso(task.get("started_at"))
            meta = v2_meta(task)
            if meta is not None:
                data = {"ui_id": meta["ui_id"], "kind": meta.get("kind"), "timestamp": iso(task.get("started_at"))}
                self._schedule(lambda: self._send_task(TASK_STARTED, data, meta.get("client_id")))
        elif event.name in (ev.DONE, ev.FAILED, ev.CANCELLED) and task is not None:
            item = self._record(task)
            if item is not None:
                data = {
                    "ui_id": item.ui_id,
                    "result": item.result,
                    "kind": item.kind,
                    "status": item.status.to_dict(),
                    "timestamp": item.end_time,
                }
                self._schedule(lambda: self._send_task(TASK_COMPLETED, data, item.client_id))
        elif event.name == ev.QUEUE_IDLE:
            with self._lock:
                ended, self._batch = self._batch, None
            if ended is not None and ended.operations:
                self._schedule(lambda: self._finalize(ended))

    def _record(self, task: Mapping[str, Any]) -> HistoryItem | None:
        """Add a finished task to the open batch and, for a /v2 task, to the history (idempotent);
        the /v2 task's history item, or None for a task of another door."""
        tid = str(task.get("id"))
        meta = v2_meta(task)
        result, status, batch_result = outcome(task)
        finished = float(task.get("finished_at") or time.time())
        end = iso(finished)
        ui_id = str(meta["ui_id"]) if meta else tid
        with self._lock:
            old = self._history.get(ui_id) if meta is not None else None
            if old is not None and old.finished_at == finished:
                return old  # recorded already, in its own batch (reconcile or the event)
            batch = self._batch
            if batch is not None and tid not in batch.operations:
                start = batch.started.get(tid) or iso(task.get("started_at") or task.get("created_at"))
                batch.operations[tid] = BatchOperation(
                    ui_id,
                    str(meta.get("kind")) if meta else str(task.get("kind")),
                    str(task.get("target")),
                    batch_result,
                    start,
                    end,
                    (meta.get("client_id") if meta else task.get("client_id")),
                )
            if meta is None:
                return None
            item = HistoryItem(
                ui_id,
                str(meta.get("client_id") or ""),
                str(meta.get("kind")),
                iso(task.get("created_at")),
                result,
                status,
                batch.batch_id if batch else None,
                end,
                dict(meta.get("params") or {}),
                finished,
            )
            self._history.pop(ui_id, None)
            self._history[ui_id] = item
            while len(self._history) > HISTORY_LIMIT:
                self._history.popitem(last=False)
        return item

    # --- the journal thread ------------------------------------------------------------------------
    def _schedule(self, job: Callable[[], None]) -> None:
        with self._jobs_cond:
            self._jobs.append(job)
            if self._runner is None:
                self._runner = threading.Thread(target=self._drain, name="offline-manager-v2", daemon=True)
                self._runner.start()

    def _drain(self) -> None:
        while True:
            with self._jobs_cond:
                if not self._jobs:
                    self._runner = None
                    self._jobs_cond.notify_all()
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception:  # one failed message or file must not stop the next ones
                log.exception("the /v2 journal failed a step")

    def _state(self, client_id: str | None) -> dict[str, Any]:
        """4.x ``TaskStateMessage`` for one client: its history, its queued and running tasks, and
        the installed packs (every pack: the frontend replaces its map with this one)."""
        from .door import installed_map

        manager = self._manager()
        if manager is None:
            return {"history": {}, "running_queue": [], "pending_queue": [], "installed_packs": {}}
        queue = manager.queue

        def mine(tasks: Any) -> list[dict[str, Any]]:
            items = (queue_item(t.to_dict()) for t in tasks)
            return [i for i in items if i is not None and i["client_id"] == client_id]

        return {
            "history": {i.ui_id: i.to_dict() for i in self.history(client_id)},
            "running_queue": mine(queue.running()),
            "pending_queue": mine(queue.pending()),
            "installed_packs": installed_map(manager.inventory()),
        }

    def _send(self, name: str, data: dict[str, Any], sid: str | None) -> None:
        for sink in list(self._sinks):
            sink(name, data, sid)

    def _send_task(self, name: str, data: dict[str, Any], client_id: str | None) -> None:
        if self._sinks and client_id:
            self._send(name, {**data, "state": self._state(client_id)}, client_id)

    def _capture_before(self, batch: _OpenBatch) -> None:
        manager = self._manager()
        if manager is not None and batch.state_before is None:
            batch.state_before = system_state(manager, manager.inventory())

    def _finalize(self, batch: _OpenBatch) -> None:
        from ..fsops import atomic_write_json

        manager = self._manager()
        if manager is None:
            return
        with self._lock:
            operations = tuple(batch.operations.values())
        record = BatchRecord(
            batch.batch_id,
            batch.start_time,
            iso(),
            batch.state_before or {},
            system_state(manager, manager.inventory()),
            operations,
        )
        try:
            atomic_write_json(batch_dir(manager.layout) / f"{batch.batch_id}.json", record.to_dict())
            if not self._pruned:
                self._pruned = True
                prune_batches(manager.layout)
        except OSError as exc:  # a full disk loses the record, not the queue
            log.warning("could not write batch record %s: %s", batch.batch_id, exc)
        if batch.has_v2:
            self._send(QUEUE_STATUS, {"status": "all-done"}, None)


__all__ = [
    "QUEUE_STATUS",
    "TASK_COMPLETED",
    "TASK_STARTED",
    "V2Journal",
    "connect_sink",
    "existing_journal",
    "journal_of",
]
