"""The classic cm-cli command set, run as a subprocess on real trees: a table of every classic
command with the classic arguments, each checked for its exit code and its effect on disk.

The tree is the demo ComfyUI (real git repositories behind a ``file://`` channel, offline) with
two packs installed by the CLI itself; every row runs on its own copy of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from manager.cli import exit_codes
from manager.layout import Layout
from manager.startup import PendingStore
from tests.support.api_tree import demo_root
from tests.support.treesum import changes, listing

REPO = Path(__file__).resolve().parents[1]
INSTALLED = ("demo-mask-utils", "demo-prompt-kit")
NOT_INSTALLED = ("demo-image-tools", "demo-upscale-pack", "demo-video-helper")
# our own bookkeeping, which every command may touch: logs, locks, cache, staging
NOISE = ("user/__manager/logs", "user/__manager/locks", "user/__manager/cache", "custom_nodes/.cm-staging.disabled")


def cli(*args: str, root: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_") and k != "COMFYUI_PATH"}
    return subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), *args],
        capture_output=True,
        text=True,
        cwd=cwd or root.parent,
        timeout=180,
        env=env,
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = demo_root(tmp_path_factory.mktemp("classic-template"))
    out = cli("install", *INSTALLED, root=root)
    assert out.returncode == 0, out.stderr
    return root


@pytest.fixture
def tree(template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    shutil.copytree(template, root, symlinks=True)
    return root


def custom(root: Path) -> Path:
    return root / "custom_nodes"


def disabled_names(root: Path) -> list[str]:
    folder = custom(root) / ".disabled"
    if not folder.is_dir():
        return []
    return sorted(p.name.split("@")[0] for p in folder.iterdir() if not p.name.startswith("."))


def enabled_names(root: Path) -> list[str]:
    return sorted(p.name for p in custom(root).iterdir() if not p.name.startswith("."))


# --- setups: what the tree holds before the row's command ---------------------------------------
def save_snapshot_file(root: Path) -> None:
    out = cli("save-snapshot", "--output", str(root.parent / "snap.json"), root=root)
    assert out.returncode == 0, out.stderr


def snapshot_then_uninstall(root: Path) -> None:
    save_snapshot_file(root)
    assert cli("uninstall", "demo-prompt-kit", root=root).returncode == 0


def snapshot_with_absent_package_then_uninstall(root: Path) -> None:
    snapshot_then_uninstall(root)
    path = root.parent / "snap.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["python"]["packages"].append({"name": "cm-absent-package", "version": "1.0", "kind": "index"})
    path.write_text(json.dumps(doc), encoding="utf-8")


def disable_all(root: Path) -> None:
    assert cli("disable", "all", root=root).returncode == 0


def write_workflow(root: Path) -> None:
    nodes = [{"id": 1, "type": "DemoMaskBlur"}, {"id": 2, "type": "DemoTiledUpscale"}, {"id": 3, "type": "KSampler"}]
    (root.parent / "wf.json").write_text(json.dumps({"nodes": nodes, "links": []}), encoding="utf-8")


def write_deps_file(root: Path) -> None:
    write_workflow(root)
    out = cli("deps-in-workflow", "--workflow", "wf.json", "--output", "deps.json", root=root)
    assert out.returncode == 0, out.stderr


def schedule_pending(root: Path) -> None:
    PendingStore(Layout.from_root(root)).schedule("disable", "demo-mask-utils", origin="test")


def cli_only_on(root: Path) -> None:
    assert cli("cli-only-mode", "enable", root=root).returncode == 0


def snapshot_and_restore_dir(root: Path) -> None:
    save_snapshot_file(root)
    (root.parent / "elsewhere").mkdir()


# --- checks: the effect on disk (before/after listings of the ComfyUI tree) -------------------------
Check = Callable[[Path, subprocess.CompletedProcess, dict[str, str], dict[str, str]], None]


def unchanged(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after: dict[str, str]) -> None:
    diff = changes(before, after).outside(*NOISE)
    assert not diff, diff.describe()


def tree_is(enabled: tuple[str, ...], disabled: tuple[str, ...] = ()) -> Check:
    def check(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after: dict[str, str]) -> None:
        assert enabled_names(root) == sorted(enabled), out.stderr
        assert disabled_names(root) == sorted(disabled), out.stderr

    return check


def packs_kept_and_changed(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after: dict[str, str]):
    assert enabled_names(root) == sorted(INSTALLED)
    assert changes(before, after).outside(*NOISE), "the command should have rewritten something"


def stdout_has(*words: str, also: Check = unchanged) -> Check:
    def check(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after: dict[str, str]) -> None:
        for w in words:
            assert w in out.stdout, (w, out.stdout)
        also(root, out, before, after)

    return check


def file_written(name: str, *words: str, also: Check = unchanged) -> Check:
    def check(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after: dict[str, str]) -> None:
        text = (root.parent / name).read_text(encoding="utf-8")
        for w in words:
            assert w in text, (w, text[:400])
        also(root, out, before, after)

    return check


def snapshot_saved(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after: dict[str, str]):
    added = changes(before, after).outside(*NOISE).added
    assert [a for a in added if a.startswith("user/__manager/snapshots/")], added
    doc = json.loads((root.parent / "snap.json").read_text(encoding="utf-8"))
    assert {p["name"] for p in doc["packs"]} == set(INSTALLED)


def restored_without_python(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after):
    assert enabled_names(root) == sorted(INSTALLED)
    assert "python packages: not restored" in out.stdout and "pip_install" not in out.stdout


def pending_dropped(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after: dict[str, str]):
    assert not (root / "user/__manager/startup/pending.json").exists()
    assert "dropped 1 operation" in out.stdout


def flag(present: bool) -> Check:
    def check(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after: dict[str, str]) -> None:
        assert (root / "user/__manager/.enable-cli-only-mode").exists() is present

    return check


def deps_file(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after: dict[str, str]) -> None:
    doc = json.loads((root.parent / "deps.json").read_text(encoding="utf-8"))
    assert doc["custom_nodes"]["demo-mask-utils"]["state"] == "installed"
    assert doc["custom_nodes"]["demo-upscale-pack"]["state"] == "not-installed"
    assert doc["unknown_nodes"] == ["KSampler"]
    unchanged(root, out, before, after)


def restored_elsewhere(root: Path, out: subprocess.CompletedProcess, before: dict[str, str], after):
    assert (root.parent / "elsewhere" / "demo-mask-utils" / "__init__.py").is_file(), out.stdout
    assert enabled_names(root) == sorted(INSTALLED), "the real custom_nodes is left alone"


@dataclass(frozen=True)
class Row:
    args: tuple[str, ...]
    exit: int
    check: Check
    setup: Callable[[Path], None] | None = None
    words: tuple[str, ...] = field(default=())  # on stderr

    @property
    def id(self) -> str:
        return " ".join(self.args)


ROWS = [
    Row(("install", "demo-upscale-pack"), 0, tree_is((*INSTALLED, "demo-upscale-pack"))),
    Row(("reinstall", "demo-mask-utils"), 0, packs_kept_and_changed),
    Row(("uninstall", "demo-mask-utils"), 0, tree_is(("demo-prompt-kit",))),
    Row(("update", "demo-mask-utils"), 0, tree_is(INSTALLED)),
    Row(("update", "all"), 0, tree_is(INSTALLED)),
    Row(("disable", "demo-mask-utils"), 0, tree_is(("demo-prompt-kit",), ("demo-mask-utils",))),
    Row(("disable", "all"), 0, tree_is((), INSTALLED)),
    Row(("enable", "demo-mask-utils"), 0, tree_is(("demo-mask-utils",), ("demo-prompt-kit",)), disable_all),
    Row(("enable", "all"), 0, tree_is(INSTALLED), disable_all),
    Row(("fix", "demo-mask-utils"), 0, tree_is(INSTALLED)),
    Row(("fix", "all"), 0, tree_is(INSTALLED)),
    Row(("show", "installed"), 0, stdout_has(*INSTALLED)),
    Row(("show", "enabled"), 0, stdout_has(*INSTALLED)),
    Row(("show", "not-installed"), 0, stdout_has(*NOT_INSTALLED)),
    Row(("show", "disabled"), 0, stdout_has("demo-mask-utils"), disable_all),
    Row(("show", "import-fail"), 0, stdout_has("import-fail: none")),
    Row(("show", "all"), 0, stdout_has("ENABLED", "NOT-INSTALLED", *NOT_INSTALLED)),
    Row(("show", "snapshot"), 0, stdout_has('"packs"', *INSTALLED)),
    Row(("show", "snapshot-list"), 0, stdout_has("_snapshot"), save_snapshot_file),
    Row(("show", "cnr"), 0, stdout_has("cnr: none")),
    Row(("simple-show", "installed"), 0, stdout_has(*INSTALLED)),
    Row(("simple-show", "not-installed"), 0, stdout_has(*NOT_INSTALLED)),
    Row(("simple-show", "all"), 0, stdout_has(*INSTALLED, *NOT_INSTALLED)),
    Row(("simple-show", "snapshot-list"), 0, stdout_has("_snapshot"), save_snapshot_file),
    Row(("save-snapshot", "--output", "snap.json"), 0, snapshot_saved),
    Row(("restore-snapshot", "snap.json"), 0, restored_without_python, snapshot_then_uninstall),
    # the same snapshot with a python package the box lacks: ignored without a pip flag ...
    Row(("restore-snapshot", "snap.json"), 0, restored_without_python, snapshot_with_absent_package_then_uninstall),
    # ... and wanted with --pip-non-url: offline with no wheelhouse, the restore is refused before a change
    Row(
        ("restore-snapshot", "snap.json", "--pip-non-url"),
        1,
        tree_is(("demo-mask-utils",)),
        snapshot_with_absent_package_then_uninstall,
        ("cm-absent-package",),
    ),
    Row(
        ("restore-snapshot", "snap.json", "--restore-to", "elsewhere"), 0, restored_elsewhere, snapshot_and_restore_dir
    ),
    Row(("restore-dependencies",), 0, tree_is(INSTALLED)),
    Row(("deps-in-workflow", "--workflow", "wf.json", "--output", "deps.json"), 0, deps_file, write_workflow),
    Row(("install-deps", "deps.json"), 0, tree_is((*INSTALLED, "demo-upscale-pack")), write_deps_file),
    Row(("post-install", "ComfyUI/custom_nodes/demo-mask-utils"), 0, tree_is(INSTALLED)),
    Row(("post-install", "ComfyUI/custom_nodes/no-such-pack"), 1, unchanged, None, ("request_invalid",)),
    Row(("clear",), 0, pending_dropped, schedule_pending),
    Row(("cli-only-mode", "enable"), 0, flag(True)),
    Row(("cli-only-mode", "disable"), 0, flag(False), cli_only_on),
    Row(("export-custom-node-ids", "ids.txt"), 0, file_written("ids.txt", *INSTALLED, *NOT_INSTALLED)),
    # offline with no registry data cached: a coded failure that says how to get it
    Row(("show-versions", "demo-mask-utils"), 1, unchanged, None, ("hint:",)),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_classic_command(row: Row, tree: Path):
    if row.setup:
        row.setup(tree)
    before = listing(tree)
    out = cli(*row.args, root=tree)
    after = listing(tree)
    assert out.returncode == row.exit, (out.stdout, out.stderr)
    for w in row.words:
        assert w in out.stderr, (w, out.stderr)
    row.check(tree, out, before, after)


def test_every_classic_command_has_a_row():
    classic = {
        "install",
        "reinstall",
        "uninstall",
        "update",
        "disable",
        "enable",
        "fix",
        "show",
        "simple-show",
        "save-snapshot",
        "restore-snapshot",
        "restore-dependencies",
        "install-deps",
        "deps-in-workflow",
        "post-install",
        "clear",
        "cli-only-mode",
        "export-custom-node-ids",
        "show-versions",
    }
    assert classic <= {r.args[0] for r in ROWS}
    from manager.cli.classic_commands import SHOW_LISTS

    assert set(SHOW_LISTS) <= {r.args[1] for r in ROWS if r.args[0] == "show"}
    for verb in ("update", "disable", "enable", "fix"):
        assert (verb, "all") in {r.args for r in ROWS}


def test_json_everywhere_on_the_classic_lists(tree: Path):
    for what in ("installed", "not-installed", "snapshot-list", "import-fail", "cnr", "snapshot"):
        out = cli("--json", "show", what, root=tree)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["ok"] is True
    out = cli("--json", "clear", root=tree)
    assert json.loads(out.stdout)["data"] == {"dropped": [], "removed_unreadable": False}


# --- exit codes, summary line, audit log ---------------------------------------------------------------
def audit_lines(root: Path) -> list[dict]:
    path = root / "user/__manager/logs/audit.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines() if line.strip()]


def test_partial_refused_and_failed_have_distinct_codes(tree: Path):
    # the second uninstall of the same pack fails when it runs: one of two done
    part = cli("uninstall", "demo-mask-utils", "demo-mask-utils", root=tree)
    assert part.returncode == exit_codes.PARTIAL, part.stderr
    assert "cm-cli.py uninstall: partial (exit 3): 1 of 2 task(s) done" in part.stderr.splitlines()[-1]
    refused = cli("--set", "allow_git_url_install=true", "install", "https://github.com/example/x", root=tree)
    assert refused.returncode == exit_codes.REFUSED, refused.stderr
    assert refused.stderr.splitlines()[-1].startswith("cm-cli.py install: refused (exit 4)")
    failed = cli("enable", "no-such-pack", root=tree)
    assert failed.returncode == exit_codes.FAILED
    assert "failed (exit 1)" in failed.stderr.splitlines()[-1]
    usage = cli("restore-snapshot", root=tree)
    assert usage.returncode == exit_codes.USAGE
    ok = cli("disable", "demo-prompt-kit", root=tree)
    assert ok.returncode == 0 and ok.stderr.splitlines()[-1] == "cm-cli.py disable: ok (exit 0): 1 of 1 task(s) done"


def test_state_changing_commands_leave_an_audit_line(tree: Path):
    assert cli("disable", "demo-mask-utils", root=tree).returncode == 0
    assert cli("cli-only-mode", "enable", root=tree).returncode == 0
    assert cli("show", "installed", root=tree).returncode == 0  # read-only: no line
    cli("--set", "allow_git_url_install=true", "install", "https://github.com/example/x", root=tree)
    lines = [e for e in audit_lines(tree) if e.get("door") == "cli"]
    commands = [(e["kind"], e["operation"], e.get("status")) for e in lines]
    assert ("task", "disable", None) in commands
    assert ("request", "disable", 0) in commands
    assert ("request", "cli-only-mode", 0) in commands
    assert not any(op == "show" for _k, op, _s in commands)
    refused = [e for e in lines if e["kind"] == "request" and e["operation"] == "install"][-1]
    assert refused["status"] == exit_codes.REFUSED and refused["decision"] == "denied"
    assert refused["route"] == "cm-cli.py install" and refused["method"] == "CLI"
    disable = next(e for e in lines if e["kind"] == "request" and e["operation"] == "disable")
    assert disable["target"] == "demo-mask-utils" and disable["task_ids"]


def test_restore_flags_say_what_they_do():
    out = subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), "restore-snapshot", "--help"], capture_output=True, text=True
    )
    text = " ".join(out.stdout.split())
    assert "classic restore flag" not in text
    assert "without any --pip-* flag restore-" in text and "restores no python package" in text
    assert "remote URLs" in text and "file:// paths" in text and "--restore-to" in text


def test_every_state_changing_command_is_audited_and_dry_runs_and_reads_are_not(tree: Path):
    from manager.cli.main import MUTATING, build_parser, changes_state

    # every command that writes state is in MUTATING (the rest only read, or write a file the user named)
    read_or_output = {
        "show", "simple-show", "search", "node-type", "models", "catalog-issues", "channels", "config",
        "registry", "show-versions", "doctor", "export-deps", "export-custom-node-ids", "deps-in-workflow",
        "demo", "serve",
    }  # fmt: skip
    commands = set(next(a for a in build_parser()._actions if a.dest == "command").choices)
    assert commands - read_or_output == set(MUTATING), "classify each new command: MUTATING or read-only"
    parse = build_parser().parse_args
    assert changes_state(parse(["cleanup-cache"])) and not changes_state(parse(["cleanup-cache", "--dry-run"]))
    assert changes_state(parse(["cache", "refresh"])) and not changes_state(parse(["cache", "status"]))
    assert changes_state(parse(["migrate"])) and not changes_state(parse(["migrate", "--dry-run"]))
    assert changes_state(parse(["undo", "t1"])) and not changes_state(parse(["undo", "--list"]))
    assert changes_state(parse(["missing-nodes", "w.json", "--install"]))
    assert not changes_state(parse(["missing-nodes", "w.json"]))

    assert cli("cleanup-cache", "--dry-run", root=tree).returncode == 0
    assert cli("cleanup-cache", "--older-than", "0", root=tree).returncode == 0
    assert cli("cache", "status", root=tree).returncode == 0
    lines = [e for e in audit_lines(tree) if e.get("door") == "cli" and e["kind"] == "request"]
    cleanup = [e for e in lines if e["operation"] == "cleanup-cache"]
    assert len(cleanup) == 1 and cleanup[0]["status"] == 0 and cleanup[0]["route"] == "cm-cli.py cleanup-cache"
    assert not any(e["operation"] == "cache" for e in lines)
