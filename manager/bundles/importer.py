"""``import_bundle``: verify first, extract into staging, then move each store's new entries into
place in one journalled rename transaction (``operations/staging.py``), the manifest last.

A failure rolls the moves back in this process; a kill is rolled back by the next operation's
``prepare_tree`` (the journal names every move), so every store is as it was or complete.
The caller holds the operations lock (the ``bundle_import`` task runs under the queue's lock).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fsops import refuse_links
from ..git_mirror import BUNDLE_SUFFIX
from ..operations.staging import RenameTxn, prepare_tree, remove_tree
from ..plans import FileMove, PackChange, Plan
from .errors import BundleBaseMissing, BundleError
from .manifest import SNAPSHOT_NAME, Manifest, sha256_file
from .reader import error_for
from .verify import BundleReport, check_archive

if TYPE_CHECKING:
    from ..context import Manager
    from ..layout import Layout

CHANNEL_NAME = "bundle"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class StoreChange:
    store: str  # channel | git | cnr | wheel | model | snapshot | channels.list | manifest
    path: str  # relative to the manager data folder
    action: str  # add | replace | same

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "path": self.path, "action": self.action}


@dataclass(frozen=True)
class ImportPreview:
    report: BundleReport
    changes: tuple[StoreChange, ...]
    base_present: bool

    def to_plan(self) -> Plan:
        """The shared plan record: every store entry the import moves in, packs it makes installable."""
        m = self.report.manifest
        packs = tuple(
            PackChange(
                "added",
                p.get("id", ""),
                to=p.get("commit") or p.get("version", ""),
                source=p.get("kind", ""),
                note="installable offline after the import",
            )
            for p in (m.packs if m else ())
        )
        moves = tuple(FileMove("bundle", c.path, c.action) for c in self.changes if c.action != "same")
        notes = [f"signature: {self.report.signature.state} {self.report.signature.message}".strip()]
        blockers: tuple[dict[str, Any], ...] = ()
        if not self.base_present and m is not None and m.base is not None:
            blockers = (_refuse_missing_base(m, Path(self.report.path)).to_dict(),)
        return Plan("bundle_import", self.report.path, packs=packs, moves=moves, notes=tuple(notes), blockers=blockers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.report.to_dict(),
            "changes": [c.to_dict() for c in self.changes],
            "adds": sum(1 for c in self.changes if c.action == "add"),
            "replaces": sum(1 for c in self.changes if c.action == "replace"),
            "base_present": self.base_present,
        }


@dataclass(frozen=True)
class ImportResult:
    path: str
    manifest_sha256: str
    created_at: str
    changes: tuple[StoreChange, ...]
    snapshot: str  # stored snapshot name of the bundle's snapshot
    signature: dict[str, Any]
    applied: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "manifest_sha256": self.manifest_sha256,
            "created_at": self.created_at,
            "changes": [c.to_dict() for c in self.changes],
            "added": sum(1 for c in self.changes if c.action == "add"),
            "replaced": sum(1 for c in self.changes if c.action == "replace"),
            "unchanged": sum(1 for c in self.changes if c.action == "same"),
            "snapshot": self.snapshot,
            "signature": dict(self.signature),
            "applied": self.applied,
            "notes": list(self.notes),
        }


def snapshot_name(manifest_sha256: str) -> str:
    return f"bundle-{manifest_sha256[:12]}"


def _target(layout: Layout, member: str, manifest_sha: str) -> tuple[str, str] | None:
    """(store, path relative to the manager folder) of an archive member."""
    top, _, rest = member.partition("/")
    if top == "channel":
        return "channel", f"{layout.local_channel_dir.name}/{rest}"
    if top == "git":  # kept as a git bundle: git clones from it (nothing else goes into the git mirror)
        return ("git", f"{layout.git_mirror_dir.name}/{rest}") if rest.endswith(BUNDLE_SUFFIX) else None
    if top == "cnr":
        rel_cache = os.path.relpath(layout.cache_dir / "archives" / "cnr", layout.manager_dir)
        return "cnr", f"{Path(rel_cache).as_posix()}/{rest}"
    if top == "wheels":
        return "wheel", f"{layout.wheelhouse_dir.name}/{rest}"
    if top == "models":
        return "model", f"{layout.model_store_dir.name}/{rest}"
    if member == SNAPSHOT_NAME:
        return "snapshot", f"{layout.snapshots_dir.name}/{snapshot_name(manifest_sha)}.json"
    return None


def _base_check(layout: Layout, manifest: Manifest) -> bool:
    base = manifest.base
    return base is None or (layout.bundles_dir / f"{base.sha256}.json").is_file()


def _refuse_missing_base(manifest: Manifest, path: Path) -> BundleBaseMissing:
    assert manifest.base is not None
    return BundleBaseMissing(
        f"{path.name} is an increment of the bundle of {manifest.base.created_at} "
        f"(manifest sha256 {manifest.base.sha256}), which was never imported here",
        details={"base": manifest.base.to_dict(), "bundle": str(path)},
    )


def _same(a: Path, b: Path) -> bool:
    if a.is_dir() or b.is_dir():
        return False
    return a.stat().st_size == b.stat().st_size and sha256_file(a) == sha256_file(b)


def _channels_list(layout: Layout, staged: Path) -> bool:
    """Write the new channels.list (with the bundle channel's line) into ``staged``; False when
    the line is there already."""
    line = f"{CHANNEL_NAME}::{layout.local_channel_dir.absolute().as_uri()}"
    current = layout.channels_file.read_text(encoding="utf-8") if layout.channels_file.is_file() else ""
    if any(raw.strip() == line for raw in current.splitlines()):
        return False
    if any(raw.strip().startswith(f"{CHANNEL_NAME}::") for raw in current.splitlines()):
        kept = [raw for raw in current.splitlines() if not raw.strip().startswith(f"{CHANNEL_NAME}::")]
        current = "\n".join(kept) + ("\n" if kept else "")
    if current and not current.endswith("\n"):
        current += "\n"
    staged.write_text(current + line + "\n", encoding="utf-8")
    return True


def _entries(layout: Layout, report: BundleReport) -> list[tuple[str, str]]:
    """(store, path relative to the manager folder) of every member the import moves in."""
    manifest = report.manifest
    assert manifest is not None
    targets = (_target(layout, entry.path, report.manifest_sha256) for entry in manifest.files)
    return [t for t in targets if t is not None]


def _stale_repository(layout: Layout, change: StoreChange) -> Path | None:
    """The bare repository beside a git bundle the import adds or replaces (made from an older
    bundle, or by an import of an earlier version): it must go, so the newest bundle wins."""
    if change.store != "git" or change.action == "same" or not change.path.endswith(BUNDLE_SUFFIX):
        return None
    repo = layout.manager_dir / (change.path[: -len(BUNDLE_SUFFIX)] + ".git")
    return repo if os.path.lexists(repo) else None


def _plan(layout: Layout, entries: list[tuple[str, str]], stores: Path) -> list[StoreChange]:
    changes = []
    for store, rel in entries:
        live = layout.manager_dir / rel
        if not os.path.lexists(live):
            action = "add"
        elif _same(stores / rel, live):
            action = "same"
        else:
            action = "replace"
        changes.append(StoreChange(store, rel, action))
    return changes


def _planned_moves(
    layout: Layout, changes: list[StoreChange], stores: Path, old: Path
) -> list[tuple[StoreChange, list[tuple[Path, Path]]]]:
    """Every rename the import makes, per change, worked out before the first (the journal is
    written once): a stale bare repository beside a new git bundle goes to ``old``; then each
    entry moves in as its highest missing ancestor at once (so a rollback leaves no new folder
    behind, and later entries under it ride along), an existing entry going to ``old`` first."""
    root = layout.manager_dir
    moved: set[Path] = set()  # relative paths moved in whole from ``stores``
    out: list[tuple[StoreChange, list[tuple[Path, Path]]]] = []
    for change in changes:
        if change.action == "same":
            continue
        moves: list[tuple[Path, Path]] = []
        stale = _stale_repository(layout, change)
        if stale is not None:
            moves.append((stale, old / secrets.token_hex(6)))
        relp = Path(change.path)
        if relp not in moved and not any(p in moved for p in relp.parents):
            missing = next((p for p in reversed(relp.parents) if str(p) != "." and not os.path.lexists(root / p)), None)
            if missing is not None:
                moved.add(missing)
                moves.append((stores / missing, root / missing))
            else:
                live = root / relp
                if os.path.lexists(live):
                    moves.append((live, old / secrets.token_hex(6)))
                moved.add(relp)
                moves.append((stores / relp, live))
        out.append((change, moves))
    return out


def clear_staging(layout: Layout) -> None:
    """Leftovers of an interrupted import (the journal was already rolled back by prepare_tree)."""
    folder = layout.bundle_staging_dir
    if os.path.lexists(folder):
        refuse_links(folder, layout.data_anchor, what="bundle staging folder")
        remove_tree(folder)


def _begin(manager: Manager) -> Path:
    layout = manager.layout
    prepare_tree(layout)  # checks the working folders first
    clear_staging(layout)
    work = layout.bundle_staging_dir / secrets.token_hex(4)
    work.mkdir(parents=True)
    return work


def preview_import(manager: Manager, path: Path) -> ImportPreview:
    """What ``import_bundle`` would add, per store; refuses a bad bundle like the import does.
    Unpacks into a scratch folder outside the tree (a dry run holds no lock), changes no store."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cm-bundle-preview-") as scratch:
        work = Path(scratch)
        report, entries = _extract(manager, Path(path), work, lambda _l: None)
        assert report.manifest is not None
        changes = _plan(manager.layout, entries, work / "stores")
        return ImportPreview(report, tuple(changes), _base_check(manager.layout, report.manifest))


def _room_for(path: Path, work: Path) -> None:
    """Refuse before unpacking when the folder cannot hold the unpacked bundle (twice its size:
    the files, and room for the bare repositories a restore or ``mirror build`` makes from the
    git bundles), rather than failing half-way."""
    need = 2 * path.stat().st_size
    free = shutil.disk_usage(work).free
    if free < need:
        raise BundleError(
            f"not enough free space under {work.parent} to unpack {path.name}: {free} bytes free, about {need} needed",
            hint="Free some space on that disk (`cm-cli.py cleanup-cache` frees the cache), then import again.",
            details={"bundle": str(path), "free": free, "needed": need},
        )


def _extract(manager: Manager, path: Path, work: Path, say: Progress) -> tuple[BundleReport, list[tuple[str, str]]]:
    if path.is_file():  # (a missing file is check_archive's coded refusal)
        _room_for(path, work)
    stores = work / "stores"
    layout = manager.layout

    def place(member: str, manifest_sha: str) -> Path | None:  # written where it goes (git bundles stay files)
        target = _target(layout, member, manifest_sha)
        return stores / target[1] if target is not None else None

    report = check_archive(manager, path, extract_to=place, progress=say)
    if report.problems:
        raise error_for(report.problems, path)
    assert report.manifest is not None
    entries = _entries(layout, report)
    return report, entries


def import_bundle(
    manager: Manager,
    path: Path,
    *,
    apply: bool = False,
    progress: Progress | None = None,
    restore: Callable[[str], dict[str, Any]] | None = None,
) -> ImportResult:
    """Verify ``path``, then fill the stores atomically; ``apply`` then restores the bundled
    snapshot through ``restore(name)`` (the task runner passes the snapshot restore)."""
    say = progress or (lambda _line: None)
    layout = manager.layout
    path = Path(path).absolute()
    work = _begin(manager)
    try:
        report, entries = _extract(manager, path, work, say)
        manifest = report.manifest
        assert manifest is not None
        if not _base_check(layout, manifest):
            raise _refuse_missing_base(manifest, path)
        stores = work / "stores"
        bundles_rel = f"{layout.bundles_dir.name}/{report.manifest_sha256}"
        (stores / layout.bundles_dir.name).mkdir(parents=True, exist_ok=True)
        signed = _keep_exact_manifest(report, stores / f"{bundles_rel}.json")
        changes = _plan(layout, entries, stores)
        if _channels_list(layout, stores / layout.channels_file.name):
            action = "replace" if layout.channels_file.exists() else "add"
            changes.append(StoreChange("channels.list", layout.channels_file.name, action))
        if signed:
            changes.append(StoreChange("manifest", f"{bundles_rel}.sig", "add"))
        again = (layout.manager_dir / f"{bundles_rel}.json").is_file()  # imported before: same bytes, same name
        changes.append(StoreChange("manifest", f"{bundles_rel}.json", "same" if again else "add"))  # commit point
        old = work / "old"
        planned = _planned_moves(layout, changes, stores, old)
        old.mkdir(parents=True, exist_ok=True)
        with RenameTxn(layout, label=f"bundle-import {path.name}", root=layout.manager_dir) as txn:
            txn.plan([move for _change, moves in planned for move in moves])  # one journal write, one fsync
            for change, moves in planned:
                say(f"{change.action} {change.path}")
                for src, dst in moves:
                    txn.move(src, dst)
    finally:
        clear_staging(layout)
    notes = []
    channel = layout.local_channel_dir.absolute().as_uri()
    if str(manager.config["channel_url"]).rstrip("/") != channel:
        notes.append(
            f"the bundled packs are in the channel {channel} (channels.list: {CHANNEL_NAME}); to install them by id, "
            f"set channel_url to it in config.ini or add --channel {CHANNEL_NAME} to cm-cli.py"
        )
    result = ImportResult(
        path=str(path),
        manifest_sha256=report.manifest_sha256,
        created_at=manifest.created_at,
        changes=tuple(changes),
        snapshot=snapshot_name(report.manifest_sha256),
        signature=report.signature.to_dict(),
        notes=tuple(notes),
    )
    if apply:
        if restore is None:
            raise BundleError("apply needs the snapshot restore of the task runner", details={"bundle": str(path)})
        say(f"restoring the bundled snapshot {result.snapshot}")
        return ImportResult(**{**result.__dict__, "applied": restore(result.snapshot)})
    return result


def _keep_exact_manifest(report: BundleReport, dest: Path) -> bool:
    """Keep the manifest's exact bytes as read by the verifying pass (its sha256 names it; a
    signature covers those bytes) and its signature beside it; True when signed."""
    data = report.manifest_bytes
    if hashlib.sha256(data).hexdigest() != report.manifest_sha256 or dest.stem != report.manifest_sha256:
        raise BundleError("the manifest read does not match its checksum", details={"bundle": report.path})
    dest.write_bytes(data)
    if report.signature_bytes:
        dest.with_suffix(".sig").write_bytes(report.signature_bytes)
    return bool(report.signature_bytes)
