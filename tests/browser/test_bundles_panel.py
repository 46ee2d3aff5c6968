"""The panel's Bundles view on the standalone page (offline box): a real bundle, made by
``create_bundle`` on a creator tree (a git pack as a `git bundle`, a registry zip), is named by its
server path. A link to it is refused with ``bundle_path_invalid``, a damaged copy has the bad
member named and nothing to import; Check shows the manifest
(created at, creator host, selection, sizes by kind), the signature (unsigned, not required) and
what each store would gain; Import shows the plan in the confirm dialog, queues ``bundle_import``
and follows the task to done; the imported list shows it. Then the Node packs tab installs the
bundled pack offline, from the git mirror the import filled (the channel names only its public URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser.pages import PLAN_DIALOG, VISIBLE_ROW, pack_row, run_plan, screenshot, search

from manager.bundles import Selection, create_bundle
from manager.context import Manager
from support.bundles import make_creator, rewrite
from support.gitrepos import git

pytestmark = pytest.mark.browser


def make_bundle(base: Path) -> tuple[Path, Any]:
    creator = make_creator(base)
    result = create_bundle(
        Manager.standalone(creator.root, env={}), Selection(snapshot=str(creator.snapshot)), base / "site.bundle.tar"
    )
    return Path(result.path), creator


def catalog_entry(url: str) -> dict[str, Any]:
    return {
        "author": "bundle-tests",
        "title": "Bundled Pack A",
        "id": "pack-a",
        "reference": url,
        "files": [url],
        "install_type": "git-clone",
        "description": "Only reachable offline through an imported bundle.",
    }


@pytest.fixture
def offline_box(panel_env: Any, tmp_path: Path) -> tuple[Path, Any]:
    """The bundle, and the panel's tree made an offline box whose channel names the bundled pack by
    its public URL (before the server starts: it reads the config and channel once)."""
    bundle, creator = make_bundle(tmp_path / "made")
    panel_env.add_pack(catalog_entry(creator.pack_url))
    panel_env.write_config(network_mode="offline")
    return bundle, creator


def test_bundles_view_checks_imports_and_the_pack_installs_offline(
    offline_box: tuple[Path, Any], page: Any, standalone: str, panel_env: Any, tmp_path: Path
) -> None:
    bundle, creator = offline_box
    link = tmp_path / "link.tar"
    link.symlink_to(bundle)

    page.goto(standalone)
    page.wait_for_selector(VISIBLE_ROW, timeout=60_000)
    page.locator(".om-tab[data-tab=bundles]").click()
    page.locator("[data-testid=bundles-imported] .om-empty").wait_for()

    page.fill("[data-testid=bundle-path]", str(link))
    page.locator("[data-testid=bundle-check]").click()
    err = page.locator("[data-testid=bundle-errors]")
    err.filter(has_text="bundle_path_invalid").wait_for(timeout=30_000)
    assert "symbolic link" in err.inner_text()
    assert page.locator("[data-testid=bundle-import]").is_disabled()

    # a damaged copy: every bad file named, nothing to import
    member = "git/example.invalid/test/pack-a.bundle"
    damaged = rewrite(bundle, tmp_path / "damaged.tar", lambda name, data: data + b"x" if name == member else data)
    page.fill("[data-testid=bundle-path]", str(damaged))
    page.locator("[data-testid=bundle-check]").click()
    problems = page.locator(f'[data-testid=bundle-problems] li[data-member="{member}"]')
    problems.wait_for(timeout=60_000)
    assert problems.get_attribute("data-code") == "bundle_checksum_mismatch"
    assert page.locator("[data-testid=bundle-import]").is_disabled()
    assert page.locator("[data-testid=bundle-import-apply]").is_disabled()
    screenshot(page, "bundles-view-damaged")

    page.fill("[data-testid=bundle-path]", str(bundle))
    page.locator("[data-testid=bundle-check]").click()
    page.locator("[data-testid=bundle-stores]").wait_for(timeout=60_000)
    manifest = page.inner_text("[data-testid=bundle-manifest]")
    assert "Created on" in manifest and "snapshot" in page.inner_text("[data-testid=bundle-selection]")
    sizes = page.inner_text("[data-testid=bundle-sizes]")
    assert "git" in sizes and "cnr" in sizes, sizes
    sig = page.locator("[data-testid=bundle-signature]")
    assert sig.get_attribute("data-state") == "unsigned" and "require_signed_bundles = false" in manifest
    git_row = page.locator("[data-testid=bundle-stores] tr[data-store=git]").inner_text()
    assert git_row.split("\t")[:2] == ["Git repositories", "1"], git_row
    packs = page.inner_text("[data-testid=bundle-packs]")
    assert "pack-a" in packs and "reg-pack" in packs
    assert page.locator("[data-testid=bundle-errors] .om-error").count() == 0
    screenshot(page, "bundles-view-checked")

    page.locator("[data-testid=bundle-import]").click()
    text = run_plan(page)
    assert "Import bundle" in text and "pack-a" in text and "installable offline" in text, text
    page.locator("[data-testid=bundle-task-state]").filter(has_text="done").wait_for(timeout=120_000)
    result = page.locator("[data-testid=bundle-result]")
    result.wait_for(timeout=30_000)
    assert "new" in result.inner_text() and "pack-a" in page.inner_text("[data-testid=bundle-installable]")
    page.locator("[data-testid=bundles-imported] tr[data-bundle]").wait_for(timeout=30_000)
    # checked again after the import: everything it carries is here now
    git_row = page.locator("[data-testid=bundle-stores] tr[data-store=git]").inner_text()
    assert git_row.split("\t") == ["Git repositories", "0", "0", "1"], git_row  # the same bundle file: present
    mirror = panel_env.root / "user" / "__manager" / "git-mirror" / "example.invalid" / "test" / "pack-a.bundle"
    assert mirror.is_file()  # the git bundle kept as it came (git clones from it)
    screenshot(page, "bundles-view-imported")

    page.locator(".om-tab[data-tab=nodes]").click()
    search(page, "pack-a")
    row = pack_row(page, "pack-a")
    row.get_by_role("button", name="Install").click()
    run_plan(page)
    installed = panel_env.root / "custom_nodes" / "pack-a"
    row.get_by_role("button", name="Uninstall").wait_for(timeout=120_000)
    assert (installed / ".git").exists()
    assert git(installed, "rev-parse", "HEAD").strip() == creator.repo.commits[-1]
    assert page.locator(PLAN_DIALOG).count() == 0
    assert not page.console_errors, page.console_errors
    screenshot(page, "bundles-pack-installed-offline")
