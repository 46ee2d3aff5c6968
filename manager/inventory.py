"""What is installed: one fast scan of ``custom_nodes/`` and ``custom_nodes/.disabled/``.

Each entry becomes a frozen ``InstalledPack``: enabled or disabled (and how: inside
``.disabled/`` or with the older ``.disabled`` suffix), its source kind (git clone, registry
pack, single file, plain folder, unknown) and, when a catalog is given, the catalog id it
matches. Git metadata is read straight from ``.git`` (HEAD, config, loose refs,
``packed-refs``) so a scan of hundreds of packs spawns no process. A pack present both
enabled and disabled is reported in ``Inventory.conflicts``; the two are never merged.

``.disabled/`` is one of our working folders, so a symbolic link there (the folder itself, or an
entry inside it) is not a pack: it is reported as a ``working_folder_link`` notice naming the
path and the fix, and never listed (so never offered to enable). A link in ``custom_nodes/``
itself is a pack the user linked in on purpose and is listed (``is_link``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from .errors import NotFound
from .layout import DISABLED_DIRNAME, STAGING_DIRNAME, TRASH_DIRNAME, Layout
from .records import Notice, _Record

__all__ = [
    "InstalledPack",
    "PackConflict",
    "Inventory",
    "GitMeta",
    "scan",
    "read_git_meta",
    "parse_disabled_name",
    "read_tracking",
    "KINDS",
]

KINDS = ("git", "cnr", "file", "folder", "unknown")
_SKIP_NAMES = {DISABLED_DIRNAME, STAGING_DIRNAME, TRASH_DIRNAME, "__pycache__"}
_SUFFIX = ".disabled"
# "<id>@<version with _ for .>" or "<id>@nightly"; a plain folder name may contain '@' too, so
# only a version-looking tail counts.
_AT_VERSION_RE = re.compile(r"^(?P<id>.+)@(?P<ver>nightly|unknown|latest|v?\d[0-9A-Za-z_+\-]*)$")
_HEX_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class CatalogLike(Protocol):
    """The two catalog lookups the inventory uses (see ``manager/catalog.py``)."""

    def get(self, id: str) -> Any: ...
    def by_reference(self, url: str) -> Any: ...


@dataclass(frozen=True)
class GitMeta(_Record):
    """Git state read from disk without running git."""

    commit: str  # "" on an unborn branch
    branch: str  # "" when detached
    detached: bool
    remote_name: str
    remote_url: str
    git_dir: str


@dataclass(frozen=True)
class InstalledPack(_Record):
    """One entry of ``custom_nodes/`` or ``custom_nodes/.disabled/``."""

    name: str  # the entry name on disk (folder or file)
    path: str
    enabled: bool
    kind: str  # one of KINDS
    pack_id: str  # cnr id when known, else the name without version/".disabled" decoration
    version: str = ""  # registry version, or the version decoded from "<id>@<ver>"
    disabled_style: str = ""  # "" (enabled) | "dir" (inside .disabled/) | "suffix" (<name>.disabled)
    remote_url: str = ""
    commit: str = ""
    branch: str = ""  # "" when detached or not git
    detached: bool = False
    cnr_id: str = ""  # [project] name of pyproject.toml
    cnr_version: str = ""  # [project] version
    repository: str = ""  # [project.urls] Repository
    publisher_id: str = ""  # [tool.comfy] PublisherId
    display_name: str = ""  # [tool.comfy] DisplayName
    has_tracking: bool = False
    has_requirements: bool = False
    has_install_script: bool = False
    is_link: bool = False
    catalog_id: str = ""
    problems: tuple[str, ...] = ()

    @property
    def identity_keys(self) -> tuple[str, ...]:
        """Keys that say "same pack": base name, cnr id, normalised remote URL."""
        base = self.name if self.enabled else parse_disabled_name(self.name)[0]
        keys = ["name:" + base.lower(), "name:" + self.pack_id.lower()]
        if self.cnr_id:
            keys.append("cnr:" + self.cnr_id.lower())
        for url in (self.remote_url, self.repository):
            if url:
                keys.append("url:" + normalise_remote(url))
        return tuple(dict.fromkeys(keys))


@dataclass(frozen=True)
class PackConflict(_Record):
    """A pack present both enabled and disabled (same name, cnr id or repository)."""

    key: str
    enabled: tuple[InstalledPack, ...]
    disabled: tuple[InstalledPack, ...]


@dataclass(frozen=True)
class Inventory(_Record):
    """Result of one scan; ``packs`` sorted enabled first, then by name."""

    custom_nodes: str
    packs: tuple[InstalledPack, ...]
    conflicts: tuple[PackConflict, ...] = ()
    notices: tuple[Notice, ...] = ()

    @property
    def enabled(self) -> tuple[InstalledPack, ...]:
        return tuple(p for p in self.packs if p.enabled)

    @property
    def disabled(self) -> tuple[InstalledPack, ...]:
        return tuple(p for p in self.packs if not p.enabled)

    def find(self, key: str) -> tuple[InstalledPack, ...]:
        """Packs whose entry name, pack id, cnr id or catalog id equals ``key`` (case-insensitive)."""
        k = key.strip().lower()
        if not k:
            return ()
        return tuple(
            p for p in self.packs if k in (p.name.lower(), p.pack_id.lower(), p.cnr_id.lower(), p.catalog_id.lower())
        )


# --- names -----------------------------------------------------------------------------
def parse_disabled_name(name: str) -> tuple[str, str, bool]:
    """``(base, version, had_suffix)`` of a disabled entry name.

    ``comfyui-impact-pack@8_8_1`` -> ``("comfyui-impact-pack", "8.8.1", False)``;
    ``pack@nightly`` -> ``("pack", "nightly", False)``; ``pack.disabled`` -> ``("pack", "", True)``.
    """
    had_suffix = name.endswith(_SUFFIX) and len(name) > len(_SUFFIX)
    base = name[: -len(_SUFFIX)] if had_suffix else name
    m = _AT_VERSION_RE.match(base)
    if not m:
        return base, "", had_suffix
    ver = m.group("ver")
    if ver not in ("nightly", "unknown", "latest"):
        ver = ver.replace("_", ".")
    return m.group("id"), ver, had_suffix


def normalise_remote(url: str) -> str:
    """Compare key of a repository URL: scheme, credentials, ``.git`` and trailing ``/`` dropped."""
    text = url.strip()
    m = re.match(r"^(?:[^@/\s]+@)?([A-Za-z0-9.-]+):(?!//)(.*)$", text)  # scp-like git@host:o/r
    if m and "://" not in text:
        text = f"{m.group(1)}/{m.group(2)}"
    elif "://" in text:
        text = text.split("://", 1)[1]
        host, sep, rest = text.partition("/")
        text = host.rsplit("@", 1)[-1] + sep + rest
    text = text.rstrip("/")
    if text.lower().endswith(".git"):
        text = text[:-4]
    if text.lower().startswith("www."):
        text = text[4:]
    return text.lower()


# --- git metadata ------------------------------------------------------------------------
def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _unquote_config_value(raw: str) -> str:
    if not any(c in raw for c in '"\\#;'):
        return raw.strip()
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == '"':
            quoted = not quoted
        elif ch == "\\" and i + 1 < len(raw):
            i += 1
            out.append({"n": "\n", "t": "\t", "b": "\b"}.get(raw[i], raw[i]))
        elif ch in "#;" and not quoted:
            break
        else:
            out.append(ch)
        i += 1
    return "".join(out).strip()


def parse_git_config(text: str) -> dict[str, list[str]]:
    """Minimal git-config reader: ``{"remote.origin.url": [...], ...}`` (section/key lower-cased)."""
    values: dict[str, list[str]] = {}
    section = ""
    pending = ""
    for line in text.splitlines():
        if pending:
            line = pending + line
            pending = ""
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.endswith("\\") and not stripped.endswith("\\\\"):
            pending = stripped[:-1]
            continue
        if stripped.startswith("["):
            m = re.match(r'^\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]', stripped)
            if not m:
                section = ""
                continue
            name, sub = m.group(1), m.group(2)
            if sub is not None:
                section = f"{name.lower()}.{sub.replace(chr(92) + chr(34), chr(34))}"
            elif "." in name:  # deprecated [section.sub] form
                head, _, tail = name.partition(".")
                section = f"{head.lower()}.{tail.lower()}"
            else:
                section = name.lower()
            stripped = stripped[m.end() :].strip()
            if not stripped or stripped[0] in "#;":
                continue
        if not section:
            continue
        key, eq, raw = stripped.partition("=")
        key = key.strip().lower()
        if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            continue
        values.setdefault(f"{section}.{key}", []).append(_unquote_config_value(raw) if eq else "true")
    return values


def _resolve_ref(ref: str, git_dir: str, common_dir: str) -> str:
    """Commit a ref points to: loose ref files first, then ``packed-refs``; "" when unborn."""
    for _ in range(5):  # symbolic refs may chain
        found = ""
        for base in dict.fromkeys((git_dir, common_dir)):
            try:
                found = _read_text(os.path.join(base, *ref.split("/"))).strip()
                break
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
        if not found:
            found = _packed_ref(common_dir, ref)
        if found.startswith("ref:"):
            ref = found[4:].strip()
            continue
        return found
    return ""


def _packed_ref(common_dir: str, ref: str) -> str:
    try:
        text = _read_text(os.path.join(common_dir, "packed-refs"))
    except FileNotFoundError:
        return ""
    for line in text.splitlines():
        if not line or line[0] in "#^":
            continue
        sha, _, name = line.partition(" ")
        if name.strip() == ref:
            return sha.strip()
    return ""


def read_git_meta(pack_dir: str | os.PathLike[str], *, dotgit_is_dir: bool | None = None) -> GitMeta:
    """Read HEAD, branch, commit and remote URL of the repository in ``pack_dir`` from disk.

    Handles ``.git`` being a file (``gitdir: <path>``, worktrees and submodules, with
    ``commondir``), detached HEAD and packed refs. Raises ``OSError``/``ValueError`` when the
    metadata is missing or unreadable.
    """
    pack = os.fspath(pack_dir)
    dotgit = os.path.join(pack, ".git")
    if dotgit_is_dir is None:
        dotgit_is_dir = os.path.isdir(dotgit)
    git_dir, common_dir = dotgit, dotgit
    if not dotgit_is_dir:
        pointer = _read_text(dotgit).strip()
        if not pointer.startswith("gitdir:"):
            raise ValueError(".git file has no 'gitdir:' line")
        git_dir = os.path.normpath(os.path.join(pack, pointer[7:].strip()))
        common_dir = git_dir
        try:
            common_dir = os.path.normpath(os.path.join(git_dir, _read_text(os.path.join(git_dir, "commondir")).strip()))
        except FileNotFoundError:
            pass
    head = _read_text(os.path.join(git_dir, "HEAD")).strip()
    branch, detached = "", False
    if head.startswith("ref:"):
        ref = head[4:].strip()
        branch = ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else ref
        commit = _resolve_ref(ref, git_dir, common_dir)
    elif _HEX_RE.match(head):
        commit, detached = head, True
    else:
        raise ValueError(f"unreadable HEAD {head[:60]!r}")
    try:
        config = parse_git_config(_read_text(os.path.join(common_dir, "config")))
    except FileNotFoundError:
        config = {}
    remote_name = ""
    if branch:
        remote_name = (config.get(f"branch.{branch}.remote") or [""])[0]
    remotes = [k[len("remote.") : -len(".url")] for k in config if k.startswith("remote.") and k.endswith(".url")]
    if remote_name not in remotes:
        remote_name = "origin" if "origin" in remotes else (remotes[0] if remotes else "")
    remote_url = config[f"remote.{remote_name}.url"][0] if remote_name else ""
    return GitMeta(
        commit=commit, branch=branch, detached=detached, remote_name=remote_name, remote_url=remote_url, git_dir=git_dir
    )


# --- one entry -------------------------------------------------------------------------
def read_tracking(pack_dir: str | os.PathLike[str]) -> tuple[str, ...]:
    """Relative paths listed in a registry pack's ``.tracking`` file (empty when absent)."""
    try:
        text = _read_text(os.path.join(os.fspath(pack_dir), ".tracking"))
    except FileNotFoundError:
        return ()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _read_pyproject(path: str) -> dict[str, str]:
    import toml  # imported on first use: keeps module import light

    data = toml.loads(_read_text(path))
    raw_project, raw_tool = data.get("project"), data.get("tool")
    project = raw_project if isinstance(raw_project, dict) else {}
    comfy = raw_tool.get("comfy", {}) if isinstance(raw_tool, dict) else {}
    raw_urls = project.get("urls")
    urls = raw_urls if isinstance(raw_urls, dict) else {}
    repo = next((v for k, v in urls.items() if str(k).lower() in ("repository", "source", "homepage")), "")
    comfy = comfy if isinstance(comfy, dict) else {}
    return {
        "cnr_id": str(project.get("name") or ""),
        "cnr_version": str(project.get("version") or ""),
        "repository": str(repo or ""),
        "publisher_id": str(comfy.get("PublisherId") or ""),
        "display_name": str(comfy.get("DisplayName") or ""),
    }


def _scan_entry(entry: os.DirEntry[str], *, enabled: bool, style: str) -> InstalledPack | None:
    name = entry.name
    base, name_version, _ = parse_disabled_name(name) if not enabled else (name, "", False)
    common: dict[str, Any] = {
        "name": name,
        "path": entry.path,
        "enabled": enabled,
        "disabled_style": style,
        "is_link": entry.is_symlink(),
    }
    if entry.is_file():
        if not base.endswith(".py"):
            return None
        return InstalledPack(kind="file", pack_id=base, version=name_version, **common)
    if not entry.is_dir():
        return None  # broken link, socket, ...
    problems: list[str] = []
    try:
        with os.scandir(entry.path) as it:
            children = {c.name: c for c in it}
    except OSError as exc:
        return InstalledPack(kind="unknown", pack_id=base, problems=(f"unreadable folder: {exc}",), **common)
    fields: dict[str, Any] = {}
    if "pyproject.toml" in children:
        try:
            fields.update(_read_pyproject(children["pyproject.toml"].path))
        except Exception as exc:  # toml raises several types; a bad file is reported
            problems.append(f"pyproject.toml unreadable: {exc}")
    kind = "unknown"
    dotgit = children.get(".git")
    if dotgit is not None:
        kind = "git"
        try:
            meta = read_git_meta(entry.path, dotgit_is_dir=dotgit.is_dir())
            fields.update(remote_url=meta.remote_url, commit=meta.commit, branch=meta.branch, detached=meta.detached)
        except (OSError, ValueError) as exc:
            problems.append(f"git metadata unreadable: {exc}")
    elif ".tracking" in children:
        kind = "cnr"
    elif "__init__.py" in children:
        kind = "folder"
    cnr_id = fields.get("cnr_id")
    pack_id = cnr_id if kind == "cnr" and cnr_id else base
    version = fields.get("cnr_version", "") if kind == "cnr" else ""
    return InstalledPack(
        kind=kind,
        pack_id=pack_id,
        version=version or name_version,
        has_tracking=".tracking" in children,
        has_requirements="requirements.txt" in children,
        has_install_script="install.py" in children,
        problems=tuple(problems),
        **common,
        **fields,
    )


def _iter_entries(folder: Path, notices: list[Notice]) -> Iterable[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except FileNotFoundError:
        return []
    except OSError as exc:
        notices.append(
            Notice(
                "error", "inventory_unreadable", f"cannot list {folder}: {exc}", hint="Check the folder's permissions."
            )
        )
        return []
    return [e for e in entries if e.name not in _SKIP_NAMES and not e.name.startswith(".")]


# --- catalog ----------------------------------------------------------------------------
def _catalog_hit(lookup: Any, key: str) -> str:
    try:
        found = lookup(key)
    except (NotFound, KeyError):
        return ""
    if isinstance(found, (list, tuple)):
        found = found[0] if found else None
    return str(getattr(found, "id", "") or "") if found is not None else ""


def _match_catalog(catalog: CatalogLike, pack: InstalledPack) -> str:
    if pack.cnr_id:
        hit = _catalog_hit(catalog.get, pack.cnr_id)
        if hit:
            return hit
    for url in (pack.remote_url, pack.repository):
        if url:
            hit = _catalog_hit(catalog.by_reference, url)
            if hit:
                return hit
    return ""


# --- the scan ---------------------------------------------------------------------------
def _find_conflicts(packs: list[InstalledPack]) -> list[PackConflict]:
    parent = list(range(len(packs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, pack in enumerate(packs):
        for key in pack.identity_keys:
            if key in owner:
                parent[root(i)] = root(owner[key])
            else:
                owner[key] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(packs)):
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        on = [packs[i] for i in members if packs[i].enabled]
        off = [packs[i] for i in members if not packs[i].enabled]
        if on and off:
            key = next(
                (k for k in on[0].identity_keys if any(k in p.identity_keys for p in off)), on[0].identity_keys[0]
            )
            out.append(PackConflict(key=key, enabled=tuple(on), disabled=tuple(off)))
    return sorted(out, key=lambda c: c.key)


def _link_notice(path: str, what: str) -> Notice:
    try:
        target = os.readlink(path)
    except OSError:
        target = ""
    return Notice(
        "error",
        "working_folder_link",
        f"{path} ({what}) is a symbolic link{f' to {target}' if target else ''}; it is not listed as a pack, "
        "and operations refuse to run until it is removed",
        hint=f"Remove the link (rm {path}: only the link goes, never what it points to); to use a pack from "
        "another folder, link it into custom_nodes/ itself.",
        details={"path": path, "target": target},
    )


def _disabled_entries(layout: Layout, notices: list[Notice]) -> list[os.DirEntry[str]]:
    """Entries of ``.disabled/`` that may be packs; links (and a linked ``.disabled/``) become notices."""
    folder = layout.disabled_dir
    if folder.is_symlink():
        notices.append(_link_notice(str(folder), "the disabled packs folder"))
        return []
    out = []
    for entry in _iter_entries(folder, notices):
        if entry.is_symlink():
            notices.append(_link_notice(entry.path, "an entry in the disabled packs folder"))
        else:
            out.append(entry)
    return out


def scan(layout: Layout, *, catalog: CatalogLike | None = None) -> Inventory:
    """Scan ``layout.custom_nodes`` and its ``.disabled/`` folder; never raises for a bad entry."""
    notices: list[Notice] = []
    packs: list[InstalledPack] = []
    for entry in _iter_entries(layout.custom_nodes, notices):
        if entry.name.endswith(_SUFFIX):
            pack = _scan_entry(entry, enabled=False, style="suffix")
        else:
            pack = _scan_entry(entry, enabled=True, style="")
        if pack is not None:
            packs.append(pack)
    for entry in _disabled_entries(layout, notices):
        pack = _scan_entry(entry, enabled=False, style="dir")
        if pack is not None:
            packs.append(pack)
    if catalog is not None:
        packs = [replace(p, catalog_id=_match_catalog(catalog, p)) for p in packs]
    packs.sort(key=lambda p: (not p.enabled, p.name.lower()))
    conflicts = _find_conflicts(packs)
    for c in conflicts:
        notices.append(
            Notice(
                "warning",
                "pack_conflict",
                f"{c.key.split(':', 1)[1]} is both enabled ({', '.join(p.name for p in c.enabled)}) and "
                f"disabled ({', '.join(p.name for p in c.disabled)})",
                hint="Remove one of the copies (uninstall the disabled one, or disable the enabled one first).",
            )
        )
    return Inventory(
        custom_nodes=str(layout.custom_nodes), packs=tuple(packs), conflicts=tuple(conflicts), notices=tuple(notices)
    )
