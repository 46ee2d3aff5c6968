"""What a staged pack holds that is more than source code: native libraries, pickles, executables.

``inspect_tree(root)`` walks a staged pack (an extracted archive or a git clone, before it is
moved into ``custom_nodes/``) without following links and lists:

- ``native_library``: ``.so`` (also ``.so.1``), ``.dll``, ``.dylib``, ``.pyd``: loaded into the
  ComfyUI process by an import or ``ctypes``, invisible to a source review;
- ``pickle``: ``.pkl``/``.pickle``/``.joblib`` by name, and ``.pt``/``.pth``/``.ckpt``/``.bin``
  whose bytes are a pickle (the protocol 2-5 opcode) or a zip holding one (torch's format):
  unpickling runs code;
- ``executable``: any other file with ELF, PE or Mach-O magic;
- ``exec_bit``: the executable bit on a file that is not a script (no ``#!``, no script suffix):
  reported, never refused (git keeps such bits from Windows and macOS checkouts).

``decide_findings(findings, level, outside_catalog)`` is the rule (docs/decisions.md, issue 17):
at ``strong`` the first three kinds are refused in any pack, at ``normal`` in a pack from outside
the catalog and the registry, at ``normal-`` and ``weak`` they are only reported. The ``.git``
folder of a clone is skipped (git never runs what a clone brings there). With ``hashes=True``
every regular file's sha256 is returned too (the known-compromise list matches on it).

``Collector`` gives the same ``Inspection`` without a walk: an archive extraction hands it each
file's bytes as it writes them (``archive.FileTap``), so an archive is read once.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Finding",
    "Inspection",
    "REFUSABLE_KINDS",
    "inspect_tree",
    "decide_findings",
    "Collector",
]

NATIVE_SUFFIXES = (".so", ".dll", ".dylib", ".pyd")
PICKLE_NAMES = (".pkl", ".pickle", ".joblib")  # a pickle whatever the bytes say
PICKLE_CANDIDATES = (".pt", ".pth", ".ckpt", ".bin")  # a pickle when the bytes are one
SCRIPT_SUFFIXES = (".py", ".sh", ".bash", ".zsh", ".pl", ".rb", ".js", ".mjs", ".bat", ".cmd", ".ps1")
REFUSABLE_KINDS = ("native_library", "pickle", "executable")
_SO_VERSIONED = re.compile(r"\.so(\.\d+)+$")
_MACHO = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
_SKIP_DIRS = (".git",)
_MAX_LISTED = 200  # findings kept in a result; the count says how many there were
_HEAD = 4096  # bytes of a file's start kept by a Collector (magic numbers, the PE header offset)


@dataclass(frozen=True)
class Finding:
    """One file worth telling the user about; ``path`` is relative, ``/``-separated."""

    path: str
    kind: str  # native_library | pickle | executable | exec_bit
    detail: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "detail": self.detail, "size": self.size}


@dataclass(frozen=True)
class Inspection:
    """The findings of one tree and, when asked, the sha256 of each regular file."""

    findings: tuple[Finding, ...] = ()
    hashes: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    files: int = 0

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.findings[:_MAX_LISTED]]


def _head(path: Path, n: int = 64) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _binary_magic(head: bytes, path: Path) -> str:
    if head.startswith(b"\x7fELF"):
        return "ELF binary"
    if head[:4] in _MACHO:
        return "Mach-O binary" if head[:4] != b"\xca\xfe\xba\xbe" else "Mach-O universal binary (or Java class)"
    if head.startswith(b"MZ") and len(head) >= 64:
        offset = int.from_bytes(head[0x3C:0x40], "little")
        if offset + 4 <= len(head):
            return "PE (Windows) binary" if head[offset : offset + 4] == b"PE\x00\x00" else ""
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                if fh.read(4) == b"PE\x00\x00":
                    return "PE (Windows) binary"
        except (OSError, ValueError, OverflowError):
            return ""
    return ""


def _pickle_detail(head: bytes, path: Path) -> str:
    """Why the bytes are a pickle, or ""."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"pickle protocol {head[1]}"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist()[:10_000]:
                    if name.endswith(".pkl"):
                        return f"zip holding the pickle {name!r} (torch.save format)"
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
            return ""
    return ""


def _is_script(name: str, head: bytes) -> bool:
    return head.startswith(b"#!") or name.lower().endswith(SCRIPT_SUFFIXES)


def _classify(rel: str, path: Path, head: bytes, mode: int, size: int) -> Finding | None:
    """The finding for one regular file from its first bytes (``path`` is read only for a PE
    header beyond ``head`` or a zip's member list)."""
    name = rel.rsplit("/", 1)[-1]
    low = name.lower()
    magic = _binary_magic(head, path)
    if low.endswith(NATIVE_SUFFIXES) or _SO_VERSIONED.search(low):
        return Finding(rel, "native_library", magic or "native library (by name)", size)
    if low.endswith(PICKLE_NAMES):
        return Finding(rel, "pickle", _pickle_detail(head, path) or "pickle (by name)", size)
    if low.endswith(PICKLE_CANDIDATES):
        why = _pickle_detail(head, path)
        if why:
            return Finding(rel, "pickle", why, size)
    if magic:
        return Finding(rel, "executable", magic, size)
    if mode & 0o111 and not _is_script(name, head):
        return Finding(rel, "exec_bit", "executable bit on a file that is not a script", size)
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def inspect_tree(root: str | os.PathLike[str], *, hashes: bool = False, only: Iterable[str] = ()) -> Inspection:
    """Inspect every regular file under ``root`` (links are not followed, ``.git`` is skipped).

    ``only`` limits the walk to these top-level entries of ``root`` (single-file installs);
    ``hashes=True`` also returns each file's sha256."""
    base = Path(root)
    findings: list[Finding] = []
    digests: dict[str, str] = {}
    count = 0
    tops = list(only)
    starts = [base / t for t in tops] if tops else [base]
    for start in starts:
        if start.is_symlink():
            continue
        if start.is_file():
            walk: Iterable[tuple[str, list[str], list[str]]] = [(str(start.parent), [], [start.name])]
        else:
            walk = os.walk(start, followlinks=False)
        for folder, dirs, names in walk:
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            for name in sorted(names):
                path = Path(folder) / name
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                count += 1
                rel = path.relative_to(base).as_posix()
                found = _classify(rel, path, _head(path), st.st_mode, st.st_size)
                if found is not None:
                    findings.append(found)
                if hashes:
                    digests[rel] = _sha256(path)
    return Inspection(tuple(findings), digests, count)


def _walk_key(rel: str) -> list[tuple[int, str]]:
    """Sorts relative paths in ``inspect_tree``'s walk order: a folder's files, then its sorted subfolders."""
    *folders, name = rel.split("/")
    return [(1, f) for f in folders] + [(0, name)]


class _Tap:
    """One file's first bytes and running sha256, fed by the extraction that writes it."""

    __slots__ = ("owner", "name", "head", "digest")

    def __init__(self, owner: Collector, name: str) -> None:
        self.owner = owner
        self.name = name
        self.head = b""
        self.digest = hashlib.sha256() if owner.hashes else None

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < _HEAD:
            self.head += chunk[: _HEAD - len(self.head)]
        if self.digest is not None:
            self.digest.update(chunk)

    def done(self, path: str, mode: int, size: int) -> None:
        digest = self.digest.hexdigest() if self.digest is not None else ""
        self.owner.seen.append((self.name, self.head, mode, size, digest))


class Collector:
    """Builds ``inspect_tree``'s ``Inspection`` from the files an extraction writes, in the same pass.

    Pass ``collector.tap`` as the extraction's ``tap``; ``result(root, top)`` then answers like
    ``inspect_tree(root)`` where ``root`` is where the extraction's folder ``top`` ("" for the
    extraction root) now is: files outside ``top`` and inside ``.git`` folders are left out,
    findings come in walk order. ``root`` is read only in the rare cases the first bytes do not
    settle (a PE header far into the file, a ``.pt`` that is a zip).
    """

    def __init__(self, *, hashes: bool = False) -> None:
        self.hashes = hashes
        self.seen: list[tuple[str, bytes, int, int, str]] = []

    def tap(self, name: str) -> _Tap:
        return _Tap(self, name)

    def result(self, root: str | os.PathLike[str], top: str = "") -> Inspection:
        base = Path(root)
        prefix = f"{top.strip('/')}/" if top.strip("/") else ""
        findings: list[Finding] = []
        digests: dict[str, str] = {}
        count = 0
        for name, head, mode, size, digest in sorted(self.seen, key=lambda r: _walk_key(r[0])):
            if not name.startswith(prefix):
                continue
            rel = name[len(prefix) :]
            if any(part in _SKIP_DIRS for part in rel.split("/")[:-1]):
                continue
            count += 1
            found = _classify(rel, base.joinpath(*rel.split("/")), head, mode, size)
            if found is not None:
                findings.append(found)
            if self.hashes:
                digests[rel] = digest
        return Inspection(tuple(findings), digests, count)


def decide_findings(findings: Iterable[Finding], level: str, *, outside_catalog: bool) -> list[Finding]:
    """The findings that refuse the install at ``security_level`` ``level`` (empty: allowed).

    strong: native libraries, pickles and executables in any pack; normal: in a pack from
    outside the catalog and the registry; normal- and weak: none (they are reported only)."""
    if level == "strong" or (level == "normal" and outside_catalog):
        return [f for f in findings if f.kind in REFUSABLE_KINDS]
    return []
