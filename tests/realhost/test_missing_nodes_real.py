"""The panel's "Missing nodes" flow in the page the real ComfyUI serves (0.8.0 and 0.3.64).

One real ComfyUI per host version, offline, over a file:// copy of the real channel to which
local packs are added (each a real git repo; the channel's node map and github-stats name their
node types, stars and last update). Two of them are already in ``custom_nodes/`` at the start:
one fails to import, one loads but does not register the type the node map gives it.

A user loads a workflow into ComfyUI's own graph (the one open in the page), opens our panel's
Missing nodes tab and sees every node type nothing registered, each with ALL its candidates
(channel, stars, last update): the single candidate is picked (and says why), the preference
list (``node_pack_preference``) picks between two, the third type waits for the user's choice.
A workflow file is checked too. Install shows the batch's plan (one dialog, with the "without
dependencies" choice, taken: the host's python is the tier's shared environment), Run installs
the three packs, and the re-check reports each type still missing and why: restart needed
(installed, not loaded), import failure, wrong pack. Each step is checked on disk; screenshots
go to artifacts/.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.pages import PLAN_DIALOG, make_plain_repo, run_plan, screenshot
from realhost.helpers import browser_host_work, stopped_after

from support import realhost
from support.gitrepos import git
from support.realhost_env import HOST_VERSIONS
from support.wheels import build_wheel

AUTHOR = "missing-nodes-tests"
DEP = "om-missing-dep"
# pack id -> (node types the channel's node map lists for it, stars, last update)
PACKS: dict[str, tuple[list[str], int, str]] = {
    "mn-single": (["OmSingleNode"], 42, "2026-10-01 10:00:00"),
    "mn-choice-a": (["OmChoiceNode"], 7, "2026-09-02 10:00:00"),
    "mn-choice-b": (["OmChoiceNode", "OmFileNode"], 9, "2026-08-03 10:00:00"),
    "mn-pref-a": (["OmPrefNode"], 500, "2026-11-04 10:00:00"),
    "mn-pref-b": (["OmPrefNode"], 3, "2025-01-05 10:00:00"),
    "mn-broken": (["OmBrokenNode"], 1, "2026-01-06 10:00:00"),
    "mn-wrong": (["OmWrongNode"], 2, "2026-02-07 10:00:00"),
}
PRESENT = ("mn-broken", "mn-wrong")  # in custom_nodes/ at the start
OPEN_TYPES = ["OmSingleNode", "OmChoiceNode", "OmPrefNode", "OmBrokenNode", "OmWrongNode"]


def _repo(work: Path, pack_id: str) -> str:
    url = make_plain_repo(work / "repos" / pack_id, name=pack_id)
    repo = work / "repos" / pack_id
    if pack_id == "mn-single":  # a Python requirement: the plan shows it, "without dependencies" leaves it out
        (repo / "requirements.txt").write_text(f"{DEP}==1.0\n")
    if pack_id == "mn-broken":
        (repo / "__init__.py").write_text("raise ImportError('mn-broken needs a module this box lacks')\n")
    if pack_id == "mn-wrong":  # loads fine, registers another node
        (repo / "__init__.py").write_text(
            "class OmSomethingElse:\n"
            "    RETURN_TYPES = ()\n    FUNCTION = 'run'\n    CATEGORY = 'tests'\n"
            "    @classmethod\n    def INPUT_TYPES(cls):\n        return {'required': {}}\n"
            "    def run(self):\n        return ()\n"
            "NODE_CLASS_MAPPINGS = {'OmSomethingElse': OmSomethingElse}\n"
        )
    if git(repo, "status", "--porcelain").strip():
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "node pack content")
    return url


@pytest.fixture(scope="module", params=HOST_VERSIONS)
def host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, channel_db: Path
) -> Iterator[realhost.RealComfyUI]:
    version, work, env = browser_host_work(request, tmp_path_factory, channel_db, "missing-real")
    node_map_path = env.channel / "extension-node-map.json"
    node_map = json.loads(node_map_path.read_text(encoding="utf-8"))
    stats_path = env.channel / "github-stats.json"
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    extra: list[Path] = []
    for pack_id, (types, stars, when) in PACKS.items():
        url = _repo(work, pack_id)
        env.add_pack(
            {
                "author": AUTHOR,
                "title": pack_id.replace("-", " ").title(),
                "id": pack_id,
                "reference": url,
                "files": [url],
                "install_type": "git-clone",
                "description": f"Provides {', '.join(types)} (a local git repo).",
            }
        )
        node_map[url] = [types, {"title_aux": pack_id}]
        stats[url] = {"stars": stars, "last_update": when, "author_account_age_days": 900}
        if pack_id in PRESENT:
            clone = work / "present" / pack_id
            subprocess.run(["git", "clone", "-q", url, str(clone)], check=True, capture_output=True, timeout=60)
            extra.append(clone)
    node_map_path.write_text(json.dumps(node_map), encoding="utf-8")
    stats_path.write_text(json.dumps(stats), encoding="utf-8")
    wheelhouse = work / "wheelhouse"
    build_wheel(wheelhouse, DEP, "1.0")
    config = {**env.settings, "wheelhouse_dirs": str(wheelhouse), "node_pack_preference": "mn-pref-b"}
    h = realhost.start_comfyui(work, version, config=config, extra_nodes=extra)
    h.extra["version"] = version
    h.extra["work"] = work
    with stopped_after(h, f"test_missing_nodes_real-{version}"):
        yield h


def _ui_workflow(types: list[str]) -> dict[str, Any]:
    nodes = [
        {
            "id": i + 1,
            "type": t,
            "pos": [100 + 260 * i, 120],
            "size": [220, 60],
            "flags": {},
            "order": i,
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "properties": {},
            "widgets_values": [],
        }
        for i, t in enumerate(types)
    ]
    return {
        "last_node_id": len(types),
        "last_link_id": 0,
        "nodes": nodes,
        "links": [],
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


LOAD_GRAPH = """async (wf) => {
    const app = window.app || (window.comfyAPI && window.comfyAPI.app && window.comfyAPI.app.app);
    // the page's own loader; no "missing nodes" dialog of ComfyUI's (ours is what is under test)
    await app.loadGraphData(wf, true, true, null, { showMissingNodesDialog: false, showMissingModelsDialog: false });
    return app.graph.serialize().nodes.map((n) => n.type);
}"""


def _close_host_dialogs(page: Any) -> None:
    """ComfyUI 0.3.64's loader may still show its own missing-nodes dialog: close it."""
    for _ in range(3):
        shown = page.locator(".p-dialog-mask .p-dialog-close-button:visible, .comfy-modal:visible .comfy-modal-close")
        if not shown.count():
            return
        shown.first.click()
        page.wait_for_timeout(200)


def _row(page: Any, node_type: str) -> Any:
    return page.locator(f"[data-testid=missing-table] tr[data-type={node_type}]")


def _installed(host: realhost.RealComfyUI, pack_id: str) -> bool:
    return (host.custom_nodes / pack_id / "__init__.py").is_file()


def test_missing_nodes_of_the_open_workflow_and_a_file_planned_installed_and_rechecked(
    host: realhost.RealComfyUI, page: Any, tmp_path: Path
) -> None:
    version = host.extra["version"]
    page.goto(host.url("/"))
    # the page is set up (our entry is in place) and has loaded its start graph: load ours over it
    page.locator(".offline-manager-entry").first.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => { const app = window.app || (window.comfyAPI && window.comfyAPI.app && window.comfyAPI.app.app);"
        " return !!app && !!app.graph && app.graph.serialize().nodes.length > 0; }",
        timeout=60_000,
    )
    loaded = page.evaluate(LOAD_GRAPH, _ui_workflow(OPEN_TYPES))
    assert sorted(loaded) == sorted(OPEN_TYPES), loaded  # the page's current graph holds the missing types
    _close_host_dialogs(page)
    page.locator(".offline-manager-entry").first.click(timeout=60_000)
    page.wait_for_selector(".om-pack-row:not([hidden])", timeout=60_000)
    page.locator(".om-tab[data-tab=missing]").click()

    # the open workflow is checked at once: every type nothing registered, with all candidates
    try:
        for t in OPEN_TYPES:
            _row(page, t).wait_for(timeout=60_000)
    except Exception:
        screenshot(page, f"realhost-missing-open-workflow-{version}-failed")
        seen = page.evaluate(
            """() => { const app = window.app || window.comfyAPI.app.app;
                const reg = window.LiteGraph && window.LiteGraph.registered_node_types || {};
                return { graph: app.graph.serialize().nodes.map((n) => n.type),
                    registered: Object.keys(reg).filter((k) => k.startsWith('Om')) }; }"""
        )
        pytest.fail(f"the missing-nodes view shows: {page.locator('.om-missing').inner_text()!r}; page: {seen}")
    summary = page.locator("[data-testid=missing-summary]").inner_text()
    assert "the open workflow" in summary and "5 not provided" in summary, summary
    assert page.locator("[data-testid=missing-use-open]").is_visible()

    single = _row(page, "OmSingleNode")
    assert single.get_attribute("data-state") == "missing"
    assert single.locator("[data-testid=missing-choice]").input_value() == "mn-single"
    assert "only pack" in single.inner_text()
    option = single.locator("option[value=mn-single]").inner_text()
    assert "★ 42" in option and "updated 2026-10-01" in option, option  # stars and last update
    channel = option.split(" — ", 1)[1].split(", ★", 1)[0]
    assert channel and channel != "-", option  # the channel it comes from

    pref = _row(page, "OmPrefNode")
    assert pref.locator("[data-testid=missing-choice]").input_value() == "mn-pref-b"  # the preference list
    assert "preferred" in pref.inner_text()
    pref_options = pref.locator("option").all_inner_texts()
    assert any("★ 500" in o for o in pref_options) and any("★ 3" in o for o in pref_options), pref_options

    choice = _row(page, "OmChoiceNode")
    assert choice.get_attribute("data-state") == "choose"  # two candidates, none preferred: the user chooses
    select = choice.locator("[data-testid=missing-choice]")
    assert select.input_value() == ""  # never the first hit in silence
    texts = select.locator("option").all_inner_texts()
    assert any("★ 7" in o for o in texts) and any("★ 9" in o for o in texts), texts

    broken = _row(page, "OmBrokenNode")
    assert broken.get_attribute("data-state") == "import_failed", broken.inner_text()
    assert "failed to import" in broken.inner_text()
    wrong = _row(page, "OmWrongNode")
    assert wrong.get_attribute("data-state") == "wrong_pack", wrong.inner_text()
    screenshot(page, f"realhost-missing-open-workflow-{version}")

    # a workflow file (API format) is checked the same way
    wf = tmp_path / "saved-workflow.json"
    wf.write_text(json.dumps({"1": {"class_type": "OmFileNode", "inputs": {}}}), encoding="utf-8")
    page.set_input_files("[data-testid=missing-file]", str(wf))
    file_row = _row(page, "OmFileNode")
    file_row.wait_for(timeout=30_000)
    assert file_row.locator("[data-testid=missing-choice]").input_value() == "mn-choice-b"
    assert "saved-workflow.json" in page.locator("[data-testid=missing-summary]").inner_text()
    screenshot(page, f"realhost-missing-file-{version}")

    # back to the open workflow; the user picks for the ambiguous type
    page.locator("[data-testid=missing-use-open]").click()
    _row(page, "OmChoiceNode").wait_for(timeout=30_000)
    _row(page, "OmChoiceNode").locator("[data-testid=missing-choice]").select_option("mn-choice-a")
    page.locator("[data-testid=missing-install]").click()

    # one confirm step for the whole batch: the plan, with the "without dependencies" choice
    page.wait_for_selector(f"{PLAN_DIALOG}:not([data-state=planning])", timeout=120_000)
    dialog = page.locator(PLAN_DIALOG)
    added = dialog.locator("[data-testid=plan-packs] li[data-change=added]").all_inner_texts()
    for pack_id in ("mn-single", "mn-choice-a", "mn-pref-b"):
        assert any(pack_id in a for a in added), (pack_id, dialog.inner_text())
    assert not any("mn-choice-b" in a or "mn-pref-a" in a for a in added), added
    assert DEP in dialog.locator("[data-testid=plan-python] li[data-change=added]").inner_text()
    assert not any(_installed(host, p) for p in ("mn-single", "mn-choice-a", "mn-pref-b"))  # nothing yet
    screenshot(page, f"realhost-missing-plan-{version}")
    # "without dependencies" (the host's python is the tier's cached environment: it must stay as built)
    page.locator("[data-testid=plan-skip-deps]").check()
    page.wait_for_selector(f"{PLAN_DIALOG}:not([data-state=planning])", timeout=120_000)
    assert dialog.locator("[data-testid=plan-python]").count() == 0
    assert DEP in dialog.locator("[data-testid=plan-left-out]").inner_text(), dialog.inner_text()
    run_plan(page)

    # the re-check: what is still missing, and why
    recheck = page.locator("[data-testid=missing-recheck-summary]")
    recheck.wait_for(timeout=300_000)
    assert "3 of 3 install(s) done" in recheck.inner_text(), page.locator("[data-testid=missing-recheck]").inner_text()
    for pack_id in ("mn-single", "mn-choice-a", "mn-pref-b"):
        assert _installed(host, pack_id), pack_id
    for pack_id in ("mn-choice-b", "mn-pref-a"):
        assert not (host.custom_nodes / pack_id).exists(), pack_id
    still = page.locator("[data-testid=missing-still]")
    states = {
        still.nth(i).get_attribute("data-type"): still.nth(i).get_attribute("data-state") for i in range(still.count())
    }
    assert states == {
        "OmSingleNode": "restart_needed",
        "OmChoiceNode": "restart_needed",
        "OmPrefNode": "restart_needed",
        "OmBrokenNode": "import_failed",
        "OmWrongNode": "wrong_pack",
    }, states
    text = page.locator("[data-testid=missing-recheck]").inner_text()
    assert "restart ComfyUI" in text and "failed to import" in text and "does not register OmWrongNode" in text, text
    assert page.locator("[data-testid=missing-restart]").is_visible()  # the real ComfyUI can restart
    screenshot(page, f"realhost-missing-recheck-{version}")
    probe = subprocess.run(  # without dependencies: the wheel the plan listed was left out
        [str(host.python), "-c", f"import importlib.util as u; print(u.find_spec({DEP.replace('-', '_')!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "None", probe
