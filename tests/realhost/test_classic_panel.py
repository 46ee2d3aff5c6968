"""The classic ComfyUI-Manager 3.41 panel's own JS drives our routes in the page the real ComfyUI serves.

Users of the classic manager keep its panel, scripts and habits: a client written for it must
work against us unchanged. The classic ``js/`` folder (copied at test time from the classic
3.41 source; never kept in this repository) is served as a plain web extension with none of the
classic Python, so every request it makes reaches our routes. In headless Chromium a user opens
its "Manager" dialog and "Custom Nodes Manager", sees the whole channel in its grid, searches,
then installs the test pack (a local git repo) by clicks in the grid, disables, enables and
uninstalls it. Each step is confirmed on disk, and after each one the user does what the classic
UI asks: "Restart", confirm the reboot, wait for ComfyUI to come back, confirm the refresh.
Every request the classic JS sent is recorded; none may fail.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser.pages import ARTIFACTS, SECOND_PACK_ID, TEST_PACK_ID, screenshot
from realhost.helpers import channel_host, need_host

from support import realhost
from support.realhost_env import HOST_VERSIONS

FOLDER = "classic-panel-js"
SCRIPT_MARK = f"/extensions/{FOLDER}/"
# The classic route families (bare or under /api); our own panel uses /offline-manager/v1 only.
CLASSIC_PATH = re.compile(r"^(/api)?/(manager|customnode|snapshot|externalmodel|comfyui_manager)(/|$)")
GRID_STATUS = re.compile(r"^([\d,]+) custom nodes$")
OP_TIMEOUT = 120_000
# What the classic panel shows when a request failed: ComfyUI's message dialog (show_message)
# or the grid's message line (showError).
SHOWN_ERROR = """(() => {
    const shown = [...document.querySelectorAll('.comfy-modal')].filter(e => getComputedStyle(e).display !== 'none')
        .map(e => e.innerText);
    shown.push(document.querySelector('#cn-manager-dialog .cn-manager-message')?.innerText || '');
    return shown.find(t => /error|failed|not allowed/i.test(t)) || '';
})()"""


def classic_panel_folder(workdir: Path) -> Path:
    """custom_nodes/classic-panel-js: the classic js/ and an __init__ that only serves it."""
    tree = realhost.classic_manager_tree()
    if tree is None or not (tree / "js" / "custom-nodes-manager.js").is_file():
        pytest.skip("real-host tier did not run: no classic ComfyUI-Manager 3.41 source in ../shared/hosts/")
    folder = workdir / FOLDER
    shutil.copytree(tree / "js", folder / "js")
    (folder / "__init__.py").write_text('WEB_DIRECTORY = "./js"\nNODE_CLASS_MAPPINGS = {}\n', encoding="utf-8")
    return folder


@pytest.fixture(scope="module", params=HOST_VERSIONS)
def classic_host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, channel_db: Path
) -> Iterator[realhost.RealComfyUI]:
    """The real ComfyUI, offline, with us (default install) and the classic panel's JS beside us."""
    version = request.param
    need_host(version, browser=True)
    workdir = tmp_path_factory.mktemp(f"classic-panel-{version}")
    with channel_host(
        workdir, channel_db, version, f"classic-panel-{version}", extra_nodes=[classic_panel_folder(workdir)]
    ) as host:
        yield host


# --- what the page asked of the server ------------------------------------------------------------
@dataclass
class Call:
    method: str
    path: str
    initiator_classic: bool
    content_type: str = ""
    status: int | None = None
    failed: str = ""

    @property
    def classic(self) -> bool:
        return self.initiator_classic or bool(CLASSIC_PATH.match(urlsplit(self.path).path))

    def __str__(self) -> str:
        outcome = self.status if self.status is not None else f"failed: {self.failed or 'no answer'}"
        sent = f" ({self.content_type})" if self.content_type else ""
        return f"{self.method} {self.path}{sent} -> {outcome}"


@dataclass
class Recorder:
    """Every request of the page to the server, seen through the DevTools protocol so that the
    script that sent it (its initiator stack, async parents included) is known."""

    base: str
    calls: dict[str, Call] = field(default_factory=dict)

    def attach(self, page: Any) -> None:
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.responseReceived", self._answered)
        cdp.on("Network.loadingFailed", self._failed)
        cdp.send("Runtime.enable")
        cdp.send("Runtime.setAsyncCallStackDepth", {"maxDepth": 32})  # fetchApi is async: keep its caller
        cdp.send("Network.enable")

    def _sent(self, ev: dict[str, Any]) -> None:
        url = ev["request"]["url"]
        if not url.startswith(self.base) or ev.get("type") == "WebSocket":
            return
        headers = {k.lower(): v for k, v in ev["request"].get("headers", {}).items()}
        self.calls[ev["requestId"]] = Call(
            ev["request"]["method"],
            url[len(self.base) :],
            SCRIPT_MARK in json.dumps(ev.get("initiator", {})),
            headers.get("content-type", ""),
        )

    def _answered(self, ev: dict[str, Any]) -> None:
        if ev["requestId"] in self.calls:
            self.calls[ev["requestId"]].status = ev["response"]["status"]

    def _failed(self, ev: dict[str, Any]) -> None:
        if ev["requestId"] in self.calls:
            self.calls[ev["requestId"]].failed = ev.get("errorText", "failed")

    def classic(self) -> list[Call]:
        return [c for c in self.calls.values() if c.classic]

    def failures(self) -> str:
        bad = [str(c) for c in self.classic() if c.failed or (c.status or 0) >= 400]
        return "\n".join(bad) or "(none)"


# --- the classic panel, as a user drives it ---------------------------------------------------------
class ClassicPanel:
    def __init__(self, page: Any, host: realhost.RealComfyUI, tag: str, recorder: Recorder) -> None:
        self.page, self.host, self.tag, self.recorder = page, host, tag, recorder
        self.alerts: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._native_dialog)
        page.on("pageerror", lambda exc: self.errors.append(f"{exc}\n{getattr(exc, 'stack', '')}"))

    def _native_dialog(self, dialog: Any) -> None:
        # customAlert/customConfirm fall back to window.alert/confirm only when ComfyUI's own
        # dialogs are missing; a message here is an error the user would see.
        self.alerts.append(dialog.message)
        dialog.dismiss()

    def until(self, condition: str, what: str) -> None:
        """Wait for ``condition`` (JS); fail at once, with the failed requests, if the panel shows an error."""
        try:
            self.page.wait_for_function(f"() => ({condition}) || !!{SHOWN_ERROR}", timeout=OP_TIMEOUT)
        except Exception as exc:
            pytest.fail(f"{what}: not seen ({exc}); failed requests:\n{self.recorder.failures()}")
        shown = self.page.evaluate(f"() => {SHOWN_ERROR}")
        assert not shown, f"{what}: the classic panel shows {shown!r}; failed requests:\n{self.recorder.failures()}"

    def shot(self, step: str) -> None:
        screenshot(self.page, f"classic-panel-{self.tag}-{step}")

    def open_grid(self) -> tuple[int, float]:
        """Click "Manager" then "Custom Nodes Manager"; the grid's own count and seconds to rows."""
        self.page.get_by_role("button", name="ComfyUI Manager", exact=True).click(timeout=60_000)
        self.page.locator("#cm-manager-dialog").get_by_role("button", name="Custom Nodes Manager").click()
        t0 = time.monotonic()
        status = self.page.locator("#cn-manager-dialog .cn-manager-status")
        self.until(
            "/^[\\d,]+ custom nodes$/.test(document.querySelector('#cn-manager-dialog .cn-manager-status')"
            "?.textContent || '')",
            "the grid's rows",
        )
        seconds = time.monotonic() - t0
        self.page.locator("#cn-manager-dialog .tg-row").first.wait_for()
        found = GRID_STATUS.match(status.inner_text().strip())
        assert found, status.inner_text()
        return int(found.group(1).replace(",", "")), seconds

    def search(self, text: str) -> tuple[int, float]:
        status = "#cn-manager-dialog .cn-manager-status"
        before = self.page.inner_text(status)
        t0 = time.monotonic()
        self.page.fill("#cn-manager-dialog .cn-manager-keywords", text)
        # the grid filters on the input event, then rewrites its count
        self.page.wait_for_function(
            "([sel, before]) => document.querySelector(sel).textContent !== before", arg=[status, before]
        )
        seconds = time.monotonic() - t0
        found = GRID_STATUS.match(self.page.inner_text(status).strip())
        assert found, self.page.inner_text(status)
        return int(found.group(1).replace(",", "")), seconds

    def row(self, pack_id: str) -> Any:
        """The grid row (both panes: the frozen ID pane and the columns pane) of ``pack_id``."""
        title = self.page.locator("#cn-manager-dialog .tg-row", has=self.page.locator(f'a[title="{pack_id}"]'))
        title.first.wait_for()
        return self.page.locator(f'#cn-manager-dialog .tg-row[row="{title.first.get_attribute("row")}"]')

    def buttons(self, pack_id: str) -> list[str]:
        return [b.strip() for b in self.row(pack_id).locator("button[mode]").all_inner_texts()]

    def click(self, pack_id: str, mode: str) -> None:
        self.row(pack_id).locator(f'button[mode="{mode}"]').click()

    def confirm(self, text: str) -> None:
        """Answer "Confirm" in ComfyUI's confirm dialog that says ``text``."""
        dialog = self.page.get_by_role("dialog").filter(has_text=text)
        dialog.wait_for(timeout=OP_TIMEOUT)
        dialog.get_by_role("button", name="Confirm").click()
        dialog.wait_for(state="detached")

    def pick_version_if_asked(self) -> list[str]:
        """The classic asks for a version (its "Select Version" dialog) for packs it takes for
        registry packs; a user keeps the one offered first and clicks Select."""
        select = self.page.get_by_role("button", name="Select", exact=True)
        try:
            select.wait_for(timeout=5_000)
        except Exception:
            return []
        offered = self.page.locator("select[multiple] option").all_inner_texts()
        select.click()
        return offered

    def wait_done(self, pack_id: str) -> None:
        """The task ran: the row says "Restart Required" and the footer offers "Restart"."""
        self.until(
            "getComputedStyle(document.querySelector('#cn-manager-dialog .cn-manager-restart')).display !== 'none'",
            f"the task on {pack_id}",
        )
        self.row(pack_id).filter(has_text="Restart Required").first.wait_for(timeout=OP_TIMEOUT)

    def restart_and_refresh(self) -> float:
        """What the classic UI asks after each task: Restart, confirm, wait, confirm the refresh."""
        starts = self.host.log_text().count("Starting server")
        t0 = time.monotonic()
        self.page.locator("#cn-manager-dialog .cn-manager-restart").click()
        self.confirm("reboot the server")
        refresh = self.page.get_by_role("dialog").filter(has_text="refresh the browser")
        refresh.wait_for(timeout=OP_TIMEOUT)  # asked once ComfyUI's socket reconnects
        with self.page.expect_navigation(timeout=60_000):
            refresh.get_by_role("button", name="Confirm").click()
        self.page.get_by_role("button", name="ComfyUI Manager", exact=True).wait_for(timeout=60_000)
        assert self.host.alive()
        assert self.host.log_text().count("Starting server") == starts + 1, "ComfyUI did not restart"
        return time.monotonic() - t0


def _on_disk(host: realhost.RealComfyUI) -> tuple[list[str], list[str]]:
    """The test pack's folders: (active in custom_nodes/, parked in custom_nodes/.disabled/)."""

    def ours(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir() if p.name.lower().startswith("panel")) if folder.is_dir() else []

    return ours(host.custom_nodes), ours(host.custom_nodes / ".disabled")


def test_the_classic_panel_installs_disables_enables_and_uninstalls_through_our_routes(
    classic_host: realhost.RealComfyUI, page: Any
) -> None:
    host = classic_host
    tag = host.version
    recorder = Recorder(host.base_url)
    recorder.attach(page)
    ui = ClassicPanel(page, host, tag, recorder)
    timings: dict[str, Any] = {"version": host.version}
    page.goto(host.url("/"))

    # the grid lists the whole channel: our getlist, keyed as the classic keys it
    total, timings["click_to_rows_s"] = ui.open_grid()
    listed = host.get_json("/customnode/getlist?mode=cache&skip_update=true")["node_packs"]
    entries = json.loads((host.extra["env_panel"].channel / "custom-node-list.json").read_text())["custom_nodes"]
    assert total == len(listed)
    assert len({e["reference"] for e in entries}) <= total <= len(entries), (total, len(entries))
    assert {TEST_PACK_ID, SECOND_PACK_ID} <= set(listed)
    ui.shot("grid")

    shown, timings["search_s"] = ui.search("panel test pack")
    assert shown == 2  # both test packs, nothing else
    assert ui.buttons(TEST_PACK_ID) == ["Install"]
    ui.shot("search")

    # install from the local git repo
    ui.click(TEST_PACK_ID, "install")
    ui.wait_done(TEST_PACK_ID)
    active, parked = _on_disk(host)
    assert active == [TEST_PACK_ID] and parked == []
    assert (host.custom_nodes / TEST_PACK_ID / "__init__.py").is_file()
    assert (host.custom_nodes / TEST_PACK_ID / ".git").is_dir()  # a clone of the local source
    ui.shot("installed")
    timings["restart_s"] = [ui.restart_and_refresh()]

    ui.open_grid()
    ui.search("panel test pack")
    assert "Disable" in ui.buttons(TEST_PACK_ID) and "Uninstall" in ui.buttons(TEST_PACK_ID)
    ui.click(TEST_PACK_ID, "disable")
    ui.wait_done(TEST_PACK_ID)
    active, parked = _on_disk(host)
    assert active == [] and len(parked) == 1  # our disabled layout: parked under .disabled/
    assert (host.custom_nodes / ".disabled" / parked[0] / "__init__.py").is_file()
    ui.shot("disabled")
    timings["restart_s"].append(ui.restart_and_refresh())

    ui.open_grid()
    ui.search("panel test pack")
    assert "Enable" in ui.buttons(TEST_PACK_ID)
    ui.click(TEST_PACK_ID, "enable")
    timings["enable_version_choices"] = ui.pick_version_if_asked()
    ui.wait_done(TEST_PACK_ID)
    assert _on_disk(host) == ([TEST_PACK_ID], [])
    ui.shot("enabled")
    timings["restart_s"].append(ui.restart_and_refresh())

    ui.open_grid()
    ui.search("panel test pack")
    ui.click(TEST_PACK_ID, "uninstall")
    ui.confirm("Are you sure uninstall")
    ui.wait_done(TEST_PACK_ID)
    assert _on_disk(host) == ([], [])
    ui.shot("uninstalled")
    timings["restart_s"].append(ui.restart_and_refresh())

    ui.open_grid()
    ui.search("panel test pack")
    assert ui.buttons(TEST_PACK_ID) == ["Install"]  # the grid agrees with the disk
    ui.shot("after")

    report = ARTIFACTS / "realhost" / f"classic-panel-{tag}-requests.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    calls = recorder.classic()
    report.write_text(
        json.dumps(
            {"timings": timings, "calls": [str(c) for c in calls], "page_errors": ui.errors, "alerts": ui.alerts},
            indent=1,
        ),
        encoding="utf-8",
    )
    print(
        f"\nclassic panel on ComfyUI {tag}: grid showed {total:,} rows {timings['click_to_rows_s']:.2f} s after "
        f"the click; search {timings['search_s']:.2f} s; restarts "
        + ", ".join(f"{s:.1f}" for s in timings["restart_s"])
        + " s"
    )

    # every request of the classic JS was answered, and none with an error
    bad = [str(c) for c in calls if c.status is None or c.status >= 400]
    assert not bad, "classic panel requests that failed:\n" + "\n".join(bad)
    sent_as_text = [c for c in calls if c.method == "POST" and c.path.endswith("/manager/queue/install")]
    assert sent_as_text and all(c.content_type.startswith("text/plain") and c.status == 200 for c in sent_as_text)
    assert any(c.path.endswith("/manager/reboot") and c.status == 200 for c in calls)
    assert ui.alerts == [], ui.alerts
    ours = [e for e in ui.errors if SCRIPT_MARK in e or "/extensions/offline-manager/" in e]
    assert ours == [], ours


def test_no_connect_outside_loopback_while_the_classic_panel_was_used(classic_host: realhost.RealComfyUI) -> None:
    assert classic_host.alive()
    assert classic_host.connects() == []
