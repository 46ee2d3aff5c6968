"""The bundle manifest: what a bundle holds, file by file, and how it is read back strictly."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..layout import is_reserved_device_name
from .errors import BundleError, BundleManifestIncomplete

FORMAT = "offline-manager-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"
SNAPSHOT_NAME = "snapshot.json"
SIGN_NAMESPACE = "offline-manager-bundle"
# member kinds by their top folder in the archive
KINDS = {"channel": "channel", "git": "git", "cnr": "cnr", "wheels": "wheel", "models": "model"}
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_PART = r"[A-Za-z0-9_][A-Za-z0-9._~+-]*"
# the member names each kind may have (anything else is refused before a byte is written)
_MEMBER_RE = {
    "channel": re.compile(rf"^channel/{_PART}\.json$"),
    "git": re.compile(rf"^git/[a-z0-9][a-z0-9.-]*(:[0-9]+)?(/{_PART})+\.bundle$"),
    "cnr": re.compile(rf"^cnr/{_PART}/{_PART}\.zip$"),
    "wheel": re.compile(rf"^wheels/{_PART}\.(whl|tar\.gz|zip)$"),
    "model": re.compile(rf"^models/{_PART}(/{_PART})+$"),
    "snapshot": re.compile(r"^snapshot\.json$"),
}
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def kind_of(member: str) -> str:
    """The kind of an archive member by its top folder ("" for the manifest/snapshot)."""
    if member == SNAPSHOT_NAME:
        return "snapshot"
    return KINDS.get(member.split("/", 1)[0], "")


@dataclass(frozen=True)
class FileEntry:
    path: str  # archive member name, '/'-separated
    kind: str  # channel | git | cnr | wheel | model | snapshot
    size: int
    sha256: str
    identity: str = ""  # what an increment compares (git: the sha256 of the ref list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, "size": self.size, "sha256": self.sha256}
        if self.identity:
            out["identity"] = self.identity
        return out

    @property
    def same_as(self) -> str:
        return self.identity or self.sha256


@dataclass(frozen=True)
class BaseRef:
    sha256: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "created_at": self.created_at}


@dataclass(frozen=True)
class Manifest:
    created_at: str
    creator: Mapping[str, str]
    selection: Mapping[str, Any]
    target: Mapping[str, Any]
    files: tuple[FileEntry, ...]
    base: BaseRef | None = None
    packs: tuple[Mapping[str, str], ...] = ()  # {"id", "kind", "url", "commit", "version"}
    snapshot: str = ""  # member name of the snapshot it realises ("" when none)
    format_version: int = FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "created_at": self.created_at,
            "creator": dict(self.creator),
            "selection": dict(self.selection),
            "target": dict(self.target),
            "snapshot": self.snapshot,
            "base": self.base.to_dict() if self.base else None,
            "packs": [dict(p) for p in self.packs],
            "files": [f.to_dict() for f in self.files],
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    def dumps(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n").encode("utf-8")

    def by_path(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}

    def sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            out[f.kind] = out.get(f.kind, 0) + f.size
        return out

    def describe(self) -> str:
        return f"bundle of {self.created_at}"


def _bad(problem: str, **details: Any) -> BundleManifestIncomplete:
    return BundleManifestIncomplete(f"bundle manifest: {problem}", details={"member": MANIFEST_NAME, **details})


def _text(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise _bad(f"{where}{key} must be a string", field=f"{where}{key}")
    return value


def _entry(i: int, raw: Any) -> FileEntry:
    where = f"files[{i}]."
    if not isinstance(raw, dict):
        raise _bad(f"files[{i}] is not an object", field=f"files[{i}]")
    path = _text(raw, "path", where)
    sha = _text(raw, "sha256", where)
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(f"{where}size must be a non-negative integer", field=f"{where}size", file=path)
    if not _SHA_RE.match(sha):
        raise _bad(f"{where}sha256 is not a sha256 hex digest", field=f"{where}sha256", file=path)
    kind = kind_of(path)
    if not kind or raw.get("kind") != kind:
        raise _bad(f"{path}: unknown member kind", field=f"{where}kind", file=path)
    if not _MEMBER_RE[kind].match(path) or any(is_reserved_device_name(p) for p in path.split("/")):
        raise _bad(f"{path}: not a valid name for a {kind} member", field=f"{where}path", file=path)
    identity = raw.get("identity", "")
    if not isinstance(identity, str):
        raise _bad(f"{where}identity must be a string", field=f"{where}identity", file=path)
    return FileEntry(path, kind, size, sha, identity)


def parse_manifest(data: bytes) -> Manifest:
    """A manifest from its bytes; ``bundle_manifest_incomplete`` naming the field otherwise."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(f"not an offline bundle manifest (format is not {FORMAT!r})", field="format")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {doc.get('format_version')!r} is not {FORMAT_VERSION}",
            hint="Update the Manager on this box, or make the bundle with the same Manager version.",
            details={"member": MANIFEST_NAME, "format_version": doc.get("format_version")},
        )
    files = doc.get("files")
    if not isinstance(files, list) or not files:
        raise _bad("files must be a non-empty list", field="files")
    entries = tuple(_entry(i, raw) for i, raw in enumerate(files))
    seen: set[str] = set()
    for e in entries:
        if e.path in seen:
            raise _bad(f"{e.path} is listed twice", file=e.path)
        seen.add(e.path)
    base_doc = doc.get("base")
    base = None
    if base_doc is not None:
        if not isinstance(base_doc, dict):
            raise _bad("base must be an object or null", field="base")
        base = BaseRef(_text(base_doc, "sha256", "base."), _text(base_doc, "created_at", "base."))
    packs = doc.get("packs") or []
    if not isinstance(packs, list) or not all(isinstance(p, dict) for p in packs):
        raise _bad("packs must be a list of objects", field="packs")
    for key in ("creator", "selection", "target"):
        if not isinstance(doc.get(key), dict):
            raise _bad(f"{key} must be an object", field=key)
    snapshot = doc.get("snapshot") or ""
    if snapshot and snapshot not in seen:
        raise _bad(f"the snapshot {snapshot!r} is not among the files", field="snapshot")
    return Manifest(
        created_at=_text(doc, "created_at", ""),
        creator={str(k): str(v) for k, v in doc["creator"].items()},
        selection=dict(doc["selection"]),
        target=dict(doc["target"]),
        files=entries,
        base=base,
        packs=tuple({str(k): str(v) for k, v in p.items()} for p in packs),
        snapshot=str(snapshot),
        extra=dict(doc.get("extra") or {}),
    )


def read_manifest_file(path: str | Path) -> tuple[Manifest, str]:
    """(manifest, its sha256) of a manifest file on disk (``--since``, the imported ones)."""
    data = Path(path).read_bytes()
    return parse_manifest(data), hashlib.sha256(data).hexdigest()


def entries_of(paths: Iterable[tuple[str, Path]], identities: Mapping[str, str]) -> tuple[FileEntry, ...]:
    """File entries for (member name, file on disk) pairs."""
    out = []
    for member, path in paths:
        out.append(
            FileEntry(member, kind_of(member), path.stat().st_size, sha256_file(path), identities.get(member, ""))
        )
    return tuple(out)
