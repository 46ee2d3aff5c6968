"""Every /v2 route, the 4.x task flow, its events and a 4.x script, through the real ComfyUI.

The routes are called as the frontend's built-in manager UI calls them (``/api/v2/...``, the
copies ComfyUI makes of every extension route); the task flow installs, disables, enables and
uninstalls a pack from a local git repository (the channel lists it), each confirmed on disk;
the events are read from ComfyUI's own ``/ws`` as the browser with that socket id gets them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

import aiohttp
from browser.pages import SECOND_PACK_ID, TEST_PACK_ID
from test_api_v2_history import _script_written_for_4x

from manager.api.routes import ROUTES
from support import realhost

API = "/api/v2"
V2_PAIRS = {(r.method, r.path[len("/v2") :]) for r in ROUTES if r.path.startswith("/v2/")}
CALLED: dict[str, set[tuple[str, str]]] = defaultdict(set)  # version -> (method, route path) exercised


def call(
    host: realhost.RealComfyUI,
    method: str,
    path: str,
    body: Any = None,
    *,
    route: str | None = None,
    status: int | tuple[int, ...] = 200,
) -> Any:
    """One request under /api/v2; checks the status, returns JSON (or text), records the route."""
    CALLED[host.version].add((method, route or path.split("?", 1)[0]))
    code, headers, raw = host.request(method, API + path, body)
    wanted = status if isinstance(status, tuple) else (status,)
    assert code in wanted, (method, path, code, raw[:400])
    if headers.get("Content-Type", "").startswith("application/json"):
        return json.loads(raw)
    return raw.decode("utf-8", errors="replace")


def coded(
    host: realhost.RealComfyUI,
    method: str,
    path: str,
    status: int,
    code: str,
    body: Any = None,
    route: str | None = None,
) -> dict:
    data = call(host, method, path, body, status=status, route=route)
    assert data["ok"] is False and data["error"]["code"] == code and data["error"]["hint"], data
    return data


def wait_idle(host: realhost.RealComfyUI, client_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = call(host, "GET", f"/manager/queue/status?client_id={client_id}")
        if not status["is_processing"] and status["done_count"] >= status["total_count"] > 0:
            return status
        time.sleep(0.2)
    raise AssertionError(f"queue of {client_id} did not finish: {status}")


def item(kind: str, ui_id: str, params: dict, client_id: str) -> dict:
    return {"kind": kind, "ui_id": ui_id, "client_id": client_id, "params": params}


def test_read_routes_through_the_real_host(real_comfy: realhost.RealComfyUI) -> None:
    h = real_comfy
    assert isinstance(call(h, "GET", "/manager/queue/history_list")["ids"], list)
    assert isinstance(call(h, "GET", "/manager/queue/history")["history"], dict)
    assert len(call(h, "GET", "/customnode/getmappings?mode=cache")) > 1000
    coded(h, "GET", "/customnode/getmappings", 400, "request_invalid")
    assert coded(h, "GET", "/customnode/fetch_updates", 410, "route_gone")["deprecated"] is True
    assert call(h, "GET", "/manager/is_legacy_manager_ui") == {"is_legacy_manager_ui": False}
    assert isinstance(call(h, "GET", "/customnode/installed?mode=default"), dict)
    assert isinstance(call(h, "GET", "/snapshot/getlist")["items"], list)
    assert set(call(h, "GET", "/snapshot/get_current")) >= {
        "comfyui",
        "git_custom_nodes",
        "cnr_custom_nodes",
        "file_custom_nodes",
        "pips",
    }
    status = call(h, "GET", "/manager/queue/status")
    assert {"total_count", "done_count", "in_progress_count", "pending_count", "is_processing"} <= set(status)
    versions = call(h, "GET", "/comfyui_manager/comfyui_versions")
    assert versions["versions"][0] == "nightly" and versions["current"] == f"v{h.version}"
    assert call(h, "GET", "/manager/db_mode") in ("cache", "local", "remote")
    assert call(h, "GET", "/manager/policy/update").endswith("-comfyui")
    channels = call(h, "GET", "/manager/channel_url_list")
    assert "selected" in channels and all(isinstance(x, str) for x in channels["list"])
    assert call(h, "GET", "/manager/version").startswith("V")
    listing = call(h, "GET", "/customnode/getlist?mode=cache&skip_update=true")
    assert len(listing["node_packs"]) > 5000 and TEST_PACK_ID in listing["node_packs"]
    assert isinstance(call(h, "GET", "/externalmodel/getlist?mode=cache")["models"], list)
    call(h, "GET", f"/customnode/versions/{TEST_PACK_ID}", status=(200, 503), route="/customnode/versions/{node_name}")
    coded(
        h,
        "GET",
        f"/customnode/disabled_versions/{TEST_PACK_ID}",
        404,
        "not_found",
        route="/customnode/disabled_versions/{node_name}",
    )
    assert isinstance(call(h, "GET", "/customnode/alternatives?mode=cache"), dict)
    assert "offline" in call(h, "GET", "/manager/notice")


def test_write_routes_through_the_real_host(real_comfy: realhost.RealComfyUI) -> None:
    h = real_comfy
    assert call(h, "POST", "/manager/db_mode", {"value": "cache"})["ok"] is True
    assert call(h, "POST", "/manager/policy/update", {"value": "stable"})["ok"] is True
    coded(h, "POST", "/manager/channel_url_list", 400, "channel_invalid", {"value": "no-such-channel"})
    call(h, "POST", "/snapshot/save")
    name = call(h, "GET", "/snapshot/getlist")["items"][0]
    coded(h, "POST", "/snapshot/restore?target=no-such-snapshot", 404, "not_found")
    call(h, "POST", f"/snapshot/remove?target={name}")
    assert name not in call(h, "GET", "/snapshot/getlist")["items"]
    coded(h, "POST", "/customnode/import_fail_info", 404, "not_found", {"cnr_id": TEST_PACK_ID})
    assert call(h, "POST", "/customnode/import_fail_info_bulk", {"cnr_ids": [TEST_PACK_ID]}) == {TEST_PACK_ID: None}
    call(h, "POST", "/manager/queue/reset")
    call(h, "POST", "/manager/queue/start", status=(200, 201))
    coded(h, "POST", "/manager/queue/update_comfyui?client_id=c&ui_id=u", 501, "not_implemented")
    coded(
        h,
        "POST",
        "/comfyui_manager/comfyui_switch_version",
        501,
        "not_implemented",
        {"ver": "v0.3.64", "client_id": "c", "ui_id": "u"},
    )
    coded(
        h,
        "POST",
        "/manager/queue/install_model",
        404,
        "not_found",
        {
            "name": "x",
            "type": "checkpoint",
            "filename": "no-such-model.safetensors",
            "url": "http://x.invalid/m",
            "client_id": "c",
            "ui_id": "m1",
        },
    )
    coded(h, "POST", "/customnode/install/git_url", 403, "security_denied", {"url": "https://example.invalid/x.git"})
    coded(h, "POST", "/customnode/install/pip", 403, "security_denied", {"packages": "numpy"})
    coded(h, "POST", "/manager/queue/task", 400, "request_invalid", item("update-all", "u", {}, "c"))
    batch = call(h, "POST", "/manager/queue/batch", {"disable": [{"version": "nightly", "ui_id": "b-bad"}]})
    assert batch["failed"] == ["b-bad"] and batch["tasks"] == []


def test_the_frontend_task_flow_changes_the_disk(real_comfy: realhost.RealComfyUI) -> None:
    """install, disable, enable, uninstall: 4.x QueueTaskItems, queue/start, status, history."""
    h = real_comfy
    pack = h.custom_nodes / TEST_PACK_ID
    steps = [
        (
            "install",
            {
                "id": TEST_PACK_ID,
                "version": "nightly",
                "selected_version": "nightly",
                "mode": "cache",
                "channel": "dev",
                "repository": "",
            },
            lambda: (pack / "__init__.py").is_file(),
        ),
        ("disable", {"node_name": TEST_PACK_ID, "is_unknown": False}, lambda: not pack.exists()),
        ("enable", {"cnr_id": TEST_PACK_ID}, lambda: (pack / "__init__.py").is_file()),
        ("update", {"node_name": TEST_PACK_ID, "node_ver": "nightly"}, lambda: pack.is_dir()),
        ("uninstall", {"node_name": TEST_PACK_ID, "is_unknown": False}, lambda: not pack.exists()),
    ]
    for n, (kind, params, on_disk) in enumerate(steps):
        ui_id = f"flow-{h.version}-{n}-{kind}"
        queued = call(h, "POST", "/manager/queue/task", item(kind, ui_id, params, "flow-client"))
        assert queued["data"]["task"]["id"] == ui_id
        call(h, "POST", "/manager/queue/start", status=(200, 201))
        wait_idle(h, "flow-client")
        entry = call(h, "GET", f"/manager/queue/history?ui_id={ui_id}")["history"]
        assert entry["status"]["status_str"] == "success", entry
        assert on_disk(), (kind, sorted(p.name for p in h.custom_nodes.iterdir()))
        if kind == "disable":
            installed = call(h, "GET", "/customnode/installed")  # the frontend cuts keys at "@"
            assert [v["enabled"] for k, v in installed.items() if k.split("@")[0] == TEST_PACK_ID] == [False]
    history = call(h, "GET", "/manager/queue/history?client_id=flow-client")["history"]
    assert [e["kind"] for e in history.values()] == [k for k, _p, _d in steps]
    for _ in range(50):  # the record of the last batch is written once it ends
        ids = call(h, "GET", "/manager/queue/history_list")["ids"]
        if ids and any(
            op["operation_type"] == "uninstall"
            for op in call(h, "GET", f"/manager/queue/history?id={ids[0]}")["operations"]
        ):
            break
        time.sleep(0.2)
    assert (h.manager_dir / "batch_history" / f"{ids[0]}.json").is_file()
    update_all = call(h, "POST", "/manager/queue/update_all?client_id=flow-client&ui_id=ua&mode=cache")
    assert update_all["data"]["task"]["id"] == "ua"
    wait_idle(h, "flow-client", timeout=300)
    assert call(h, "GET", "/manager/queue/history?ui_id=ua")["history"]["status"]["status_str"] == "success"


async def _events(host: realhost.RealComfyUI, sid: str, pack: str) -> list[dict]:
    """Connect to ComfyUI's /ws as browser ``sid``, queue an install for that sid, collect."""
    seen: list[dict] = []
    url = host.base_url.replace("http://", "ws://") + f"/ws?clientId={sid}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        body = item(
            "install",
            f"ev-{host.version}",
            {"id": pack, "version": "nightly", "selected_version": "nightly", "mode": "cache", "channel": "dev"},
            sid,
        )
        status, _h, raw = await asyncio.to_thread(host.request, "POST", API + "/manager/queue/task", body)
        assert status == 200, raw[:300]
        await asyncio.to_thread(host.request, "POST", API + "/manager/queue/start")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            seen.append(data)
            if data.get("type") == "cm-queue-status" and data["data"].get("status") == "all-done":
                return seen
    raise AssertionError(f"no all-done; saw {[m.get('type') for m in seen]}")


def test_events_reach_the_browser_socket_through_send_sync(real_comfy: realhost.RealComfyUI) -> None:
    h = real_comfy
    CALLED[h.version].update({("POST", "/manager/queue/task"), ("POST", "/manager/queue/start")})
    seen = asyncio.run(_events(h, f"browser-{h.version.replace('.', '-')}", SECOND_PACK_ID))
    ours = [m for m in seen if m["type"] in ("cm-task-started", "cm-task-completed")]
    assert [m["type"] for m in ours] == ["cm-task-started", "cm-task-completed"]
    done = ours[1]["data"]
    assert done["ui_id"] == f"ev-{h.version}" and done["status"]["status_str"] == "success"
    assert done["state"]["installed_packs"][SECOND_PACK_ID]["enabled"] is True
    assert (h.custom_nodes / SECOND_PACK_ID / "__init__.py").is_file()
    call(
        h,
        "POST",
        "/manager/queue/task",
        item("uninstall", f"ev-rm-{h.version}", {"node_name": SECOND_PACK_ID}, "cleanup"),
    )
    call(h, "POST", "/manager/queue/start", status=(200, 201))
    wait_idle(h, "cleanup")


def test_a_script_written_for_4x_works_against_the_real_host(real_comfy: realhost.RealComfyUI) -> None:
    out = _script_written_for_4x(real_comfy.base_url, TEST_PACK_ID)
    CALLED[real_comfy.version].update(
        {
            ("POST", "/manager/queue/task"),
            ("POST", "/manager/queue/start"),
            ("GET", "/manager/queue/status"),
            ("GET", "/manager/queue/history"),
            ("GET", "/manager/queue/history_list"),
        }
    )
    assert out["history"]["script-1"]["status"]["status_str"] == "success"
    assert (real_comfy.custom_nodes / TEST_PACK_ID / "__init__.py").is_file()
    assert out["record"]["operations"][-1]["operation_id"] == "script-1"


def test_reboot_restarts_the_real_host_last(real_comfy: realhost.RealComfyUI) -> None:
    h = real_comfy
    before = len(realhost.READY_LINE.findall(h.log_text()))
    assert call(h, "POST", "/manager/reboot")["data"]["restarting"] is True
    deadline = time.monotonic() + 120  # it answers first, then re-executes itself
    while len(realhost.READY_LINE.findall(h.log_text())) <= before:
        assert time.monotonic() < deadline, "no second ready line after the reboot"
        time.sleep(0.2)
    h.wait_ready()
    assert call(h, "GET", "/manager/queue/history")["history"] == {}  # a new process, a new session
    missing = V2_PAIRS - CALLED[h.version]
    assert not missing, f"/v2 routes not exercised through ComfyUI {h.version}: {sorted(missing)}"
