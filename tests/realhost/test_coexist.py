"""Beside the other managers, in the real ComfyUI: one owner per route family, both panels, offline.

Beside the real classic ComfyUI-Manager 3.41 in ``custom_nodes/`` (0.8.0 and 0.3.64) and beside
the packaged ``comfyui-manager==4.3`` (0.8.0 with ``--enable-manager``; 0.3.64 has no such flag):
ComfyUI starts; a route family another manager answers is wholly its (a free pair of that
family is not ours either, so its clients never reach our queue); our log line and the panel's
status bar name each family's owner; both panels open in the page ComfyUI serves; our button is
told apart from the classic "Manager" by its label and accessible name. Connects outside
loopback are counted by strace and attributed: none comes from the ComfyUI process itself (where
our code runs); what the classic's prestartup does (pip for its missing requirements) is
recorded. Config sharing (docs/config.md, "Beside another manager") is proven at the end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.pages import ENTRY, open_panel, screenshot
from realhost.helpers import channel_env, keep_artifacts, need_host

from support import realhost
from support.realhost_env import HOST_VERSIONS

CLASSIC = "custom_nodes/ComfyUI-Manager-3.41"
PACKAGE = "comfyui_manager (installed package)"
OUR_FILE = "offline-manager.ini"
CLASSIC_OLD_CONFIG = "user/default/ComfyUI-Manager/config.ini"  # the classic's file on ComfyUI < 0.3.76
# the classic grid's header: "5,863 custom nodes" once its list is in
CLASSIC_COUNT = """() => { const m = document.body.innerText.match(/([\\d,]+) custom nodes/);
    const n = m ? parseInt(m[1].replace(/,/g, ''), 10) : 0; return n > 0 ? n : false; }"""


def status_routes(page: Any, expected: str) -> str:
    """The status bar's route owners once the status answer is in (it reads "ours" before)."""
    try:
        page.wait_for_function(
            "t => document.querySelector('[data-testid=status-routes]')?.textContent === t",
            arg=expected,
            timeout=20_000,
        )
    except Exception:  # the assertion below shows what it said instead
        pass
    return page.inner_text("[data-testid=status-routes]")


@pytest.fixture(scope="module", params=HOST_VERSIONS)
def classic_host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, channel_db: Path
) -> Iterator[realhost.RealComfyUI]:
    version = request.param
    need_host(version)
    tree = realhost.classic_manager_tree()
    if tree is None:
        pytest.skip("real-host tier did not run: no source for the classic ComfyUI-Manager 3.41")
    workdir = tmp_path_factory.mktemp(f"coexist-classic-{version}")
    env = channel_env(workdir, channel_db)
    # As a user of both would: our file:// channel in our own file (the classic cannot read a
    # file:// channel_url: its /customnode/getlist answers 500), config.ini left to the classic.
    # On 0.3.64 the classic keeps its own file (user/default/ComfyUI-Manager/): offline there too.
    files = {**own_file(env.settings), CLASSIC_OLD_CONFIG: "[default]\nnetwork_mode = offline\n"}
    host = realhost.start_comfyui(workdir, version, extra_nodes=[tree], files=files)
    host.extra["main_pid"] = main_pid(host)
    try:
        yield host
    finally:
        host.stop()
        keep_artifacts(host, f"coexist-classic-{version}")


@pytest.fixture(scope="module")
def packaged_host(tmp_path_factory: pytest.TempPathFactory, channel_db: Path) -> Iterator[realhost.RealComfyUI]:
    need_host("0.8.0", manager_package=True)
    workdir = tmp_path_factory.mktemp("coexist-packaged")
    env = channel_env(workdir, channel_db)
    host = realhost.start_comfyui(
        workdir, "0.8.0", manager_package=True, args=["--enable-manager"], files=own_file(env.settings)
    )
    host.extra["main_pid"] = main_pid(host)
    try:
        yield host
    finally:
        host.stop()
        keep_artifacts(host, "coexist-packaged-0.8.0")


# --- helpers ---------------------------------------------------------------------------------------
def own_file(settings: dict[str, str]) -> dict[str, str]:
    lines = ["[default]"] + [f"{k} = {v}" for k, v in settings.items()]
    return {f"user/__manager/{OUR_FILE}": "\n".join(lines) + "\n"}


def main_pid(host: realhost.RealComfyUI) -> int:
    """The ComfyUI process (strace's child): our code runs in it, the classic's pip does not."""
    assert host.proc is not None
    children = Path(f"/proc/{host.proc.pid}/task/{host.proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def connects_by_pid(host: realhost.RealComfyUI) -> dict[int, int]:
    out: dict[int, int] = {}
    for line in host.connects():
        pid = int(line.split()[0])
        out[pid] = out.get(pid, 0) + 1
    return out


def ready_lines(host: realhost.RealComfyUI) -> list[str]:
    return realhost.READY_LINE.findall(host.log_text())


def text(host: realhost.RealComfyUI, path: str) -> tuple[int, str]:
    status, _, body = host.request("GET", path)
    return status, body.decode("utf-8", "replace")


def our_config(host: realhost.RealComfyUI) -> dict[str, Any]:
    return host.get_json("/offline-manager/v1/config")["data"]


def setting(cfg: dict[str, Any], key: str) -> Any:
    return next(row["value"] for row in cfg["settings"] if row["key"] == key)


# --- beside the classic 3.41 -------------------------------------------------------------------------
def test_beside_the_classic_each_family_has_one_owner(classic_host: realhost.RealComfyUI) -> None:
    from manager import __version__

    ready = ready_lines(classic_host)
    assert len(ready) == 1, ready
    assert f"route owners: classic={CLASSIC}, offline-manager=offline-manager, v2=offline-manager;" in ready[0]
    assert re.search(r"\d+ already owned by another extension \(", ready[0]), ready[0]
    assert re.search(r", \d+ more left unmounted because their family belongs to another extension", ready[0])
    assert "Added route will never be executed" not in classic_host.log_text()  # aiohttp's duplicate error
    status = classic_host.get_json("/api/offline-manager/v1/status")["data"]
    assert status["route_owners"] == {"classic": CLASSIC, "offline-manager": "offline-manager", "v2": "offline-manager"}
    for prefix in ("", "/api"):
        assert text(classic_host, prefix + "/manager/version") == (200, "V3.41")  # the classic answers
        assert text(classic_host, prefix + "/v2/manager/version") == (200, f"V{__version__}")  # nobody else has /v2
    # a classic-family pair only we would serve (the classic JS's GET start) is not ours here
    status, _, body = classic_host.request("GET", "/api/manager/queue/start")
    assert status in (404, 405) and b'"ok"' not in body, (status, body[:200])
    assert classic_host.get_json("/api/offline-manager/health")["ok"] is True


def test_beside_the_classic_no_connect_comes_from_the_comfyui_process(classic_host: realhost.RealComfyUI) -> None:
    """Both managers offline. The classic's prestartup still runs pip for its missing requirements
    at every start (matrix-nio, GitPython...): those processes try DNS, which the namespace
    refuses. Our code runs in the ComfyUI process, whose own id made none (strace numbers threads
    by their own id; the same tree without the classic makes no connect at all: test_start)."""
    by_pid = connects_by_pid(classic_host)
    main = classic_host.extra["main_pid"]
    print(
        f"\n[coexist] ComfyUI {classic_host.version} beside the classic 3.41, both offline: "
        f"{sum(by_pid.values())} connect() outside loopback, by process {by_pid} (ComfyUI itself: pid {main})"
    )
    assert by_pid.get(main, 0) == 0
    if by_pid:
        assert "ComfyUI-Manager: installing dependencies" in classic_host.log_text()
    assert not any(re.search(r"= 0$", line) for line in classic_host.connects())  # none got through


def test_both_panels_open_and_the_buttons_are_told_apart(classic_host: realhost.RealComfyUI, page: Any) -> None:
    need_host(classic_host.version, browser=True)
    tag = f"coexist-classic-{classic_host.version}"
    open_panel(page, classic_host)
    entry = page.locator(ENTRY).first
    assert entry.inner_text().strip() == "Offline Manager"
    assert page.get_by_role("button", name="Offline Manager", exact=True).count() >= 1
    assert status_routes(page, f"classic: {CLASSIC}") == f"classic: {CLASSIC}"
    screenshot(page, f"{tag}-ours")
    page.evaluate("() => window.offlineManager.close()")

    classic = page.locator("button.comfyui-button", has_text=re.compile(r"^\s*Manager\s*$"))
    if classic.count() == 0:  # older frontends: the classic's old-style menu button
        classic = page.locator(".comfy-menu button", has_text=re.compile(r"^\s*Manager\s*$"))
    assert classic.count() >= 1
    name = classic.first.get_attribute("aria-label") or classic.first.get_attribute("title") or ""
    assert classic.first.inner_text().strip() == "Manager" and "Offline" not in name
    classic.first.click()
    page.get_by_text("Custom Nodes Manager", exact=True).first.click(timeout=30_000)
    page.wait_for_selector(".cn-manager .cn-manager-grid", state="visible", timeout=60_000)
    listed = page.wait_for_function(CLASSIC_COUNT, timeout=60_000).json_value()
    assert listed > 1000, listed  # the classic's own grid, from its data
    screenshot(page, f"{tag}-classic")


def test_beside_the_classic_our_changes_never_touch_its_config(classic_host: realhost.RealComfyUI) -> None:
    """Changes through our API land in our own file; the classic's keys stay as they were."""
    shared = classic_host.manager_dir / "config.ini"
    before = shared.read_bytes()
    status, _, body = classic_host.request(
        "POST", "/api/offline-manager/v1/config", {"changes": {"db_mode": "local", "share_option": "none"}}
    )
    assert status == 200, body
    status, _, body = classic_host.request("POST", "/api/offline-manager/v1/network", {"mode": "offline"})
    assert status == 200, body
    assert shared.read_bytes() == before
    own = (classic_host.manager_dir / OUR_FILE).read_text()
    assert "db_mode = local" in own and "share_option = none" in own and "network_mode = offline" in own
    cfg = our_config(classic_host)
    assert cfg["path"] == str(classic_host.manager_dir / OUR_FILE) and cfg["problems"] == []
    assert setting(cfg, "db_mode") == "local"
    assert text(classic_host, "/api/manager/db_mode") == (200, "cache")  # the classic's own value


def test_the_classic_bootstraps_its_config_and_still_reads_it_after_our_writes(
    classic_host: realhost.RealComfyUI,
) -> None:
    """0.8.0 (where both use user/__manager/config.ini): the classic writes a fresh config.ini;
    we read it beneath our file, write only ours, and the classic starts again on its own values."""
    if classic_host.version != "0.8.0":
        classic = classic_host.root / CLASSIC_OLD_CONFIG
        print(
            f"\n[coexist] ComfyUI {classic_host.version}: the classic keeps its config at {classic} "
            f"(exists: {classic.exists()}); ours is user/__manager: no file is shared"
        )
        assert classic.exists() and "db_mode = local" not in classic.read_text()
        return
    shared = classic_host.manager_dir / "config.ini"
    assert classic_host.request("POST", "/api/offline-manager/v1/network", {"mode": "offline"})[0] == 200
    classic_host.stop()
    shared.unlink()
    classic_host.restart()
    classic_host.extra["main_pid"] = main_pid(classic_host)
    written = shared.read_text()
    assert "security_level = normal" in written and "network_mode = public" in written  # the classic's bootstrap
    cfg = our_config(classic_host)
    assert cfg["problems"] == [] and setting(cfg, "network_mode") == "offline"  # ours, from our file
    assert any("never written here" in note for note in cfg["notes"])
    before = shared.read_bytes()
    assert (
        classic_host.request(
            "POST", "/api/offline-manager/v1/config", {"changes": {"update_policy": "nightly-comfyui"}}
        )[0]
        == 200
    )
    assert shared.read_bytes() == before
    assert text(classic_host, "/api/manager/policy/update") == (200, "stable-comfyui")
    assert classic_host.log_text().count("[ComfyUI-Manager] network_mode: public") == 1
    print(
        f"\n[coexist] after the classic's bootstrap (its default, public mode): connect() outside loopback "
        f"by process {connects_by_pid(classic_host)} (ComfyUI itself: pid {classic_host.extra['main_pid']})"
    )


# --- beside the packaged 4.3 -------------------------------------------------------------------------
def test_beside_the_packaged_manager_v2_is_its_and_the_rest_ours(packaged_host: realhost.RealComfyUI) -> None:
    from manager import __version__

    ready = ready_lines(packaged_host)
    assert len(ready) == 1, ready
    assert f"route owners: classic=offline-manager, offline-manager=offline-manager, v2={PACKAGE};" in ready[0]
    assert f"the frontend's manager UI is served by {PACKAGE}" in ready[0]
    status = packaged_host.get_json("/api/offline-manager/v1/status")["data"]
    assert status["route_owners"] == {"classic": "offline-manager", "offline-manager": "offline-manager", "v2": PACKAGE}
    assert text(packaged_host, "/api/v2/manager/version") == (200, "V4.3")
    assert text(packaged_host, "/api/manager/version") == (200, f"V{__version__}")
    # a /v2 pair the package's server lacks (a 4.x legacy-UI route we serve alone) is not ours here
    assert packaged_host.request("GET", "/api/v2/customnode/getlist?mode=cache")[0] == 404
    flags = packaged_host.get_json("/features")["extension"]["manager"]
    assert flags == {"supports_v4": True, "supports_csrf_post": True}  # the package's own
    assert packaged_host.connects() == []


def test_beside_the_packaged_manager_both_panels_open(packaged_host: realhost.RealComfyUI, page: Any) -> None:
    need_host("0.8.0", manager_package=True, browser=True)
    open_panel(page, packaged_host)
    assert page.locator(ENTRY).first.inner_text().strip() == "Offline Manager"
    assert status_routes(page, f"v2: {PACKAGE}") == f"v2: {PACKAGE}"
    screenshot(page, "coexist-packaged-ours")
    page.evaluate("() => window.offlineManager.close()")
    answered: list[tuple[int, str]] = []
    page.on("response", lambda r: answered.append((r.status, r.url)) if "/api/v2/" in r.url else None)
    builtin = page.get_by_role("button", name="Custom Nodes Manager")
    assert builtin.count() == 1 and "Offline" not in (builtin.get_attribute("aria-label") or "")
    builtin.click()
    page.get_by_text("Discover community-made Node Packs", exact=False).wait_for(timeout=30_000)
    page.wait_for_timeout(1500)
    assert any(u.endswith("/api/v2/customnode/installed") and s == 200 for s, u in answered), answered
    screenshot(page, "coexist-packaged-builtin")


def test_beside_the_packaged_manager_we_read_its_config_and_never_write_it(packaged_host: realhost.RealComfyUI) -> None:
    """4.3 bootstraps config.ini with keys of its own; we read it beneath our file, untouched."""
    shared = packaged_host.manager_dir / "config.ini"
    packaged_host.stop()
    shared.unlink()
    packaged_host.restart()
    written = shared.read_text()
    assert "use_unified_resolver" in written and "allow_flagged_nodepack_install" in written
    cfg = our_config(packaged_host)
    assert cfg["problems"] == [] and setting(cfg, "network_mode") == "offline"
    assert sum("is not a setting of this Manager" in note for note in cfg["notes"]) == 3
    before = shared.read_bytes()
    status, _, body = packaged_host.request("POST", "/api/offline-manager/v1/config", {"changes": {"db_mode": "local"}})
    assert status == 200, body
    assert shared.read_bytes() == before
    assert json.loads(body)["data"]["path"] == str(packaged_host.manager_dir / OUR_FILE)
    assert text(packaged_host, "/api/v2/manager/db_mode") == (200, "cache")  # 4.3's own value
