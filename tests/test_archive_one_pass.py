"""An archive install reads the archive once and never reads what it wrote (issue 21 item 4).

The inspection (native libraries, pickles, executables, file hashes) is gathered while the
extraction writes each file (``inspect_files.Collector``); it must equal a walk of the tree
(``inspect_tree``) in every detail. The install path is checked with a real counter: a
``sys.addaudithook`` on the interpreter's ``open`` event sees every file the process opens.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from manager.archive import extract_archive, extract_zip
from manager.inspect_files import Collector, inspect_tree
from manager.records import PolicyDecision
from support.ops_fixtures import make_env

ALLOW_LOCAL = PolicyDecision.allow("install", "local_path", "test").to_dict()
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 120
PICKLE = pickle.dumps({"weights": [1, 2, 3]}, protocol=4)


def _torch_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", PICKLE)
    return buf.getvalue()


def _far_pe() -> bytes:
    """A PE file whose header sits beyond the first 4 KiB (the collector keeps 4 KiB)."""
    head = bytearray(b"MZ" + b"\x00" * 62)
    head[0x3C:0x40] = (9000).to_bytes(4, "little")
    return bytes(head) + b"\x00" * (9000 - 64) + b"PE\x00\x00" + b"\x00" * 100


FILES: dict[str, bytes] = {
    "__init__.py": b"NODE_CLASS_MAPPINGS = {}\n",
    "z_last.py": b"Z = 1\n",
    "lib/a.so.1": ELF,
    "lib/sub/deep.dll": b"MZ" + b"\x00" * 200,
    "lib/far.exe": _far_pe(),
    "weights/f.bin": PICKLE,
    "weights/g.bin": b"\x00\x01 plain tensor bytes",
    "weights/h.pth": _torch_zip(),
    "weights/e.pkl": b"anything",
    "tools/tool": ELF,
    "tools/run.sh": b"#!/bin/sh\necho hi\n",
    "tools/data.txt": b"text",
    "empty.txt": b"",
    ".git/objects/xx": ELF,  # git's folder is never inspected
    "big.txt": random.Random(21).randbytes(3_000_000),  # more than one read chunk
}
EXEC = {"tools/tool", "tools/run.sh", "tools/data.txt"}


def _zip(path: Path, top: str) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel, data in FILES.items():
            info = zipfile.ZipInfo(f"{top}/{rel}" if top else rel)
            info.create_system = 3
            info.external_attr = (0o100755 if rel in EXEC else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        link = zipfile.ZipInfo(f"{top}/lib/link.so" if top else "lib/link.so")
        link.create_system = 3
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "a.so.1")  # a link is not a regular file: neither lists it
    return path


@pytest.mark.parametrize("top", ["", "pack-main"])
@pytest.mark.parametrize("hashes", [False, True])
def test_collector_equals_a_walk_of_the_extracted_tree(tmp_path: Path, top: str, hashes: bool):
    archive = _zip(tmp_path / "p.zip", top)
    target = tmp_path / "out"
    collector = Collector(hashes=hashes)
    extract_zip(archive, target, tap=collector.tap)
    root = target / top if top else target
    walked = inspect_tree(root, hashes=hashes)
    seen = collector.result(root, top)
    assert seen.findings == walked.findings
    assert seen.files == walked.files == len(FILES) - 1  # all but .git/objects/xx
    assert seen.hashes == walked.hashes
    if hashes:
        assert seen.hashes["big.txt"] == hashlib.sha256(FILES["big.txt"]).hexdigest()
    kinds = {f.path: f.kind for f in seen.findings}
    assert kinds["lib/far.exe"] == "executable" and kinds["weights/h.pth"] == "pickle"
    assert kinds["tools/data.txt"] == "exec_bit" and "tools/run.sh" not in kinds


def test_collector_sees_tar_members_too(tmp_path: Path):
    import tarfile

    archive = tmp_path / "p.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for rel, data in FILES.items():
            info = tarfile.TarInfo(f"pack/{rel}")
            info.size = len(data)
            info.mode = 0o755 if rel in EXEC else 0o644
            tf.addfile(info, io.BytesIO(data))
    collector = Collector(hashes=True)
    extract_archive(archive, tmp_path / "out", tap=collector.tap)
    root = tmp_path / "out" / "pack"
    assert collector.result(root, "pack") == inspect_tree(root, hashes=True)


class _Opens:
    """Every path the interpreter opens while ``active`` (audit event ``open``: builtin open, os.open)."""

    def __init__(self) -> None:
        self.active = False
        self.events: list[tuple[str, int]] = []
        sys.addaudithook(self._hook)  # hooks stay for the process: this one only records when active

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.active and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else -1
            mode = args[1] if isinstance(args[1], str) else ""
            writing = (flags >= 0 and flags & (os.O_WRONLY | os.O_RDWR)) or any(c in mode for c in "wax+")
            self.events.append((path, 1 if writing else 0))


@pytest.mark.parametrize("listed_hashes", [False, True])
def test_local_zip_install_reads_the_archive_once_and_no_written_file(tmp_path: Path, listed_hashes: bool):
    archive = _zip(tmp_path / "one-pass.zip", "one-pass-main")
    env = make_env(tmp_path, security_level="weak")
    if listed_hashes:  # the compromise list has a hash: every file is hashed, still in the one pass
        (env.root / "user" / "__manager" / "compromised.list").write_text("sha256:" + "0" * 64 + " # unrelated\n")
    opens = _Opens()
    try:
        opens.active = True
        task = env.run("install", str(archive), policy=ALLOW_LOCAL)
        opens.active = False
        assert task.state.value == "done", task.error
        pack = env.custom_nodes / "one-pass"
        assert (pack / "big.txt").read_bytes() == FILES["big.txt"]
        found = {f["path"]: f["kind"] for f in task.result["findings"]}
        assert found["lib/sub/deep.dll"] == "native_library" and found["tools/tool"] == "executable"
        staged = [(p, w) for p, w in opens.events if ".cm-staging.disabled" in p and "one-pass" in p]
        written = {p for p, w in staged if w}
        read_back = [p for p, w in staged if not w and Path(p).name in {Path(k).name for k in FILES}]
        assert len(written) >= len(FILES)  # every file was written ...
        # ... and none was opened again to be read (no second pass), except the .pth zip whose
        # member list settles whether it holds a pickle, and the PE whose header is past 4 KiB
        assert sorted(Path(p).name for p in read_back) == ["far.exe", "h.pth"]
        archive_reads = [p for p, _ in opens.events if p == str(archive)]
        assert 1 <= len(archive_reads) <= 2, archive_reads  # the zip check and the extraction
    finally:
        opens.active = False
        env.close()


def test_case_probe_reads_no_file_and_is_not_fooled_by_a_twin(tmp_path: Path):
    """The case check stats the extraction folder under its swapped-case name; on a case-sensitive
    filesystem a real sibling of that name is another folder, not the same one."""
    from manager.archive import _case_insensitive

    work = tmp_path / ".pack.extract-ab12.disabled"
    work.mkdir()
    assert _case_insensitive(work) is False
    (tmp_path / work.name.swapcase()).mkdir()  # a coincidental twin: a different inode
    assert _case_insensitive(work) is False
    assert sorted(p.name for p in work.iterdir()) == []  # no probe file left behind
    digits = tmp_path / "1234"  # nothing to swap: the probe-file fallback
    digits.mkdir()
    assert _case_insensitive(digits) is False and list(digits.iterdir()) == []
