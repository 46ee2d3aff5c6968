"""Inventory scan on real trees: git clones (copied), registry packs, files, disabled variants."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from manager.catalog import Catalog, ChannelFiles
from manager.inventory import parse_disabled_name, parse_git_config, read_git_meta, read_tracking, scan
from manager.layout import Layout
from manager.records import Channel
from support.gitrepos import PackTree, build_pack_tree, git, make_repo

pytestmark = pytest.mark.usefixtures("git_bin")  # no git: every test here FAILS with the install command


@pytest.fixture
def template(tmp_path: Path) -> Path:
    up = make_repo(tmp_path / "upstream")
    dest = tmp_path / "template"
    git(tmp_path, "clone", "-q", str(up.path), str(dest))
    return dest


@pytest.fixture
def tree(comfy_tree: Path, template: Path) -> PackTree:
    return build_pack_tree(comfy_tree / "custom_nodes", template)


def test_scan_of_200_packs_reports_every_kind(tree: PackTree):
    inv = scan(Layout.from_root(tree.custom_nodes.parent))
    assert tree.total == 200 and len(inv.packs) == 200
    kinds: dict[str, int] = {}
    for p in inv.packs:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    assert kinds == tree.counts
    assert len(inv.disabled) == tree.disabled == 10
    names = {p.name for p in inv.packs}
    for noise in (
        "__pycache__",
        ".cm-staging.disabled",
        ".cm-trash.disabled",
        ".hidden-pack",
        "README.md",
        "notes.txt",
        ".DS_Store",
        ".disabled",
    ):
        assert noise not in names
    assert all(not p.problems for p in inv.packs), [p.problems for p in inv.packs if p.problems]


def test_git_metadata_read_from_disk(tree: PackTree, template: Path):
    inv = scan(Layout.from_root(tree.custom_nodes.parent))
    git_packs = {p.name: p for p in inv.packs if p.kind == "git"}
    older = git(template, "rev-parse", "HEAD~1")
    for name, p in git_packs.items():
        if name in tree.detached:
            assert p.detached and p.branch == "" and p.commit == older
        else:
            assert not p.detached and p.branch == "main" and p.commit == tree.head, name
        if p.enabled:
            assert p.remote_url == f"https://github.com/example/{name}"
            assert p.cnr_id == name and p.has_requirements
    assert tree.gitfile and all(git_packs[n].commit == tree.head for n in tree.gitfile)
    # what git itself says, for one pack of each special shape
    for name in (tree.detached[0], tree.gitfile[0], "git-pack-5", "git-pack-0"):
        assert git_packs[name].commit == git(tree.custom_nodes / name, "rev-parse", "HEAD")


def test_registry_packs_and_disabled_naming(tree: PackTree):
    inv = scan(Layout.from_root(tree.custom_nodes.parent))
    by_name = {p.name: p for p in inv.packs}
    p = by_name["cnr-3"]
    assert (p.kind, p.pack_id, p.version, p.cnr_id, p.publisher_id, p.display_name) == (
        "cnr",
        "cnr-3",
        "1.3.0",
        "cnr-3",
        "example",
        "Cnr-3",
    )
    assert p.enabled and p.has_tracking and not p.has_requirements and by_name["cnr-4"].has_requirements
    assert p.repository == "https://github.com/example/cnr-3"
    d = by_name["cnr-0@0_9_0"]
    assert (d.enabled, d.disabled_style, d.pack_id, d.version) == (False, "dir", "cnr-0", "0.9.0")
    n = by_name["old-git-1@nightly"]
    assert (n.kind, n.enabled, n.version, n.pack_id) == ("git", False, "nightly", "old-git-1")
    legacy = by_name["legacy-2.disabled"]
    assert (legacy.enabled, legacy.disabled_style, legacy.pack_id) == (False, "suffix", "legacy-2")
    f = by_name["old_single_3.py.disabled"]
    assert (f.kind, f.enabled, f.pack_id, f.disabled_style) == ("file", False, "old_single_3.py", "suffix")
    assert (by_name["off_4.py"].kind, by_name["off_4.py"].disabled_style) == ("file", "dir")
    assert by_name["plain-0"].kind == "folder" and by_name["plain-0"].has_install_script
    assert not by_name["plain-1"].has_install_script
    assert [x.name for x in inv.find("CNR-0")] == ["cnr-0", "cnr-0@0_9_0"]


def test_pack_both_enabled_and_disabled_is_a_conflict_not_merged(tree: PackTree):
    inv = scan(Layout.from_root(tree.custom_nodes.parent))
    got = {(c.key, tuple(p.name for p in c.enabled), tuple(p.name for p in c.disabled)) for c in inv.conflicts}
    assert {(e, d) for _, e, d in got} == {(("cnr-0",), ("cnr-0@0_9_0",)), (("cnr-5",), ("cnr-5@0_9_0",))}
    assert sum(1 for n in inv.notices if n.code == "pack_conflict") == 2
    assert len(inv.find("cnr-0")) == 2  # both copies listed separately


def test_conflict_by_old_suffix_and_by_repository(comfy_tree: Path, template: Path):
    cn = comfy_tree / "custom_nodes"
    shutil.copytree(template, cn / "MyPack", symlinks=True)
    shutil.copytree(template, cn / ".disabled" / "mypack-renamed", symlinks=True)  # same remote, other name
    (cn / "tool.py").write_text("")
    (cn / "tool.py.disabled").write_text("")
    inv = scan(Layout.from_root(comfy_tree))
    keys = sorted(c.key.split(":", 1)[0] for c in inv.conflicts)
    assert len(inv.conflicts) == 2 and "name" in keys
    assert any(c.disabled[0].name == "mypack-renamed" for c in inv.conflicts)


def test_catalog_matching_by_url_and_cnr_id(tree: PackTree):
    entries = [
        {
            "author": "e",
            "title": "Git pack 7",
            "reference": "https://github.com/example/git-pack-7",
            "files": ["https://github.com/example/git-pack-7.git"],
            "install_type": "git-clone",
            "description": "",
        },
        {
            "author": "e",
            "title": "Cnr 8",
            "id": "cnr-8",
            "reference": "https://github.com/other/elsewhere",
            "files": ["https://github.com/other/elsewhere"],
            "install_type": "git-clone",
            "description": "",
        },
        {
            "author": "e",
            "title": "By repo",
            "reference": "https://github.com/Example/CNR-9/",
            "files": ["https://github.com/example/cnr-9"],
            "install_type": "git-clone",
            "description": "",
        },
    ]
    cat = Catalog.build(
        [
            ChannelFiles(
                Channel("t", "file:///t"), {"custom-node-list.json": json.dumps({"custom_nodes": entries}).encode()}
            )
        ]
    )
    inv = scan(Layout.from_root(tree.custom_nodes.parent), catalog=cat)
    by_name = {p.name: p for p in inv.packs}
    assert by_name["git-pack-7"].catalog_id == cat.by_reference("https://github.com/example/git-pack-7").id
    assert by_name["cnr-8"].catalog_id == "cnr-8"
    assert by_name["cnr-9"].catalog_id == cat.by_reference("https://github.com/example/cnr-9").id != ""
    matched = [p.name for p in inv.packs if p.catalog_id]
    assert sorted(matched) == ["cnr-8", "cnr-9", "git-pack-7"]


def test_bad_metadata_is_reported_not_raised(comfy_tree: Path, template: Path):
    cn = comfy_tree / "custom_nodes"
    shutil.copytree(template, cn / "broken-git", symlinks=True)
    (cn / "broken-git" / ".git" / "HEAD").write_text("garbage\n")
    (cn / "bad-toml").mkdir()
    (cn / "bad-toml" / ".tracking").write_text("x\n")
    (cn / "bad-toml" / "pyproject.toml").write_text("[project\nname = ")
    (cn / "empty").mkdir()
    (cn / "dangling").symlink_to(comfy_tree / "nowhere")
    (cn / "linked").symlink_to(template)
    inv = scan(Layout.from_root(comfy_tree))
    by_name = {p.name: p for p in inv.packs}
    assert by_name["broken-git"].kind == "git" and "HEAD" in by_name["broken-git"].problems[0]
    assert by_name["bad-toml"].kind == "cnr" and "pyproject" in by_name["bad-toml"].problems[0]
    assert by_name["empty"].kind == "unknown"
    assert "dangling" not in by_name
    assert by_name["linked"].is_link and by_name["linked"].kind == "git"


def test_missing_custom_nodes_is_an_empty_inventory(tmp_path: Path):
    inv = scan(Layout.from_root(tmp_path / "nothing"))
    assert inv.packs == () and inv.conflicts == ()


def test_worktree_gitdir_with_commondir(tmp_path: Path, template: Path):
    wt = tmp_path / "wt"
    git(template, "worktree", "add", "-q", "-b", "feature", str(wt), "HEAD~1")
    meta = read_git_meta(wt)
    assert (meta.branch, meta.commit) == ("feature", git(wt, "rev-parse", "HEAD"))
    assert meta.remote_url == git(template, "remote", "get-url", "origin")


def test_git_config_parser_handles_quotes_comments_and_old_sections():
    cfg = parse_git_config(
        '[core]\n\tbare = false ; comment\n[remote "up stream"]\n\turl = "https://h/x y" # c\n'
        '[branch.main]\n remote = up stream\n[remote "origin"]\nurl = a\nurl = b\n'
    )
    assert cfg["remote.up stream.url"] == ["https://h/x y"]
    assert cfg["branch.main.remote"] == ["up stream"] and cfg["core.bare"] == ["false"]
    assert cfg["remote.origin.url"] == ["a", "b"]


def test_disabled_name_parsing():
    assert parse_disabled_name("comfyui-impact-pack@8_8_1") == ("comfyui-impact-pack", "8.8.1", False)
    assert parse_disabled_name("pack@nightly") == ("pack", "nightly", False)
    assert parse_disabled_name("pack.disabled") == ("pack", "", True)
    assert parse_disabled_name("user@example-folder") == ("user@example-folder", "", False)


def test_read_tracking(tmp_path: Path):
    (tmp_path / ".tracking").write_text("a.py\n\nsub/b.py\n")
    assert read_tracking(tmp_path) == ("a.py", "sub/b.py")
    assert read_tracking(tmp_path / "none") == ()


def test_scan_spawns_no_process(tree: PackTree):
    code = (
        "import sys; spawned = []\n"
        "sys.addaudithook(lambda ev, a: spawned.append(ev) if ev in ('subprocess.Popen', 'os.posix_spawn', "
        "'os.exec', 'os.fork') else None)\n"
        "from manager.inventory import scan; from manager.layout import Layout\n"
        f"inv = scan(Layout.from_root({str(tree.custom_nodes.parent)!r}))\n"
        "print(len(inv.packs), spawned)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["200", "[]"]


def test_link_inside_disabled_is_a_notice_never_a_pack(comfy_tree: Path, template: Path, tmp_path: Path):
    cn = comfy_tree / "custom_nodes"
    outside = tmp_path / "outside-pack"
    shutil.copytree(template, outside, symlinks=True)
    (cn / ".disabled").mkdir(parents=True, exist_ok=True)
    (cn / ".disabled" / "evil@nightly").symlink_to(outside)
    (cn / ".disabled" / "real").mkdir()
    (cn / "linked-dev").symlink_to(outside)  # a pack the user linked in: listed as before
    inv = scan(Layout.from_root(comfy_tree))
    names = {p.name for p in inv.packs}
    assert "evil@nightly" not in names and not inv.find("evil")
    assert {"real", "linked-dev"} <= names
    notice = next(n for n in inv.notices if n.code == "working_folder_link")
    assert notice.level == "error" and notice.details == {
        "path": str(cn / ".disabled" / "evil@nightly"),
        "target": str(outside),
    }
    assert "rm " in notice.hint


def test_disabled_folder_that_is_a_link_lists_nothing_from_it(comfy_tree: Path, template: Path, tmp_path: Path):
    cn = comfy_tree / "custom_nodes"
    outside = tmp_path / "elsewhere"
    shutil.copytree(template, outside / "pack", symlinks=True)
    (cn / ".disabled").symlink_to(outside)
    inv = scan(Layout.from_root(comfy_tree))
    assert inv.disabled == ()
    assert [n.details["path"] for n in inv.notices if n.code == "working_folder_link"] == [str(cn / ".disabled")]
