"""Every entry of a snapshot checked before a restore changes anything (docs/security.md).

``Snapshot.from_dict`` already refuses a document whose shape is wrong (a pack name that is a
path, a commit that is not hex). This pass adds what git, pip and the filesystem would misuse
later: a remote git URL that is an option or a remote helper (``ext::``), a ref read as an
option, two packs landing in one folder, a package source that carries pip options. It reads
nothing but the snapshot (no file, no network), so the task table can run it when a restore is
submitted, the dry run can show it as a blocker and the restore refuses before its first change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import ManagerError, SnapshotInvalid
from ..git import check_ref, check_remote_url
from ..layout import is_reserved_device_name
from .model import EntryProblem, PackState, PythonPackage, Snapshot, safe_entry_name, safe_relative_path

__all__ = ["check_entries", "refused", "refusal_error", "skipped"]

# pip sources a restore may hand to the installer (the installer's own allowed_pip_sources still applies)
_PIP_URL_SCHEMES = ("https://", "http://", "git+https://", "git+http://", "git+ssh://", "git+git://", "git+file://")


def _git_problems(i: int, p: PackState) -> list[EntryProblem]:
    out: list[EntryProblem] = []
    fld = f"packs[{i}]"
    if p.url:
        try:
            check_remote_url(p.url)
        except ManagerError as exc:
            out.append(EntryProblem(f"{fld}.url", p.name, str(exc.details.get("reason") or exc.message)))
        else:
            text = p.url.strip()
            local = "://" not in text and not re.match(r"^(?:[^@/\s]+@)?[^:/\s]{2,}:", text)
            if text != p.url:
                out.append(EntryProblem(f"{fld}.url", p.name, "leading or trailing spaces"))
            elif local and not text.startswith("/") and not re.match(r"^[A-Za-z]:[\\/]", text):
                out.append(EntryProblem(f"{fld}.url", p.name, "a relative path is not a repository URL"))
    for key in ("commit", "branch"):
        value = getattr(p, key)
        if value:
            try:
                check_ref(value)
            except ManagerError as exc:
                out.append(EntryProblem(f"{fld}.{key}", p.name, str(exc.details.get("reason") or exc.message)))
            if value != value.strip():
                out.append(EntryProblem(f"{fld}.{key}", p.name, "leading or trailing spaces"))
    return out


def _pack_problems(i: int, p: PackState) -> list[EntryProblem]:
    fld = f"packs[{i}]"
    out: list[EntryProblem] = []
    if not safe_entry_name(p.name) or is_reserved_device_name(p.name) or p.name.lower().endswith(".disabled"):
        out.append(EntryProblem(f"{fld}.name", p.name[:80], "not a plain folder or file name"))
    if p.kind == "git" or p.url:
        out += _git_problems(i, p)
    for key in ("version", "id", "cnr_id"):
        value = getattr(p, key)
        if value and (value.startswith("-") or "/" in value or "\\" in value or value in (".", "..")):
            out.append(EntryProblem(f"{fld}.{key}", p.name, f"{value[:80]!r} is not a plain {key}"))
    return out


def _pip_problems(i: int, pkg: PythonPackage) -> list[EntryProblem]:
    fld = f"python.packages[{i}]"
    out: list[EntryProblem] = []
    source = pkg.source
    if source:
        lowered = source.lower()
        if source != source.strip() or any(c.isspace() for c in source) or source.startswith("-"):
            out.append(EntryProblem(f"{fld}.source", pkg.name, "spaces or a leading '-': would be read as pip options"))
        elif pkg.kind == "local" and not lowered.startswith("file:"):
            out.append(EntryProblem(f"{fld}.source", pkg.name, "a local package's source must be a file:// URL"))
        elif pkg.kind in ("url", "index") and not lowered.startswith(_PIP_URL_SCHEMES):
            out.append(
                EntryProblem(f"{fld}.source", pkg.name, f"only {', '.join(_PIP_URL_SCHEMES)} sources are restored")
            )
    if out:
        return out
    try:
        req = Requirement(pkg.requirement)
    except InvalidRequirement as exc:
        return [EntryProblem(fld, pkg.name, f"not a requirement: {exc}")]
    if canonicalize_name(req.name) != pkg.name or req.marker is not None or req.extras:
        out.append(EntryProblem(fld, pkg.name, "the requirement names another package, extras or markers"))
    elif pkg.kind != "index" and req.url != source:
        out.append(EntryProblem(f"{fld}.source", pkg.name, "the source is not read back as the same URL"))
    return out


def check_entries(snapshot: Snapshot) -> list[EntryProblem]:
    """Every entry a restore would refuse (``refused``) or leave out (``skipped``), in document order.

    Reads only the snapshot; the reader's own findings (classic ``pips`` lines) come first."""
    out: list[EntryProblem] = list(snapshot.entry_problems)
    folders: dict[str, int] = {}
    for i, p in enumerate(snapshot.packs):
        out += _pack_problems(i, p)
        if p.enabled and p.kind in ("git", "cnr", "folder", "file"):
            slot = p.name.lower()
            if slot in folders:
                out.append(
                    EntryProblem(
                        f"packs[{i}].name",
                        p.name,
                        f"same folder as packs[{folders[slot]}]: two packs cannot be restored into one place",
                    )
                )
            folders.setdefault(slot, i)
    names: dict[str, int] = {}
    for i, pkg in enumerate(snapshot.python):
        out += _pip_problems(i, pkg)
        if pkg.name in names:
            first = names[pkg.name]
            out.append(EntryProblem(f"python.packages[{i}]", pkg.name, f"same package as python.packages[{first}]"))
        names.setdefault(pkg.name, i)
    for i, m in enumerate(snapshot.models):
        if not safe_entry_name(m.folder) or not safe_relative_path(m.name) or is_reserved_device_name(m.folder):
            out.append(EntryProblem(f"models[{i}]", f"{m.folder}/{m.name}"[:120], "not a safe relative path"))
    return out


def refused(problems: Sequence[EntryProblem]) -> list[EntryProblem]:
    return [p for p in problems if p.status == "refused"]


def skipped(problems: Sequence[EntryProblem]) -> list[EntryProblem]:
    return [p for p in problems if p.status == "skipped"]


def refusal_error(where: str, problems: Sequence[EntryProblem]) -> SnapshotInvalid:
    """``snapshot_invalid`` naming every refused entry (``details.refused``; ``details.field`` the first)."""
    bad = refused(problems)
    listing = "; ".join(p.describe() for p in bad[:5]) + (" ..." if len(bad) > 5 else "")
    details: dict[str, Any] = {
        "where": where,
        "field": bad[0].field if bad else "",
        "problem": bad[0].problem if bad else "",
        "refused": [p.to_dict() for p in bad],
        "skipped": [p.to_dict() for p in skipped(problems)],
    }
    return SnapshotInvalid(
        f"{where or 'snapshot'}: restore refused before any change: {len(bad)} unsafe entr"
        f"{'y' if len(bad) == 1 else 'ies'}: {listing}",
        hint="Nothing was changed. Take a new snapshot with `cm-cli.py snapshot save`, or remove the named "
        "entries from the file and import it again (docs/security.md).",
        details=details,
    )
