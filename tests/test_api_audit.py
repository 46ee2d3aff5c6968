"""The audit log: lines for requests and task results through a real server, whole lines from
concurrent threads and processes, rotation by size, and nothing when audit_logging is off."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

from manager.api.routes import PREFIX
from manager.audit import AuditEntry, AuditLog, task_entry

REPO = Path(__file__).resolve().parents[1]


def _lines(log: AuditLog) -> list[dict]:
    out = []
    for path in reversed(log.files()):
        raw = path.read_bytes()
        assert raw == b"" or raw.endswith(b"\n"), path  # only whole lines
        out += [json.loads(line) for line in raw.splitlines()]
    return out


def test_entries_are_json_lines_with_every_field(tmp_path):
    log = AuditLog(tmp_path / "logs" / "audit.jsonl")
    assert log.write(
        AuditEntry(
            "request",
            "install",
            "x" * 1000,
            "allowed",
            "ok",
            1.5,
            remote="127.0.0.1",
            user_agent="ua",
            route="/offline-manager/v1/queue",
            method="POST",
            status=202,
            task_ids=("t1",),
        )
    )
    task = {
        "id": "t1",
        "kind": "install",
        "target": "demo",
        "state": "failed",
        "started_at": 10.0,
        "finished_at": 10.25,
        "params": {"policy": {"allowed": True, "operation": "install"}},
        "error": {"code": "network_blocked", "message": "no"},
    }
    assert log.write(task_entry(task, remote="127.0.0.1"))
    first, second = _lines(log)
    assert set(first) >= {
        "time",
        "remote",
        "user_agent",
        "route",
        "operation",
        "target",
        "decision",
        "code",
        "duration_ms",
        "pid",
        "kind",
        "status",
    }
    assert len(first["target"]) < 400 and first["task_ids"] == ["t1"]
    assert second["kind"] == "task" and second["code"] == "network_blocked" and second["decision"] == "allowed"
    assert second["duration_ms"] == 250.0 and second["remote"] == "127.0.0.1"


def test_rotation_by_size_keeps_n_files(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", max_bytes=2048, keep=3)
    for i in range(200):
        assert log.write(AuditEntry("request", "install", f"pack-{i}"))
    files = log.files()
    assert [p.name for p in files] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"]
    assert all(p.stat().st_size <= 2048 for p in files)
    targets = [e["target"] for e in _lines(log)]
    assert targets == [f"pack-{i}" for i in range(200 - len(targets), 200)]  # the newest, in order


def test_threads_write_whole_lines(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", max_bytes=64 * 1024, keep=100)

    def worker(n: int) -> None:
        for i in range(300):
            log.write(AuditEntry("request", "install", f"t{n}-{i}-" + "y" * (i % 50)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = _lines(log)
    assert len(lines) == 8 * 300 and len(log.files()) > 2


_WRITER = """
import sys
sys.path.insert(0, {repo!r})
from manager.audit import AuditEntry, AuditLog
log = AuditLog({path!r}, lock_path={lock!r}, max_bytes=32 * 1024, keep=1000)
n = int(sys.argv[1])
for i in range(400):
    log.write(AuditEntry("task", "update", f"p{{n}}-{{i}}-" + "z" * (i % 97), code="ok"))
"""


def test_processes_write_whole_lines_and_rotate_once_at_a_time(tmp_path):
    path, lock = tmp_path / "logs" / "audit.jsonl", tmp_path / "locks" / "audit.lock"
    code = _WRITER.format(repo=str(REPO), path=str(path), lock=str(lock))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    log = AuditLog(path, lock_path=lock, keep=1000)
    lines = _lines(log)
    assert len(lines) == 6 * 400  # nothing lost, nothing torn
    assert sorted(e["target"] for e in lines) == sorted(
        f"p{n}-{i}-" + "z" * (i % 97) for n in range(6) for i in range(400)
    )
    assert len(log.files()) > 3
    for n in range(6):  # each writer's own lines stay in order
        mine = [int(e["target"].split("-")[1]) for e in lines if e["target"].startswith(f"p{n}-")]
        assert mine == sorted(mine)


async def test_server_requests_and_task_results_are_audited(aiohttp_client, api_app):
    app, api, root = api_app()
    client = await aiohttp_client(app)
    headers = {"User-Agent": "audit-test/1.0"}
    resp = await client.post(
        PREFIX + "/queue", json={"kind": "install", "target": "demo-image-tools", "task_id": "a1"}, headers=headers
    )
    assert resp.status == 202
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    denied = await client.post(
        "/customnode/install/git_url", json={"url": "https://example.invalid/x.git"}, headers=headers
    )
    assert denied.status == 403
    csrf = await client.post(PREFIX + "/queue/reset", headers={**headers, "Origin": "https://evil.example"})
    assert csrf.status == 403
    bad = await client.post(PREFIX + "/snapshots", json={"name": "../x"}, headers=headers)
    assert bad.status == 400
    assert (await client.get(PREFIX + "/packs")).status == 200  # reads are not audited
    assert (await client.post(PREFIX + "/snapshots/nope/remove", headers=headers)).status == 404

    log = AuditLog.for_layout(api.manager.layout)
    assert log.path == root / "user" / "__manager" / "logs" / "audit.jsonl"
    lines = _lines(log)
    requests = [e for e in lines if e["kind"] == "request"]
    tasks = [e for e in lines if e["kind"] == "task"]
    assert all(e["route"] != PREFIX + "/packs" for e in requests)
    install = next(e for e in requests if e["route"] == PREFIX + "/queue")
    assert install["decision"] == "allowed" and install["code"] == "ok" and install["status"] == 202
    assert install["target"] == "demo-image-tools" and install["task_ids"] == ["a1"]
    assert install["remote"] == "127.0.0.1" and install["user_agent"] == "audit-test/1.0"
    assert install["operation"] == "install" and install["duration_ms"] >= 0 and install["door"] == "standalone"
    git = next(e for e in requests if e["route"] == "/customnode/install/git_url")
    assert git["decision"] == "denied" and git["code"] == "security_denied" and git["status"] == 403 and git["reason"]
    reset = next(e for e in requests if e["route"] == PREFIX + "/queue/reset")
    assert reset["code"] == "cross_origin_denied" and reset["decision"] == "none"
    snap = next(e for e in requests if e["route"] == PREFIX + "/snapshots")
    assert snap["code"] == "invalid_name"
    removal = next(e for e in requests if e["route"] == PREFIX + "/snapshots/{name}/remove")
    assert removal["target"] == "nope" and removal["code"] == "not_found" and removal["decision"] == "allowed"
    (task,) = [e for e in tasks if e["task_id"] == "a1"]
    assert task["operation"] == "install" and task["code"] == "ok" and task["target"] == "demo-image-tools"
    assert task["remote"] == "127.0.0.1" and task["user_agent"] == "audit-test/1.0" and task["duration_ms"] > 0


async def test_audit_off_writes_nothing(aiohttp_client, api_app):
    app, api, root = api_app(security="audit_logging = false")
    client = await aiohttp_client(app)
    resp = await client.post(PREFIX + "/queue", json={"kind": "install", "target": "demo-prompt-kit"})
    assert resp.status == 202
    assert await asyncio.to_thread(api.manager.queue.run_until_idle, 60)
    assert (
        await client.post("/customnode/install/git_url", json={"url": "https://example.invalid/x.git"})
    ).status == 403
    assert not (root / "user" / "__manager" / "logs" / "audit.jsonl").exists()
