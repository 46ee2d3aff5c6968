"""Capture the current state of a ComfyUI tree as a ``Snapshot``.

Packs come from the inventory scan (no git process per pack), Python packages from the
``*.dist-info`` folders of the ComfyUI python's site folders (one short probe of that python;
PEP 610 ``direct_url.json`` says which came from a URL or a local file), models from the models
module, and the dependency graph from each pack's requirements.txt (parsed, never executed).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from ..config_schema import SETTINGS_BY_KEY
from ..deps.environment import probe_environment
from ..deps.requirements import SourceRules, parse_requirements_file
from ..errors import ManagerError
from ..inventory import InstalledPack, Inventory, parse_disabled_name
from .model import ModelState, PackState, PythonPackage, Snapshot, safe_entry_name, safe_relative_path

_CHUNK = 1 << 20


def utc_now() -> str:
    """ISO 8601 UTC timestamp with microseconds (sorts as text)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def target_python(manager: Any) -> str:
    """The interpreter whose packages are captured and restored (python_executable, else the host's)."""
    return str(manager.config["python_executable"] or manager.host.python_executable)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- packs -------------------------------------------------------------------------------------
def pack_state(p: InstalledPack, *, hash_files: bool = True) -> PackState:
    """The snapshot record of one inventory entry (disabled decorations removed from the name)."""
    base = p.name if p.enabled else parse_disabled_name(p.name)[0]
    common: dict[str, Any] = {"name": base, "kind": p.kind, "enabled": p.enabled}
    if p.kind == "git":
        return PackState(
            id=p.catalog_id or p.cnr_id or base,
            url=p.remote_url,
            commit=p.commit.lower(),
            branch=p.branch,
            version=p.cnr_version,
            cnr_id=p.cnr_id,
            **common,
        )
    if p.kind == "cnr":
        return PackState(id=p.cnr_id or p.pack_id, version=p.version, cnr_id=p.cnr_id or p.pack_id, **common)
    if p.kind == "file":
        sha = file_sha256(p.path) if hash_files else ""
        return PackState(id=p.catalog_id or base, sha256=sha, **common)
    return PackState(id=p.catalog_id or base, version=p.cnr_version, cnr_id=p.cnr_id, **common)


def pack_states(inventory: Inventory, notes: list[str] | None = None) -> tuple[PackState, ...]:
    """Every capturable pack; unsafe names and second copies (same pack, same state) are noted, not kept."""
    notes = notes if notes is not None else []
    out: list[PackState] = []
    seen: set[tuple[str, bool]] = set()
    for p in inventory.packs:
        try:
            state = pack_state(p)
        except OSError as exc:
            notes.append(f"pack {p.name}: unreadable ({exc}); not captured")
            continue
        if not safe_entry_name(state.name):
            notes.append(f"pack {p.name!r}: name is not a plain folder/file name; not captured")
            continue
        if p.kind == "git" and not state.commit:
            notes.append(f"pack {p.name}: git metadata unreadable ({'; '.join(p.problems) or 'no commit'})")
        slot = (state.key, state.enabled)
        if slot in seen:
            notes.append(
                f"pack {p.name}: another {'enabled' if p.enabled else 'disabled'} copy of "
                f"{state.key.split(':', 1)[1]} was captured; this one is left out"
            )
            continue
        seen.add(slot)
        out.append(state)
    return tuple(out)


# --- python packages ---------------------------------------------------------------------------
def _direct_source(info_dir: Path) -> tuple[str, str]:
    """(kind, source) from PEP 610 ``direct_url.json``; ("index", "") when absent or unreadable."""
    try:
        data = json.loads((info_dir / "direct_url.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "index", ""
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url:
        return "index", ""
    vcs = data.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs"):
        ref = vcs.get("commit_id") or vcs.get("requested_revision") or ""
        url = f"{vcs['vcs']}+{url}" + (f"@{ref}" if ref else "")
    return ("local" if url.lower().startswith("file:") else "url"), url


def read_python_packages(site_dirs: Iterable[str | os.PathLike[str]]) -> tuple[PythonPackage, ...]:
    """Distributions in ``site_dirs`` (first folder wins), sorted by name; reads metadata folder names only."""
    found: dict[str, PythonPackage] = {}
    for folder in site_dirs:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = version = ""
            if entry.name.endswith(".dist-info"):
                name, _, version = entry.name[:-10].rpartition("-")
            elif entry.name.endswith(".egg-info"):
                parts = entry.name[:-9].split("-")
                name, version = (parts[0], parts[1]) if len(parts) > 1 else ("", "")
            if not name or not version:
                continue
            canonical = str(canonicalize_name(name))
            if canonical in found:
                continue
            kind, source = _direct_source(Path(entry.path)) if entry.is_dir() else ("index", "")
            found[canonical] = PythonPackage(canonical, version, kind, source)
    return tuple(found[k] for k in sorted(found))


def python_environment(python: str) -> tuple[str, tuple[PythonPackage, ...]]:
    """(python version "3.11", installed packages) of the interpreter ``python``."""
    env = probe_environment(python)
    return env.python_version, read_python_packages(env.site_dirs)


# --- models, config, dependency graph ---------------------------------------------------------
def model_states(manager: Any, *, hash_models: bool = False) -> tuple[ModelState, ...]:
    """Model files in the model folders (size always; sha256 when cached, or computed when asked)."""
    from ..models.catalog import installed_models

    out: dict[str, ModelState] = {}
    for m in installed_models(manager, with_sha256=hash_models):
        if safe_entry_name(m.folder) and safe_relative_path(m.name):
            state = ModelState(m.folder, m.name, m.size, m.sha256 or "")
            out.setdefault(state.key, state)
    return tuple(out[k] for k in sorted(out))


def effective_config(config: Any) -> dict[str, Any]:
    """Every non-secret setting's effective value (secret ones are left out entirely)."""
    out: dict[str, Any] = {}
    for key, value in config.values().items():
        setting = SETTINGS_BY_KEY.get(key)
        if setting is None or setting.secret:
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def dependency_graph(packs: Sequence[InstalledPack], notes: list[str]) -> dict[str, tuple[str, ...]]:
    """Pack name -> the package names its requirements.txt asks for (URLs and paths by name when known)."""
    graph: dict[str, tuple[str, ...]] = {}
    rules = SourceRules(allow_external=True)  # recording, not installing: accept every source
    for p in packs:
        if not p.has_requirements:
            continue
        folder = Path(p.path)
        try:
            parsed = parse_requirements_file(folder / "requirements.txt", pack=p.name, pack_dir=folder, rules=rules)
        except (ManagerError, OSError) as exc:
            notes.append(f"pack {p.name}: requirements.txt not recorded ({getattr(exc, 'message', exc)})")
            continue
        names = [r.name or r.text for r in parsed.requirements]
        graph[p.name] = tuple(dict.fromkeys(names))
    return graph


# --- the whole state ---------------------------------------------------------------------------
def capture(
    manager: Any,
    *,
    reason: str = "manual",
    include_python: bool = True,
    include_models: bool = True,
    hash_models: bool = False,
    inventory: Inventory | None = None,
    strict_python: bool = False,
    environment: Any = None,
) -> Snapshot:
    """Capture the tree of ``manager`` now. Reads only; the python probe is the one subprocess.

    A python that cannot be probed becomes a note, or raises with ``strict_python`` (a restore
    must not read "no packages" as "every package is missing"). ``environment``: a probe of that
    python made just now (a restore's dependency installer's): its site folders are read instead
    of probing again."""
    notes: list[str] = []
    inv = inventory if inventory is not None else manager.inventory()
    notes += [f"{n.code}: {n.message}" for n in inv.notices]
    packs = pack_states(inv, notes)
    py_version = ""
    pips: tuple[PythonPackage, ...] = ()
    if include_python:
        try:
            if environment is not None:
                py_version, pips = environment.python_version, read_python_packages(environment.site_dirs)
            else:
                py_version, pips = python_environment(target_python(manager))
        except ManagerError as exc:
            if strict_python:
                raise
            notes.append(f"python packages not captured: {exc.message}")
    models = model_states(manager, hash_models=hash_models) if include_models else ()
    return Snapshot(
        created_at=utc_now(),
        packs=packs,
        python=pips,
        models=models,
        comfyui=manager.host.comfyui_version(),
        python_version=py_version,
        config=effective_config(manager.config),
        dependencies=dependency_graph(inv.packs, notes),
        reason=reason,
        notes=tuple(notes),
    )
