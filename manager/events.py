"""What the task queue publishes: task records, events, an ordered hub, an asyncio bridge.

``TaskSpec``/``Task``/``Progress`` are the typed records every door shows. The worker runs in
a thread and the web server on an event loop: the hub delivers every event to plain callables
in the order the queue changed state, and ``EventStream`` carries them onto a loop with
``call_soon_threadsafe`` so an aiohttp handler can ``async for`` them.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

QUEUED = "queued"
STARTED = "started"
PROGRESS = "progress"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
RESTART_REQUIRED = "restart-required"
QUEUE_IDLE = "queue-idle"
EVENT_NAMES = (QUEUED, STARTED, PROGRESS, DONE, FAILED, CANCELLED, RESTART_REQUIRED, QUEUE_IDLE)

Subscriber = Callable[["Event"], None]


def json_copy(value: Any) -> Any:
    """A deep, JSON-only copy (read-only mappings included); TypeError/ValueError otherwise."""

    def _mapping(obj: Any) -> Any:
        if isinstance(obj, Mapping):
            return dict(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    return json.loads(json.dumps(value, default=_mapping, allow_nan=False))


class TaskState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED)


@dataclass(frozen=True)
class Progress:
    """Where a running task is: a stage name, and a percent or a line of output (or neither)."""

    stage: str = ""
    percent: float | None = None
    line: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "percent": self.percent, "line": self.line}


@dataclass(frozen=True)
class TaskSpec:
    """What to do: an operation ``kind`` (a key of the runner map) on ``target`` (a pack id,
    model id, ...). Tasks on the same target never run at the same time."""

    kind: str
    target: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """An immutable snapshot of one task; ask the queue again for a newer one."""

    id: str
    kind: str
    target: str
    params: Mapping[str, Any]
    state: TaskState
    progress: Progress
    result: Mapping[str, Any] | None
    error: Mapping[str, Any] | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    client_id: str | None
    restart_required: bool
    cancel_requested: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (times are Unix seconds)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "params": json_copy(self.params),
            "state": self.state.value,
            "progress": self.progress.to_dict(),
            "result": json_copy(self.result) if self.result is not None else None,
            "error": json_copy(self.error) if self.error is not None else None,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "client_id": self.client_id,
            "restart_required": self.restart_required,
            "cancel_requested": self.cancel_requested,
        }


@dataclass(frozen=True)
class Event:
    """One thing that happened to a task (or to the whole queue, with ``task_id`` None).

    ``seq`` grows by one per event of a hub, so consumers can order and de-duplicate;
    ``client_id`` is who queued the task, for per-client routing (classic ``sid``).
    """

    name: str
    task_id: str | None
    data: Mapping[str, Any] = field(default_factory=dict)
    client_id: str | None = None
    seq: int = 0
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for the websocket and ``cm-cli --json``."""
        return {
            "event": self.name,
            "task_id": self.task_id,
            "client_id": self.client_id,
            "seq": self.seq,
            "at": self.at,
            "data": dict(self.data),
        }


class EventHub:
    """Ordered fan-out of events to subscribers, safe to use from any thread.

    ``post`` only records the event (cheap; the queue calls it while holding its own lock,
    which fixes the order); ``flush`` delivers. Only one thread delivers at a time: a flush
    that finds another thread delivering returns at once and that thread delivers the rest,
    so an event-loop caller is never held up by a slow subscriber running on the worker.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("offline_manager.events")
        self._subscribers: list[Subscriber] = []
        self._outbox: collections.deque[Event] = collections.deque()
        self._seq = itertools.count(1)
        self._cond = threading.Condition(threading.Lock())
        self._dispatcher: int | None = None  # thread ident currently delivering

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Register ``callback(event)``; returns a function that unregisters it (idempotent).

        Callbacks run on whichever thread delivers (often the worker); keep them quick and
        thread-agnostic. An exception in one is logged and never reaches the worker.
        """
        with self._cond:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._cond:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def post(
        self, name: str, task_id: str | None, data: Mapping[str, Any] | None = None, client_id: str | None = None
    ) -> Event:
        """Record an event for delivery by the next ``flush``."""
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event name {name!r}")
        with self._cond:
            event = Event(
                name=name,
                task_id=task_id,
                data=MappingProxyType(dict(data or {})),
                client_id=client_id,
                seq=next(self._seq),
                at=time.time(),
            )
            self._outbox.append(event)
        return event

    def flush(self) -> None:
        """Deliver every recorded event in order, unless another thread is already doing so."""
        with self._cond:
            if self._dispatcher is not None:  # another thread, or a subscriber re-entering
                return
            self._dispatcher = threading.get_ident()
        try:
            while True:
                with self._cond:
                    # Emptiness check and hand-back are one atomic step, so an event posted
                    # concurrently is either seen here or flushed by its poster.
                    if not self._outbox:
                        self._dispatcher = None
                        self._cond.notify_all()
                        return
                    event = self._outbox.popleft()
                    subscribers = list(self._subscribers)
                for callback in subscribers:
                    self._deliver(callback, event)
        except BaseException:
            with self._cond:
                self._dispatcher = None
                self._cond.notify_all()
            raise

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Block until every posted event was delivered; False on timeout.

        Returns False at once when called from inside a subscriber (waiting would deadlock).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if self._dispatcher == threading.get_ident():
                    return False
                if not self._outbox and self._dispatcher is None:
                    return True
                if self._dispatcher is not None:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                    continue
            self.flush()  # events waiting and nobody delivering: deliver them here

    def _deliver(self, callback: Subscriber, event: Event) -> None:
        try:
            callback(event)
        except Exception:  # a broken subscriber must never stop the worker or other subscribers
            self._log.exception(
                "event subscriber %r failed on %s event of task %s", callback, event.name, event.task_id
            )


class EventStream:
    """Events of one hub, buffered for one asyncio loop: ``async for event in stream``.

    Build it on the loop (or pass ``loop``). The buffer is bounded: when full, ``progress``
    events are dropped first (counted in ``dropped``) so state changes are kept.
    """

    def __init__(
        self,
        hub: EventHub,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        maxsize: int = 1000,
        where: Callable[[Event], bool] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._loop = loop or asyncio.get_running_loop()
        self._maxsize = maxsize
        self._where = where
        self._buffer: collections.deque[Event] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self.dropped = 0
        self._unsubscribe = hub.subscribe(self._from_any_thread)

    # --- producer side (any thread) --------------------------------------------------
    def _from_any_thread(self, event: Event) -> None:
        if self._closed or (self._where is not None and not self._where(event)):
            return
        try:
            self._loop.call_soon_threadsafe(self._push, event)
        except RuntimeError:  # the loop is closed: nobody can read us any more
            self._closed = True
            self._unsubscribe()

    def _push(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._buffer) >= self._maxsize:
            if event.name == PROGRESS:
                self.dropped += 1
                return
            victim = next((e for e in self._buffer if e.name == PROGRESS), self._buffer[0])
            self._buffer.remove(victim)
            self.dropped += 1
        self._buffer.append(event)
        self._wakeup.set()

    # --- consumer side (the loop) ----------------------------------------------------
    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._buffer.popleft()

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; ``asyncio.TimeoutError`` after ``timeout`` seconds."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    def close(self) -> None:
        """Stop receiving; buffered events can still be read, then iteration ends."""
        self._closed = True
        self._unsubscribe()
        self._wakeup.set()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
