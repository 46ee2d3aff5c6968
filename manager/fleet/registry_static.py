"""The registry archive cache as a static registry: the zips, plus JSON answering the client's calls.

Under ``registry/`` (the ``[mirrors] registry`` target):

- ``archives/<id>/<version>.zip``           the cached registry zips;
- ``nodes/index.html``                      the node listing, one page (``GET /nodes?page=1&limit=N``: a
                                            static server redirects ``nodes`` to ``nodes/`` and answers
                                            its index file; the query is ignored, one page holds all);
- ``nodes/<id>/install``                    the newest version (``GET /nodes/<id>/install``);
- ``nodes/<id>/versions/index.html``        the version list (``GET /nodes/<id>/versions?statuses=...``);
- ``nodes/<id>/versions/<version>``         one version: static files cannot tell ``install?version=v``
                                            from ``install``, so the client asks this path form when
                                            the answer names another version (``RegistryClient``).

Download URLs are relative to the file that names them, so the folder works at any URL prefix.
Metadata comes from each zip's ``pyproject.toml`` (``[project]``, ``[tool.comfy]``).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import tomllib
from packaging.version import InvalidVersion, Version

from ..errors import InvalidName
from ..registry_records import validate_node_id, validate_version
from .tree import FileEntry, StagedTree


def _version_key(v: str) -> tuple[int, Any]:
    try:
        return (1, Version(v))
    except InvalidVersion:
        return (0, v)


def _project(zip_path: Path) -> dict[str, Any]:
    """``pyproject.toml`` of a registry zip as a dict ({} when absent or unreadable)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "pyproject.toml" and n.count("/") <= 1]
            if not names:
                return {}
            info = zf.getinfo(sorted(names, key=len)[0])
            if info.file_size > 1 << 20:
                return {}
            return tomllib.loads(zf.read(info).decode("utf-8"))
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError):
        return {}


def _version_doc(node_id: str, version: str, href: str) -> dict[str, Any]:
    return {
        "id": f"{node_id}@{version}",
        "node_id": node_id,
        "version": version,
        "downloadUrl": href,
        "status": "NodeVersionStatusActive",
        "deprecated": False,
    }


def _json(doc: Any) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def cached_archives(cnr_dir: Path, skipped: list[str]) -> dict[str, list[tuple[str, Path]]]:
    """node id -> [(version, zip path)], newest first, from ``cache/archives/cnr/<id>/<version>.zip``."""
    out: dict[str, list[tuple[str, Path]]] = {}
    if not cnr_dir.is_dir():
        return out
    for node_dir in sorted(cnr_dir.iterdir()):
        if node_dir.is_symlink() or not node_dir.is_dir():
            continue
        try:
            node_id = validate_node_id(node_dir.name)
        except InvalidName:
            skipped.append(str(node_dir))
            continue
        found = []
        for zip_path in sorted(node_dir.glob("*.zip")):
            try:
                version = validate_version(zip_path.name[: -len(".zip")])
            except InvalidName:
                skipped.append(str(zip_path))
                continue
            if zip_path.is_symlink() or not zip_path.is_file():
                skipped.append(str(zip_path))
                continue
            found.append((version, zip_path))
        if found:
            out[node_id] = sorted(found, key=lambda item: _version_key(item[0]), reverse=True)
    return out


def add_registry(tree: StagedTree, cnr_dir: Path, skipped: list[str]) -> list[FileEntry]:
    """The archives and the static answers (see the module doc)."""
    out: list[FileEntry] = []
    listing: list[dict[str, Any]] = []
    for node_id, versions in cached_archives(cnr_dir, skipped).items():
        for version, zip_path in versions:
            out.append(tree.copy_file(f"registry/archives/{node_id}/{version}.zip", zip_path, "registry"))
        docs = []
        for version, _ in versions:
            archive = f"archives/{node_id}/{version}.zip"
            out.append(
                tree.write_bytes(
                    f"registry/nodes/{node_id}/versions/{version}",
                    _json(_version_doc(node_id, version, f"../../../{archive}")),
                    "registry",
                )
            )
            docs.append(_version_doc(node_id, version, f"../../../{archive}"))
        latest, latest_zip = versions[0]
        out.append(tree.write_bytes(f"registry/nodes/{node_id}/versions/index.html", _json(docs), "registry"))
        out.append(
            tree.write_bytes(
                f"registry/nodes/{node_id}/install",
                _json(_version_doc(node_id, latest, f"../../archives/{node_id}/{latest}.zip")),
                "registry",
            )
        )
        listing.append(_node_doc(node_id, latest, _project(latest_zip)))
    page = {"nodes": listing, "total": len(listing), "page": 1, "limit": max(len(listing), 1), "totalPages": 1}
    out.append(tree.write_bytes("registry/nodes/index.html", _json(page), "registry"))
    return out


def _node_doc(node_id: str, latest: str, project: dict[str, Any]) -> dict[str, Any]:
    meta = project.get("project") if isinstance(project.get("project"), dict) else {}
    tool = project.get("tool") if isinstance(project.get("tool"), dict) else {}
    comfy = tool.get("comfy") if isinstance(tool, dict) and isinstance(tool.get("comfy"), dict) else {}
    urls = meta.get("urls") if isinstance(meta, dict) and isinstance(meta.get("urls"), dict) else {}

    def text(mapping: Any, key: str) -> str:
        value = mapping.get(key) if isinstance(mapping, dict) else None
        return value if isinstance(value, str) else ""

    publisher = text(comfy, "PublisherId")
    return {
        "id": node_id,
        "name": text(comfy, "DisplayName") or node_id,
        "description": text(meta, "description"),
        "repository": text(urls, "Repository"),
        "publisher": {"id": publisher, "name": publisher},
        "latest_version": {"version": latest, "downloadUrl": f"../archives/{node_id}/{latest}.zip"},
    }
