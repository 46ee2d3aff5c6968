"""Dry runs of the changing kinds: what a task would change, as the shared plan record.

Every preview takes ``(manager, target, params, decision)`` like the runners' jobs and answers
``{"shared_plan": Plan.to_dict(), ...}`` (``manager.plans``), changing nothing in the tree or the
environment: packs are read from disk, a new commit's requirements from a clone into a
temporary folder outside the tree (through the network gate, so offline a remote is a blocker,
never a socket), and the Python package changes from the installer's dry run
(``DependencyInstaller.dry_run``: ``uv pip install --dry-run`` / ``pip install --dry-run
--report``) against ComfyUI's python, the wheelhouse only when offline. A registry (cnr)
pack's requirements are read from its archive in the registry archive cache (fetched into the
cache first in public/private mode, never installed); what cannot be known without a fetch the
mode refuses is a note, never a guess.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ManagerError, PackExists
from ..plans import FileMove, PackChange, Plan, merge_plans
from . import params as kp

if TYPE_CHECKING:
    from ..context import Manager
    from ..deps.installer import DependencyInstaller
    from ..inventory import InstalledPack
    from ..operations import Ops
    from ..operations.sources import Source
    from ..records import PolicyDecision

REQUIREMENTS_MAX_BYTES = 1 << 20  # a requirements.txt read from an archive for a plan


def _answer(plan: Plan) -> dict[str, Any]:
    return {"dry_run": True, "shared_plan": plan.to_dict()}


def _ops(manager: Manager) -> Ops:
    from ..operations import Ops

    return Ops(manager, deps_step=manager.deps_step)


def _installer(manager: Manager) -> DependencyInstaller:
    """The installer the real dependency step uses (the host's python unless python_executable)."""
    from ..deps.installer import installer_for

    return installer_for(manager)


def _rel(manager: Manager, path: str | Path) -> str:
    try:
        return Path(path).relative_to(manager.layout.comfyui_root).as_posix()
    except ValueError:
        return str(path)


@contextmanager
def _scratch() -> Iterator[Path]:
    """A temporary folder outside the ComfyUI tree, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="cm-plan-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def deps_plan(
    manager: Manager,
    kind: str,
    target: str,
    folders: Sequence[tuple[str, Path]],
    *,
    skip_deps: bool = False,
    replacing: Sequence[str] = (),
) -> Plan:
    """The dependency part of a plan: ``folders`` (pack name, folder holding its new
    requirements.txt) planned with the installed packs (conflicts, held back), then resolved by
    the installer's dry run. ``replacing`` names installed packs whose copy is replaced."""
    from ..deps.plan import DepsPlan, PackSource

    installer = _installer(manager)
    names = {n for n, _ in folders} | set(replacing)
    others = [
        PackSource(p.name, Path(p.path))
        for p in manager.inventory(with_catalog=False).enabled
        if p.has_requirements and p.name not in names
    ]
    try:
        full = installer.plan_for([*others, *(PackSource(n, f) for n, f in folders)])
    except ManagerError as exc:
        return Plan(kind, target, blockers=(exc.to_dict(),), skip_deps=skip_deps)
    mine = full.packs[len(others) :]
    merged, _, skips = installer._planner().merge(mine, full.installed)
    wanted = {n for n, _ in folders}
    conflicts = tuple(c for c in full.conflicts if any(p in wanted for p, _ in c.wanted))
    plan = DepsPlan(tuple(mine), merged, conflicts, skips, full.installed)
    run = installer.dry_run(plan)
    return plan.to_plan(
        kind,
        target,
        after=run.after,
        removed=run.removed,
        skip_deps=skip_deps,
        blockers=run.blockers,
        notes=run.notes,
        resolver=run.resolver,
    )


def _with(base: Plan, **extra: Any) -> Plan:
    """``base`` (a dependency plan) with pack changes, moves, notes or blockers added."""
    return dataclasses.replace(
        base,
        packs=(*extra.pop("packs", ()), *base.packs),
        moves=(*extra.pop("moves", ()), *base.moves),
        blockers=(*extra.pop("blockers", ()), *base.blockers),
        notes=(*extra.pop("notes", ()), *base.notes),
        **extra,
    )


def _guard(kind: str, target: str, build: Callable[[], Plan]) -> dict[str, Any]:
    """Any coded error while planning is the plan's blocker, not a failed request."""
    try:
        return _answer(build())
    except ManagerError as exc:
        return _answer(Plan(kind, target, blockers=(exc.to_dict(),)))


def _installed(manager: Manager, key: str, *, enabled: bool | None = True) -> InstalledPack:
    from ..operations.installed import find_pack

    return find_pack(manager.inventory(), key, enabled=enabled)


def _at(pack: InstalledPack) -> str:
    return pack.commit[:12] if pack.kind == "git" and pack.commit else pack.version


# --- a git source's requirements at another commit ---------------------------------------------------
def _clone_at(manager: Manager, url: str, ref: str, dest: Path) -> str:
    """Clone ``url`` at ``ref`` into ``dest`` (a scratch folder); the commit it is at."""
    state = manager.git.clone(url, dest, ref=ref or None)
    return state.commit


# --- a registry archive's requirements ------------------------------------------------------------
def _cnr_requirements(manager: Manager, source: Source, tmp: Path) -> tuple[Path | None, str]:
    """A scratch folder holding the requirements.txt of the registry archive ``source`` names,
    read from the registry archive cache (in public/private mode the archive is fetched into the
    cache first: a plan may fill the cache, never the tree); or None and the note saying why not."""
    from ..network import run_sync
    from ..operations.sources import cnr_archive_path

    label = f"{source.pack_id or source.name} {source.version}".strip()
    archive = Path(source.path) if source.path else cnr_archive_path(_ops(manager), source.pack_id, source.version)
    if not archive.is_file():
        if not source.url or manager.gate.offline:
            return None, (
                f"{label}: the archive is not in the registry archive cache and offline mode fetches nothing: "
                "its requirements are read after the download; not resolved here"
            )
        try:
            run_sync(manager.gate.download(source.url, archive, purpose="registry"))
        except ManagerError as exc:
            return (
                None,
                f"{label}: the archive could not be fetched ({exc.code}: {exc}); requirements not resolved here",
            )
    folder = tmp / f"cnr-{source.name}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo("requirements.txt")
            except KeyError:
                return folder, ""  # no requirements.txt: no dependency step
            if info.file_size > REQUIREMENTS_MAX_BYTES:
                return (
                    None,
                    f"{label}: its requirements.txt is larger than {REQUIREMENTS_MAX_BYTES} bytes; not resolved here",
                )
            text = zf.read(info)
    except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
        return (
            None,
            f"{label}: the cached archive {archive.name} cannot be read ({exc}); requirements not resolved here",
        )
    (folder / "requirements.txt").write_bytes(text)
    return folder, ""


# --- install / reinstall -------------------------------------------------------------------------------
def install(manager: Manager, target: str, params: kp.InstallParams, decision: PolicyDecision) -> dict[str, Any]:
    return _guard("install", target, lambda: _install_plan(manager, "install", target, params, replacing=None))


def reinstall(manager: Manager, target: str, params: kp.ReinstallParams, decision: PolicyDecision) -> dict[str, Any]:
    def build() -> Plan:
        pack = _installed(manager, target, enabled=True)
        return _install_plan(manager, "reinstall", params.spec or target, params, replacing=pack)

    return _guard("reinstall", target, build)


def _install_plan(manager: Manager, kind: str, target: str, params: Any, *, replacing: InstalledPack | None) -> Plan:
    from ..operations.sources import resolve

    ops = _ops(manager)
    if replacing is not None and not getattr(params, "spec", "") and not params.url:
        from ..operations.install import source_of_installed

        source = source_of_installed(ops, replacing)
    else:
        source = resolve(
            ops,
            params.url or target,
            version=getattr(params, "version", "") or None,
            name=getattr(params, "name", "") or None,
            ref=params.ref or None,
        )
    dest = manager.layout.custom_nodes / source.name
    blockers: list[Mapping[str, Any]] = []
    moves: list[FileMove] = []
    notes: list[str] = []
    if replacing is None:
        disabled = [p for p in manager.inventory().disabled if p.name.split("@")[0].lower() == source.name.lower()]
        if dest.exists() or dest.is_symlink():
            blockers.append(
                PackExists(f"{dest.name} is already installed at {dest}", details={"pack": dest.name}).to_dict()
            )
        elif disabled:
            notes.append(f"{disabled[0].name} is installed but disabled: enable it instead of installing a second copy")
    else:
        moves.append(FileMove(_rel(manager, replacing.path), "trash", "the old copy is kept in the trash"))
    with _scratch() as tmp:
        folder: Path | None = None
        to = source.version or source.ref
        if source.kind == "git":
            folder = tmp / source.name
            to = _clone_at(manager, source.url, source.ref, folder)[:12]
        elif source.kind == "local-dir" and source.path:
            folder = Path(source.path)
        elif source.kind == "cnr":
            folder, why = _cnr_requirements(manager, source, tmp)
            if why:
                notes.append(why)
        else:
            notes.append(f"{source.describe()}: its requirements are read after the download; not resolved here")
        change = PackChange(
            "changed" if replacing is not None else "added",
            source.name,
            _at(replacing) if replacing is not None else "",
            to,
            source.kind,
        )
        skip = bool(getattr(params, "skip_deps", False))
        base = (
            deps_plan(manager, kind, target, [(source.name, folder)], skip_deps=skip, replacing=[source.name])
            if folder is not None
            else Plan(kind, target, skip_deps=skip)
        )
    return _with(base, packs=[change], moves=moves, blockers=blockers, notes=notes)


# --- update / update-all / switch version ------------------------------------------------------------
def update(manager: Manager, target: str, params: kp.UpdateParams, decision: PolicyDecision) -> dict[str, Any]:
    return _guard("update", target, lambda: _update_plan(manager, "update", target, params.skip_deps, params.version))


def _update_plan(manager: Manager, kind: str, key: str, skip_deps: bool, version: str = "") -> Plan:
    pack = _installed(manager, key)
    if pack.kind == "git":
        return _git_plan(manager, kind, key, pack, "", skip_deps)
    if pack.kind == "cnr" and pack.cnr_id:
        from ..operations.sources import registry_source

        source = registry_source(_ops(manager), pack.cnr_id, version or "latest", pack.name)
        if source.version == pack.version:
            return Plan(kind, key, notes=(f"{pack.name}: {pack.version} is the latest version",), skip_deps=skip_deps)
        move = FileMove(_rel(manager, pack.path), "trash", f"version {pack.version} kept in the trash")
        return _cnr_plan(manager, kind, key, pack, source, move, skip_deps)
    return Plan(
        kind,
        key,
        blockers=(
            {
                "code": "install_unsupported",
                "message": f"{pack.name} is a {pack.kind} pack and cannot be updated automatically",
            },
        ),
    )


def _cnr_plan(
    manager: Manager, kind: str, key: str, pack: InstalledPack, source: Source, move: FileMove, skip_deps: bool
) -> Plan:
    """An installed pack moved to the registry version ``source``: its archive's requirements
    resolved like a git pack's (a note when the archive cannot be read)."""
    change = PackChange("changed", pack.name, _at(pack), source.version, "cnr")
    with _scratch() as tmp:
        folder, why = _cnr_requirements(manager, source, tmp)
        if folder is None:
            return Plan(kind, key, packs=(change,), moves=(move,), notes=(why,), skip_deps=skip_deps)
        base = deps_plan(manager, kind, key, [(pack.name, folder)], skip_deps=skip_deps, replacing=[pack.name])
    return _with(base, packs=[change], moves=[move])


def _git_plan(manager: Manager, kind: str, key: str, pack: InstalledPack, ref: str, skip_deps: bool) -> Plan:
    """A git pack moved to ``ref`` ("" = its branch's remote head): the new commit's requirements
    read from a scratch clone; the refusals the update would meet (detached HEAD, local edits)."""
    from ..operations.git_state import CHECKOUT_BRANCH, assess

    path = Path(pack.path)
    # the same decision the verb makes (local git only): odd states are notes or blockers here
    decision = assess(_ops(manager), pack, "switch_version" if kind == "switch_version" else "update", ref=ref)
    notes, refused = decision.plan_notes()
    if refused:
        return Plan(kind, key, blockers=tuple(refused), notes=tuple(notes), skip_deps=skip_deps)
    if not ref:
        ref = decision.branch if decision.action == CHECKOUT_BRANCH and decision.branch else pack.branch
    remote = pack.remote_url or ""
    with _scratch() as tmp:
        folder = tmp / pack.name
        try:
            commit = _clone_at(manager, str(path), ref, folder) if not remote or kind == "switch_version" else ""
        except ManagerError:
            commit = ""
        if not commit:
            shutil.rmtree(folder, ignore_errors=True)
            commit = _clone_at(manager, remote, ref, folder)
        if commit == pack.commit:
            return Plan(
                kind,
                key,
                notes=(*notes, f"{pack.name} is already at {commit[:12]}"),
                skip_deps=skip_deps,
            )
        same_reqs = _read(path / "requirements.txt") == _read(folder / "requirements.txt")
        change = PackChange("changed", pack.name, pack.commit[:12], commit[:12], "git")
        if same_reqs and kind == "update":
            return Plan(
                kind,
                key,
                packs=(change,),
                notes=(*notes, "requirements.txt is unchanged: the dependency step does not run"),
                skip_deps=skip_deps,
            )
        base = deps_plan(manager, kind, key, [(pack.name, folder)], skip_deps=skip_deps)
    return _with(base, packs=[change], notes=notes)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def update_all(manager: Manager, target: str, params: kp.UpdateAllParams, decision: PolicyDecision) -> dict[str, Any]:
    from ..operations import update as upd

    def build() -> Plan:
        ops = _ops(manager)
        plan = upd.Plan.from_dict(params.plan) if params.plan is not None else upd.plan_update_all(ops, tidy=False)
        shared = plan.to_plan(skip_deps=params.skip_deps)
        per_pack = [
            _update_plan(manager, "update_all", s.pack, params.skip_deps, s.to_version if s.kind == "cnr" else "")
            for s in plan.steps
        ]
        merged = merge_plans("update_all", "all", per_pack, notes=shared.notes)
        if params.auto_snapshot and plan.steps:
            merged = dataclasses.replace(merged, notes=(*merged.notes, "an auto-snapshot is saved first"))
        return dataclasses.replace(merged, packs=shared.packs or merged.packs)

    return _guard("update_all", target, build)


def switch_version(
    manager: Manager, target: str, params: kp.SwitchVersionParams, decision: PolicyDecision
) -> dict[str, Any]:
    def build() -> Plan:
        pack = _installed(manager, target)
        wanted = (params.commit or params.version).strip()
        if pack.kind == "git" and (params.commit or wanted not in ("latest",)) and not pack.cnr_id:
            ref = pack.branch if wanted == "nightly" else wanted
            return _git_plan(manager, "switch_version", target, pack, ref, params.skip_deps)
        if pack.kind == "git" and params.commit:
            return _git_plan(manager, "switch_version", target, pack, wanted, params.skip_deps)
        move = FileMove(_rel(manager, pack.path), "custom_nodes/.disabled/", "the current copy is disabled")
        if pack.cnr_id and wanted != "nightly":
            from ..operations.sources import registry_source

            source = registry_source(_ops(manager), pack.cnr_id, wanted or "latest", pack.name)
            return _cnr_plan(manager, "switch_version", target, pack, source, move, params.skip_deps)
        return Plan(
            "switch_version",
            target,
            packs=(PackChange("changed", pack.name, _at(pack), wanted, pack.kind),),
            moves=(move,),
            notes=(f"{pack.name} {wanted}: its requirements are read after the download; not resolved here",),
            skip_deps=params.skip_deps,
        )

    return _guard("switch_version", target, build)


# --- fix, uninstall, enable, disable -------------------------------------------------------------------
def fix(manager: Manager, target: str, params: kp.FixParams, decision: PolicyDecision) -> dict[str, Any]:
    def build() -> Plan:
        pack = _installed(manager, target)
        base = deps_plan(manager, "fix", target, [(pack.name, Path(pack.path))])
        return _with(base, notes=[f"{pack.name}: its install script runs again"])

    return _guard("fix", target, build)


def uninstall(manager: Manager, target: str, params: kp.UninstallParams, decision: PolicyDecision) -> dict[str, Any]:
    from ..operations.installed import find_pack

    def build() -> Plan:
        pack = find_pack(manager.inventory(), target, enabled=params.enabled, version=params.version or None)
        return Plan(
            "uninstall",
            target,
            packs=(PackChange("removed", pack.name, _at(pack), "", pack.kind),),
            moves=(FileMove(_rel(manager, pack.path), _rel(manager, manager.layout.trash_dir), "moved to the trash"),),
            notes=("its Python packages stay installed",),
        )

    return _guard("uninstall", target, build)


def disable(manager: Manager, target: str, params: kp.KindParams, decision: PolicyDecision) -> dict[str, Any]:
    from ..operations.names import disabled_name

    def build() -> Plan:
        pack = _installed(manager, target)
        dest = manager.layout.disabled_dir / disabled_name(pack)
        return Plan(
            "disable",
            target,
            packs=(PackChange("disabled", pack.name, _at(pack), _at(pack), pack.kind),),
            moves=(FileMove(_rel(manager, pack.path), _rel(manager, dest), "disabled"),),
        )

    return _guard("disable", target, build)


def enable(manager: Manager, target: str, params: kp.EnableParams, decision: PolicyDecision) -> dict[str, Any]:
    from ..operations.installed import find_pack
    from ..operations.toggle import enabled_target

    def build() -> Plan:
        pack = find_pack(manager.inventory(), target, enabled=False, version=params.version or None)
        dest = enabled_target(manager.layout, pack)
        return Plan(
            "enable",
            target,
            packs=(PackChange("enabled", pack.name, _at(pack), _at(pack), pack.kind),),
            moves=(FileMove(_rel(manager, pack.path), _rel(manager, dest), "enabled"),),
        )

    return _guard("enable", target, build)


# --- snapshot restore -----------------------------------------------------------------------------------
def snapshot_restore(
    manager: Manager, target: str, params: kp.SnapshotRestoreParams, decision: PolicyDecision
) -> dict[str, Any]:
    """The snapshot engine's preview, with the shared record as ``shared_plan``."""
    from ..snapshots import restore_preview, store_of
    from ..snapshots.restore import plan_restore
    from .runners import restore_options

    options = restore_options(params)
    answer = dict(restore_preview(manager, target, options, decision))
    restore = plan_restore(manager, store_of(manager).load(target), options, where=target)
    answer["shared_plan"] = restore.to_plan(blockers=answer.get("blockers", ())).to_dict()
    return answer
