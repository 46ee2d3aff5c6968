"""Fault injection: SIGKILL an operation at named points, then a fresh Manager must find the tree
consistent and the next operation must succeed (see tests/support/faults.py, docs/quality.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager.layout import Layout
from manager.network import run_sync
from manager.tasks import TaskState
from support.bundles import make_creator
from support.faults import POINTS, assert_tree_consistent, check_tree, pack_listings, run_and_kill, run_install
from support.gitrepos import make_repo
from support.ops_fixtures import catalog_entry, write_channel, write_config
from support.treesum import listing

pytestmark = [pytest.mark.fault, pytest.mark.offline_suite]  # no socket, loopback included

PACK_ID = "fault-pack"
INSTALL_PY = (
    "import pathlib, time\n"
    "for i in range(6):\n"
    "    print(f'setting up {i}', flush=True)\n"
    "    time.sleep(0.03)\n"
    "pathlib.Path('install-script-ran').write_text('yes')\n"
)


@pytest.fixture(scope="module")
def pack_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pack repository big enough that a clone takes a moment, with requirements and install.py."""
    info = make_repo(tmp_path_factory.mktemp("sources") / PACK_ID, name=PACK_ID)
    files = {f"nodes/n{i:03}.py": f"VALUE = {i}\n" * 40 for i in range(400)}
    files["install.py"] = INSTALL_PY
    files["requirements.txt"] = "packaging\n"
    info.commit("many files", files)
    return info.path


def make_tree(base: Path, repo: Path) -> Layout:
    """An offline ComfyUI tree whose local channel lists the pack repo, with one pack installed."""
    root = base / "ComfyUI"
    for sub in ("custom_nodes/existing-pack", "models", "user"):
        (root / sub).mkdir(parents=True)
    (root / "custom_nodes/existing-pack/__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (root / "custom_nodes/single_file_node.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    channel = write_channel(base / "channel", [catalog_entry(PACK_ID, repo.as_uri())])
    write_config(root, network_mode="offline", channel_url=channel)
    return Layout.from_root(root)


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory, pack_repo: Path) -> dict:
    """What a complete, uninterrupted install produces (the reference for 'not half-installed')."""
    layout = make_tree(tmp_path_factory.mktemp("reference"), pack_repo)
    task = run_install(layout.comfyui_root, PACK_ID)
    assert task.state is TaskState.DONE, task.error
    listings = pack_listings(layout)
    assert (layout.custom_nodes / PACK_ID / "site-deps" / "COMPLETE").is_file()
    assert (layout.custom_nodes / PACK_ID / "install-script-ran").is_file()
    return {PACK_ID: listings[PACK_ID]}


def _staged(layout: Layout) -> list[str]:
    return sorted(p.name for p in layout.staging_dir.iterdir()) if layout.staging_dir.is_dir() else []


def _recover_and_retry(layout: Layout, before: dict, expected: dict) -> None:
    """The next operation (the same install) succeeds and leaves exactly the complete pack."""
    task = run_install(layout.comfyui_root, PACK_ID)
    assert task.state is TaskState.DONE, task.error
    rep = assert_tree_consistent(layout, before=before, expected=expected)
    assert rep.packs.get(PACK_ID) == "complete"
    assert not _staged(layout), "the next operation must clear staging"


@pytest.mark.parametrize("point", ["after-staging", "clone", "deps", "install-script", "rename", "rename-done"])
def test_install_killed_leaves_tree_consistent(point: str, tmp_path: Path, pack_repo: Path, expected: dict) -> None:
    layout = make_tree(tmp_path, pack_repo)
    before = pack_listings(layout)
    run = run_and_kill(layout.comfyui_root, "install", point=point, spec=PACK_ID)
    assert run.status["reached"].startswith(point)
    rep = assert_tree_consistent(layout, before=before, expected=expected)
    # before the rename the pack must be absent; after it, complete (never anything in between)
    assert rep.packs.get(PACK_ID) == ("complete" if point == "rename-done" else None), rep
    if point in ("clone", "deps", "install-script"):
        assert any(layout.staging_dir.iterdir()), "the kill should have left work in staging"
    _recover_and_retry(layout, before, expected)


def test_lock_held_by_a_killed_child_is_free(tmp_path: Path, pack_repo: Path, expected: dict) -> None:
    """The operations lock (flock) dies with its holder: no stale lock, no waiting."""
    layout = make_tree(tmp_path, pack_repo)
    run_and_kill(layout.comfyui_root, "install", point="deps", spec=PACK_ID)
    lock = layout.locks_dir / "operations.lock"
    assert lock.exists(), "the child held the operations lock while installing"
    assert_tree_consistent(layout, before=pack_listings(layout), expected=expected)


def test_cache_write_killed_between_body_and_sidecar(tmp_path: Path, pack_repo: Path) -> None:
    """Kill after the body of a cached URL was replaced and before its sidecar was."""
    layout = make_tree(tmp_path, pack_repo)
    before = pack_listings(layout)
    run = run_and_kill(layout.comfyui_root, "cache-loop", point="cache-write", params={"rounds": 5})
    assert "meta.json #4" in run.status["reached"]
    _expect_cache_whole(layout, before)


def _expect_cache_whole(layout: Layout, before: dict) -> None:
    rep = check_tree(layout, before=before, expected={})
    assert not rep.problems, rep.problems  # a torn body/sidecar pair is healed from the old body
    _next_cache_write_succeeds(layout, before)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cache_write_killed_at_random_moment(seed: int, tmp_path: Path, pack_repo: Path) -> None:
    layout = make_tree(tmp_path, pack_repo)
    before = pack_listings(layout)
    run_and_kill(layout.comfyui_root, "cache-loop", kill_after=(0.05, 0.4), seed=seed)
    _expect_cache_whole(layout, before)


def _next_cache_write_succeeds(layout: Layout, before: dict) -> None:
    from manager.channel_cache import ChannelCache
    from manager.context import Manager

    manager = Manager.standalone(layout.comfyui_root, env={})
    cache = ChannelCache(layout.cache_dir / "channels", manager.gate)
    url = "https://channel.invalid/ch0/custom-node-list.json"
    cache.put(url, b'{"custom_nodes": []}')
    assert run_sync(cache.aget(url, refresh="never")).data == b'{"custom_nodes": []}'
    assert_tree_consistent(layout, before=before)


def test_snapshot_write_killed_before_replace(tmp_path: Path, pack_repo: Path) -> None:
    layout = make_tree(tmp_path, pack_repo)
    before = pack_listings(layout)
    run = run_and_kill(layout.comfyui_root, "snapshot-loop", point="snapshot-write", params={"rounds": 5})
    assert "fault-" in run.status["reached"]
    assert_tree_consistent(layout, before=before)
    _next_snapshot_succeeds(layout, before)


@pytest.mark.parametrize("seed", [1, 2])
def test_snapshot_write_killed_at_random_moment(seed: int, tmp_path: Path, pack_repo: Path) -> None:
    layout = make_tree(tmp_path, pack_repo)
    before = pack_listings(layout)
    run_and_kill(layout.comfyui_root, "snapshot-loop", kill_after=(0.05, 0.5), seed=seed)
    assert_tree_consistent(layout, before=before)
    _next_snapshot_succeeds(layout, before)


def _next_snapshot_succeeds(layout: Layout, before: dict) -> None:
    from manager.snapshots.model import Snapshot
    from manager.snapshots.store import SnapshotStore

    store = SnapshotStore(layout.snapshots_dir)
    store.save(Snapshot(created_at="2026-02-02T00:00:00Z"), "after-the-kill")
    entries = store.entries()
    assert [e for e in entries if e.error is not None] == []
    assert "after-the-kill" in [e.name for e in entries]
    assert_tree_consistent(layout, before=before)


STORES = ("git-mirror", "local-channel", "cache/archives/cnr", "snapshots", "bundles", "channels.list")


def _stores(layout: Layout) -> dict[str, str]:
    """Checksum listing of every store a bundle import fills (and channels.list)."""
    out: dict[str, str] = {}
    for name in STORES:
        path = layout.manager_dir / name
        if path.is_file():
            out[name] = path.read_text(encoding="utf-8")
        out.update({f"{name}/{k}": v for k, v in listing(path).items()})
    return out


@pytest.mark.parametrize("point", ["bundle-import-first", "bundle-import"])
def test_bundle_import_killed_leaves_tree_consistent(point: str, tmp_path: Path, pack_repo: Path) -> None:
    """Killed before the first store entry moves in, or after every one did, just before the
    manifest (the commit point): the next operation rolls every store back to what it was; the
    import then runs to the end."""
    from manager.bundles import Selection, create_bundle
    from manager.context import Manager

    creator = make_creator(tmp_path / "online")
    bundle = create_bundle(
        Manager.standalone(creator.root, env={}), Selection(snapshot=str(creator.snapshot)), tmp_path / "b.tar"
    )
    layout = make_tree(tmp_path, pack_repo)
    before, stores_before = pack_listings(layout), _stores(layout)
    run = run_and_kill(layout.comfyui_root, "bundle-import", point=point, spec=bundle.path)
    assert run.status["reached"].startswith(f"{point}: os.rename"), run.status
    filled = point == "bundle-import"  # else killed before the first move
    assert (layout.manager_dir / "git-mirror").is_dir() is filled, "the kill landed elsewhere"
    assert not (layout.manager_dir / "bundles").exists()
    assert layout.bundle_staging_dir.is_dir() and any(layout.staging_dir.glob(".txn-*.json"))
    assert_tree_consistent(layout, before=before)

    task = run_install(layout.comfyui_root, PACK_ID)  # the next operation rolls the import back
    assert task.state is TaskState.DONE, task.error
    assert _stores(layout) == stores_before, "an interrupted import must leave every store as it was"
    assert not layout.bundle_staging_dir.exists()

    run = run_and_kill(layout.comfyui_root, "bundle-import", spec=bundle.path, require_kill=False)
    assert run.status.get("finished", {}).get("state") == "done", run.describe()
    assert (layout.bundles_dir / f"{bundle.manifest_sha256}.json").is_file()
    assert (layout.git_mirror_dir / "example.invalid" / "test" / "pack-a.bundle").is_file()  # kept as it came
    assert (layout.cache_dir / "archives" / "cnr" / "reg-pack" / "1.0.0.zip").is_file()


def test_kill_points_are_named_and_documented() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "quality.md").read_text(encoding="utf-8")
    for name in POINTS:
        assert f"`{name}`" in docs, f"kill point {name} is not described in docs/quality.md"
