"""Node specs to concrete sources, and fetching a source into a staging folder.

Spec syntax (CLI, queue targets): ``<id>``, ``<id>@<version>``, ``<id>@latest``,
``<id>@nightly``, ``<id>@unknown``, a git URL (``https://``, ``ssh://``, ``git://``, scp-like),
an archive URL (``.zip``/``.tar.gz``), an absolute local path or a ``file://`` URL (a git
repository, a plain folder, an archive or a single ``.py`` file). Relative paths are refused: a
bare word is always an id, so ``../x`` is an invalid name, never a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..archive import extract_archive, extract_zip
from ..errors import (
    CacheMissing,
    InstallUnsupported,
    InvalidName,
    ManagerError,
    NetworkBlocked,
    NotFound,
    OfflineModeEnabled,
)
from ..fsops import atomic_write_text
from ..inspect_files import Collector, Inspection
from ..network import NetworkGate, redact_url, run_sync
from ..records import NodePack
from .names import name_from_url, validate_pack_name, version_token
from .ops import Ops
from .reporting import Reporter, Step

__all__ = [
    "NodeSpec",
    "Source",
    "Fetched",
    "parse_spec",
    "resolve",
    "fetch_into",
    "cnr_archive_path",
    "registry_source",
    "catalog_pack",
    "from_catalog",
]

_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
_SPECIAL_VERSIONS = ("latest", "nightly", "unknown")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")


@dataclass(frozen=True)
class NodeSpec:
    """A parsed spec: ``kind`` is id | url | path."""

    raw: str
    kind: str
    id: str = ""
    version: str = ""  # "", latest, nightly, unknown or a registry version
    url: str = ""
    path: str = ""


@dataclass(frozen=True)
class Source:
    """Where a pack comes from, resolved enough to fetch it."""

    kind: str  # git | cnr | copy | unzip | local-dir | local-archive
    name: str  # entry name in custom_nodes/ (a file name for copy)
    pack_id: str = ""  # catalog or registry id
    version: str = ""  # registry version, or "nightly"
    url: str = ""  # git remote, or download URL (cnr)
    urls: tuple[str, ...] = ()  # copy / unzip file URLs
    ref: str = ""  # git branch, tag or commit
    path: str = ""  # local file or folder, or a cached archive
    risk: str = ""  # "" | git_url | local_path (needs a PolicyDecision)
    strip_top: bool = False  # archives: a single top folder is the pack root

    def describe(self) -> str:
        where = redact_url(self.url) if self.url else (self.path or ", ".join(self.urls))
        label = self.pack_id or self.name
        return f"{label} ({self.kind}{'@' + self.version if self.version else ''}) from {where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "pack_id": self.pack_id,
            "version": self.version,
            "url": redact_url(self.url) if self.url else "",
            "ref": self.ref,
            "path": self.path,
        }


@dataclass(frozen=True)
class Fetched:
    """A fetched source in staging: ``root`` to rename into place (for ``copy``, ``files`` inside it)."""

    root: Path
    files: tuple[str, ...] = ()  # copy installs: single files to move one by one
    tracking: tuple[str, ...] = ()
    commit: str = ""
    # what the files hold, gathered while an archive was extracted (None: inspect the tree)
    inspection: Inspection | None = None


# --- parsing --------------------------------------------------------------------------------
def parse_spec(text: str) -> NodeSpec:
    """Classify a spec string; ``InvalidName`` for an id that is not a safe name."""
    raw = text.strip() if isinstance(text, str) else ""
    if not raw:
        raise InvalidName(
            "empty node spec", hint="Give a pack id, id@version, a git URL or an absolute path.", details={"spec": ""}
        )
    if raw.lower().startswith("file:"):
        return NodeSpec(raw, "path", path=str(NetworkGate.local_path(raw)), url=raw)
    if "://" in raw or re.match(r"^[^@/\s]+@[A-Za-z0-9.-]{2,}:(?!//)", raw):
        return NodeSpec(raw, "url", url=raw)
    if raw.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", raw):
        return NodeSpec(raw, "path", path=str(Path(raw).expanduser()))
    ident, _, version = raw.partition("@")
    validate_pack_name(ident, what="pack id")
    if version and version not in _SPECIAL_VERSIONS and not re.match(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$", version):
        raise InvalidName(
            f"refused version {version!r} in {raw!r}",
            hint="Use <id>@<version>, <id>@latest or <id>@nightly.",
            details={"spec": raw},
        )
    return NodeSpec(
        raw, "id", id=ident, version=version.replace("_", ".") if version not in _SPECIAL_VERSIONS else version
    )


def _is_archive(name: str) -> bool:
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


# --- resolving ------------------------------------------------------------------------------
def cnr_archive_path(ops: Ops, node_id: str, version: str) -> Path:
    """Where a registry zip is cached (offline installs use it)."""
    version_token(version)  # a registry answer must not name a path
    return (
        ops.layout.cache_dir / "archives" / "cnr" / validate_pack_name(node_id, what="registry id") / f"{version}.zip"
    )


def _url_cache_path(ops: Ops, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", url.rstrip("/").rsplit("/", 1)[-1])[:60] or "file"
    return ops.layout.cache_dir / "archives" / "url" / f"{digest}-{base}"


def _cached_versions(ops: Ops, node_id: str) -> list[str]:
    from packaging.version import InvalidVersion, Version

    folder = ops.layout.cache_dir / "archives" / "cnr" / node_id
    found = [p.stem for p in folder.glob("*.zip")] if folder.is_dir() else []

    def key(v: str) -> Any:
        try:
            return (1, Version(v))
        except InvalidVersion:
            return (0, v)

    return sorted(found, key=key, reverse=True)


def _offline_hint(what: str, fetch: str, place: Path | None = None) -> str:
    text = f"Offline, {what}: on a machine with network run `{fetch}`"
    if place is not None:
        text += f" with the same manager data folder, or copy the file to {place}"
    return text + "; or set network_mode in config.ini."


def registry_source(ops: Ops, node_id: str, version: str, name: str | None) -> Source:
    pinned = version not in ("", "latest")
    folder = validate_pack_name(name or node_id)
    if pinned:
        cached = cnr_archive_path(ops, node_id, version)
        if cached.is_file():
            return Source("cnr", folder, node_id, version, path=str(cached))
    elif ops.manager.gate.offline:
        versions = _cached_versions(ops, node_id)
        if versions:
            return Source("cnr", folder, node_id, versions[0], path=str(cnr_archive_path(ops, node_id, versions[0])))
    try:
        info = run_sync(ops.manager.registry.install_info(node_id, version if pinned else None))
    except (OfflineModeEnabled, NetworkBlocked, CacheMissing) as exc:
        if isinstance(exc, CacheMissing) and not ops.manager.gate.offline:
            raise
        spec = f"{node_id}@{version or 'latest'}"
        hint = _offline_hint(
            f"{spec} can only come from a cached registry archive and none is cached",
            f"cm-cli.py install {spec}",
            ops.layout.cache_dir / "archives" / "cnr" / node_id / f"{version if pinned else '<version>'}.zip",
        )
        if isinstance(exc, CacheMissing):  # offline: say so, not only "no cache"
            raise OfflineModeEnabled(
                f"offline mode: {spec} is not in the archive cache",
                hint=hint,
                details={"node_id": node_id, "version": version or "latest"},
            ) from exc
        exc.hint = hint
        raise
    if not info.download_url:
        raise NotFound(
            f"the registry has no download for {node_id}@{info.version}",
            hint="Pick another version, or install @nightly from the repository.",
            details={"node_id": node_id, "version": info.version},
        )
    cached = cnr_archive_path(ops, node_id, info.version)
    if cached.is_file():
        return Source("cnr", folder, node_id, info.version, path=str(cached))
    return Source("cnr", folder, node_id, info.version, url=info.download_url)


def catalog_pack(ops: Ops, node_id: str) -> tuple[NodePack | None, ManagerError | None]:
    try:
        return ops.manager.catalog_view().catalog.get(node_id), None
    except ManagerError as exc:  # no channel data: the registry may still know it
        return None, exc


def from_catalog(pack: NodePack, *, name: str | None, ref: str, nightly: bool) -> Source:
    kind = pack.install_type
    if kind == "git-clone":
        if not pack.files:
            raise InstallUnsupported(
                f"catalog entry {pack.id!r} has no repository URL",
                hint="Install it by URL, or report the entry to the channel maintainer.",
            )
        url = pack.files[0]
        return Source(
            "git",
            validate_pack_name(name) if name else name_from_url(url),
            pack.id,
            "nightly" if nightly else "",
            url=url,
            ref=ref,
        )
    if nightly:
        raise InstallUnsupported(
            f"{pack.id} is a {kind} pack and has no nightly (git) version",
            details={"pack": pack.id, "install_type": kind},
        )
    if kind == "copy":
        names = []
        for url in pack.files:
            file_name = name_from_url(url)
            if not file_name.endswith(".py"):
                raise InstallUnsupported(
                    f"{pack.id}: copy entry {redact_url(url)} is not a .py file",
                    hint="Only single-file Python packs are installed by copy; install the "
                    "pack from its repository URL instead.",
                    details={"pack": pack.id, "url": redact_url(url)},
                )
            names.append(file_name)
        return Source("copy", names[0], pack.id, urls=tuple(pack.files))
    if kind == "unzip":
        return Source("unzip", validate_pack_name(name or pack.id), pack.id, urls=tuple(pack.files), strip_top=True)
    if kind == "cnr":
        return Source("cnr", validate_pack_name(name or pack.cnr_id or pack.id), pack.cnr_id or pack.id)
    raise InstallUnsupported(
        f"catalog entry {pack.id!r} has install_type {kind!r}, which cannot be installed",
        hint="Install the pack by repository URL instead.",
        details={"pack": pack.id, "install_type": kind},
    )


def resolve(
    ops: Ops, spec: str | NodeSpec, *, version: str | None = None, name: str | None = None, ref: str | None = None
) -> Source:
    """Turn a spec into a ``Source`` (may ask the catalog and the registry, through the gate)."""
    ns = spec if isinstance(spec, NodeSpec) else parse_spec(spec)
    ref = ref or ""
    if ns.kind == "url":
        low = ns.url.lower().split("?", 1)[0]
        if _is_archive(low) and low.startswith(("http://", "https://")):
            return Source(
                "unzip",
                validate_pack_name(name) if name else _archive_name(ns.url),
                urls=(ns.url,),
                risk="git_url",
                strip_top=True,
            )
        return Source(
            "git", validate_pack_name(name) if name else name_from_url(ns.url), url=ns.url, ref=ref, risk="git_url"
        )
    if ns.kind == "path":
        return _local_source(ns, name=name, ref=ref)
    wanted = version if version is not None else ns.version
    wanted = wanted.replace("_", ".") if wanted not in _SPECIAL_VERSIONS else wanted
    if wanted in ("nightly", "unknown"):
        pack, err = catalog_pack(ops, ns.id)
        if pack is None:
            raise NotFound(
                f"{ns.id}@{wanted}: the catalog has no repository for {ns.id!r}",
                hint="Install it by its git URL, or refresh the channel cache (cm-cli.py update-cache)"
                + (f" ({err.code}: {err.message})" if err else "."),
                details={"id": ns.id},
            )
        return from_catalog(pack, name=name, ref=ref, nightly=True)
    if wanted:  # latest or a pinned registry version
        return registry_source(ops, ns.id, wanted, name)
    pack, err = catalog_pack(ops, ns.id)
    if pack is not None and pack.install_type != "cnr":
        return from_catalog(pack, name=name, ref=ref, nightly=False)
    try:
        return registry_source(ops, pack.cnr_id if pack and pack.cnr_id else ns.id, "latest", name)
    except NotFound as exc:
        exc.hint = (
            "The id is in neither the channel catalog nor the registry; check the spelling, refresh "
            "the channel cache (cm-cli.py update-cache), or install by git URL."
            + (f" Catalog: {err.code}." if err else "")
        )
        raise


def _archive_name(url: str) -> str:
    base = name_from_url(url.split("?", 1)[0]) if "://" in url else Path(url).name
    for suffix in _ARCHIVE_SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return validate_pack_name(base, what="folder name taken from the archive name")


def _local_source(ns: NodeSpec, *, name: str | None, ref: str) -> Source:
    path = Path(ns.path)
    if not path.is_absolute():
        raise InstallUnsupported(
            f"local path {ns.path!r} is not absolute",
            hint="Give an absolute path or a file:// URL.",
            details={"path": ns.path},
        )
    if not path.exists():
        raise NotFound(
            f"local source {str(path)!r} does not exist",
            hint="Check the path; a file:// URL needs three slashes (file:///abs/path).",
            details={"path": str(path)},
        )
    if path.is_dir():
        folder = (
            validate_pack_name(name)
            if name
            else validate_pack_name(
                path.name[:-4] if path.name.endswith(".git") else path.name, what="folder name taken from the path"
            )
        )
        if (path / ".git").exists() or (path / "HEAD").is_file() and (path / "objects").is_dir():
            return Source("git", folder, url=ns.url or str(path), ref=ref, risk="local_path")
        return Source("local-dir", folder, path=str(path), risk="local_path")
    if _is_archive(path.name):
        return Source(
            "local-archive",
            validate_pack_name(name) if name else _archive_name(str(path)),
            path=str(path),
            risk="local_path",
            strip_top=True,
        )
    if path.suffix == ".py":
        return Source("copy", validate_pack_name(name or path.name), path=str(path), risk="local_path")
    raise InstallUnsupported(
        f"{str(path)!r} is neither a folder, an archive nor a .py file", details={"path": str(path)}
    )


# --- fetching -------------------------------------------------------------------------------
def _download(ops: Ops, url: str, dest: Path, rep: Reporter, *, purpose: str, spec: str) -> Path:
    last = [-1.0]

    def progress(done: int, total: int | None) -> None:
        if total:
            pct = round(100.0 * done / total)
            if pct != last[0]:
                last[0] = pct
                rep.stage("download", pct)

    try:
        run_sync(ops.manager.gate.download(url, dest, purpose=purpose, progress=progress))
    except (OfflineModeEnabled, NetworkBlocked) as exc:
        if isinstance(exc, OfflineModeEnabled):
            exc.hint = _offline_hint(f"{redact_url(url)} is not cached", f"cm-cli.py install {spec}", dest)
        raise
    return dest


def _pack_root(extracted: Path) -> Path:
    """A single top folder (GitHub-style archive) is the pack; else the extraction root."""
    children = [c for c in extracted.iterdir() if c.name not in ("__MACOSX",)]
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return extracted


def _merge_into(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
        target = dest / child.name
        if os.path.lexists(target):
            raise InstallUnsupported(
                f"archives of this pack overlap at {child.name!r}",
                hint="Install one of its archives by URL instead.",
                details={"entry": child.name},
            )
        os.rename(child, target)


def fetch_into(ops: Ops, source: Source, work: Path, rep: Reporter, *, hashes: bool = False) -> Fetched:
    """Materialise ``source`` inside the empty staging folder ``work``; ``Fetched.root`` is
    ``work/<name>`` (the pack) or ``work`` itself for single-file copies.

    An archive is read once: its files are inspected (and hashed when ``hashes``) as they are
    extracted, and ``Fetched.inspection`` holds the result."""
    dest = work / source.name
    label = source.pack_id or source.name
    spec = f"{source.pack_id}@{source.version}" if source.pack_id and source.version else (source.url or label)
    if source.kind == "git":
        ready = ops.prefetched.get((source.url, source.ref))
        with Step(rep, "clone", label):
            if ready is not None and ready.is_dir():  # cloned ahead by the restore (vetted above, like a clone)
                os.rename(ready, dest)
                state = ops.manager.git.state(dest)
            else:
                state = ops.manager.git.clone(source.url, dest, ref=source.ref or None, progress=rep.line_fn("clone"))
        return Fetched(dest, commit=state.commit)
    if source.kind == "cnr":
        archive = Path(source.path) if source.path else cnr_archive_path(ops, source.pack_id, source.version)
        if not source.path:
            with Step(rep, "download", label):
                _download(ops, source.url, archive, rep, purpose="registry", spec=spec)
        seen = Collector(hashes=hashes)
        with Step(rep, "extract", label):
            files = extract_zip(archive, dest, tap=seen.tap, in_place=True)  # work is private, removed on failure
        inspection = seen.result(dest)
        with Step(rep, "tracking", label):
            atomic_write_text(dest / ".tracking", "".join(f"{f}\n" for f in files))
        return Fetched(dest, tracking=tuple(files), inspection=inspection)
    if source.kind == "copy":
        names: list[str] = []
        with Step(rep, "download" if source.urls else "copy", label):
            if source.path:
                shutil.copy2(source.path, work / source.name)
                names.append(source.name)
            for url in source.urls:
                file_name = name_from_url(url)
                if ops.manager.gate.is_local(url):
                    shutil.copy2(ops.manager.gate.local_path(url), work / file_name)
                else:
                    cached = _url_cache_path(ops, url)
                    if not cached.is_file():
                        _download(ops, url, cached, rep, purpose="other", spec=spec)
                    shutil.copy2(cached, work / file_name)
                names.append(file_name)
        return Fetched(work, files=tuple(names))
    if source.kind in ("unzip", "local-archive"):
        archives: list[Path] = []
        if source.path:
            archives.append(Path(source.path))
        for url in source.urls:
            if ops.manager.gate.is_local(url):
                archives.append(ops.manager.gate.local_path(url))
                continue
            cached = _url_cache_path(ops, url)
            if not cached.is_file():
                with Step(rep, "download", label):
                    _download(ops, url, cached, rep, purpose="other", spec=spec)
            archives.append(cached)
        # one archive (the usual case) is inspected as it is extracted; merged ones afterwards
        collector = Collector(hashes=hashes) if len(archives) == 1 else None
        top = ""
        with Step(rep, "extract", label):
            for i, archive in enumerate(archives):
                part = work / f"_extract-{i}"
                extract_archive(archive, part, tap=collector.tap if collector is not None else None, in_place=True)
                root = _pack_root(part) if source.strip_top else part
                if len(archives) == 1:
                    top = root.relative_to(part).as_posix() if root != part else ""
                    os.rename(root, dest)
                else:
                    _merge_into(root, dest)
        return Fetched(dest, inspection=collector.result(dest, top) if collector is not None else None)
    if source.kind == "local-dir":
        with Step(rep, "copy", label):
            shutil.copytree(source.path, dest, symlinks=True)
        return Fetched(dest)
    raise InstallUnsupported(f"unknown source kind {source.kind!r}")
