"""The task queue: real worker threads, a real event loop, real processes holding the lock."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from manager.errors import ArchiveUnsafe, NotFound, TaskInvalid
from manager.events import EVENT_NAMES, Event
from manager.fsops import file_lock
from manager.tasks import TaskContext, TaskQueue, TaskSpec, TaskState

MP = multiprocessing.get_context("spawn")  # no fork of a process that runs threads


class Recorder:
    """A subscriber that keeps every event, safe to read after ``run_until_idle``."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def names(self, task_id: str | None = None) -> list[str]:
        return [e.name for e in self.events if task_id is None or e.task_id == task_id]

    def wait_for(self, pred, timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for e in self.events:
                    if pred(e):
                        return e
            time.sleep(0.01)
        raise AssertionError("event not seen in time")


def _ok(ctx: TaskContext) -> dict:
    return {"target": ctx.target}


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "user" / "__manager" / "locks" / "operations.lock"


@pytest.fixture
def make_queue(lock_path: Path):
    made: list[TaskQueue] = []

    def make(runners, **kw) -> TaskQueue:
        kw.setdefault("lock_path", lock_path)
        q = TaskQueue(runners, **kw)
        made.append(q)
        return q

    yield make
    for q in made:
        assert q.stop(timeout=10)


# --- ordering, states, results -------------------------------------------------------------
def test_tasks_run_in_fifo_order_with_results_and_history(make_queue):
    order: list[str] = []

    def install(ctx: TaskContext) -> dict:
        order.append(ctx.target)
        ctx.progress("copy", 50)
        return {"installed": ctx.target, "version": ctx.params["version"]}

    q = make_queue({"install": install})
    ids = [q.enqueue(TaskSpec("install", f"pack-{i}", {"version": f"1.{i}"}), client_id="c1").id for i in range(5)]
    assert [t.id for t in q.pending()] == ids and q.status()["is_processing"] is False
    assert q.run_until_idle(10)
    assert order == [f"pack-{i}" for i in range(5)]
    hist = q.history()
    assert [t.id for t in hist] == ids
    assert all(t.state is TaskState.DONE and t.error is None for t in hist)
    t2 = q.get(ids[2])
    assert t2.result == {"installed": "pack-2", "version": "1.2"}
    assert t2.created_at <= t2.started_at <= t2.finished_at
    assert t2.progress.stage == "copy" and t2.progress.percent == 50.0
    json.dumps(t2.to_dict())  # JSON-able
    assert q.status() == {
        "total_count": 5,
        "done_count": 5,
        "in_progress_count": 0,
        "pending_count": 0,
        "failed_count": 0,
        "is_processing": False,
    }


def test_start_and_stop_are_idempotent(make_queue):
    q = make_queue({"noop": _ok})
    assert q.start() is True and q.start() is False and q.worker_alive
    assert q.stop(timeout=5) and q.stop(timeout=5) and not q.worker_alive
    t = q.enqueue(TaskSpec("noop", "x"))
    time.sleep(0.1)
    assert q.get(t.id).state is TaskState.QUEUED  # a stopped worker runs nothing
    assert q.start() is True
    assert q.run_until_idle(5) and q.get(t.id).state is TaskState.DONE


def test_run_until_idle_times_out_while_a_task_blocks(make_queue):
    gate = threading.Event()
    q = make_queue({"slow": lambda ctx: {"released": gate.wait(10)}})
    t = q.enqueue(TaskSpec("slow", "x"))
    assert q.run_until_idle(0.2) is False
    assert q.get(t.id).state is TaskState.RUNNING and q.status()["is_processing"] is True
    gate.set()
    assert q.run_until_idle(5) and q.get(t.id).result == {"released": True}


def test_status_is_per_batch_and_per_client(make_queue):
    q = make_queue({"noop": _ok})
    q.enqueue(TaskSpec("noop", "a"), client_id="alice")
    q.enqueue(TaskSpec("noop", "b"), client_id="bob")
    q.enqueue(TaskSpec("noop", "c"), client_id="bob")
    assert q.status("bob")["pending_count"] == 2 and q.status("bob")["client_id"] == "bob"
    assert q.run_until_idle(5)
    assert q.status("alice")["total_count"] == 1 and q.status("bob")["done_count"] == 2
    q.enqueue(TaskSpec("noop", "d"), client_id="alice")  # the idle queue starts a new batch
    assert q.status()["total_count"] == 1 and q.status()["done_count"] == 0
    assert [t.target for t in q.history(client_id="bob")] == ["b", "c"]


# --- per-target serialisation -----------------------------------------------------------------
def test_two_queues_on_one_target_never_overlap(make_queue, lock_path):
    spans: list[tuple[float, float, str]] = []
    spans_lock = threading.Lock()

    def touch(ctx: TaskContext) -> dict:
        start = time.monotonic()
        time.sleep(0.05)
        with spans_lock:
            spans.append((start, time.monotonic(), ctx.task_id))
        return {}

    # Two queues in one process (e.g. a test harness and the server) share the lock file.
    q1 = make_queue({"update": touch}, lock_timeout=30)
    q2 = make_queue({"update": touch}, lock_timeout=30)
    for _ in range(4):
        q1.enqueue(TaskSpec("update", "pack-a"))
        q2.enqueue(TaskSpec("update", "pack-a"))
    q1.start()
    q2.start()
    assert q1.run_until_idle(30) and q2.run_until_idle(30)
    assert len(spans) == 8
    spans.sort()
    for (_s1, e1, a), (s2, _e2, b) in itertools.pairwise(spans):
        assert e1 <= s2, f"tasks {a} and {b} on pack-a overlapped"
    assert all(t.state is TaskState.DONE for t in q1.history() + q2.history())


def test_lock_free_kinds_do_not_wait_for_the_lock(make_queue, lock_path):
    q = make_queue({"install": _ok, "scan": _ok}, lock_timeout=0.2, lock_free_kinds={"scan"})
    with file_lock(lock_path):
        scan = q.enqueue(TaskSpec("scan", "all"))
        inst = q.enqueue(TaskSpec("install", "pack"))
        assert q.run_until_idle(10)
    assert q.get(scan.id).state is TaskState.DONE
    assert q.get(inst.id).state is TaskState.FAILED and q.get(inst.id).error["code"] == "lock_busy"


# --- cancel and reset ------------------------------------------------------------------------
def test_cancel_queued_task_never_runs(make_queue):
    ran: list[str] = []
    q = make_queue({"install": lambda ctx: ran.append(ctx.target) or {}})
    rec = Recorder()
    q.subscribe(rec)
    a, b, c = (q.enqueue(TaskSpec("install", n)) for n in "abc")
    cancelled = q.cancel(b.id)
    assert cancelled.state is TaskState.CANCELLED and cancelled.finished_at is not None
    assert q.run_until_idle(5)
    assert ran == ["a", "c"]
    assert rec.names(b.id) == ["queued", "cancelled"]
    assert next(e for e in rec.events if e.name == "cancelled").data["while"] == "queued"
    assert q.cancel(a.id).state is TaskState.DONE  # finished: unchanged
    with pytest.raises(NotFound):
        q.cancel("no-such-task")


def test_cancel_running_task_is_cooperative(make_queue):
    started = threading.Event()

    def long_job(ctx: TaskContext) -> dict:
        started.set()
        for step in range(200):
            ctx.progress("download", step / 2)
            if ctx.wait(0.05):
                ctx.check_cancelled()
        return {}

    q = make_queue({"download": long_job})
    rec = Recorder()
    q.subscribe(rec)
    t = q.enqueue(TaskSpec("download", "model-x"))
    q.start()
    assert started.wait(5)
    snap = q.cancel(t.id)
    assert snap.state is TaskState.RUNNING and snap.cancel_requested
    assert q.run_until_idle(5)
    final = q.get(t.id)
    assert final.state is TaskState.CANCELLED and final.error is None
    assert rec.names(t.id)[-1] == "cancelled"
    assert rec.events[-2].data["while"] == "running" and rec.events[-1].name == "queue-idle"


def test_reset_cancels_queued_keeps_running_and_clears_history(make_queue):
    gate = threading.Event()
    started = threading.Event()

    def job(ctx: TaskContext) -> dict:
        if ctx.target == "slow":
            started.set()
            gate.wait(10)
        return {}

    q = make_queue({"job": job})
    rec = Recorder()
    q.subscribe(rec)
    q.enqueue(TaskSpec("job", "first"))
    assert q.run_until_idle(5) and len(q.history()) == 1
    slow = q.enqueue(TaskSpec("job", "slow"))
    assert started.wait(5)
    queued = [q.enqueue(TaskSpec("job", f"q{i}")) for i in range(3)]
    assert q.reset() == 3
    assert q.pending() == () and q.history() == ()
    gate.set()
    assert q.run_until_idle(5)
    assert [t.id for t in q.history()] == [slow.id]
    for t in queued:
        assert rec.names(t.id) == ["queued", "cancelled"]
        with pytest.raises(NotFound):
            q.get(t.id)
    assert q.status()["total_count"] == 1 and q.status()["done_count"] == 1


# --- failures ---------------------------------------------------------------------------------
def test_failure_codes_and_traceback_logged(make_queue, caplog):
    def fail_coded(ctx):
        raise ArchiveUnsafe(
            "pack.zip has an entry outside the target", hint="use another archive", details={"entry": "../x"}
        )

    def fail_bug(ctx):
        return {"x": 1 / len([])}

    q = make_queue(
        {
            "coded": fail_coded,
            "bug": fail_bug,
            "bad": lambda ctx: "success",
            "ok": _ok,
            "nan": lambda ctx: {"v": object()},
        }
    )
    rec = Recorder()
    q.subscribe(rec)
    ids = {k: q.enqueue(TaskSpec(k, "p")).id for k in ("coded", "bug", "bad", "nan", "ok")}
    with caplog.at_level(logging.ERROR, logger="offline_manager.tasks"):
        assert q.run_until_idle(5)
    coded = q.get(ids["coded"])
    assert coded.state is TaskState.FAILED
    assert dict(coded.error) == {
        "code": "archive_unsafe",
        "message": "pack.zip has an entry outside the target",
        "hint": "use another archive",
        "details": {"entry": "../x"},
    }
    bug = q.get(ids["bug"]).error
    assert bug["code"] == "internal_error" and "ZeroDivisionError" in bug["message"] and bug["hint"]
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)
    assert q.get(ids["bad"]).error["code"] == "internal_error"  # a string is not a result dict
    assert q.get(ids["nan"]).error["code"] == "internal_error"  # nor is a non-JSON dict
    assert q.get(ids["ok"]).state is TaskState.DONE  # the worker survived them all
    failed = next(e for e in rec.events if e.name == "failed" and e.task_id == ids["coded"])
    assert failed.data["error"]["code"] == "archive_unsafe"
    assert q.status()["failed_count"] == 4


def test_enqueue_refuses_bad_tasks(make_queue):
    q = make_queue({"install": _ok})
    with pytest.raises(TaskInvalid) as info:
        q.enqueue(TaskSpec("instal", "x"))
    assert "install" in info.value.hint and info.value.http_status == 400
    with pytest.raises(TaskInvalid):
        q.enqueue(TaskSpec("install", "  "))
    with pytest.raises(TaskInvalid):
        q.enqueue(TaskSpec("install", "x", {"when": object()}))
    t = q.enqueue(TaskSpec("install", "x"), task_id="ui-1")
    with pytest.raises(TaskInvalid):
        q.enqueue(TaskSpec("install", "y"), task_id="ui-1")  # still queued
    assert q.run_until_idle(5)
    again = q.enqueue(TaskSpec("install", "z"), task_id="ui-1")  # reuse of a finished id replaces it
    assert again.id == t.id and q.get("ui-1").target == "z" and q.history() == ()


def test_params_are_copied_at_enqueue(make_queue):
    q = make_queue({"install": lambda ctx: {"seen": ctx.params["deps"]}})
    params = {"deps": ["a"]}
    t = q.enqueue(TaskSpec("install", "x", params))
    params["deps"].append("b")
    assert q.run_until_idle(5) and q.get(t.id).result == {"seen": ["a"]}


def test_history_limit_forgets_the_oldest(make_queue):
    q = make_queue({"noop": _ok}, history_limit=3)
    ids = [q.enqueue(TaskSpec("noop", f"p{i}")).id for i in range(5)]
    assert q.run_until_idle(5)
    assert [t.id for t in q.history()] == ids[2:]
    assert [t.id for t in q.history(limit=2)] == ids[3:]
    with pytest.raises(NotFound):
        q.get(ids[0])


# --- events -----------------------------------------------------------------------------------
def test_events_order_per_task(make_queue):
    def install(ctx: TaskContext) -> dict:
        ctx.progress("download", 10)
        ctx.progress("deps", line="Collecting numpy")
        if ctx.target == "needs-restart":
            ctx.require_restart("new nodes")
        return {}

    q = make_queue({"install": install})
    rec = Recorder()
    q.subscribe(rec)
    a = q.enqueue(TaskSpec("install", "plain"), client_id="c1")
    b = q.enqueue(TaskSpec("install", "needs-restart"), client_id="c2")
    assert q.run_until_idle(5)
    assert rec.names(a.id) == ["queued", "started", "progress", "progress", "done"]
    assert rec.names(b.id) == ["queued", "started", "progress", "progress", "done", "restart-required"]
    assert [e.seq for e in rec.events] == sorted(e.seq for e in rec.events)
    assert len({e.seq for e in rec.events}) == len(rec.events)
    assert rec.events[-1].name == "queue-idle" and rec.events[-1].task_id is None
    assert rec.events[-1].data["done_count"] == 2
    assert {e.name for e in rec.events} <= set(EVENT_NAMES)
    prog = [e for e in rec.events if e.name == "progress" and e.task_id == a.id]
    assert dict(prog[0].data) == {"stage": "download", "percent": 10.0, "line": None}
    assert dict(prog[1].data) == {"stage": "deps", "percent": None, "line": "Collecting numpy"}
    assert all(e.client_id == "c2" for e in rec.events if e.task_id == b.id)
    restart = next(e for e in rec.events if e.name == "restart-required")
    assert restart.data["reason"] == "new nodes" and q.get(b.id).restart_required
    done = next(e for e in rec.events if e.name == "done" and e.task_id == a.id)
    json.dumps(done.to_dict())
    assert done.data["task"]["state"] == "done"


def test_event_order_holds_with_enqueues_from_many_threads(make_queue):
    q = make_queue({"install": lambda ctx: ctx.progress("x") or {}})
    rec = Recorder()
    q.subscribe(rec)
    q.start()

    def producer(n: int) -> None:
        for i in range(25):
            q.enqueue(TaskSpec("install", f"p{n}-{i}"))

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert q.run_until_idle(30)
    seqs = [e.seq for e in rec.events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # delivered once each, in order
    by_task: dict[str, list[str]] = {}
    for e in rec.events:
        if e.task_id:
            by_task.setdefault(e.task_id, []).append(e.name)
    assert len(by_task) == 100
    assert all(names == ["queued", "started", "progress", "done"] for names in by_task.values())


def test_failing_subscriber_is_isolated(make_queue, caplog):
    q = make_queue({"install": lambda ctx: ctx.progress("x") or {}})

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    rec = Recorder()
    q.subscribe(broken)
    q.subscribe(rec)
    with caplog.at_level(logging.ERROR):
        t = q.enqueue(TaskSpec("install", "p"))
        assert q.run_until_idle(5)
    assert q.get(t.id).state is TaskState.DONE
    assert rec.names() == ["queued", "started", "progress", "done", "queue-idle"]
    assert sum("subscriber" in r.getMessage() for r in caplog.records) == 5


def test_unsubscribe_stops_delivery(make_queue):
    q = make_queue({"noop": _ok})
    rec = Recorder()
    unsubscribe = q.subscribe(rec)
    q.enqueue(TaskSpec("noop", "a"))
    assert q.run_until_idle(5)
    unsubscribe()
    unsubscribe()  # idempotent
    q.enqueue(TaskSpec("noop", "b"))
    assert q.run_until_idle(5)
    assert rec.names().count("done") == 1


async def test_async_event_bridge_on_a_real_loop(make_queue):
    loop_thread = threading.get_ident()
    seen_threads: set[int] = set()

    def install(ctx: TaskContext) -> dict:
        for i in range(3):
            ctx.progress("clone", i * 50)
        return {"ok": True}

    q = make_queue({"install": install})
    got: list[Event] = []
    async with q.events() as stream:
        t = q.enqueue(TaskSpec("install", "p"), client_id="sid-1")  # from the loop thread
        q.start()
        async for event in stream:
            seen_threads.add(threading.get_ident())
            got.append(event)
            if event.name == "queue-idle":
                break
    assert [e.name for e in got] == ["queued", "started", "progress", "progress", "progress", "done", "queue-idle"]
    assert seen_threads == {loop_thread}
    assert got[-2].data["task"]["result"] == {"ok": True} and got[0].task_id == t.id


async def test_async_bridge_bounded_buffer_keeps_state_events(make_queue):
    def chatty(ctx: TaskContext) -> dict:
        for i in range(100):
            ctx.progress("pip", line=f"line {i}")
        return {}

    q = make_queue({"fix": chatty})
    stream = q.events(maxsize=5, where=lambda e: e.task_id is not None)
    t = q.enqueue(TaskSpec("fix", "p"))
    # The loop stays free (the wait runs in a thread) so events arrive while nobody reads.
    assert await asyncio.to_thread(q.run_until_idle, 10)
    await asyncio.sleep(0.05)
    stream.close()
    names = [e.name async for e in stream]
    assert stream.dropped >= 97
    assert names[0] == "queued" and names[-1] == "done" and "started" in names
    assert len(names) <= 5 and q.get(t.id).state is TaskState.DONE
    idle_stream = q.events()
    with pytest.raises(asyncio.TimeoutError):
        await idle_stream.get(timeout=0.05)
    idle_stream.close()


# --- two processes and the operations lock -----------------------------------------------------
def _hold_ops_lock(path: str, ready, release, released_at) -> None:
    with file_lock(path):
        ready.set()
        release.wait(30)
        released_at.value = time.time()


def _cli_like_queue(path: str, spans_file: str, ready) -> None:
    """What cm-cli does: its own TaskQueue on the same lock, running two tasks."""

    def touch(ctx: TaskContext) -> dict:
        start = time.time()
        ready.set()
        time.sleep(0.3)
        with open(spans_file, "a", encoding="utf-8") as fh:
            fh.write(f"{start} {time.time()} cli\n")
        return {}

    q = TaskQueue({"update": touch}, lock_path=path, lock_timeout=30)
    q.enqueue(TaskSpec("update", "pack-a"))
    q.enqueue(TaskSpec("update", "pack-a"))
    assert q.run_until_idle(60)
    q.stop(5)


def _spawn_holder(lock_path: Path):
    ready, release, released_at = MP.Event(), MP.Event(), MP.Value("d", 0.0)
    proc = MP.Process(target=_hold_ops_lock, args=(str(lock_path), ready, release, released_at))
    proc.start()
    assert ready.wait(30), "child did not take the lock"
    return proc, release, released_at


def test_task_waits_for_a_cli_holding_the_lock_then_runs(make_queue, lock_path):
    ran_at: list[float] = []
    q = make_queue({"install": lambda ctx: ran_at.append(time.time()) or {}}, lock_timeout=30)
    rec = Recorder()
    q.subscribe(rec)
    proc, release, released_at = _spawn_holder(lock_path)
    try:
        t = q.enqueue(TaskSpec("install", "pack-a"))
        q.start()
        waiting = rec.wait_for(lambda e: e.name == "progress" and e.data["stage"] == "waiting-for-lock")
        assert f"process {proc.pid}" in waiting.data["line"]
        assert ran_at == [] and q.get(t.id).state is TaskState.RUNNING
        release.set()
        assert q.run_until_idle(30)
    finally:
        release.set()
        proc.join(30)
    assert q.get(t.id).state is TaskState.DONE
    assert released_at.value > 0 and ran_at[0] >= released_at.value


def test_task_fails_with_lock_busy_naming_the_holder(make_queue, lock_path):
    q = make_queue({"install": _ok}, lock_timeout=0.3)
    proc, release, _ = _spawn_holder(lock_path)
    try:
        t = q.enqueue(TaskSpec("install", "pack-a"))
        assert q.run_until_idle(10)
    finally:
        release.set()
        proc.join(30)
    task = q.get(t.id)
    assert task.state is TaskState.FAILED and task.error["code"] == "lock_busy"
    assert str(proc.pid) in task.error["message"] and task.error["details"]["pid"] == proc.pid
    assert str(proc.pid) in task.error["hint"]


def test_sigkilled_holder_releases_the_lock(make_queue, lock_path):
    q = make_queue({"install": _ok}, lock_timeout=30)
    rec = Recorder()
    q.subscribe(rec)
    proc, release, _ = _spawn_holder(lock_path)
    try:
        t = q.enqueue(TaskSpec("install", "pack-a"))
        q.start()
        rec.wait_for(lambda e: e.name == "progress" and e.data["stage"] == "waiting-for-lock")
        os.kill(proc.pid, signal.SIGKILL)
        assert q.run_until_idle(30)
    finally:
        proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    assert q.get(t.id).state is TaskState.DONE


def test_server_queue_and_cli_process_never_interleave(make_queue, lock_path, tmp_path):
    spans_file = tmp_path / "spans.txt"
    spans_file.touch()

    def touch(ctx: TaskContext) -> dict:
        start = time.time()
        time.sleep(0.1)
        with open(spans_file, "a", encoding="utf-8") as fh:
            fh.write(f"{start} {time.time()} server\n")
        return {}

    q = make_queue({"update": touch}, lock_timeout=30)
    ready = MP.Event()
    child = MP.Process(target=_cli_like_queue, args=(str(lock_path), str(spans_file), ready))
    child.start()
    try:
        assert ready.wait(30)  # the CLI is inside its first task
        for _ in range(4):
            q.enqueue(TaskSpec("update", "pack-a"))
        assert q.run_until_idle(60)
    finally:
        child.join(60)
    assert child.exitcode == 0
    spans = sorted(
        (float(a), float(b), who) for a, b, who in (line.split() for line in spans_file.read_text().splitlines())
    )
    assert [who for *_, who in spans].count("cli") == 2 and len(spans) == 6
    for (_s1, e1, w1), (s2, _e2, w2) in itertools.pairwise(spans):
        assert e1 <= s2, f"{w1} and {w2} changed the tree at the same time"
