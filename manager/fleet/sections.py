"""The parts of a mirror that are copies of a store: channel files, git repositories, wheels, models.

Only regular files are copied (a link in a store is skipped and reported, never followed).
Git repositories are bare copies made servable by git's dumb HTTP protocol: after the copy,
``git update-server-info`` writes ``info/refs`` and ``objects/info/packs``, and a relative link
``<path>`` -> ``<path>.git`` lets a catalog spell the URL either way.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from ..catalog_parse import CHANNEL_FILES, FILE_ALTER, FILE_MODELS, FILE_NODES
from ..git_mirror import BUNDLE_SUFFIX, bare_from_bundle, is_bare_repo, is_bundle_file
from .errors import MirrorBuildFailed
from .tree import FileEntry, StagedTree

CHANNEL_SUFFIXES = (".json",)
_EMPTY_CHANNEL_DOCS = {
    FILE_NODES: b'{"custom_nodes": []}\n',
    FILE_MODELS: b'{"models": []}\n',
    FILE_ALTER: b'{"items": []}\n',
}
DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")
# a plain file or folder name: no leading dot (hidden, "..") and no separators or control characters
_SAFE_PART = re.compile(r"^[^./\\\x00-\x1f][^/\\\x00-\x1f]*$")
# written again by update-server-info in the copy, never copied from the store
_GENERATED = {"info/refs", "objects/info/packs"}


def regular_files(root: Path, skipped: list[str]) -> Iterator[tuple[str, Path]]:
    """``(posix path under root, path)`` of every regular file below ``root``, sorted; links and
    unsafe names are skipped (named in ``skipped``)."""
    if not root.is_dir() or root.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in list(dirnames):
            if (base / name).is_symlink() or not _SAFE_PART.match(name):
                skipped.append(str(base / name))
                dirnames.remove(name)
        dirnames.sort()
        for name in sorted(filenames):
            path = base / name
            if path.is_symlink() or not path.is_file() or not _SAFE_PART.match(name):
                skipped.append(str(path))
                continue
            yield path.relative_to(root).as_posix(), path


# --- channel ---------------------------------------------------------------------------------------
def add_channel(tree: StagedTree, channel_dir: Path, git_mirror_dir: Path, skipped: list[str]) -> list[FileEntry]:
    """The local channel's files under ``channel/``; a ``file://`` URL of a repository in the git
    mirror becomes its public URL again (``https://<host>/<path>``), which the fleet's
    ``[mirrors]`` map sends to this mirror."""
    out = []
    local_prefix = git_mirror_dir.absolute().as_uri().rstrip("/") + "/"
    for rel, path in regular_files(channel_dir, skipped):
        if "/" in rel or not rel.endswith(CHANNEL_SUFFIXES):
            continue
        data = path.read_bytes()
        if local_prefix.encode() in data:
            data = data.replace(local_prefix.encode(), b"https://")
        out.append(tree.write_bytes(f"channel/{rel}", data, "channel"))
    if out:  # a client asks for every channel file: an absent one is served empty, not a 404 warning
        have = {e.rel.rsplit("/", 1)[1] for e in out}
        for name in CHANNEL_FILES:
            if name not in have:
                out.append(tree.write_bytes(f"channel/{name}", _EMPTY_CHANNEL_DOCS.get(name, b"{}\n"), "channel"))
    return out


# --- git -------------------------------------------------------------------------------------------
def bare_repos(git_mirror_dir: Path) -> list[tuple[str, Path]]:
    """``(<host>/<path>.git, source)`` of every repository in the git mirror: a bare repository
    folder, or the git bundle file an import left (when no bare repository was made from it)."""
    found: dict[str, Path] = {}
    if not git_mirror_dir.is_dir():
        return []
    for dirpath, dirnames, filenames in os.walk(git_mirror_dir):
        base = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not (base / d).is_symlink())
        for name in list(dirnames):
            folder = base / name
            if name.endswith(".git") and is_bare_repo(folder):
                rel = folder.relative_to(git_mirror_dir).as_posix()
                if all(_SAFE_PART.match(p) for p in rel.split("/")):
                    found[rel] = folder
                dirnames.remove(name)
        for name in filenames:
            if name.endswith(BUNDLE_SUFFIX) and is_bundle_file(base / name):
                rel = (base / name).relative_to(git_mirror_dir).as_posix()[: -len(BUNDLE_SUFFIX)] + ".git"
                if all(_SAFE_PART.match(p) for p in rel.split("/")):
                    found.setdefault(rel, base / name)
    return sorted(found.items())


def add_git(tree: StagedTree, git_mirror_dir: Path, git_exe: str, skipped: list[str]) -> list[FileEntry]:
    """Each bare repository under ``git/<host>/<path>.git``, ready for dumb HTTP clones."""
    out = []
    with tempfile.TemporaryDirectory(prefix=".unbundled-", dir=tree.root.parent) as scratch:
        for rel, source in bare_repos(git_mirror_dir):
            out += _add_repo(tree, rel, _repository(git_exe, source, Path(scratch)), git_exe, skipped)
    return out


def _repository(git_exe: str, source: Path, scratch: Path) -> Path:
    """A bare repository folder to copy: ``source``, or one made from a git bundle in ``scratch``
    (dumb HTTP needs a repository; the box's git mirror keeps the bundle as it is)."""
    if not is_bundle_file(source):
        return source
    folder = scratch / f"{len(list(scratch.iterdir()))}.git"
    try:
        bare_from_bundle(git_exe, source, folder)
    except OSError as exc:
        raise MirrorBuildFailed(str(exc), details={"repository": str(source)}) from exc
    return folder


def _add_repo(tree: StagedTree, rel: str, folder: Path, git_exe: str, skipped: list[str]) -> list[FileEntry]:
    """The repository ``folder`` copied to ``git/<rel>`` with dumb-HTTP info files, and its
    ``.git``-less alias."""
    out = []
    dest_rel = f"git/{rel}"
    for inner, path in regular_files(folder, skipped):
        if inner in _GENERATED or inner.startswith("hooks/"):
            continue
        out.append(tree.copy_file(f"{dest_rel}/{inner}", path, "git", hash_it=False))
    copy = tree.path(f"{dest_rel}/HEAD").parent
    for empty in ("refs/heads", "refs/tags", "objects/info", "objects/pack"):  # git wants them, even empty
        (copy / empty).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [git_exe, "--git-dir", str(copy), "update-server-info"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"},
    )
    if proc.returncode != 0:
        raise MirrorBuildFailed(
            f"git update-server-info failed for {rel}: {proc.stderr.strip()[:300]}",
            details={"repository": str(folder)},
        )
    for generated in sorted(_GENERATED):
        if (copy / generated).is_file():
            out.append(tree.adopt(f"{dest_rel}/{generated}", "git"))
    tree.symlink(dest_rel[: -len(".git")], copy.name)
    return out


# --- wheels and the PEP 503 index ---------------------------------------------------------------
def project_of(filename: str) -> str | None:
    """The normalised project name of a wheel or sdist file name, None for anything else."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        if filename.endswith((".tar.gz", ".zip")):
            return str(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


def add_wheels(tree: StagedTree, wheelhouse: Path, skipped: list[str]) -> list[FileEntry]:
    """Every distribution of the wheelhouse (sub-folders flattened) under ``wheels/``, plus the
    PEP 503 index ``simple/`` over them and a ``wheels/index.html`` usable as ``--find-links``."""
    files: dict[str, FileEntry] = {}
    projects: dict[str, list[FileEntry]] = {}
    for _rel, path in regular_files(wheelhouse, skipped):
        name = path.name
        project = project_of(name) if name.endswith(DIST_SUFFIXES) else None
        if project is None or name in files:
            continue
        entry = tree.copy_file(f"wheels/{name}", path, "pypi")
        files[name] = entry
        projects.setdefault(str(canonicalize_name(project)), []).append(entry)
    out = list(files.values())
    for project, entries in sorted(projects.items()):
        links = [_link(f"../../wheels/{e.rel.rsplit('/', 1)[1]}", e) for e in sorted(entries, key=lambda e: e.rel)]
        out.append(tree.write_bytes(f"simple/{project}/index.html", _page(f"Links for {project}", links), "pypi"))
    root_links = [f'<a href="{p}/">{html.escape(p)}</a>' for p in sorted(projects)]
    out.append(tree.write_bytes("simple/index.html", _page("Simple index", root_links), "pypi"))
    flat = [_link(e.rel.rsplit("/", 1)[1], e) for e in sorted(files.values(), key=lambda e: e.rel)]
    out.append(tree.write_bytes("wheels/index.html", _page("Wheels", flat), "pypi"))
    return out


def _link(href: str, entry: FileEntry) -> str:
    name = entry.rel.rsplit("/", 1)[1]
    return f'<a href="{html.escape(href)}#sha256={entry.sha256}">{html.escape(name)}</a>'


def _page(title: str, links: list[str]) -> bytes:
    body = "<br>\n".join(links)
    return (
        '<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    ).encode()


# --- models ------------------------------------------------------------------------------------------
def add_models(tree: StagedTree, model_store: Path, skipped: list[str]) -> list[FileEntry]:
    """The model store under ``models/``, in its own layout (a ``model_store`` URL root)."""
    return [
        tree.copy_file(f"models/{rel}", path, "models", hash_it=False)
        for rel, path in regular_files(model_store, skipped)
        if not rel.endswith(".part")
    ]
