"""The task queue: typed tasks, one worker thread, per-target serialisation, a cross-process lock.

Handlers on the event loop only validate and ``enqueue``; the single worker thread runs the
operation (a plain callable taking a ``TaskContext``) and reports through events. Every
mutating task runs inside the operations file lock, so the server and ``cm-cli`` never change
the tree at the same time. See docs/tasks.md for states, events and lock semantics.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import events as ev
from .errors import InternalError, LockBusy, ManagerError, NotFound, TaskInvalid
from .events import Event, EventHub, EventStream, Progress, Task, TaskSpec, TaskState, json_copy
from .fsops import file_lock

__all__ = [
    "Event",
    "EventStream",
    "Progress",
    "Runner",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskQueue",
    "TaskSpec",
    "TaskState",
    "read_lock_holder",
]


class TaskCancelled(Exception):
    """Raised by ``TaskContext.check_cancelled`` to stop a runner that was asked to cancel.

    Not a ManagerError: cancellation is a task state, not a failure.
    """


@dataclass
class _Record:
    """The queue's private, mutable view of a task; only touched under the queue lock."""

    id: str
    spec: TaskSpec
    params: Mapping[str, Any]
    client_id: str | None
    created_at: float
    state: TaskState = TaskState.QUEUED
    progress: Progress = field(default_factory=Progress)
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    restart_required: bool = False
    restart_reason: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> Task:
        return Task(
            id=self.id,
            kind=self.spec.kind,
            target=self.spec.target,
            params=self.params,
            state=self.state,
            progress=self.progress,
            result=self.result,
            error=self.error,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            client_id=self.client_id,
            restart_required=self.restart_required,
            cancel_requested=self.cancel.is_set(),
        )


class TaskContext:
    """Handed to a runner: report progress, watch for cancellation, ask for a restart."""

    def __init__(self, queue: TaskQueue, record: _Record) -> None:
        self._queue = queue
        self._record = record

    @property
    def task(self) -> Task:
        """A fresh snapshot of the running task."""
        with self._queue._cond:
            return self._record.snapshot()

    @property
    def task_id(self) -> str:
        return self._record.id

    @property
    def kind(self) -> str:
        return self._record.spec.kind

    @property
    def target(self) -> str:
        return self._record.spec.target

    @property
    def params(self) -> Mapping[str, Any]:
        return self._record.params

    @property
    def cancelled(self) -> bool:
        """True once someone asked to cancel this task; stop at the next safe point."""
        return self._record.cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise ``TaskCancelled`` if cancellation was asked; call it between steps."""
        if self.cancelled:
            raise TaskCancelled(self._record.id)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancel; returns True if cancelled."""
        return self._record.cancel.wait(seconds)

    def progress(self, stage: str, percent: float | None = None, line: str | None = None) -> None:
        """Report a stage with a percent (0-100) or a line of tool output; emits ``progress``."""
        if percent is not None:
            percent = min(100.0, max(0.0, float(percent)))
        self._queue._report_progress(self._record, Progress(str(stage), percent, line))

    def require_restart(self, reason: str | None = None) -> None:
        """Mark that ComfyUI must restart for this task's change to take effect."""
        with self._queue._cond:
            self._record.restart_required = True
            self._record.restart_reason = reason


Runner = Callable[[TaskContext], "Mapping[str, Any] | None"]


def read_lock_holder(lock_path: str | os.PathLike[str]) -> int | None:
    """The pid ``fsops.file_lock`` wrote into the lock file, or None if unreadable."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path(lock_path).read_text(encoding="ascii").strip())
    return None


class TaskQueue:
    """One queue with one worker thread; owned by the Manager (no module state).

    ``runners`` maps a task kind to its operation. ``lock_path`` is the cross-process
    operations lock (``layout.locks_dir / "operations.lock"``); the worker holds it around
    every task except kinds in ``lock_free_kinds`` (read-only work), waiting up to
    ``lock_timeout`` seconds before failing the task with ``lock_busy``.
    """

    def __init__(
        self,
        runners: Mapping[str, Runner],
        *,
        lock_path: str | os.PathLike[str],
        history_limit: int = 200,
        lock_timeout: float = 60.0,
        lock_free_kinds: Collection[str] = (),
        lock_anchor: str | os.PathLike[str] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        self._runners = dict(runners)
        self._lock_path = Path(lock_path)
        # the folder the user chose: no link may sit between it and the lock file (fsops.refuse_links)
        self._lock_anchor = lock_anchor
        self._history_limit = history_limit
        self._lock_timeout = lock_timeout
        self._lock_free = frozenset(lock_free_kinds)
        self._log = logger or logging.getLogger("offline_manager.tasks")
        self._hub = EventHub(self._log)
        self._cond = threading.Condition(threading.Lock())
        self._records: dict[str, _Record] = {}
        self._pending: list[str] = []  # FIFO of queued ids
        self._running: dict[str, _Record] = {}
        self._busy_targets: set[str] = set()
        self._history: deque[str] = deque()  # finished ids, oldest first
        self._batch: dict[str, _Record] = {}  # tasks since the queue was last idle
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def kinds(self) -> tuple[str, ...]:
        """The task kinds this queue has a runner for."""
        return tuple(sorted(self._runners))

    # --- events --------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Register ``callback(event)`` for every event; returns the unsubscribe function."""
        return self._hub.subscribe(callback)

    def events(
        self, *, maxsize: int = 1000, where: Callable[[Event], bool] | None = None, loop: Any = None
    ) -> EventStream:
        """An ``async for`` stream of events for the running (or given) asyncio loop."""
        return EventStream(self._hub, loop=loop, maxsize=maxsize, where=where)

    def _post(self, name: str, rec: _Record | None, data: Mapping[str, Any]) -> None:
        # Called with self._cond held so event order is the order of state changes.
        self._hub.post(name, rec.id if rec else None, data, rec.client_id if rec else None)

    # --- submitting ----------------------------------------------------------------------
    def enqueue(self, spec: TaskSpec, client_id: str | None = None, *, task_id: str | None = None) -> Task:
        """Queue ``spec``; returns its snapshot. Raises ``TaskInvalid`` for an unknown kind,
        an empty target, params that are not JSON, or a ``task_id`` already queued or running.

        A caller-chosen ``task_id`` (the classic ``ui_id``) replaces a finished task of that id
        in history, as the classic queue does.
        """
        if spec.kind not in self._runners:
            raise TaskInvalid(
                f"unknown task kind {spec.kind!r}",
                hint="Use one of: " + ", ".join(sorted(self._runners)),
                details={"kind": spec.kind},
            )
        if not isinstance(spec.target, str) or not spec.target.strip():
            raise TaskInvalid(
                f"task {spec.kind!r} has an empty target", hint="Name the pack or model the task acts on."
            )
        try:
            params = MappingProxyType(json_copy(dict(spec.params)))
        except (TypeError, ValueError) as exc:
            raise TaskInvalid(
                f"params of task {spec.kind!r} on {spec.target!r} are not JSON: {exc}",
                hint="Pass only strings, numbers, booleans, lists and objects.",
            ) from None
        if task_id is not None and (not isinstance(task_id, str) or not task_id or len(task_id) > 200):
            raise TaskInvalid("task id must be a non-empty string of at most 200 characters")
        with self._cond:
            tid = task_id or uuid.uuid4().hex[:16]
            old = self._records.get(tid)
            if old is not None:
                if not old.state.finished:
                    raise TaskInvalid(
                        f"task id {tid!r} is already {old.state.value}",
                        hint="Use a new id for each request.",
                        details={"task_id": tid},
                    )
                self._forget_locked(tid)
            if not self._pending and not self._running:
                self._batch = {}  # an idle queue starts a new batch for status()
            rec = _Record(id=tid, spec=spec, params=params, client_id=client_id, created_at=time.time())
            self._records[tid] = rec
            self._pending.append(tid)
            self._batch[tid] = rec
            snap = rec.snapshot()
            self._post(ev.QUEUED, rec, {"task": snap.to_dict()})
            self._cond.notify_all()
        self._hub.flush()
        return snap

    def cancel(self, task_id: str) -> Task:
        """Cancel a queued task at once; a running one gets its cooperative cancel flag set
        (it ends ``cancelled`` if its runner stops, ``done`` if it completes anyway).
        A finished task is returned unchanged. Raises ``NotFound`` for an unknown id."""
        with self._cond:
            rec = self._get_locked(task_id)
            if rec.state is TaskState.QUEUED:
                self._pending.remove(rec.id)
                rec.cancel.set()
                self._finish_locked(rec, TaskState.CANCELLED, data={"while": "queued"})
            elif rec.state is TaskState.RUNNING:
                rec.cancel.set()
            snap = rec.snapshot()
        self._hub.flush()
        return snap

    def reset(self) -> int:
        """Cancel every queued task and clear the history and the batch counters.

        Never refuses: a running task is left to finish (stopping a tree change half-way is
        what the lock exists to prevent) and lands in the fresh history. Returns how many
        queued tasks were cancelled; each gets a ``cancelled`` event.
        """
        with self._cond:
            dropped = [self._records[tid] for tid in self._pending]
            self._pending.clear()
            for rec in dropped:
                rec.cancel.set()
                self._finish_locked(rec, TaskState.CANCELLED, data={"while": "queued"}, idle=False)
            if dropped and not self._running:
                self._post(ev.QUEUE_IDLE, None, self._status_counts_locked())
            for tid in list(self._history):
                self._forget_locked(tid)
            self._batch = dict(self._running)
        self._hub.flush()
        return len(dropped)

    # --- reading -------------------------------------------------------------------------
    def get(self, task_id: str) -> Task:
        """Snapshot of a queued, running or remembered task; ``NotFound`` otherwise."""
        with self._cond:
            return self._get_locked(task_id).snapshot()

    def pending(self) -> tuple[Task, ...]:
        with self._cond:
            return tuple(self._records[tid].snapshot() for tid in self._pending)

    def running(self) -> tuple[Task, ...]:
        with self._cond:
            return tuple(rec.snapshot() for rec in self._running.values())

    def history(self, *, client_id: str | None = None, limit: int | None = None) -> tuple[Task, ...]:
        """Finished tasks, oldest first (at most ``history_limit`` are kept)."""
        with self._cond:
            out = [self._records[tid].snapshot() for tid in self._history]
        if client_id is not None:
            out = [t for t in out if t.client_id == client_id]
        return tuple(out[-limit:] if limit else out)

    def status(self, client_id: str | None = None) -> dict[str, Any]:
        """Counts for the current batch (tasks queued since the queue was last idle), the
        shape of the classic ``/manager/queue/status``; filtered to one client if given."""
        with self._cond:
            batch = [r for r in self._batch.values() if client_id is None or r.client_id == client_id]
            finished = [r for r in batch if r.state.finished]
            running = sum(1 for r in self._running.values() if client_id is None or r.client_id == client_id)
            pending = sum(1 for tid in self._pending if client_id is None or self._records[tid].client_id == client_id)
            alive = self._worker_alive_locked()
        out: dict[str, Any] = {
            "total_count": len(batch),
            "done_count": len(finished),
            "in_progress_count": running,
            "pending_count": pending,
            "failed_count": sum(1 for r in finished if r.state is TaskState.FAILED),
            "is_processing": running > 0 or (alive and pending > 0),
        }
        if client_id is not None:
            out["client_id"] = client_id
        return out

    # --- worker lifecycle ----------------------------------------------------------------
    @property
    def worker_alive(self) -> bool:
        with self._cond:
            return self._worker_alive_locked()

    def _worker_alive_locked(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> bool:
        """Start the worker thread; True if started now, False if it was already running."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                already = not self._stopping
                self._stopping = False  # a stop that has not finished yet is called off
                self._cond.notify_all()
                return not already
            self._stopping = False
            # daemon: ComfyUI's shutdown must not hang on us; staging keeps the tree whole.
            self._thread = threading.Thread(target=self._work, name="offline-manager-worker", daemon=True)
            self._thread.start()
            return True

    def stop(self, timeout: float | None = None) -> bool:
        """Let the running task finish, then end the worker; queued tasks stay queued.
        Returns True once the thread has ended (False if ``timeout`` passed first)."""
        with self._cond:
            thread = self._thread
            self._stopping = True
            self._cond.notify_all()
        if thread is None:
            return True
        if thread is threading.current_thread():
            return False
        thread.join(timeout)
        return not thread.is_alive()

    def run_until_idle(self, timeout: float | None = None) -> bool:
        """Start the worker if needed and block until nothing is queued or running and every
        event was delivered; False if ``timeout`` passed first. For the CLI and tests."""
        if self._thread is threading.current_thread():
            raise RuntimeError("run_until_idle called from the worker thread would wait forever")
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._hub.wait_drained(remaining)

    # --- the worker ----------------------------------------------------------------------
    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    rec = self._next_locked()
                    while rec is None and not self._stopping:
                        self._cond.wait()
                        rec = self._next_locked()
                    if self._stopping or rec is None:
                        # Leave under the lock, so start() never mistakes us for a live worker.
                        if self._thread is threading.current_thread():
                            self._thread = None
                        self._cond.notify_all()
                        return
                    self._start_locked(rec)
                self._hub.flush()
                self._execute(rec)
                self._hub.flush()
        except BaseException:
            self._log.exception("task worker stopped by an unexpected error")
            raise

    def _next_locked(self) -> _Record | None:
        # Per-target serialisation: skip tasks whose target is busy, so the rule holds even
        # if more workers (or a re-entrant call) ever run tasks side by side.
        for tid in self._pending:
            rec = self._records[tid]
            if rec.spec.target not in self._busy_targets:
                return rec
        return None

    def _start_locked(self, rec: _Record) -> None:
        self._pending.remove(rec.id)
        self._running[rec.id] = rec
        self._busy_targets.add(rec.spec.target)
        rec.state = TaskState.RUNNING
        rec.started_at = time.time()
        self._post(ev.STARTED, rec, {"task": rec.snapshot().to_dict()})

    def _execute(self, rec: _Record) -> None:
        ctx = TaskContext(self, rec)
        runner = self._runners[rec.spec.kind]
        try:
            with self._operations_lock(ctx):
                ctx.check_cancelled()
                raw = runner(ctx)
            if raw is not None and not isinstance(raw, Mapping):
                raise InternalError(f"the {rec.spec.kind!r} operation returned a {type(raw).__name__}, not a dict")
            try:
                result = json_copy(dict(raw or {}))
            except (TypeError, ValueError) as exc:
                raise InternalError(
                    f"the {rec.spec.kind!r} operation returned a result that is not JSON: {exc}"
                ) from None
        except TaskCancelled:
            self._finish(rec, TaskState.CANCELLED, data={"while": "running"})
        except ManagerError as exc:
            self._finish(rec, TaskState.FAILED, error=exc.to_dict())
        except Exception as exc:
            self._log.exception("task %s (%s on %s) failed unexpectedly", rec.id, rec.spec.kind, rec.spec.target)
            err = InternalError(
                f"{rec.spec.kind} of {rec.spec.target!r} failed unexpectedly: {type(exc).__name__}: {exc}",
                details={"exception": type(exc).__name__},
            )
            self._finish(rec, TaskState.FAILED, error=err.to_dict())
        except BaseException as exc:  # interpreter shutdown or KeyboardInterrupt: record, then go
            self._log.error("task %s interrupted by %s", rec.id, type(exc).__name__)
            err = InternalError(f"{rec.spec.kind} of {rec.spec.target!r} was interrupted ({type(exc).__name__})")
            self._finish(rec, TaskState.FAILED, error=err.to_dict())
            raise
        else:
            self._finish(rec, TaskState.DONE, result=result)

    @contextlib.contextmanager
    def _operations_lock(self, ctx: TaskContext) -> Iterator[None]:
        """Hold the cross-process operations lock, waiting up to ``lock_timeout``."""
        if ctx.kind in self._lock_free:
            yield
            return
        deadline = time.monotonic() + self._lock_timeout
        announced = False
        while True:
            holder = file_lock(self._lock_path, timeout=0, anchor=self._lock_anchor)
            try:
                holder.__enter__()
                break
            except LockBusy:
                pid = read_lock_holder(self._lock_path)
                who = f"process {pid}" if pid else "another process"
                if pid == os.getpid():
                    who = f"this process ({pid}, another queue or caller)"
                if not announced:
                    announced = True
                    ctx.progress("waiting-for-lock", line=f"waiting for the operations lock held by {who}")
                ctx.check_cancelled()
                if time.monotonic() >= deadline:
                    raise LockBusy(
                        f"the operations lock {self._lock_path} is held by {who} "
                        f"(waited {self._lock_timeout:g}s); another cm-cli or server operation is running",
                        hint=f"Wait for {who} to finish its operation and retry; a killed holder "
                        "releases the lock by itself.",
                        details={"lock": str(self._lock_path), "pid": pid, "waited": self._lock_timeout},
                    ) from None
                ctx.wait(0.05)
        try:
            yield
        finally:
            holder.__exit__(None, None, None)

    def _report_progress(self, rec: _Record, progress: Progress) -> None:
        with self._cond:
            if rec.state is not TaskState.RUNNING:
                return  # a runner's stray thread reporting after the end is ignored
            rec.progress = progress
            self._post(ev.PROGRESS, rec, progress.to_dict())
        self._hub.flush()

    def _finish(self, rec: _Record, state: TaskState, **kw: Any) -> None:
        with self._cond:
            self._running.pop(rec.id, None)
            self._busy_targets.discard(rec.spec.target)
            self._finish_locked(rec, state, **kw)

    def _finish_locked(
        self,
        rec: _Record,
        state: TaskState,
        *,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        idle: bool = True,
    ) -> None:
        rec.state = state
        rec.finished_at = time.time()
        rec.result = MappingProxyType(dict(result)) if result is not None else None
        rec.error = MappingProxyType(dict(error)) if error is not None else None
        snap = rec.snapshot().to_dict()
        name = {TaskState.DONE: ev.DONE, TaskState.FAILED: ev.FAILED, TaskState.CANCELLED: ev.CANCELLED}[state]
        payload: dict[str, Any] = {"task": snap, **(data or {})}
        if error is not None:
            payload["error"] = snap["error"]
        self._post(name, rec, payload)
        if rec.restart_required:
            self._post(
                ev.RESTART_REQUIRED,
                rec,
                {"reason": rec.restart_reason, "kind": rec.spec.kind, "target": rec.spec.target, "state": state.value},
            )
        self._history.append(rec.id)
        while len(self._history) > self._history_limit:
            self._forget_locked(self._history[0])
        if idle:
            self._maybe_idle_locked()
        self._cond.notify_all()

    def _maybe_idle_locked(self) -> None:
        if not self._pending and not self._running and self._batch:
            self._post(ev.QUEUE_IDLE, None, self._status_counts_locked())

    def _status_counts_locked(self) -> dict[str, Any]:
        finished = [r for r in self._batch.values() if r.state.finished]
        return {
            "total_count": len(self._batch),
            "done_count": len(finished),
            "failed_count": sum(1 for r in finished if r.state is TaskState.FAILED),
        }

    def _forget_locked(self, task_id: str) -> None:
        with contextlib.suppress(ValueError):
            self._history.remove(task_id)
        self._records.pop(task_id, None)

    def _get_locked(self, task_id: str) -> _Record:
        rec = self._records.get(task_id)
        if rec is None:
            raise NotFound(
                f"no task with id {task_id!r}",
                hint="Finished tasks are kept only for the latest history entries; list them with the queue history.",
                details={"task_id": task_id},
            )
        return rec
