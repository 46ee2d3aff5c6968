"""Paths derived from the ComfyUI root, ensure_inside, atomic writes and the operation lock."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from manager.errors import LockBusy, PathEscape
from manager.fsops import atomic_write_bytes, atomic_write_json, file_lock, remove_stale_temp_files
from manager.layout import Layout, ensure_inside


def test_layout_paths(comfy_tree: Path):
    lay = Layout.from_root(comfy_tree)
    assert lay.custom_nodes == comfy_tree / "custom_nodes"
    assert lay.disabled_dir == comfy_tree / "custom_nodes" / ".disabled"
    assert lay.config_file == comfy_tree / "user" / "__manager" / "config.ini"
    # hidden working folders end in .disabled so ComfyUI never imports them as packs
    assert lay.staging_dir.name.endswith(".disabled") and lay.trash_dir.name.endswith(".disabled")
    assert lay.staging_dir.parent == lay.custom_nodes == lay.trash_dir.parent
    for p in (lay.cache_dir, lay.snapshots_dir, lay.wheelhouse_dir, lay.logs_dir, lay.locks_dir):
        assert lay.manager_dir in p.parents
    assert not (comfy_tree / "user" / "__manager").exists(), "computing paths creates nothing"


def test_layout_overrides(tmp_path: Path):
    lay = Layout.from_root(tmp_path / "c", user_dir=tmp_path / "u", manager_dir=tmp_path / "m")
    assert lay.config_file == tmp_path / "m" / "config.ini"
    assert lay.user_dir == tmp_path / "u"


@pytest.mark.parametrize("rel", ["../outside", "a/../../outside", "/etc/passwd"])
def test_ensure_inside_refuses_escapes(comfy_tree: Path, rel: str):
    with pytest.raises(PathEscape) as info:
        ensure_inside(comfy_tree / "custom_nodes" / rel, comfy_tree / "custom_nodes")
    assert info.value.code == "path_escape"


def test_ensure_inside_follows_symlinks(comfy_tree: Path, tmp_path: Path):
    link = comfy_tree / "custom_nodes" / "sneaky"
    link.symlink_to(tmp_path)
    with pytest.raises(PathEscape):
        ensure_inside(link / "file", comfy_tree / "custom_nodes")
    assert ensure_inside(comfy_tree / "custom_nodes" / "x" / "y", comfy_tree / "custom_nodes")


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "d" / "f.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def _slow_writer(path: str) -> None:
    # Killed while its temp file is open: the target must keep its old content.
    import manager.fsops as f

    real_fsync = os.fsync

    def stall(fd: int) -> None:
        time.sleep(30)
        real_fsync(fd)

    os.fsync = stall  # the child only; lets the parent SIGKILL mid-write
    f.atomic_write_bytes(path, b"new" * 1000)


def test_atomic_write_survives_sigkill(tmp_path: Path):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_slow_writer, args=(str(target),))
    proc.start()
    deadline = time.time() + 10
    while time.time() < deadline and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert target.read_bytes() == b"old"
    assert remove_stale_temp_files(tmp_path, older_than=0) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def _hold_lock(path: str, ready: multiprocessing.synchronize.Event) -> None:
    with file_lock(path):
        ready.set()
        time.sleep(30)


def test_lock_busy_then_free_after_holder_is_killed(tmp_path: Path):
    lock = tmp_path / "locks" / "ops.lock"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(lock), ready))
    proc.start()
    assert ready.wait(10)
    with pytest.raises(LockBusy) as info:
        with file_lock(lock, timeout=0.2):
            pass
    assert info.value.code == "lock_busy" and info.value.http_status == 409
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    with file_lock(lock, timeout=2):  # the kernel released it: no stale lock
        assert lock.exists()


# --- our working folders refuse links (issue 17, finding 6) ---------------------------------------
def test_refuse_links_checks_every_part_below_the_anchor_only(tmp_path: Path):
    from manager.errors import WorkingFolderLink
    from manager.fsops import refuse_links

    real_root = tmp_path / "disk" / "ComfyUI-user"
    real_root.mkdir(parents=True)
    anchor = tmp_path / "user"
    anchor.symlink_to(real_root)  # the user's own choice: allowed
    assert refuse_links(anchor / "__manager" / "snapshots", anchor) == anchor / "__manager" / "snapshots"
    (real_root / "__manager").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (real_root / "__manager" / "snapshots").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(WorkingFolderLink) as info:
        refuse_links(anchor / "__manager" / "snapshots" / "deeper", anchor, what="snapshots folder")
    err = info.value
    assert err.details == {
        "path": str(anchor / "__manager" / "snapshots"),
        "target": str(tmp_path / "elsewhere"),
        "what": "snapshots folder",
    }
    assert "rm " in err.hint and err.code == "working_folder_link"
    with pytest.raises(PathEscape):
        refuse_links(tmp_path / "other", anchor)


def test_layout_check_working_folders(comfy_tree: Path, tmp_path: Path):
    from manager.errors import WorkingFolderLink

    layout = Layout.from_root(comfy_tree)
    layout.check_working_folders()  # nothing there yet: fine
    layout.trash_dir.mkdir(parents=True)
    (layout.trash_dir / "entry").symlink_to(tmp_path)
    with pytest.raises(WorkingFolderLink, match="entry in the trash folder"):
        layout.check_working_folders()
    (layout.trash_dir / "entry").unlink()
    layout.check_working_folders()
    layout.manager_dir.mkdir(parents=True, exist_ok=True)
    (layout.manager_dir / "locks").symlink_to(tmp_path)
    with pytest.raises(WorkingFolderLink, match="locks folder"):
        layout.check_working_folders()


def test_file_lock_never_opens_through_a_link(tmp_path: Path):
    from manager.errors import WorkingFolderLink

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "op.lock").symlink_to(victim)
    with pytest.raises(WorkingFolderLink):
        with file_lock(tmp_path / "locks" / "op.lock"):
            pass
    assert victim.read_text() == "keep me\n"
    (tmp_path / "linked-locks").symlink_to(tmp_path / "locks")
    with pytest.raises(WorkingFolderLink):
        with file_lock(tmp_path / "linked-locks" / "other.lock", anchor=tmp_path):
            pass
    assert not (tmp_path / "locks" / "other.lock").exists()
