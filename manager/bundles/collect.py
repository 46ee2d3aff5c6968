"""Collecting a bundle's parts on the online box: git bundles, registry zips, wheels, models,
channel files. Each function writes under the work folder and returns ``(member, path)`` pairs;
everything remote goes through the Manager's gate (``GitClient.resolve_remote``, ``gate.download``,
``pip download`` of ``deps.export``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..git_mirror import mirror_relpath
from ..network import redact_url, run_sync
from ..snapshots.model import PackState, Snapshot
from .errors import BundleSourceMissing

if TYPE_CHECKING:
    from ..context import Manager

Progress = Callable[[str], None]
_GIT_TIMEOUT = 900.0


def _git(manager: Manager, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [manager.git.git_exe, "-c", "protocol.ext.allow=never", "-c", "protocol.fd.allow=never", *args]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "LC_ALL": "C"}
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT, env=env, stdin=subprocess.DEVNULL
    )


def git_member(url: str) -> str:
    rel = mirror_relpath(url)
    if rel is None:
        raise BundleSourceMissing(
            f"the git URL {redact_url(url)} has no place in a git mirror (a local path or an unusual URL)",
            hint="Bundle packs whose source is a remote repository URL (https://host/owner/repo).",
            details={"url": redact_url(url)},
        )
    return "git/" + rel[: -len(".git")] + ".bundle"


def git_bundle(
    manager: Manager, pack: PackState, work: Path, progress: Progress, requirements: dict[str, str]
) -> tuple[str, Path, str, str]:
    """``git bundle`` of every branch and tag of the pack's repository (holding its pinned commit):
    (member, file, identity = sha256 of the ref list, the commit it realises); the pack's
    requirements.txt at that commit goes into ``requirements[member]``."""
    member = git_member(pack.url)
    source = manager.git.resolve_remote(pack.url)
    scratch = work / ".git-scratch" / hashlib.sha256(pack.url.encode()).hexdigest()[:16]
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.parent.mkdir(parents=True, exist_ok=True)
    progress(f"git {pack.id or pack.name}: fetching {redact_url(source)}")
    res = _git(manager, scratch.parent, "clone", "--mirror", "--no-local", "--", source, str(scratch))
    if res.returncode != 0:
        raise BundleSourceMissing(
            f"could not fetch {redact_url(pack.url)} for the bundle: {res.stderr.strip()[-300:]}",
            details={"pack": pack.id or pack.name, "url": redact_url(pack.url)},
        )
    commit = pack.commit
    if not commit:
        commit = _git(manager, scratch, "rev-parse", "HEAD").stdout.strip()
    elif _git(manager, scratch, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise BundleSourceMissing(
            f"{pack.id or pack.name}: commit {commit} is not in {redact_url(pack.url)} (a local commit?)",
            hint="Push the commit to the pack's repository, or bundle a snapshot at a published commit.",
            details={"pack": pack.id or pack.name, "commit": commit},
        )
    dest = work / member
    dest.parent.mkdir(parents=True, exist_ok=True)
    res = _git(manager, scratch, "bundle", "create", str(dest), "--all")
    if res.returncode != 0:
        raise BundleSourceMissing(
            f"git bundle failed for {redact_url(pack.url)}: {res.stderr.strip()[-300:]}",
            details={"pack": pack.id or pack.name},
        )
    heads = _git(manager, scratch, "bundle", "list-heads", str(dest)).stdout
    identity = hashlib.sha256("\n".join(sorted(heads.splitlines())).encode()).hexdigest()
    shown = _git(manager, scratch, "show", f"{commit}:requirements.txt")
    requirements[member] = shown.stdout if shown.returncode == 0 else ""
    shutil.rmtree(scratch, ignore_errors=True)
    return member, dest, identity, commit


def registry_zip(manager: Manager, pack: PackState, work: Path, progress: Progress) -> tuple[str, Path]:
    """The registry zip of the pack's version: from the archive cache, else downloaded (gated)."""
    node_id = pack.cnr_id or pack.id or pack.name
    version = pack.version
    cache = manager.layout.cache_dir / "archives" / "cnr" / node_id
    if not version:
        info = run_sync(manager.registry.install_info(node_id, None))
        version = info.version
    member = f"cnr/{node_id}/{version}.zip"
    cached = cache / f"{version}.zip"
    dest = work / member
    dest.parent.mkdir(parents=True, exist_ok=True)
    if cached.is_file():
        progress(f"registry {node_id}@{version}: from the archive cache")
        shutil.copy2(cached, dest)
        return member, dest
    info = run_sync(manager.registry.install_info(node_id, version))
    if not info.download_url:
        raise BundleSourceMissing(
            f"the registry has no download for {node_id}@{version}", details={"pack": node_id, "version": version}
        )
    progress(f"registry {node_id}@{version}: downloading")
    run_sync(manager.gate.download(info.download_url, dest, purpose="registry"))
    return member, dest


def zip_requirements(path: Path) -> str:
    """The requirements.txt at the root of a registry zip ("" when it has none)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return zf.read("requirements.txt").decode("utf-8", "replace") if "requirements.txt" in zf.namelist() else ""
    except (OSError, zipfile.BadZipFile):
        return ""


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements.txt (comments, blank lines and options left out;
    ``download-deps`` reads them with the same source rules as a pack's)."""
    out = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            out.append(line)
    return out


def wheels(
    manager: Manager,
    requirement_lines: Sequence[str],
    work: Path,
    progress: Progress,
    *,
    python_version: str | None,
    platforms: Sequence[str],
) -> list[tuple[str, Path]]:
    """``pip download`` of the requirements (and their dependencies) for the target python/platform."""
    from ..deps.export import download_sources
    from ..deps.policy import deps_policy_from_config

    if not requirement_lines:
        return []
    folder = work / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    req = work / ".requirements-bundle.txt"
    req.write_text("\n".join(requirement_lines) + "\n", encoding="utf-8")
    progress(f"wheels: resolving {len(requirement_lines)} requirement(s)")
    download_sources(
        [str(req)],
        folder,
        policy=deps_policy_from_config(manager.config, manager.layout),
        gate=manager.gate,
        progress=lambda line: progress(f"  {line}"),
        python_version=python_version,
        platforms=platforms,
    )
    return [(f"wheels/{p.name}", p) for p in sorted(folder.iterdir()) if p.is_file()]


def installed_requirements(manager: Manager) -> list[str]:
    """Every enabled installed pack's requirements, pinned to what is installed here (and what
    they pull in): the versions a snapshot of this environment records."""
    from ..deps.export import export_requirements
    from ..deps.installer import installer_for

    packs = [(p.name, Path(p.path)) for p in manager.inventory().packs if p.enabled and p.has_requirements]
    if not packs:
        return []
    result = export_requirements(installer_for(manager), packs, None, pin_installed=True)
    return [r for r in result.requirements if r.strip()]


def models(manager: Manager, snapshot: Snapshot, work: Path, progress: Progress) -> list[tuple[str, Path]]:
    out = []
    for model in snapshot.models:
        src = manager.layout.models_dir / model.folder / model.name
        if not src.is_file():
            progress(f"model {model.folder}/{model.name}: not found here, left out")
            continue
        member = f"models/{model.folder}/{model.name}"
        dest = work / member
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)
        progress(f"model {model.folder}/{model.name}")
        out.append((member, dest))
    return out


def channel_files(
    manager: Manager, packs: Sequence[PackState], work: Path, model_members: Sequence[str] = ()
) -> list[tuple[str, Path]]:
    """The local channel: catalog entries of the bundled packs (the channel's own entry when the
    catalog has it), so ``install <id>`` finds them offline; and the model list's entries of the
    bundled models (``models/<folder>/<name>`` members), so ``install-model`` finds them too."""
    entries: list[dict[str, Any]] = []
    node_map: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    try:
        catalog = manager.catalog_view(refresh="never").catalog
    except Exception:  # no channel data here: the entries are made from the snapshot
        catalog = None
    for pack in packs:
        raw = _catalog_entry(catalog, pack)
        if raw is None:
            raw = {"id": pack.id or pack.name, "title": pack.id or pack.name, "author": "", "description": ""}
            if pack.kind == "git":
                raw.update({"reference": pack.url, "files": [pack.url], "install_type": "git-clone"})
            else:
                raw.update({"reference": "", "files": [], "install_type": "cnr", "cnr_id": pack.cnr_id or pack.id})
        else:
            node_map.update(_node_map_entry(catalog, raw))
            stats.update(_stats_entry(catalog, raw))
        entries.append(raw)
    folder = work / "channel"
    folder.mkdir(parents=True, exist_ok=True)
    bodies = {
        "custom-node-list.json": {"custom_nodes": entries},
        "extension-node-map.json": node_map,
        "model-list.json": {"models": _model_entries(manager, model_members)},
        "alter-list.json": {"items": []},
        # all five channel files, so the box's persisted pack lists (list_cache) accept this channel
        "github-stats.json": stats,
    }
    out = []
    for name, body in bodies.items():
        path = folder / name
        path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
        out.append((f"channel/{name}", path))
    return out


def _catalog_entry(catalog: Any, pack: PackState) -> dict[str, Any] | None:
    """The catalog's pack as a channel entry (title, author, description, URLs, pip ...), or None."""
    found = catalog.get(pack.id) if catalog is not None and pack.id else None
    if found is None or (pack.kind == "git") != (found.install_type == "git-clone"):
        return None
    if pack.kind == "git" and mirror_relpath(pack.url) not in {
        mirror_relpath(u) for u in (*found.files, found.reference)
    }:
        return None  # another repository than the bundled one (a fork under the same id): not its entry
    entry: dict[str, Any] = {
        "id": found.id,
        "title": found.title,
        "author": found.author,
        "reference": found.reference,
        "files": list(found.files),
        "install_type": found.install_type,
        "description": found.description,
    }
    optional = {"pip": list(found.pip), "tags": list(found.tags), "cnr_id": found.cnr_id}
    optional["nodename_pattern"] = found.nodename_pattern
    entry.update({k: v for k, v in optional.items() if v})
    return entry


def _stats_entry(catalog: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """The github-stats.json line of a catalog pack (stars, last update), keyed by its reference."""
    st = catalog.stats_for(entry["id"])
    if st is None or not entry.get("reference"):
        return {}
    body = {"stars": st.stars, "last_update": st.last_update, "author_account_age_days": st.author_account_age_days}
    return {entry["reference"]: {k: v for k, v in body.items() if v is not None}}


def _node_map_entry(catalog: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """The extension-node-map line of a catalog pack (its node class names), so the offline box's
    missing-node lookup finds the bundled pack; empty when the catalog lists none."""
    names = list(catalog.node_types(entry["id"]))
    if not names or not entry.get("reference"):
        return {}
    meta: dict[str, Any] = {"title_aux": entry["title"]}
    if entry.get("nodename_pattern"):
        meta["nodename_pattern"] = entry["nodename_pattern"]
    return {entry["reference"]: [names, meta]}


def _model_entries(manager: Manager, model_members: Sequence[str]) -> list[dict[str, Any]]:
    """The catalog's model-list entries whose placement is a bundled model file (the
    model-list fields): without them the bundled file is in the model store but no install finds it."""
    keys = {m.split("/", 1)[1] for m in model_members if m.startswith("models/")}
    if not keys:
        return []
    from ..models.catalog import catalog_models

    try:
        items = catalog_models(manager, refresh="never").items
    except Exception:  # no channel data here: the model files travel without entries
        return []
    out = []
    for item in items:
        if item.placement is None or f"{item.placement.folder}/{item.placement.relpath}" not in keys:
            continue
        entry = {k: v for k, v in item.entry.to_dict().items() if k != "channel" and (v or k != "sha256")}
        out.append(entry)
    return out
