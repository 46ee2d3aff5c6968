"""Snapshots written by the classic ComfyUI-Manager: read them, and write a classic view of ours.

Classic document: ``{"comfyui": <commit or null>, "git_custom_nodes": {url: {"hash", "disabled"}},
"cnr_custom_nodes": {id: version}, "file_custom_nodes": [{"filename", "disabled"}],
"pips": {spec: url-or-""}}``. ``pips`` comes from ``pip freeze``: ``"name==1.2"`` maps to ``""``,
a URL install maps its bare name to the URL. Classic files are named
``<YYYY-mm-dd_HH-MM-SS>_snapshot.json`` in local time.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from collections.abc import Mapping
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import SnapshotInvalid
from .model import FORMAT, FORMAT_VERSION, EntryProblem, PythonPackage, Snapshot, safe_entry_name

CLASSIC_KEYS = ("git_custom_nodes", "cnr_custom_nodes", "file_custom_nodes", "pips")
_NAME_TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})_(\d{2})-(\d{2})-(\d{2})")


def is_classic(doc: Any) -> bool:
    """A classic document: classic keys and none of our ``format`` marker."""
    return isinstance(doc, Mapping) and "format" not in doc and any(k in doc for k in CLASSIC_KEYS)


def created_from_name(name: str) -> str | None:
    """UTC ISO time from a classic file name (written in local time), or None."""
    m = _NAME_TIME_RE.match(name)
    if not m:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in m.groups())
        local = _dt.datetime(year, month, day, hour, minute, second).astimezone()
    except ValueError:
        return None
    return local.astimezone(_dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _bad(where: str, fld: str, problem: str) -> SnapshotInvalid:
    return SnapshotInvalid(
        f"{where}: {fld}: {problem}",
        hint="The classic snapshot is damaged; take a new one, or fix the named entry.",
        details={"field": fld, "problem": problem, "where": where, "format": "classic"},
    )


def repo_folder_name(url: str) -> str:
    """Folder a clone of ``url`` lands in: the last path part without ``.git``."""
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail[:-4] if tail.lower().endswith(".git") else tail


def _looks_like_option(text: str) -> bool:
    """A pip option smuggled into a requirement line (``--index-url ...``, ``-i x``, ``x --extra-index-url y``)."""
    return text.startswith("-") or bool(re.search(r"(^|\s)-{1,2}[A-Za-z]", text))


def _pip(spec: str, url: str, notes: list[str], problems: list[EntryProblem]) -> PythonPackage | None:
    raw, spec = spec, spec.strip()
    fld = f"pips[{raw[:80]!r}]"

    def skip(reason: str, status: str = "skipped") -> None:
        notes.append(f"pips: {spec!r}" + (f" -> {url!r}" if url else "") + f" {status} ({reason})")
        problems.append(EntryProblem(fld, spec[:80], reason, status))

    if url:
        name = spec.split("@", 1)[0].strip()
        kind = "local" if url.lower().startswith("file:") else "url"
        if _looks_like_option(spec) or _looks_like_option(url.strip()):
            skip("looks like a pip option, not a package and its URL", "refused")
            return None
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            return PythonPackage(str(canonicalize_name(name)), "", kind, url)
        skip("no package name")
        return None
    if spec.startswith("-e ") or spec.startswith("--editable") or spec == "-e":
        skip("editable install: not restored")
        return None
    if _looks_like_option(spec):
        skip("a pip option, not a requirement (it could point pip at another index or file)", "refused")
        return None
    if " @ " in spec or spec.startswith("#"):
        skip("unnamed install or comment: not restored")
        return None
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        skip("not a requirement")
        return None
    pins = [s.version for s in req.specifier if s.operator in ("==", "===")]
    if req.url:
        kind = "local" if req.url.lower().startswith("file:") else "url"
        return PythonPackage(str(canonicalize_name(req.name)), "", kind, req.url)
    if not pins or "*" in pins[0]:
        skip("no exact version")
        return None
    return PythonPackage(str(canonicalize_name(req.name)), pins[0])


def from_classic(doc: Mapping[str, Any], *, where: str = "snapshot", created_at: str | None = None) -> Snapshot:
    """Translate a classic document into a ``Snapshot`` (validated like our own format)."""
    notes: list[str] = []
    packs: list[dict[str, Any]] = []
    git_nodes = doc.get("git_custom_nodes") or {}
    if not isinstance(git_nodes, Mapping):
        raise _bad(where, "git_custom_nodes", "expected an object {url: {hash, disabled}}")
    for url, info in git_nodes.items():
        if not isinstance(info, Mapping):
            raise _bad(where, f"git_custom_nodes[{url}]", "expected {hash, disabled}")
        packs.append(
            {
                "name": repo_folder_name(str(url)),
                "kind": "git",
                "url": str(url),
                "commit": str(info.get("hash") or ""),
                "enabled": not bool(info.get("disabled")),
            }
        )
    cnr_nodes = doc.get("cnr_custom_nodes") or {}
    if not isinstance(cnr_nodes, Mapping):
        raise _bad(where, "cnr_custom_nodes", "expected an object {id: version}")
    for node_id, version in cnr_nodes.items():
        packs.append(
            {
                "name": str(node_id),
                "kind": "cnr",
                "id": str(node_id),
                "cnr_id": str(node_id),
                "version": str(version or ""),
                "enabled": True,
            }
        )
    file_nodes = doc.get("file_custom_nodes") or []
    if not isinstance(file_nodes, list):
        raise _bad(where, "file_custom_nodes", "expected a list of {filename, disabled}")
    for i, item in enumerate(file_nodes):
        if not isinstance(item, Mapping) or not isinstance(item.get("filename"), str):
            raise _bad(where, f"file_custom_nodes[{i}]", "expected {filename, disabled}")
        packs.append({"name": item["filename"], "kind": "file", "enabled": not bool(item.get("disabled"))})
    for pack in packs:
        if not safe_entry_name(pack["name"]):
            raise _bad(where, "custom nodes", f"{pack['name'][:80]!r} is not a plain folder or file name")
    pips_raw = doc.get("pips") or {}
    if not isinstance(pips_raw, Mapping):
        raise _bad(where, "pips", "expected an object {spec: url}")
    pips: dict[str, PythonPackage] = {}
    problems: list[EntryProblem] = []
    for spec, url in pips_raw.items():
        pkg = _pip(str(spec), str(url or ""), notes, problems)
        if pkg is not None:
            pips[pkg.name] = pkg
    comfyui = doc.get("comfyui")
    ours = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": created_at or doc.get("created_at") or "1970-01-01T00:00:00.000000Z",
        "reason": "classic",
        "origin": "classic",
        "comfyui": comfyui if isinstance(comfyui, str) else None,
        "packs": packs,
        "python": {
            "packages": [
                {"name": p.name, "version": p.version, "kind": p.kind, **({"source": p.source} if p.source else {})}
                for p in pips.values()
            ]
        },
        "notes": notes,
    }
    snap = Snapshot.from_dict(ours, where=where)
    return dataclasses.replace(snap, entry_problems=tuple(problems)) if problems else snap


def to_classic(snapshot: Snapshot) -> dict[str, Any]:
    """The classic view of a snapshot (what the classic manager can restore; models, config are dropped)."""
    git: dict[str, Any] = {}
    cnr: dict[str, str] = {}
    files: list[dict[str, Any]] = []
    for p in snapshot.packs:
        if p.kind == "git" and p.url:
            git[p.url] = {"hash": p.commit, "disabled": not p.enabled}
        elif p.kind == "cnr" and p.enabled:
            cnr[p.cnr_id or p.id] = p.version
        elif p.kind == "file":
            files.append({"filename": p.name, "disabled": not p.enabled})
    pips = {
        (p.requirement if p.kind == "index" else p.name): ("" if p.kind == "index" else p.source)
        for p in snapshot.python
    }
    return {
        "comfyui": snapshot.comfyui,
        "git_custom_nodes": git,
        "cnr_custom_nodes": cnr,
        "file_custom_nodes": files,
        "pips": pips,
    }
