"""``create_bundle``: collect a selection into one tar file with its manifest first."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from ..errors import ManagerError, RequestInvalid
from ..mirrors import mirror_rules, public_url
from ..snapshots.capture import utc_now
from ..snapshots.model import PackState, Snapshot
from . import collect
from .errors import BundleError, BundleSourceMissing
from .manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    SNAPSHOT_NAME,
    BaseRef,
    FileEntry,
    Manifest,
    entries_of,
    read_manifest_file,
)
from .sign import sign_manifest

if TYPE_CHECKING:
    from ..context import Manager


@dataclass(frozen=True)
class Selection:
    """What goes in: every installed pack, catalog/registry ids, or a snapshot (file or stored name)."""

    installed: bool = False
    pack_ids: tuple[str, ...] = ()
    snapshot: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"installed": self.installed, "pack_ids": list(self.pack_ids), "snapshot": self.snapshot}


@dataclass(frozen=True)
class CreateResult:
    path: str
    manifest_sha256: str
    created_at: str
    files: int
    size: int
    sizes: dict[str, int]
    packs: tuple[str, ...]
    signed: bool
    base: BaseRef | None
    carried_over: int  # files left out of an increment (unchanged since the base)
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "manifest_sha256": self.manifest_sha256,
            "created_at": self.created_at,
            "files": self.files,
            "size": self.size,
            "sizes": dict(self.sizes),
            "packs": list(self.packs),
            "signed": self.signed,
            "base": self.base.to_dict() if self.base else None,
            "unchanged_since_base": self.carried_over,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


def _snapshot_for(manager: Manager, selection: Selection) -> tuple[Snapshot, tuple[PackState, ...]]:
    """The snapshot the bundle realises, and packs carried along that it does not install."""
    from ..snapshots.capture import capture
    from ..snapshots.store import read_snapshot_file

    if not (selection.installed or selection.pack_ids or selection.snapshot) or (
        selection.snapshot and (selection.installed or selection.pack_ids)
    ):
        raise RequestInvalid(
            "name the selection: --installed (optionally with more pack ids), pack ids, or --snapshot FILE alone",
            hint="cm-cli.py bundle create --installed --output site.bundle.tar",
            details={"selection": selection.to_dict()},
        )
    if selection.installed:  # the tree as it is, plus the packs named to carry along (not installed here)
        snap = capture(manager, reason="bundle", include_models=True)
        have = {p.id for p in snap.packs} | {p.name for p in snap.packs}
        return snap, tuple(_pack_for(manager, i) for i in selection.pack_ids if i not in have)
    if selection.snapshot:
        path = Path(selection.snapshot)
        if path.is_file():
            return read_snapshot_file(path), ()
        from ..snapshots import store_of

        return store_of(manager).load(selection.snapshot), ()
    packs = tuple(_pack_for(manager, i) for i in selection.pack_ids)
    return Snapshot(created_at=utc_now(), packs=packs, reason="bundle"), ()


def _pack_for(manager: Manager, pack_id: str) -> PackState:
    """A snapshot entry for a catalog or registry id (the newest commit / version)."""
    try:
        pack = manager.catalog_view().catalog.get(pack_id)
    except ManagerError:
        pack = None
    if pack is not None and pack.install_type == "git-clone" and pack.files:
        return PackState(name=pack_id, kind="git", id=pack_id, url=pack.files[0])
    return PackState(name=pack_id, kind="cnr", id=pack_id, cnr_id=(pack.cnr_id if pack else "") or pack_id)


def _write_tar(dest: Path, manifest: bytes, signature: bytes, members: Sequence[tuple[str, Path]]) -> None:
    part = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    try:
        with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in ((MANIFEST_NAME, manifest), (SIGNATURE_NAME, signature)):
                if not data:
                    continue
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                import io

                tar.addfile(info, io.BytesIO(data))
            for name, path in members:
                info = tar.gettarinfo(str(path), arcname=name)
                info.mtime = int(info.mtime)  # a float mtime costs every member a pax header to write and read
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
        os.replace(part, dest)
    finally:
        if part.exists():
            part.unlink()


def create_bundle(
    manager: Manager,
    selection: Selection,
    dest: Path,
    *,
    python_version: str | None = None,
    platforms: Sequence[str] = (),
    with_models: bool = False,
    since: Path | None = None,
    sign_key: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> CreateResult:
    """Collect ``selection`` into the tar file ``dest``; the ComfyUI tree is not changed."""
    started = time.monotonic()
    say = progress or (lambda _line: None)
    dest = Path(dest).absolute()
    if dest.exists() and not dest.is_file():
        raise BundleError(f"{dest} exists and is not a file", details={"path": str(dest)})
    base_manifest, base = None, None
    if since is not None:
        base_manifest, base_sha = read_manifest_file(_manifest_path(Path(since)))
        base = BaseRef(base_sha, base_manifest.created_at)
    snapshot, extras = _snapshot_for(manager, selection)
    work = dest.parent / f".bundle-work-{secrets.token_hex(4)}"
    work.mkdir(parents=True)
    try:
        members, identities, packs, notes = _collect(
            manager,
            snapshot,
            extras,
            selection,
            work,
            say,
            python_version=python_version,
            platforms=platforms,
            with_models=with_models,
        )
        entries = entries_of(members, identities)
        kept, unchanged = _increment(entries, base_manifest)
        chosen = [(m, p) for m, p in members if m in {e.path for e in kept}]
        manifest = Manifest(
            created_at=utc_now(),
            creator={"host": socket.gethostname(), "manager": _version()},
            selection=selection.to_dict(),
            target={"python_version": python_version or "", "platforms": list(platforms)},
            files=kept,
            base=base,
            packs=tuple(packs),
            snapshot=SNAPSHOT_NAME,
        )
        data = manifest.dumps()
        signature = sign_manifest(data, Path(sign_key).expanduser()) if sign_key else b""
        say(f"writing {dest.name}: {len(kept)} file(s)" + (f", {unchanged} unchanged since the base" if base else ""))
        _write_tar(dest, data, signature, chosen)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import hashlib

    return CreateResult(
        path=str(dest),
        manifest_sha256=hashlib.sha256(data).hexdigest(),
        created_at=manifest.created_at,
        files=len(kept),
        size=dest.stat().st_size,
        sizes=manifest.sizes(),
        packs=tuple(p["id"] for p in packs),
        signed=bool(signature),
        base=base,
        carried_over=unchanged,
        seconds=time.monotonic() - started,
        notes=tuple(notes),
    )


def _version() -> str:
    try:
        from .. import __version__

        return str(__version__)
    except ImportError:
        return ""


def _manifest_path(path: Path) -> Path:
    """``--since`` names a manifest file, or a bundle whose manifest is read from the archive."""
    if not path.is_file():
        raise BundleError(
            f"--since: no file {path}", hint="Name the old bundle or its manifest.json.", details={"path": str(path)}
        )
    if tarfile.is_tarfile(path):
        with tarfile.open(path, "r:*") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_NAME:
                raise BundleError(f"--since: {path} has no manifest first", details={"path": str(path)})
            fh = tar.extractfile(first)
            assert fh is not None
            out = path.with_name(f".{path.name}.manifest-{secrets.token_hex(3)}.json")
            out.write_bytes(fh.read())
            return out
    return path


def _increment(entries: tuple[FileEntry, ...], base: Manifest | None) -> tuple[tuple[FileEntry, ...], int]:
    """The entries an increment carries: new or changed since ``base`` (the snapshot always)."""
    if base is None:
        return entries, 0
    old = {f.path: f.same_as for f in base.files}
    kept = tuple(e for e in entries if e.path == SNAPSHOT_NAME or old.get(e.path) != e.same_as)
    return kept, len(entries) - len(kept)


def _wheel_name(member: str) -> str:
    name = member.rsplit("/", 1)[-1]
    try:
        if name.endswith(".whl"):
            return str(parse_wheel_filename(name)[0])
        return str(parse_sdist_filename(name)[0])
    except ValueError:
        return ""


def _collect(
    manager: Manager,
    snapshot: Snapshot,
    extras: tuple[PackState, ...],
    selection: Selection,
    work: Path,
    say: Callable[[str], None],
    *,
    python_version: str | None,
    platforms: Sequence[str],
    with_models: bool,
) -> tuple[list[tuple[str, Path]], dict[str, str], list[dict[str, str]], list[str]]:
    members: list[tuple[str, Path]] = []
    identities: dict[str, str] = {}
    packs: list[dict[str, str]] = []
    notes: list[str] = []
    realised: list[PackState] = []
    sources: list[PackState] = []
    requirements: dict[str, str] = {}  # member -> the pack's requirements.txt at the bundled commit/version
    own: list[str] = []  # requirement lines of packs whose installed versions do not pin their wheels
    for pack in snapshot.packs + extras:
        original = pack
        if pack.kind == "git" and pack.url:
            # a pack installed through a [mirrors] rule records the mirror's URL: bundle it under
            # its public one, the URL the offline box's catalog, git mirror and fleet clients use
            pack = replace(pack, url=public_url(pack.url, mirror_rules(manager.config)))
            member, path, identity, commit = collect.git_bundle(manager, pack, work, say, requirements)
            members.append((member, path))
            identities[member] = identity
            pack = replace(pack, commit=commit)
            packs.append(  # requirements: the restore's offline check reads them here, not through git
                {
                    "id": pack.id or pack.name,
                    "kind": "git",
                    "url": pack.url,
                    "commit": commit,
                    "member": member,
                    "requirements": requirements.get(member, ""),
                }
            )
        elif pack.kind == "cnr":
            member, path = collect.registry_zip(manager, pack, work, say)
            members.append((member, path))
            requirements[member] = collect.zip_requirements(path)
            version = member.rsplit("/", 1)[-1][: -len(".zip")]
            pack = replace(pack, version=version)
            packs.append(
                {"id": pack.cnr_id or pack.id or pack.name, "kind": "cnr", "version": version, "member": member}
            )
        else:
            notes.append(f"{pack.name}: a {pack.kind} pack has no source to bundle; left out")
            continue
        realised.append(pack)
        sources.append(original)
        if not selection.installed or any(original is e for e in extras):
            own += collect.requirement_lines(requirements.get(member, ""))
    if selection.installed:  # pinned to what is installed here (and what that pulls in)
        lines = collect.installed_requirements(manager)
    else:  # the snapshot's pins
        lines = [p.requirement for p in snapshot.python if p.kind == "index" and p.version]
    lines += [line for line in dict.fromkeys(own) if line not in lines]
    wheel_members = collect.wheels(manager, lines, work, say, python_version=python_version, platforms=platforms)
    members += wheel_members
    model_members = collect.models(manager, snapshot, work, say) if with_models else []
    members += model_members
    members += collect.channel_files(manager, realised, work, [m for m, _ in model_members])
    # the snapshot pins what the bundle carries wheels for: --apply never asks for a package it lacks
    carried = {_wheel_name(m) for m, _ in wheel_members}
    python = tuple(p for p in snapshot.python if p.kind == "index" and canonicalize_name(p.name) in carried)
    carried_only = {id(p) for p in extras}
    in_snapshot = tuple(p for p, src in zip(realised, sources, strict=True) if id(src) not in carried_only)
    snap = replace(snapshot, packs=in_snapshot, python=python, reason="bundle")
    from ..snapshots.store import dump

    snap_path = work / SNAPSHOT_NAME
    snap_path.write_bytes(dump(snap))
    members.append((SNAPSHOT_NAME, snap_path))
    if not realised and not selection.installed:
        raise BundleSourceMissing("the selection holds no pack that can be bundled", details=selection.to_dict())
    return members, identities, packs, notes
