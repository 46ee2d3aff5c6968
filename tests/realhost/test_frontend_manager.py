"""The frontend's built-in manager UI on our /v2 routes (ComfyUI 0.8.0 with --enable-manager, no
packaged manager installed).

What the real host shows: ComfyUI warns that ``comfyui_manager`` is missing and turns its own
manager off, but ``--enable-manager`` stays in ``system_stats`` argv and the core flags say
``supports_v4``, so frontend 1.35.9 shows its "Custom Nodes Manager" button and dialog; we add
``supports_csrf_post`` (which later frontends require) and the GET forms 1.35.9 sends. The
dialog lists packs from api.comfy.org and Algolia in the browser: offline it stays empty (only
its request for the installed map reaches the server). Its actions run the frontend's manager
store, the code its Install/Uninstall buttons call, so the test calls that store: the task goes
through our /v2 routes, policy, queue and audit log, and the pack lands on disk from the local
file:// channel. ComfyUI 0.3.64 has no ``--enable-manager`` flag at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.pages import ENTRY, TEST_PACK_ID, screenshot
from realhost.helpers import channel_host, need_host, start_or_skip

from support import realhost

STORE = """() => {
    const app = document.querySelector('#vue-app')?.__vue_app__;
    const pinia = app && app.config.globalProperties.$pinia;
    return pinia ? pinia._s.get('comfyManager') : null;
}"""


@pytest.fixture(scope="module")
def enabled_host(tmp_path_factory: pytest.TempPathFactory, channel_db: Path) -> Iterator[realhost.RealComfyUI]:
    need_host("0.8.0")
    with channel_host(
        tmp_path_factory.mktemp("frontend-manager"),
        channel_db,
        "0.8.0",
        "frontend-manager-0.8.0",
        args=["--enable-manager"],
    ) as host:
        yield host


def _audit(host: realhost.RealComfyUI) -> list[dict[str, Any]]:
    path = host.manager_dir / "logs" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_comfyui_turns_its_manager_off_but_the_frontend_is_told_to_use_ours(enabled_host: realhost.RealComfyUI) -> None:
    log = enabled_host.log_text()
    assert "pip install --pre comfyui_manager" in log  # ComfyUI's own warning: no package
    assert "--enable-manager" in enabled_host.get_json("/system_stats")["system"]["argv"]
    ready = realhost.READY_LINE.findall(log)
    assert len(ready) == 1 and "v2=offline-manager" in ready[0]
    assert "the frontend's manager UI uses our /v2 routes (supports_csrf_post set, 3 GET variant(s)" in ready[0]
    for path in ("/features", "/api/features"):
        assert enabled_host.get_json(path)["extension"]["manager"] == {"supports_v4": True, "supports_csrf_post": True}
    assert enabled_host.get_json("/api/v2/manager/is_legacy_manager_ui") == {"is_legacy_manager_ui": False}


def test_a_get_start_from_another_site_is_refused_like_the_post(enabled_host: realhost.RealComfyUI) -> None:
    # no Origin header, so ComfyUI's own origin check lets it through: ours must refuse it
    status, _, body = enabled_host.request(
        "GET", "/api/v2/manager/queue/start", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert status == 403, body
    assert json.loads(body)["ok"] is False


def test_the_builtin_dialog_opens_and_its_actions_run_through_our_v2_routes(
    enabled_host: realhost.RealComfyUI, page: Any
) -> None:
    need_host("0.8.0", browser=True)
    env = enabled_host.extra["env_panel"]
    seen: list[tuple[str, str, int]] = []
    page.on(
        "response",
        lambda r: (
            seen.append((r.request.method, r.url.split("/api", 1)[-1], r.status)) if "/api/v2/" in r.url else None
        ),
    )
    page.goto(enabled_host.url("/"))
    page.locator(ENTRY).first.wait_for(timeout=60_000)
    builtin = page.get_by_role("button", name="Custom Nodes Manager")
    assert builtin.count() == 1
    with page.expect_response(lambda r: r.url.endswith("/api/v2/customnode/installed")) as answer:
        builtin.click()
    assert answer.value.status == 200 and "offline-manager" in answer.value.json()
    page.get_by_text("Discover community-made Node Packs", exact=False).wait_for(timeout=30_000)
    screenshot(page, "frontend-manager-dialog")
    assert page.evaluate(f"() => !!({STORE})()")
    assert page.evaluate(f"() => ({STORE})().isPackInstalled('comfyui-offline-manager')")

    # the store action behind the dialog's Install button (its cards come from the registry online)
    page.evaluate(
        f"""([id, repo]) => {{ ({STORE})().installPack.call({{id, repository: repo, channel: 'dev',
        mode: 'cache', selected_version: 'nightly', version: 'nightly'}}); }}""",
        [TEST_PACK_ID, env.repo_url],
    )
    page.wait_for_function(f"id => ({STORE})().isPackInstalled(id)", arg=TEST_PACK_ID, timeout=90_000)
    assert (enabled_host.custom_nodes / TEST_PACK_ID / "__init__.py").is_file()
    history = page.evaluate(f"() => Object.values(({STORE})().taskHistory).map(t => t.status?.status_str)")
    assert "success" in history, history
    screenshot(page, "frontend-manager-installed")

    page.evaluate(f"id => {{ ({STORE})().uninstallPack({{id}}); }}", TEST_PACK_ID)
    page.wait_for_function(f"id => !({STORE})().isPackInstalled(id)", arg=TEST_PACK_ID, timeout=90_000)
    assert not (enabled_host.custom_nodes / TEST_PACK_ID).exists()

    calls = {(m, p.split("?", 1)[0]) for m, p, s in seen if s in (200, 201)}  # 201: already running
    assert {("POST", "/v2/manager/queue/task"), ("GET", "/v2/manager/queue/start")} <= calls, seen
    routes = {(e.get("method"), e.get("route"), e.get("status")) for e in _audit(enabled_host)}
    assert ("POST", "/v2/manager/queue/task", 200) in routes
    assert routes & {("GET", "/v2/manager/queue/start", 200), ("GET", "/v2/manager/queue/start", 201)}
    assert enabled_host.connects() == []


def test_comfyui_0364_has_no_enable_manager_flag(workdir: Path) -> None:
    with pytest.raises(realhost.HostDidNotStart) as refused:
        start_or_skip(workdir, "0.3.64", args=["--enable-manager"])
    assert "unrecognized arguments: --enable-manager" in str(refused.value)
