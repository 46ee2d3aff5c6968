"""Page helpers shared by the browser tests and bench/bench_panel.py (no fixtures here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.gitrepos import git

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts"
TEST_PACK_ID = "panel-test-pack"
SECOND_PACK_ID = "panel-test-pack-two"
ENTRY = ".offline-manager-entry"  # our action-bar button in the real frontend
VISIBLE_ROW = ".om-pack-row:not([hidden])"


def make_plain_repo(path: Path, *, name: str = TEST_PACK_ID) -> str:
    """A minimal node-pack git repo (no requirements: nothing reaches an index); returns its file:// URL."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (path / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1.0.0"\n')
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    git(path, "tag", "v1.0.0")
    (path / "nodes.py").write_text("VERSION = 2\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "second")
    return path.as_uri()


@dataclass
class PanelEnv:
    """A ComfyUI tree, its manager config and a writable copy of the real channel."""

    root: Path
    channel: Path
    config: Path
    repo_url: str = ""
    repo2_url: str = ""
    settings: dict[str, str] = field(default_factory=dict)

    def write_config(self, **values: str) -> None:
        self.settings.update(values)
        lines = ["[default]"] + [f"{k} = {v}" for k, v in self.settings.items()]
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def add_pack(self, entry: dict[str, Any]) -> None:
        path = self.channel / "custom-node-list.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        data["custom_nodes"].insert(0, entry)
        path.write_text(json.dumps(data), encoding="utf-8")


def add_local_packs(env: PanelEnv, repos: Path, *, author: str) -> None:
    """Two packs in ``env``'s channel, each backed by a local git repo under ``repos`` (offline-safe)."""
    env.repo_url = make_plain_repo(repos / TEST_PACK_ID)
    env.add_pack(
        {
            "author": author,
            "title": "Panel Test Pack",
            "id": TEST_PACK_ID,
            "reference": env.repo_url,
            "files": [env.repo_url],
            "install_type": "git-clone",
            "description": 'A pack from a local git repo. <img src=x onerror="window.__xss=1">',
        }
    )
    env.repo2_url = make_plain_repo(repos / SECOND_PACK_ID, name=SECOND_PACK_ID)
    env.add_pack(
        {
            "author": author,
            "title": "Panel Test Pack Two",
            "id": SECOND_PACK_ID,
            "reference": env.repo2_url,
            "files": [env.repo2_url],
            "install_type": "git-clone",
            "description": "A second pack from a local git repo, for batch actions.",
        }
    )


def screenshot(page: Any, name: str) -> Path:
    """Write ``artifacts/<name>.png`` (git-ignored) and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def open_panel(page: Any, host: Any) -> None:
    """Boot the real frontend and click our entry until the pack list shows rows."""
    page.goto(host.url("/"))
    page.locator(ENTRY).first.click(timeout=60_000)
    page.wait_for_selector(VISIBLE_ROW, timeout=60_000)


PLAN_DIALOG = "[data-testid=plan-dialog]"


def run_plan(page: Any, *, timeout: float = 60_000) -> str:
    """The confirm step: wait for the plan in the dialog, click its Run; returns the dialog's text."""
    page.wait_for_selector(f"{PLAN_DIALOG}:not([data-state=planning])", timeout=timeout)
    text = page.locator(PLAN_DIALOG).inner_text()
    page.locator("[data-testid=plan-run]").click()
    page.locator(PLAN_DIALOG).wait_for(state="detached")
    return text


def search(page: Any, text: str) -> None:
    page.fill("[data-testid=pack-search]", text)
    page.wait_for_function("t => document.querySelector('.om-nodes').dataset.query === t", arg=text)


def pack_row(page: Any, pack_id: str) -> Any:
    return page.locator(f'.om-pack-row[data-pack-id="{pack_id}"]:not([hidden])')


def watch_row_badges(page: Any, pack_id: str) -> None:
    """Record every text the pack's task badge shows (progress is brief: a MutationObserver sees it)."""
    page.evaluate(
        """id => {
        window.__badges = [];
        const seen = () => {
            const b = document.querySelector(`.om-pack-row[data-pack-id="${id}"]:not([hidden]) .om-task`);
            const t = b && !b.hidden ? b.textContent : "";
            if (t && window.__badges[window.__badges.length - 1] !== t) window.__badges.push(t);
        };
        new MutationObserver(seen).observe(document.querySelector('.om-pack-list'),
            {subtree: true, childList: true, characterData: true, attributes: true});
        seen();
    }""",
        pack_id,
    )
