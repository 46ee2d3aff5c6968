"""sha256 of installed model files, cached, and checks against the catalog or an expectation list.

Hashing a 10 GB checkpoint takes a minute, so every digest is cached in
``<manager>/cache/model-hashes.json`` keyed by the file's absolute path and valid while its
(size, mtime_ns) are unchanged. The cache file is written atomically and merged with what
another process saved meanwhile; a damaged cache is ignored (and rewritten), never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ManagerError, ModelPathInvalid, PathEscape
from ..fsops import atomic_write_json, file_lock
from ..records import ModelEntry
from .folders import ModelFolders, place
from .paths import check_component

log = logging.getLogger("offline_manager.models")

CACHE_NAME = "model-hashes.json"
CACHE_FORMAT = 1
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*$", re.I)

HashFn = Callable[[Path], str]


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def normalise_sha(value: str | None) -> str:
    """Lower-case hex, or "" when ``value`` is empty; anything else is not a sha256."""
    text = (value or "").strip().lower()
    if text.startswith("sha256:"):
        text = text[7:]
    return text if _SHA_RE.match(text) else ""


class HashCache:
    """Digests keyed by absolute path, valid while (size, mtime_ns) match. ``hash_file`` is
    injectable (tests count calls through it); ``computed`` counts real hash runs."""

    def __init__(self, path: Path, *, hash_file: HashFn = sha256_file) -> None:
        self.path = Path(path)
        self._hash_file = hash_file
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty: dict[str, dict[str, Any]] = {}
        self.computed = 0

    @classmethod
    def for_manager(cls, manager: Any, **kw: Any) -> HashCache:
        return cls(manager.layout.cache_dir / CACHE_NAME, **kw)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("model hash cache %s unreadable (%s); starting empty", self.path, exc)
            return {}
        entries = data.get("entries") if isinstance(data, dict) and data.get("format") == CACHE_FORMAT else None
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items() if isinstance(v, dict) and _SHA_RE.match(str(v.get("sha256", "")))}

    def _table(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    @staticmethod
    def _key(path: Path) -> str:
        return os.path.abspath(path)

    def lookup(self, path: Path) -> str | None:
        """The cached digest if the file is unchanged since it was hashed, else None."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        hit = self._table().get(self._key(path))
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            return str(hit["sha256"])
        return None

    def sha256(self, path: Path) -> str:
        """The file's digest: cached when unchanged, else computed now and remembered."""
        cached = self.lookup(path)
        if cached:
            return cached
        st = os.stat(path)
        digest = self._hash_file(Path(path))
        self.computed += 1
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):  # not changed while hashing
            self.remember(path, digest, size=st.st_size, mtime_ns=st.st_mtime_ns)
        return digest

    def remember(self, path: Path, digest: str, *, size: int | None = None, mtime_ns: int | None = None) -> None:
        """Record a digest known by other means (a download checked against its sha256)."""
        digest = normalise_sha(digest)
        if not digest:
            return
        if size is None or mtime_ns is None:
            st = os.stat(path)
            size, mtime_ns = st.st_size, st.st_mtime_ns
        entry = {"size": size, "mtime_ns": mtime_ns, "sha256": digest}
        self._table()[self._key(path)] = entry
        self._dirty[self._key(path)] = entry

    def save(self) -> None:
        """Write the cache atomically, merged with what is on disk now (others may have added)."""
        if not self._dirty:
            return
        with file_lock(self.path.with_name("." + self.path.name + ".lock"), timeout=10):
            merged = self._read()
            merged.update(self._dirty)
            atomic_write_json(self.path, {"format": CACHE_FORMAT, "entries": merged}, indent=None)
        self._entries = merged
        self._dirty = {}


# -- findings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Expectation:
    """What a snapshot says should be installed: folder, relative name, and optionally size/sha256."""

    folder: str
    name: str
    sha256: str = ""
    size: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Expectation:
        size = data.get("size")
        return cls(
            folder=str(data.get("folder", "")),
            name=str(data.get("name", "")),
            sha256=normalise_sha(str(data.get("sha256") or "")),
            size=int(size) if isinstance(size, (int, float)) and not isinstance(size, bool) else None,
        )


@dataclass(frozen=True)
class Finding:
    """One checked model. status: ok | missing | size_mismatch | sha_mismatch | size_suspect | unchecked."""

    folder: str
    name: str
    status: str
    path: str = ""
    expected_sha256: str = ""
    actual_sha256: str = ""
    expected_size: int | None = None
    actual_size: int | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "unchecked")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class VerifyReport:
    """All findings; ``mismatches`` are the ones to show. ``hashed`` counts digests computed now."""

    findings: tuple[Finding, ...]
    hashed: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def mismatches(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.ok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.mismatches,
            "checked": len(self.findings),
            "hashed": self.hashed,
            "mismatches": [f.to_dict() for f in self.mismatches],
            "findings": [f.to_dict() for f in self.findings],
            "notes": list(self.notes),
        }


def _locate(folders: ModelFolders, folder: str, name: str) -> Path | None:
    """The installed file for (folder, relative name), searching the folder's directories in order."""
    parts = tuple(check_component(p, field="name", original=name) for p in name.replace("\\", "/").split("/"))
    dirs = folders.dirs(folder) or (folders.models_base / folder,)
    for d in dirs:
        candidate = d.joinpath(*parts)
        if candidate.is_file():
            return candidate
    return None


def verify_expectations(
    folders: ModelFolders, expectations: Iterable[Expectation | Mapping[str, Any]], cache: HashCache
) -> VerifyReport:
    """Check each expected model: present, same size, same sha256 (hashed only when a sha256 is
    expected and the size matches; cached digests are reused)."""
    findings: list[Finding] = []
    before = cache.computed
    for raw in expectations:
        exp = raw if isinstance(raw, Expectation) else Expectation.from_dict(raw)
        try:
            path = _locate(folders, exp.folder, exp.name)
        except (ModelPathInvalid, PathEscape) as exc:
            findings.append(Finding(exp.folder, exp.name, "missing", message=f"unsafe name: {exc.message}"))
            continue
        if path is None:
            findings.append(
                Finding(
                    exp.folder,
                    exp.name,
                    "missing",
                    expected_sha256=exp.sha256,
                    expected_size=exp.size,
                    message=f"{exp.folder}/{exp.name} is not installed",
                )
            )
            continue
        size = path.stat().st_size
        finding = partial(
            Finding,
            exp.folder,
            exp.name,
            path=str(path),
            expected_sha256=exp.sha256,
            expected_size=exp.size,
            actual_size=size,
        )
        if exp.size is not None and size != exp.size:
            findings.append(finding("size_mismatch", message=f"{size} bytes, expected {exp.size}"))
            continue
        if not exp.sha256:
            findings.append(finding("ok" if exp.size is not None else "unchecked"))
            continue
        actual = cache.sha256(path)
        status = "ok" if actual == exp.sha256 else "sha_mismatch"
        findings.append(
            finding(
                status, actual_sha256=actual, message="" if status == "ok" else "sha256 differs from the expected one"
            )
        )
    cache.save()
    return VerifyReport(tuple(findings), hashed=cache.computed - before)


def approx_size(text: str) -> tuple[int, int] | None:
    """The byte range a catalog size like ``6.46GB`` allows (decimal or binary units, rounding)."""
    m = _SIZE_RE.match(text or "")
    if not m:
        return None
    value, unit = float(m.group(1)), m.group(2).upper()
    power = " KMGT".index(unit) if unit else 0
    decimals = len(m.group(1).split(".")[1]) if "." in m.group(1) else 0
    slack = 0.5 * 10**-decimals  # "6.46" means 6.455 .. 6.465
    low = (value - slack) * 1000**power
    high = (value + slack) * 1024**power
    return int(low * 0.97), int(high * 1.03) + 1


def verify_catalog(
    folders: ModelFolders, models: Sequence[ModelEntry], cache: HashCache, *, with_sha256: bool = False
) -> VerifyReport:
    """Check installed catalog models: against the entry's ``sha256`` when the model list gives one
    (hashed with ``with_sha256``, else compared only when the hash cache already holds the file's
    digest), else against the catalog's approximate size. ``with_sha256`` also fills the cache for
    the entries without a digest (later snapshot checks reuse it)."""
    findings: list[Finding] = []
    notes: list[str] = []
    before = cache.computed
    for entry in models:
        try:
            placement = place(entry, folders)
        except ManagerError as exc:  # unmappable entries are listed by the catalog; noted here
            notes.append(f"{entry.name}: {exc}")
            continue
        path = next((p for p in placement.candidates() if p.is_file()), None)
        if path is None:
            continue
        size = path.stat().st_size
        digest = cache.sha256(path) if with_sha256 else (cache.lookup(path) or "")
        want = normalise_sha(getattr(entry, "sha256", ""))
        bounds = approx_size(entry.size)
        status = "unchecked" if bounds is None else ("ok" if bounds[0] <= size <= bounds[1] else "size_suspect")
        message = (
            ""
            if status != "size_suspect"
            else (f"{size} bytes, the catalog says about {entry.size}: the file may be truncated or a different model")
        )
        if want and digest:
            status = "ok" if digest == want else "sha_mismatch"
            message = "" if status == "ok" else "sha256 differs from the model list's: a different or damaged file"
        elif want and status != "size_suspect":
            message = "the model list gives a sha256; run verify with --sha256 to check it"
        findings.append(
            Finding(
                placement.folder,
                placement.relpath,
                status,
                path=str(path),
                expected_sha256=want,
                actual_sha256=digest,
                actual_size=size,
                message=message,
            )
        )
    cache.save()
    return VerifyReport(tuple(findings), hashed=cache.computed - before, notes=tuple(notes))
