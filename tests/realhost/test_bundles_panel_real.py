"""The Bundles view in the page the real ComfyUI 0.8.0 serves, offline.

A bundle is made with the core API (``create_bundle``) on a separate creator tree: a git pack (a
plain repository with no requirements, so the host's shared python environment is never changed)
and a registry pack's zip. The real ComfyUI (offline, a file:// channel that names the git pack by
its public URL only) gets the bundle's path typed into the Bundles view: Check shows the manifest
(creator host, selection, sizes by kind), the signature (unsigned, not required) and what each
store would gain; "Import and apply" shows the plan in the confirm dialog, runs the queued
``bundle_import`` task with ``apply`` and follows it to done: the git pack is in custom_nodes at the
bundled commit (cloned from the filled git mirror) and the registry pack at its version (from the
archive cache), and the Node packs list shows the pack installed. Screenshots go to artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.pages import make_plain_repo, open_panel, pack_row, run_plan, screenshot, search
from realhost.helpers import channel_env, keep_artifacts, need_host

from manager.bundles import Selection, create_bundle
from manager.context import Manager
from support import realhost
from support.bundles import make_tree
from support.gitrepos import git
from support.ops_fixtures import build_zip, cnr_files

PACK = "bundled-real-pack"
REG = "bundled-reg-pack"
URL = f"https://example.invalid/test/{PACK}"


def _bundle(base: Path) -> tuple[Path, str]:
    from manager.snapshots.model import PackState, Snapshot
    from manager.snapshots.store import dump

    creator = make_tree(base / "creator" / "ComfyUI")
    repo = base / "sources" / PACK
    make_plain_repo(repo, name=PACK)
    commit = git(repo, "rev-parse", "HEAD").strip()
    mirror = creator / "user" / "__manager" / "git-mirror" / "example.invalid" / "test" / f"{PACK}.git"
    mirror.parent.mkdir(parents=True)
    git(base, "clone", "-q", "--mirror", str(repo), str(mirror))
    build_zip(
        creator / "user" / "__manager" / "cache" / "archives" / "cnr" / REG / "1.0.0.zip", cnr_files(REG, "1.0.0")
    )
    snap = Snapshot(
        created_at="2026-12-01T00:00:00Z",
        packs=(
            PackState(name=PACK, kind="git", id=PACK, url=URL, commit=commit, branch="main"),
            PackState(name=REG, kind="cnr", id=REG, version="1.0.0", cnr_id=REG),
        ),
    )
    selection = base / "selection.json"
    selection.write_bytes(dump(snap))
    result = create_bundle(Manager.standalone(creator, env={}), Selection(snapshot=str(selection)), base / "site.tar")
    return Path(result.path), commit


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, channel_db: Path) -> Iterator[realhost.RealComfyUI]:
    version = "0.8.0"
    need_host(version, browser=True)
    work = tmp_path_factory.mktemp("bundles-real")
    bundle, commit = _bundle(work / "made")
    env = channel_env(work, channel_db)
    env.add_pack(
        {
            "author": "realhost-tests",
            "title": "Bundled Real Pack",
            "id": PACK,
            "reference": URL,
            "files": [URL],
            "install_type": "git-clone",
            "description": "Reachable offline only through an imported bundle.",
        }
    )
    h = realhost.start_comfyui(work, version, config=env.settings)
    h.extra.update(version=version, bundle=bundle, commit=commit)
    try:
        yield h
    finally:
        h.stop()
        keep_artifacts(h, f"test_bundles_panel_real-{version}")


def test_check_then_import_and_apply_in_the_real_page(host: realhost.RealComfyUI, page: Any) -> None:
    bundle: Path = host.extra["bundle"]
    open_panel(page, host)
    page.locator(".om-tab[data-tab=bundles]").click()
    page.locator("[data-testid=bundles-imported] .om-empty").wait_for(timeout=30_000)
    page.fill("[data-testid=bundle-path]", str(bundle))
    page.locator("[data-testid=bundle-check]").click()
    page.locator("[data-testid=bundle-stores]").wait_for(timeout=60_000)
    manifest = page.inner_text("[data-testid=bundle-manifest]")
    assert "Created on" in manifest and "require_signed_bundles = false" in manifest, manifest
    assert page.locator("[data-testid=bundle-signature]").get_attribute("data-state") == "unsigned"
    sizes = page.inner_text("[data-testid=bundle-sizes]")
    assert "git" in sizes and "cnr" in sizes, sizes
    assert page.locator("[data-testid=bundle-stores] tr[data-store=git]").inner_text().split("\t")[1] == "1"
    assert PACK in page.inner_text("[data-testid=bundle-packs]")
    screenshot(page, f"realhost-bundles-checked-{host.extra['version']}")

    page.locator("[data-testid=bundle-import-apply]").click()
    text = run_plan(page)
    assert PACK in text and REG in text and "Import bundle" in text, text
    page.locator("[data-testid=bundle-task-state]").filter(has_text="done").wait_for(timeout=180_000)
    result = page.locator("[data-testid=bundle-result]")
    result.wait_for(timeout=30_000)
    assert "Applied" in result.inner_text(), result.inner_text()
    installed = host.custom_nodes / PACK
    assert git(installed, "rev-parse", "HEAD").strip() == host.extra["commit"]
    assert (host.custom_nodes / REG / "nodes.py").read_text() == "VERSION = '1.0.0'\n"
    page.locator("[data-testid=bundles-imported] tr[data-bundle]").wait_for(timeout=30_000)
    screenshot(page, f"realhost-bundles-applied-{host.extra['version']}")

    page.locator(".om-tab[data-tab=nodes]").click()
    search(page, PACK)
    pack_row(page, PACK).get_by_role("button", name="Uninstall").wait_for(timeout=60_000)
    assert not page.console_errors, page.console_errors
    screenshot(page, f"realhost-bundles-pack-listed-{host.extra['version']}")
