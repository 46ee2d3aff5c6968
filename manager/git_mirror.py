"""The local git mirror: where a bundle import puts a pack's repository, and the one lookup that
prefers it.

A remote URL ``https://github.com/o/r`` (scheme and host lower-cased, user info, a trailing
``.git`` and ``/`` dropped; ``ssh://`` and ``git@host:path`` forms too) maps to
``<git_mirror_dir>/github.com/o/r.git`` (a bare repository) or ``.../o/r.bundle`` (the git bundle
file a bundle import keeps as it came: git clones and fetches from it directly, so an import
runs no git). ``GitClient.resolve_remote`` asks ``find_mirror`` first, in every network mode and
before the gate: a pack that came in a bundle clones from the local copy without network and
without a config change. ``repository_for`` turns a bundle into the bare repository beside it
when a caller needs one (reading a file at a commit, dumb HTTP); the import moves that derived
repository aside when a newer bundle replaces the file, so the two forms never disagree.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import urllib.parse
from pathlib import Path

_SCP_RE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+):(?!//)(.+)$")
_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~+-]*$")
_REMOTE_SCHEMES = ("http", "https", "ssh", "git")
BUNDLE_SUFFIX = ".bundle"


def mirror_relpath(url: str) -> str | None:
    """``<host>/<path>.git`` for a remote git URL; None for local paths, ``file://`` and odd URLs."""
    text = url.strip()
    host = path = ""
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme.lower() not in _REMOTE_SCHEMES or not parts.hostname:
            return None
        host = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
        path = parts.path
    else:
        match = _SCP_RE.match(text)
        if not match:
            return None
        host, path = match.group(1).lower(), match.group(2)
    path = path.strip("/")
    while path.endswith(".git") or path.endswith("/"):
        path = path[:-4] if path.endswith(".git") else path[:-1]
    segments = [s for s in path.split("/") if s]
    if not segments or not all(_PART_RE.match(s) and s not in (".", "..") for s in segments):
        return None
    return f"{host}/{'/'.join(segments)}.git"


def bundle_relpath(repo_relpath: str) -> str:
    """``<host>/<path>.bundle`` beside the ``<host>/<path>.git`` of ``mirror_relpath``."""
    return repo_relpath[: -len(".git")] + BUNDLE_SUFFIX


def is_bare_repo(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and not path.is_symlink()


def is_bundle_file(path: Path) -> bool:
    return path.name.endswith(BUNDLE_SUFFIX) and path.is_file() and not path.is_symlink()


def find_mirror(root: Path | None, url: str) -> Path | None:
    """The mirror copy for ``url`` under ``root``: the bare repository when there is one (made from
    the bundle, or put there by hand), else the bundle file; None when neither is there."""
    if root is None:
        return None
    rel = mirror_relpath(url)
    if rel is None:
        return None
    repo = root / rel
    if is_bare_repo(repo):
        return repo
    bundle = root / bundle_relpath(rel)
    return bundle if is_bundle_file(bundle) else None


def bare_from_bundle(git_exe: str, bundle: Path, dest: Path) -> None:
    """``dest`` (absent) becomes a bare repository holding every ref of ``bundle``, with no
    remote; raises ``OSError`` naming git's complaint when the bundle cannot be read."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    for args in (
        ["clone", "-q", "--mirror", "--", str(bundle), str(dest)],
        ["-C", str(dest), "remote", "remove", "origin"],
    ):
        res = subprocess.run(
            [git_exe, *args], capture_output=True, text=True, env=env, timeout=900, stdin=subprocess.DEVNULL
        )
        if res.returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            raise OSError(f"the git bundle {bundle.name} could not be unpacked: {res.stderr.strip()[-300:]}")


def repository_for(git_exe: str, source: Path) -> Path:
    """A bare repository for a mirror copy: ``source`` itself, or the one made beside a bundle
    (once: built under a temporary name and renamed in, so a kill or a concurrent caller never
    leaves a half-made repository where ``find_mirror`` looks)."""
    if not is_bundle_file(source):
        return source
    repo = source.with_name(source.name[: -len(BUNDLE_SUFFIX)] + ".git")
    if is_bare_repo(repo):
        return repo
    tmp = source.with_name(f".{repo.name}.{secrets.token_hex(4)}.tmp")
    bare_from_bundle(git_exe, source, tmp)
    try:
        os.rename(tmp, repo)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_bare_repo(repo):  # not a lost race with another caller
            raise
    return repo


def bundle_refs(bundle: Path) -> dict[str, str] | None:
    """``{ref: commit}`` from a git bundle's header (``HEAD`` included), read without git; None
    for a bundle this reader does not vouch for (prerequisites, an unknown version or object
    format), whose callers then ask git."""
    refs: dict[str, str] = {}
    try:
        with open(bundle, "rb") as fh:
            first = fh.readline(64)
            if first not in (b"# v2 git bundle\n", b"# v3 git bundle\n"):
                return None
            for _ in range(1_000_000):
                line = fh.readline(4096)
                if line in (b"\n", b""):
                    return refs if line == b"\n" else None
                text = line.decode("utf-8", "replace").rstrip("\n")
                if text.startswith("@"):
                    if text != "@object-format=sha1":
                        return None
                    continue
                oid, _, name = text.partition(" ")
                if oid.startswith("-") or len(oid) != 40 or not name:
                    return None
                refs[name] = oid
    except OSError:
        return None
    return None


def _bare_ref(repo: Path, ref: str) -> str:
    try:
        return (repo / ref).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        pass
    try:
        for line in (repo / "packed-refs").read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name.strip() == ref and not line.startswith(("#", "^")):
                return sha.strip()
    except (OSError, UnicodeDecodeError):
        pass
    return ""


def source_head(source: Path) -> str:
    """The commit a plain ``git clone`` of the local ``source`` (a bundle file or a bare
    repository) checks out, read from disk; "" when unknown."""
    if is_bundle_file(source):
        return (bundle_refs(source) or {}).get("HEAD", "")
    if not is_bare_repo(source):
        return ""
    try:
        head = (source / "HEAD").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    if head.startswith("ref:"):
        ref = head[4:].strip()
        return _bare_ref(source, ref) if ref.startswith("refs/") and ".." not in ref else ""
    return head if re.fullmatch(r"[0-9a-f]{40}", head) else ""


def at_source_head(source: str, ref: str) -> bool:
    """Whether ``ref`` is the full commit a plain clone of the local ``source`` checks out."""
    if len(ref) < 40 or "://" in source:
        return False
    return source_head(Path(source)) == ref.lower()
