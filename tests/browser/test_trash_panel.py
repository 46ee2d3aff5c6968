"""The panel's trash view on the standalone page: the entries an uninstall left (pack, version,
when, size), Restore queues ``restore_trash`` and the pack is back, Empty queues ``empty_trash``."""

from __future__ import annotations

from typing import Any

import pytest
from browser.pages import screenshot

pytestmark = pytest.mark.browser


def _trash_two(root: Any) -> None:
    from manager.context import Manager
    from manager.operations import Ops, Reporter
    from manager.operations.remove import uninstall
    from support.gitrepos import git

    for name, version in (("trash-pack-a", "1.2.0"), ("trash-pack-b", "0.3.1")):
        pack = root / "custom_nodes" / name
        pack.mkdir()
        (pack / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n" + "# padding\n" * 200)
        (pack / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "{version}"\n')
        git(pack, "init", "-q")
        git(pack, "add", "-A")
        git(pack, "commit", "-q", "-m", f"{name} {version}")
    manager = Manager.standalone(str(root), env={})
    for name in ("trash-pack-a", "trash-pack-b"):
        uninstall(Ops(manager), name, Reporter())


def list_trash_of(root: Any) -> list[Any]:
    from manager.layout import Layout
    from manager.operations.remove import list_trash

    return list_trash(Layout.from_root(root))


def test_trash_view_lists_restores_and_empties(page: Any, standalone: str, panel_env: Any) -> None:
    _trash_two(panel_env.root)
    page.goto(standalone)
    page.wait_for_selector(".om-pack-row:not([hidden])", timeout=60_000)
    page.locator(".om-tab[data-tab=trash]").click()
    rows = page.locator("[data-testid=trash-table] tr[data-entry]")
    rows.first.wait_for(timeout=30_000)
    assert rows.count() == 2
    text = page.inner_text("[data-testid=trash-table]")
    assert "trash-pack-a" in text and "trash-pack-b" in text and "uninstall" in text
    assert "KB" in text  # a size per entry
    commits = [e.commit[:10] for e in list_trash_of(panel_env.root)]
    assert all(c and c in text for c in commits), (commits, text)  # the version column: the commit
    assert "2 entries" in page.inner_text("[data-testid=trash-summary]")
    screenshot(page, "trash-view")

    row_a = page.locator("[data-testid=trash-table] tr[data-entry]").filter(has_text="trash-pack-a")
    row_a.get_by_role("button", name="Restore").click()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=trash-table] tr[data-entry]').length === 1", timeout=60_000
    )
    assert (panel_env.root / "custom_nodes" / "trash-pack-a" / "__init__.py").is_file()

    page.once("dialog", lambda d: d.accept())
    page.locator("[data-testid=trash-empty]").click()
    page.locator("[data-testid=trash-table] .om-empty").filter(has_text="The trash is empty").wait_for(timeout=60_000)
    trash = panel_env.root / "custom_nodes" / ".cm-trash.disabled"
    assert not trash.exists() or not [p for p in trash.iterdir() if not p.name.startswith(".")]
    assert not (panel_env.root / "custom_nodes" / "trash-pack-b").exists()
    screenshot(page, "trash-view-emptied")
