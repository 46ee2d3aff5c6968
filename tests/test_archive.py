"""Safe extraction: real zip and tar archives built here, hostile ones refused with nothing written."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from manager.archive import ArchiveLimits, extract_archive, extract_tar, extract_zip, safe_member_name
from manager.errors import ArchiveInvalid, ArchiveTooLarge, ArchiveUnsafe
from support import treesum


# --- builders ------------------------------------------------------------------------------
def make_zip(path: Path, entries: list[tuple], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """entries: (name, data) files, (name, None) dirs, (name, target, "link") symlinks."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for entry in entries:
            name, data = entry[0], entry[1]
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.compress_type = compression
            if len(entry) == 3:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, data)
            elif data is None:
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                zf.writestr(info, b"")
            else:
                mode = entry[3] if len(entry) > 3 else 0o644
                info.external_attr = (stat.S_IFREG | mode) << 16
                zf.writestr(info, data)
    return path


def make_tar(path: Path, members: list[tuple[str, str, bytes | str]], mode: str = "w:gz") -> Path:
    """members: (kind, name, data or link target); kind in file, dir, sym, hard, chr, fifo."""
    types = {
        "dir": tarfile.DIRTYPE,
        "sym": tarfile.SYMTYPE,
        "hard": tarfile.LNKTYPE,
        "chr": tarfile.CHRTYPE,
        "fifo": tarfile.FIFOTYPE,
    }
    with tarfile.open(path, mode) as tf:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                raw = data if isinstance(data, bytes) else data.encode()
                info.size = len(raw)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(raw))
            else:
                info.type = types[kind]
                if kind in ("sym", "hard"):
                    info.linkname = str(data)
                tf.addfile(info)
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """Every path below ``root`` with its content hash or link target (links not followed)."""
    return treesum.listing(root)


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """A folder holding archives, a 'custom_nodes' parent for targets, and a bystander file."""
    (tmp_path / "archives").mkdir()
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "bystander.py").write_text("keep me\n")
    (tmp_path / "evil.py").write_text("original\n")
    return tmp_path


def assert_refused(
    area: Path, archive: Path, error: type, *, limits: ArchiveLimits = ArchiveLimits(), reason: str = ""
) -> Exception:
    before = tree_digest(area)
    target = area / "nodes" / "pack"
    with pytest.raises(error) as exc:
        extract_archive(archive, target, limits=limits)
    assert tree_digest(area) == before  # nothing written anywhere, nothing left behind
    assert not target.exists()
    if reason:
        assert reason in str(exc.value)
    return exc.value


# --- happy paths -----------------------------------------------------------------------------
def test_zip_extracts_files_dirs_modes_and_inner_links(area: Path):
    archive = make_zip(
        area / "archives" / "ok.zip",
        [
            ("__init__.py", b"NODE_CLASS_MAPPINGS = {}\n"),
            ("web/", None),
            ("web/js/app.js", b"console.log(1)\n"),
            ("bin/tool.sh", b"#!/bin/sh\n", 0, 0o755),
            ("sub\\win.py", b"x = 1\n"),  # made on Windows
            ("./dot/./x.py", b""),
            ("web/current.js", "js/app.js", "link"),
        ],
    )
    target = area / "nodes" / "pack"
    paths = extract_zip(archive, target)
    assert paths == sorted(["__init__.py", "bin/tool.sh", "dot/x.py", "sub/win.py", "web/current.js", "web/js/app.js"])
    assert (target / "web" / "current.js").read_text() == "console.log(1)\n"
    assert os.access(target / "bin" / "tool.sh", os.X_OK) and not os.access(target / "__init__.py", os.X_OK)
    assert sorted(p.name for p in (area / "nodes").iterdir()) == ["bystander.py", "pack"]


def test_tar_gz_extracts(area: Path):
    archive = make_tar(
        area / "archives" / "ok.tar.gz",
        [
            ("dir", "pkg", b""),
            ("file", "pkg/__init__.py", "x = 1\n"),
            ("file", "pkg/data/a.txt", "a"),
            ("sym", "pkg/alias.py", "__init__.py"),
        ],
    )
    target = area / "nodes" / "pack"
    assert extract_archive(archive, target) == ["pkg/__init__.py", "pkg/alias.py", "pkg/data/a.txt"]
    assert (target / "pkg" / "alias.py").read_text() == "x = 1\n"
    plain = make_tar(area / "archives" / "ok.tar", [("file", "a.py", "a")], mode="w")
    assert extract_tar(plain, area / "nodes" / "plain") == ["a.py"]


def test_empty_existing_target_is_reused_and_non_empty_refused(area: Path):
    archive = make_zip(area / "archives" / "ok.zip", [("a.py", b"a")])
    target = area / "nodes" / "pack"
    target.mkdir()
    assert extract_zip(archive, target) == ["a.py"]
    with pytest.raises(FileExistsError):
        extract_zip(archive, target)
    assert (target / "a.py").read_bytes() == b"a"


# --- hostile zips ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,reason",
    [
        ("../evil.py", "traversal"),
        ("pack/../../evil.py", "traversal"),
        ("..\\evil.py", "traversal"),
        ("/tmp/evil.py", "absolute"),
        ("\\evil.py", "absolute"),
        ("C:/evil.py", "drive letter"),
        ("C:evil.py", "drive letter"),
        ("sub/file.py:stream", "':'"),
    ],
)
def test_zip_traversal_and_absolute_names_refused(area: Path, name: str, reason: str):
    archive = make_zip(area / "archives" / "bad.zip", [("ok.py", b"fine"), (name, b"pwned")])
    err = assert_refused(area, archive, ArchiveUnsafe, reason=reason)
    assert err.code == "archive_unsafe" and err.details["entry"] == name


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize(
    "entries",
    [
        [("escape", "../../evil.py", "link")],
        [("escape", "/etc/passwd", "link")],
        [("sub/", None), ("sub/up", "..", "link"), ("l2", "sub/up/..", "link")],  # chain: escapes only when resolved
        [("link", "sub", "link"), ("link/x.py", b"through the link")],
        [("a.py", b"1"), ("a.py", b"2")],
        [("a.py", b"1"), ("a.py/b.py", b"2")],
    ],
)
def test_zip_link_escapes_duplicates_and_file_parents_refused(area: Path, entries: list):
    archive = make_zip(area / "archives" / "bad.zip", [("ok.py", b"fine"), *entries])
    assert_refused(area, archive, ArchiveUnsafe)


def test_zip_limits(area: Path):
    many = make_zip(area / "archives" / "many.zip", [(f"f{i}.py", b"x") for i in range(11)])
    err = assert_refused(area, many, ArchiveTooLarge, limits=ArchiveLimits(max_entries=10))
    assert err.code == "archive_too_large" and err.details["limit"] == "entry count"
    big = make_zip(area / "archives" / "big.zip", [("big.bin", os.urandom(4096))])
    err = assert_refused(area, big, ArchiveTooLarge, limits=ArchiveLimits(max_entry_bytes=4000))
    assert err.details["entry"] == "big.bin"
    total = make_zip(area / "archives" / "total.zip", [(f"f{i}.bin", os.urandom(3000)) for i in range(4)])
    assert_refused(area, total, ArchiveTooLarge, limits=ArchiveLimits(max_total_bytes=10_000))


def test_zip_bomb_refused_by_ratio(area: Path):
    bomb = make_zip(area / "archives" / "bomb.zip", [("zeros.bin", bytes(20 << 20))])
    assert bomb.stat().st_size < 100_000
    err = assert_refused(area, bomb, ArchiveTooLarge, reason="compression ratio")
    assert err.details["value"] > 200


def test_zip_lying_about_its_size_is_caught_while_writing(area: Path):
    """A header that claims a tiny size cannot smuggle a large entry past the caps."""
    archive = make_zip(area / "archives" / "liar.zip", [("small.bin", bytes(5000))], compression=zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    # patch the central-directory uncompressed size (offset 24 in the record) down to 10 bytes
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises((ArchiveInvalid, ArchiveTooLarge)):
        extract_zip(archive, area / "nodes" / "pack", limits=ArchiveLimits(max_entry_bytes=100))
    assert not (area / "nodes" / "pack").exists()


def test_not_an_archive(area: Path):
    junk = area / "archives" / "junk.zip"
    junk.write_bytes(b"this is not a zip file at all" * 10)
    assert_refused(area, junk, ArchiveInvalid)


# --- hostile tars -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "members,reason",
    [
        ([("file", "../evil.py", "x")], "traversal"),
        ([("file", "/evil.py", "x")], "absolute"),
        ([("sym", "escape", "../../evil.py")], "outside"),
        ([("file", "a.py", "x"), ("hard", "b.py", "a.py")], "hard link"),
        ([("hard", "b.py", "/etc/passwd")], "hard link"),
        ([("chr", "dev", "")], "special file"),
        ([("fifo", "pipe", "")], "special file"),
    ],
)
def test_tar_hostile_members_refused(area: Path, members: list, reason: str):
    archive = make_tar(area / "archives" / "bad.tar.gz", [("file", "ok.py", "fine"), *members])
    assert_refused(area, archive, ArchiveUnsafe, reason=reason)


def test_tar_bomb_refused(area: Path):
    bomb = make_tar(area / "archives" / "bomb.tar.gz", [("file", "zeros.bin", bytes(20 << 20))])
    assert_refused(area, bomb, ArchiveTooLarge, reason="compression ratio")


def test_safe_member_name():
    assert safe_member_name("a/./b//c.py") == "a/b/c.py"
    for bad in ("", ".", "./", "a/\x00b", "..", "a/../../b"):
        with pytest.raises(ArchiveUnsafe):
            safe_member_name(bad)
