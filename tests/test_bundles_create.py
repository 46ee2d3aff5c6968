"""bundle create on real parts (a git mirror and a registry archive cache, no network): selections by
snapshot file and by catalog id, models carried with --with-models into the model store, the CLI's
progress and size summary, the tree left untouched, and coded refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from manager.bundles import Selection, create_bundle, import_bundle, verify_bundle
from manager.bundles.errors import BundleSourceMissing
from manager.context import Manager
from manager.errors import RequestInvalid
from manager.models.store import ModelStore
from manager.snapshots.model import PackState, Snapshot
from manager.snapshots.store import dump
from support import tools
from support.bundles import make_creator, make_tree, members, model_selection
from support.ops_fixtures import catalog_entry, write_channel, write_config
from support.treesum import listing

pytestmark = pytest.mark.offline_suite  # no socket at all: the sources are a git mirror and the archive cache

REPO = Path(__file__).resolve().parents[1]
CM = REPO / "cm-cli.py"
SKIP = ("user/__manager/logs", "user/__manager/locks")


@pytest.fixture(autouse=True)
def _git() -> None:
    tools.require("git")


def test_snapshot_selection_via_cli_prints_progress_and_sizes_and_changes_nothing(tmp_path: Path) -> None:
    creator = make_creator(tmp_path)
    before = listing(creator.root, skip=SKIP)
    out = subprocess.run(
        [
            sys.executable,
            str(CM),
            "--comfyui",
            str(creator.root),
            "bundle",
            "create",
            "--snapshot",
            str(creator.snapshot),
        ]
        + ["-o", str(tmp_path / "b.tar")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "git pack-a: fetching" in out.stderr and "registry reg-pack@1.0.0: from the archive cache" in out.stderr
    summary = out.stdout.splitlines()[0]
    assert "8 file(s)" in summary and "2 pack(s)" in summary and "git " in summary and "cnr " in summary, summary
    assert listing(creator.root, skip=SKIP) == before, "bundle create changed the ComfyUI tree"
    names = [n for n, _ in members(tmp_path / "b.tar")]
    assert names[0] == "manifest.json" and "git/example.invalid/test/pack-a.bundle" in names
    # the git bundle holds the pinned commit, every branch and every tag
    gb = tmp_path / "pack-a.bundle"
    gb.write_bytes(dict(members(tmp_path / "b.tar"))["git/example.invalid/test/pack-a.bundle"])
    heads = subprocess.run(["git", "bundle", "list-heads", str(gb)], capture_output=True, text=True, timeout=60).stdout
    assert creator.repo.commits[-1] in heads and "refs/tags/v1.0.0" in heads and "refs/heads/dev" in heads, heads


def test_pack_ids_from_the_catalog(tmp_path: Path) -> None:
    creator = make_creator(tmp_path)
    channel = write_channel(tmp_path / "channel", [catalog_entry("pack-a", creator.pack_url)])
    write_config(creator.root, network_mode="offline", channel_url=channel)
    manager = Manager.standalone(creator.root, env={})
    result = create_bundle(manager, Selection(pack_ids=("pack-a",)), tmp_path / "ids.tar")
    assert result.packs == ("pack-a",) and result.sizes.get("git", 0) > 0, result.to_dict()
    report = verify_bundle(manager, Path(result.path))
    assert report.ok and report.manifest is not None
    (pack,) = report.manifest.packs
    assert pack["commit"] == creator.repo.commits[-1] and pack["url"] == creator.pack_url


def test_the_bundle_channel_keeps_the_catalog_entry_and_its_node_types(tmp_path: Path) -> None:
    """Regression: the bundle's channel entry was always rebuilt from the snapshot (title = id, no
    author, description or node map: the catalog lookup read an attribute packs do not have)."""
    creator = make_creator(tmp_path)
    entry = {**catalog_entry("pack-a", creator.pack_url, title="Pack A"), "pip": ["extra-lib"]}
    channel = write_channel(tmp_path / "channel", [entry], node_map={creator.pack_url: ["PackANode"]})
    write_config(creator.root, network_mode="offline", channel_url=channel)
    manager = Manager.standalone(creator.root, env={})
    result = create_bundle(manager, Selection(pack_ids=("pack-a",)), tmp_path / "ids.tar")
    files = dict(members(Path(result.path)))
    (carried,) = json.loads(files["channel/custom-node-list.json"])["custom_nodes"]
    assert {k: carried[k] for k in ("title", "author", "description", "reference", "pip")} == {
        "title": "Pack A",
        "author": "test",
        "description": "pack-a for tests",
        "reference": creator.pack_url,
        "pip": ["extra-lib"],
    }, carried
    node_map = json.loads(files["channel/extension-node-map.json"])
    assert node_map == {creator.pack_url: [["PackANode"], {"title_aux": "Pack A"}]}, node_map


def test_models_go_into_the_model_store(tmp_path: Path) -> None:
    creator = make_creator(tmp_path)
    model, selection = model_selection(creator, tmp_path, b"\0")
    manager = Manager.standalone(creator.root, env={})
    result = create_bundle(manager, Selection(snapshot=str(selection)), tmp_path / "m.tar", with_models=True)
    assert result.sizes.get("model") == 4096, result.to_dict()
    box = Manager.standalone(make_tree(tmp_path / "box" / "ComfyUI"), env={})
    import_bundle(box, Path(result.path))
    stored = box.layout.model_store_dir / "loras" / "tiny.safetensors"
    assert stored.read_bytes() == model.read_bytes()
    roots = [r.path for r in ModelStore.from_manager(Manager.standalone(box.layout.comfyui_root, env={})).local_roots]
    assert box.layout.model_store_dir in roots


def test_bundled_models_keep_their_model_list_entries_so_install_model_finds_them(tmp_path: Path) -> None:
    """Regression (issue 20's joint round trip): the bundle's channel had an empty model list, so a
    bundled model sat in the model store (and on the fleet mirror) but no ``install-model`` found it."""
    creator = make_creator(tmp_path)
    model, selection = model_selection(creator, tmp_path, b"\1")
    channel = write_channel(tmp_path / "channel", [catalog_entry("pack-a", creator.pack_url)])
    entry = {"name": "Tiny", "type": "lora", "base": "SD1.5", "save_path": "loras", "filename": "tiny.safetensors"}
    listed = [
        {**entry, "url": "https://huggingface.co/o/tiny/resolve/main/tiny.safetensors", "description": "bundled"},
        {
            **entry,
            "name": "Other",
            "filename": "other.safetensors",
            "url": "https://huggingface.co/o/x/other.safetensors",
        },
    ]
    (tmp_path / "channel" / "model-list.json").write_text(json.dumps({"models": listed}))
    write_config(creator.root, network_mode="offline", channel_url=channel)
    manager = Manager.standalone(creator.root, env={})
    result = create_bundle(manager, Selection(snapshot=str(selection)), tmp_path / "m.tar", with_models=True)
    model_list = json.loads(dict(members(Path(result.path)))["channel/model-list.json"])
    assert [(m["name"], m["filename"], m["url"]) for m in model_list["models"]] == [
        ("Tiny", "tiny.safetensors", listed[0]["url"])
    ], model_list  # the bundled model's entry only
    root = make_tree(tmp_path / "box" / "ComfyUI")
    write_config(root, network_mode="offline", channel_url=(root / "user" / "__manager" / "local-channel").as_uri())
    import_bundle(Manager.standalone(root, env={}), Path(result.path))
    out = subprocess.run(
        [sys.executable, str(CM), "--comfyui", str(root), "install-model", "tiny.safetensors"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (root / "models" / "loras" / "tiny.safetensors").read_bytes() == model.read_bytes()


def test_refusals_are_coded(tmp_path: Path) -> None:
    creator = make_creator(tmp_path)
    manager = Manager.standalone(creator.root, env={})
    with pytest.raises(RequestInvalid):
        create_bundle(manager, Selection(), tmp_path / "none.tar")
    snap = Snapshot(
        created_at="2026-12-01T00:00:00Z",
        packs=(PackState(name="pack-a", kind="git", id="pack-a", url=creator.pack_url, commit="ab" * 20),),
    )
    bad = tmp_path / "bad.json"
    bad.write_bytes(dump(snap))
    with pytest.raises(BundleSourceMissing) as err:
        create_bundle(manager, Selection(snapshot=str(bad)), tmp_path / "bad.tar")
    assert "ab" * 20 in err.value.message and err.value.details["pack"] == "pack-a"
    assert not (tmp_path / "bad.tar").exists() and not list(tmp_path.glob(".bundle-work-*"))
