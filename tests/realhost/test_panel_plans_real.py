"""The panel's confirm step, undo button and trash view in the page the real ComfyUI serves
(0.8.0 and 0.3.64: the module runs once per host).

One real ComfyUI per host (offline, a file:// channel with packs backed by local git repos, a local
wheelhouse) for the module. A user clicks Install and sees the server's plan before anything
runs: the pack added and the Python package its requirements.txt would add; ticks "without
dependencies" and sees that package left out; Run installs the pack alone. Undo in the pack's
drawer puts the pack into the trash; an uninstall (one confirm, with its plan) and Restore in
the Trash tab bring a pack back. A plan that downgrades a package and asks for a blacklisted
one shows both rows highlighted (and is cancelled: the host's python is the tier's shared,
cached environment, which no test of this module changes). Each step is checked on disk;
screenshots go to artifacts/.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.pages import (
    PLAN_DIALOG,
    SECOND_PACK_ID,
    TEST_PACK_ID,
    make_plain_repo,
    open_panel,
    pack_row,
    run_plan,
    screenshot,
    search,
)
from realhost.helpers import browser_host_work, stopped_after

from support import realhost
from support.gitrepos import git
from support.realhost_env import HOST_VERSIONS
from support.wheels import build_wheel

DEPS_PACK_ID = "plan-deps-pack"
DEP = "om-plan-dep"
DOWN_PACK_ID = "plan-downgrade-pack"
DOWN = "tqdm"  # in both hosts' environments at a 4.x version; the wheelhouse has an older one
BLACK = "om-plan-black"
TRASH = ".cm-trash.disabled"


@pytest.fixture(scope="module", params=HOST_VERSIONS)
def host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, channel_db: Path
) -> Iterator[realhost.RealComfyUI]:
    version, work, env = browser_host_work(request, tmp_path_factory, channel_db, "plans-real")
    for pack_id, title, reqs in (
        (DEPS_PACK_ID, "Plan Deps Pack", f"{DEP}==1.0\n"),
        (DOWN_PACK_ID, "Plan Downgrade Pack", f"{DOWN}==0.0.1\n{BLACK}==1.0\n"),
    ):
        url = make_plain_repo(work / "repos" / pack_id, name=pack_id)
        repo = work / "repos" / pack_id
        (repo / "requirements.txt").write_text(reqs)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "needs python packages")
        env.add_pack(
            {
                "author": "realhost-tests",
                "title": title,
                "id": pack_id,
                "reference": url,
                "files": [url],
                "install_type": "git-clone",
                "description": "A pack whose requirements.txt asks for packages of the local wheelhouse.",
            }
        )
    wheelhouse = work / "wheelhouse"
    for name, v in ((DEP, "1.0"), (DOWN, "0.0.1"), (BLACK, "1.0")):
        build_wheel(wheelhouse, name, v)
    h = realhost.start_comfyui(
        work,
        version,
        config={**env.settings, "wheelhouse_dirs": str(wheelhouse)},
        files={"user/__manager/pip_blacklist.list": f"{BLACK}\n"},
    )
    h.extra["version"] = version
    with stopped_after(h, f"test_panel_plans_real-{version}"):
        yield h


def _wait_state(page: Any, pack_id: str, state: str, timeout: float = 90_000) -> None:
    page.wait_for_function(
        """([id, state]) => { const r = document.querySelector(`.om-pack-row[data-pack-id="${id}"]:not([hidden])`);
            const b = r && r.querySelector('.om-state');
            return !!b && (state === 'not-installed' ? b.hidden : !b.hidden && b.textContent.startsWith(state)); }""",
        arg=[pack_id, state],
        timeout=timeout,
    )


def _installed(host: realhost.RealComfyUI, pack_id: str) -> bool:
    return (host.custom_nodes / pack_id / "__init__.py").is_file()


def _trashed(host: realhost.RealComfyUI, pack_id: str) -> bool:
    trash = host.custom_nodes / TRASH
    return trash.is_dir() and any(pack_id in p.name for p in trash.rglob("*") if p.is_dir())


def _has_dist(host: realhost.RealComfyUI, name: str) -> bool:
    code = (
        f"import importlib.metadata as m\ntry: m.version({name!r})\nexcept m.PackageNotFoundError: raise SystemExit(1)"
    )
    return subprocess.run([str(host.python), "-c", code], capture_output=True, timeout=60).returncode == 0


def _open(page: Any, host: realhost.RealComfyUI, query: str) -> None:
    open_panel(page, host)
    search(page, query)


def test_install_shows_the_plan_and_runs_without_dependencies(host: realhost.RealComfyUI, page: Any) -> None:
    _open(page, host, "plan deps pack")
    pack_row(page, DEPS_PACK_ID).get_by_role("button", name="Install").click()
    dialog = page.locator(PLAN_DIALOG)
    dialog.wait_for()  # opens at once, planning
    page.wait_for_selector(f"{PLAN_DIALOG}:not([data-state=planning])", timeout=90_000)
    packs = dialog.locator("[data-testid=plan-packs]")
    assert DEPS_PACK_ID in packs.locator("li[data-change=added]").inner_text(), dialog.inner_text()
    python = dialog.locator("[data-testid=plan-python] li[data-change=added]")
    assert DEP in python.inner_text(), dialog.inner_text()
    assert page.locator("[data-testid=plan-run]").is_enabled()
    screenshot(page, f"realhost-plan-install-{host.extra['version']}")

    page.locator("[data-testid=plan-skip-deps]").check()
    page.wait_for_selector(f"{PLAN_DIALOG}:not([data-state=planning])", timeout=90_000)
    assert dialog.locator("[data-testid=plan-python]").count() == 0
    assert DEP in dialog.locator("[data-testid=plan-left-out]").inner_text(), dialog.inner_text()
    screenshot(page, f"realhost-plan-install-without-deps-{host.extra['version']}")
    run_plan(page)
    _wait_state(page, DEPS_PACK_ID, "enabled")
    assert _installed(host, DEPS_PACK_ID)
    assert not _has_dist(host, DEP)  # without dependencies: the wheel was not installed
    screenshot(page, f"realhost-plan-installed-{host.extra['version']}")


def test_undo_button_puts_an_install_into_the_trash(host: realhost.RealComfyUI, page: Any) -> None:
    _open(page, host, "panel test pack")
    row = pack_row(page, TEST_PACK_ID)
    row.get_by_role("button", name="Install").click()
    run_plan(page)
    _wait_state(page, TEST_PACK_ID, "enabled")
    assert _installed(host, TEST_PACK_ID)
    row.locator(".om-row-title").click()
    undo = page.locator("[data-testid=pack-drawer] [data-undo-task]")
    undo.wait_for(timeout=60_000)
    screenshot(page, f"realhost-undo-button-{host.extra['version']}")
    undo.click()
    page.wait_for_selector(f"{PLAN_DIALOG}:not([data-state=planning])", timeout=60_000)
    step = page.locator(f"{PLAN_DIALOG} [data-testid=plan-packs] li[data-change=uninstall]")
    assert TEST_PACK_ID in step.inner_text()  # the undo's plan first: the pack goes to the trash
    screenshot(page, f"realhost-plan-undo-{host.extra['version']}")
    run_plan(page)
    _wait_state(page, TEST_PACK_ID, "not-installed")
    assert not _installed(host, TEST_PACK_ID)
    assert _trashed(host, TEST_PACK_ID)
    screenshot(page, f"realhost-undone-{host.extra['version']}")


def test_uninstall_then_restore_from_the_trash_view(host: realhost.RealComfyUI, page: Any) -> None:
    _open(page, host, "panel test pack two")
    row = pack_row(page, SECOND_PACK_ID)
    row.get_by_role("button", name="Install").click()
    run_plan(page)
    _wait_state(page, SECOND_PACK_ID, "enabled")
    row.get_by_role("button", name="Uninstall").click()
    page.wait_for_selector(f"{PLAN_DIALOG}:not([data-state=planning])", timeout=60_000)
    dialog = page.locator(PLAN_DIALOG)
    assert "trash" in dialog.locator("[data-testid=plan-message]").inner_text()  # the one confirm
    assert SECOND_PACK_ID in dialog.locator("[data-testid=plan-packs] li[data-change=removed]").inner_text()
    screenshot(page, f"realhost-plan-uninstall-{host.extra['version']}")
    run_plan(page)
    _wait_state(page, SECOND_PACK_ID, "not-installed")
    assert not _installed(host, SECOND_PACK_ID)

    page.locator(".om-tab[data-tab=trash]").click()
    entry = page.locator("[data-testid=trash-table] tr[data-entry]").filter(has_text=SECOND_PACK_ID)
    entry.wait_for(timeout=30_000)
    screenshot(page, f"realhost-trash-view-{host.extra['version']}")
    entry.get_by_role("button", name="Restore").click()
    entry.wait_for(state="detached", timeout=60_000)
    assert _installed(host, SECOND_PACK_ID)
    page.locator(".om-tab[data-tab=nodes]").click()
    _wait_state(page, SECOND_PACK_ID, "enabled")
    screenshot(page, f"realhost-trash-restored-{host.extra['version']}")


def test_plan_highlights_a_downgrade_and_what_the_blacklist_holds_back(host: realhost.RealComfyUI, page: Any) -> None:
    _open(page, host, "plan downgrade pack")
    pack_row(page, DOWN_PACK_ID).get_by_role("button", name="Install").click()
    page.wait_for_selector(f"{PLAN_DIALOG}:not([data-state=planning])", timeout=90_000)
    dialog = page.locator(PLAN_DIALOG)
    down = dialog.locator("[data-testid=plan-python] li[data-change=downgraded]")
    assert down.count() == 1, dialog.inner_text()
    text = down.inner_text()
    assert DOWN in text and "→ 0.0.1" in text, text
    assert "om-plan-downgraded" in (down.get_attribute("class") or "")
    assert down.locator(".om-badge").get_attribute("data-kind") == "failed"  # the red badge
    held = dialog.locator("[data-testid=plan-held-back] li.om-plan-held")
    assert held.count() == 1, dialog.inner_text()
    assert BLACK in held.inner_text() and "blacklisted" in held.inner_text() and DEPS_PACK_ID not in held.inner_text()
    assert DOWN_PACK_ID in held.inner_text()  # which pack asks for it
    # highlighted: each row's colour differs from the plain text of the dialog
    colours = page.evaluate(
        """() => { const c = (sel) => getComputedStyle(document.querySelector(sel)).color;
            return { plain: c('[data-testid=plan-dialog] .om-plan-title'),
                     down: c('[data-testid=plan-python] li[data-change=downgraded]'),
                     held: c('[data-testid=plan-held-back] li.om-plan-held') }; }"""
    )
    assert colours["down"] != colours["plain"] and colours["held"] != colours["plain"], colours
    assert colours["down"] != colours["held"], colours  # a downgrade (red) is not a hold (amber)
    screenshot(page, f"realhost-plan-downgrade-held-back-{host.extra['version']}")
    page.locator("[data-testid=plan-cancel]").click()
    dialog.wait_for(state="detached")
    assert not _installed(host, DOWN_PACK_ID)  # cancelled: nothing ran
